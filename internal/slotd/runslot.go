package slotd

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/flm"
	"github.com/hal0ai/hal0/internal/fsutil"
	"github.com/hal0ai/hal0/internal/slots"
)

// RunSpec is what hal0-slotd resolved for one start of a slot unit, in
// /var/lib/hal0/slots/<name>/run.json. hal0-slot@<name>.service reads it
// (hal0-slotd run-slot <name>) to build the backend's command line; the
// unit itself carries only the slot's name, because a template instance
// cannot carry anything else.
type RunSpec struct {
	Slot    string `json:"slot"`
	ModelID string `json:"model_id"` // registry id
	// Model is what {model} becomes: the file the backend opens (a GGUF),
	// or the registry id for a model without a path and for flm slots
	// (an FLM tag: flm finds it in its own cache).
	Model   string    `json:"model"`
	Port    int       `json:"port"` // {port}, on 127.0.0.1
	Context int       `json:"ctx"`  // {ctx}, model.context_size (0: the model's own)
	Backend string    `json:"backend"`
	Written time.Time `json:"written_at"`
}

// RunSpecPath is where a slot's run spec lives under the state dir.
func RunSpecPath(stateDir, name string) string {
	return filepath.Join(stateDir, "slots", name, "run.json")
}

// WriteRunSpec stores spec atomically.
func WriteRunSpec(path string, spec *RunSpec) error {
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadRunSpec reads a run spec.
func ReadRunSpec(path string) (*RunSpec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s RunSpec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("run spec %s is malformed: %v", path, err)
	}
	return &s, nil
}

// defaultCommand is llama-server's when a slot names none: loopback only,
// because every slot is reached through hal0, never directly.
var defaultCommand = []string{"llama-server", "--model", "{model}", "--host", "127.0.0.1", "--port", "{port}", "--ctx-size", "{ctx}"}

// Command returns the backend's argv for c and spec: [server].command (for
// llama-server a default when empty) and extra_args, with {model}, {port}
// and {ctx} substituted anywhere in an argument.
func Command(c *slots.Config, spec *RunSpec) ([]string, error) {
	base := c.Server.Command
	if len(base) == 0 {
		if c.Slot.Backend != "llama-server" {
			return nil, fmt.Errorf("slot %s: [server] command is missing (backend %s has no default command)", c.Slot.Name, c.Slot.Backend)
		}
		base = defaultCommand
	}
	r := strings.NewReplacer("{model}", spec.Model, "{port}", strconv.Itoa(spec.Port), "{ctx}", strconv.Itoa(spec.Context))
	var argv []string
	for _, a := range append(append([]string{}, base...), c.Server.ExtraArgs...) {
		argv = append(argv, r.Replace(a))
	}
	if argv[0] == "" {
		return nil, fmt.Errorf("slot %s: [server] command starts with an empty program name", c.Slot.Name)
	}
	return argv, nil
}

// RunSlot is `hal0-slotd run-slot NAME`, the main process of
// hal0-slot@NAME.service: it reads the slot's config and run spec and
// replaces itself with the backend (execve), so the backend is the unit's
// main process, its exit status is the unit's, and systemd's stop signal
// reaches it directly. It returns only on error.
func RunSlot(cfg *config.Config, name string) error {
	file := filepath.Join(cfg.Paths.SlotConfigDir(), name+".toml")
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("slot %s: %w", name, err)
	}
	c, err := slots.ParseConfig(file, data)
	if err != nil {
		return err
	}
	path := RunSpecPath(cfg.Paths.StateDir, name)
	spec, err := ReadRunSpec(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("slot %s has no run spec (%s): hal0-slotd writes it before it starts the slot; use `hal0 slot load %s` rather than systemctl start", name, path, name)
	}
	if err != nil {
		return err
	}
	if spec.Slot != name {
		return fmt.Errorf("run spec %s is for slot %q, not %q", path, spec.Slot, name)
	}
	devices := NPUDevices(cfg.FLM.Devices)
	l, err := LaunchFor(cfg, c, spec, devices)
	if err != nil {
		return err
	}
	argv := l.Argv
	prog, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("slot %s: backend %w", name, err)
	}
	if len(l.Cleanup) > 0 {
		// A toolbox container left by an earlier start that was killed
		// holds the name; removing it may fail harmlessly.
		rm := exec.Command(l.Cleanup[0], l.Cleanup[1:]...)
		rm.Stdout, rm.Stderr = os.Stderr, os.Stderr
		rm.Run()
		if len(devices) == 0 {
			fmt.Fprintf(os.Stderr, "hal0-slot %s: no NPU device matches %s; flm in the toolbox will not find the NPU\n", name, strings.Join(cfg.FLM.Devices, " "))
		}
	}
	fmt.Fprintf(os.Stderr, "hal0-slot %s: serving %s on 127.0.0.1:%d: %s\n", name, spec.ModelID, spec.Port, strings.Join(argv, " "))
	return fmt.Errorf("slot %s: exec %s: %w", name, prog, unix.Exec(prog, argv, append(os.Environ(), l.Env...)))
}

// Launch is what run-slot executes for a slot.
type Launch struct {
	Argv []string
	// Env is added to the unit's environment.
	Env []string
	// Cleanup runs first, and may fail: it removes a leftover toolbox
	// container of the slot.
	Cleanup []string
}

// LaunchFor resolves a slot's backend for spec. An flm slot without
// [server] command runs `flm serve <tag>` as [flm] in hal0.toml says: in
// the toolbox image (podman run … with the FLM cache mounted, devices
// passed through and the port published on 127.0.0.1) or as the host flm;
// [server] extra_args are appended to flm's arguments. Anything else is
// Command.
func LaunchFor(cfg *config.Config, c *slots.Config, spec *RunSpec, devices []string) (*Launch, error) {
	if c.Slot.Backend != "flm" || len(c.Server.Command) > 0 {
		argv, err := Command(c, spec)
		if err != nil {
			return nil, err
		}
		return &Launch{Argv: argv}, nil
	}
	r := strings.NewReplacer("{model}", spec.ModelID, "{port}", strconv.Itoa(spec.Port), "{ctx}", strconv.Itoa(spec.Context))
	var extra []string
	for _, a := range c.Server.ExtraArgs {
		extra = append(extra, r.Replace(a))
	}
	tb := flm.New(cfg)
	cmd := tb.Serve(spec.ModelID, flm.ServeOptions{Port: spec.Port, Context: spec.Context, Name: flm.SlotContainer(c.Slot.Name),
		Devices: devices, Extra: extra})
	l := &Launch{Argv: cmd.Argv, Env: cmd.Env}
	if rm, ok := tb.Remove(cmd.Container); ok {
		l.Cleanup = rm.Argv
	}
	return l, nil
}

// NPUDevices expands [flm] devices (globs such as /dev/accel/*) to the
// device nodes present.
func NPUDevices(patterns []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range patterns {
		matches, _ := filepath.Glob(p)
		for _, m := range matches {
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	return out
}
