package flm

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hal0ai/hal0/internal/config"
)

// ContainerModels is where the toolbox image's flm keeps its models: the
// image runs flm as the non-root user hal0 whose HOME is /var/lib/hal0,
// and flm uses $HOME/.config/flm/models. The host cache is bind-mounted
// there; without that mount flm sees an empty cache and whatever it pulls
// is gone with the container.
const ContainerModels = "/var/lib/hal0/.config/flm/models"

// Runtimes.
const (
	RuntimePodman = "podman"
	RuntimeHost   = "host"
)

// Toolbox builds flm command lines: `podman run … <image> <flm args>` for
// the toolbox image, whose entrypoint is flm, or `<flm_path> <flm args>`
// for a flm installed on the host. Building is pure: nothing here runs
// anything.
type Toolbox struct {
	Runtime  string // RuntimePodman or RuntimeHost
	Podman   string // podman executable
	Image    string // toolbox image
	FLM      string // host flm executable
	CacheDir string // flm's model directory on the host
}

// New returns the toolbox cfg describes.
func New(cfg *config.Config) *Toolbox {
	return &Toolbox{
		Runtime: cfg.FLM.Runtime, Podman: cfg.FLM.PodmanPath, Image: cfg.FLM.ToolboxImage,
		FLM: cfg.FLM.FLMPath, CacheDir: cfg.FLMCacheDir(),
	}
}

// Cmd is one command to run.
type Cmd struct {
	Argv []string
	// Env is added to the caller's environment.
	Env []string
	// Container is the container's name (runtime podman), which `podman
	// stop` takes; "" for a host flm.
	Container string
}

func (c Cmd) String() string { return strings.Join(c.Argv, " ") }

// Containerised reports whether flm runs in the toolbox image.
func (t *Toolbox) Containerised() bool { return t.Runtime == RuntimePodman }

// run wraps flm arguments for the runtime. extra are podman options that
// go before the image.
func (t *Toolbox) run(name string, extra []string, args ...string) Cmd {
	if !t.Containerised() {
		c := Cmd{Argv: append([]string{t.FLM}, args...)}
		// flm keeps models in $FLM_MODEL_PATH/models (default
		// ~/.config/flm/models).
		if filepath.Base(t.CacheDir) == "models" {
			c.Env = []string{"FLM_MODEL_PATH=" + filepath.Dir(t.CacheDir)}
		}
		return c
	}
	argv := []string{t.Podman, "run", "--rm"}
	if name != "" {
		argv = append(argv, "--name", name)
	}
	argv = append(argv, "--security-opt", "apparmor=unconfined",
		"-v", t.CacheDir+":"+ContainerModels)
	argv = append(argv, extra...)
	argv = append(argv, t.Image)
	return Cmd{Argv: append(argv, args...), Container: name}
}

// List is `flm list -j`.
func (t *Toolbox) List() Cmd { return t.run("", nil, "list", "-j") }

// Pull is `flm pull <tag>`, in a container named after the tag so that a
// cancel can stop it by name.
func (t *Toolbox) Pull(tag string) Cmd {
	return t.run(PullContainer(tag), nil, "pull", tag)
}

// ServeOptions shape `flm serve`.
type ServeOptions struct {
	Port    int // on 127.0.0.1 of the host
	Context int // --ctx-len; 0 keeps the model's default
	// Name is the container's (runtime podman).
	Name string
	// Devices are passed through to the container: the NPU (/dev/accel/*).
	Devices []string
	// Extra are further flm serve arguments.
	Extra []string
}

// Serve is `flm serve <tag>` listening on 127.0.0.1:port. In the toolbox,
// flm listens on all of the container's addresses and podman publishes
// the port on the host's loopback only; the NPU devices are passed
// through, and memory locking is unlimited (flm locks the model).
func (t *Toolbox) Serve(tag string, o ServeOptions) Cmd {
	port := strconv.Itoa(o.Port)
	args := []string{"serve", tag, "--port", port}
	host := "127.0.0.1"
	var extra []string
	if t.Containerised() {
		host = "0.0.0.0"
		for _, d := range o.Devices {
			extra = append(extra, "--device", d)
		}
		extra = append(extra, "--ulimit", "memlock=-1:-1", "-p", "127.0.0.1:"+port+":"+port)
	}
	args = append(args, "--host", host)
	if o.Context > 0 {
		args = append(args, "--ctx-len", strconv.Itoa(o.Context))
	}
	args = append(args, o.Extra...)
	return t.run(o.Name, extra, args...)
}

// Stop is `podman stop -t <grace> <name>`; it has no meaning for a host
// flm, which is signalled directly.
func (t *Toolbox) Stop(name string, graceSeconds int) (Cmd, bool) {
	if !t.Containerised() || name == "" {
		return Cmd{}, false
	}
	return Cmd{Argv: []string{t.Podman, "stop", "-t", strconv.Itoa(graceSeconds), name}}, true
}

// Remove is `podman rm -f <name>`, for a container left behind when its
// podman client was killed.
func (t *Toolbox) Remove(name string) (Cmd, bool) {
	if !t.Containerised() || name == "" {
		return Cmd{}, false
	}
	return Cmd{Argv: []string{t.Podman, "rm", "-f", "--ignore", name}}, true
}

// PullContainer names the container of a tag's pull: podman names allow
// [a-zA-Z0-9_.-], and a tag is family:size in [a-z0-9._-].
func PullContainer(tag string) string {
	return "hal0-flm-pull-" + strings.ReplaceAll(tag, ":", "_")
}

// SlotContainer names the container of a slot.
func SlotContainer(slot string) string { return "hal0-slot-" + slot }

// where says where flm runs, for messages.
func (t *Toolbox) where() string {
	if t.Containerised() {
		return fmt.Sprintf("the toolbox image %s (podman %s)", t.Image, t.Podman)
	}
	return "the host flm " + t.FLM
}
