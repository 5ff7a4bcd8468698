// Package flm drives FastFlowLM (flm), which runs LLMs on AMD NPUs with
// its own catalog of models named by tags (family:size, e.g. qwen3:4b);
// arbitrary GGUFs cannot run through it.
//
// hal0 runs the flm command in a toolbox container image (podman run --rm
// … <image> <flm args>, the image's entrypoint being flm) with the host's
// FLM cache bind-mounted at the home of the image's hal0 user, or runs a
// flm installed on the host (Toolbox). The catalog comes from `flm list
// -j`, cached with a TTL and re-read after every pull (Prober). A pull
// runs `flm pull <tag>` and reports progress from the growing model
// directory, against the catalog's size, with the file being downloaded
// parsed from flm's output (Puller, Output); a cancelled or failed pull
// removes the partial directory, because flm trusts file presence. Slots
// with backend flm run `flm serve <tag>` through the same Toolbox.
//
// The flm CLI facts this package relies on (commands, list -j JSON,
// exit codes, progress lines, cache layout) are reproduced by the
// stand-in flm of flmtest, which the tests run in place of an NPU.
package flm
