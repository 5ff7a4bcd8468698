// Package torture is hal0's reliability and security suite: its tests
// kill hal0-pull at random moments, inject network faults, fill disks,
// run pulls and daemons concurrently and restart them, feed bad input to
// every listener, look for the Hugging Face token everywhere it must not
// be, and soak the whole stack while watching memory and file
// descriptors. They run the real binaries (built by TestMain) against the
// in-repo test hub on 127.0.0.1, and the live ones in a private systemd.
//
// `go test ./internal/torture/` runs the short mode (part of make test);
// HAL0_TORTURE=full (make torture) runs every case at full size, and
// HAL0_SOAK=DURATION (make soak) runs the soak. Each test prints its
// figures as a table (go test -v shows them) and writes it to
// test-artifacts/torture/.
//
// The non-test files hold what the tests measure with: process samples
// from /proc, a counter of completed file writes (inotify) and tables.
package torture
