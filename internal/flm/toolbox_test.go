package flm

import (
	"reflect"
	"testing"

	"github.com/hal0ai/hal0/internal/config"
)

// The toolbox image and podman cannot run here; command construction is
// pure and checked argument by argument. The podman stand-in
// (flmtest/standin) runs these same command lines in pull_test.go.

func podmanBox() *Toolbox {
	return &Toolbox{Runtime: RuntimePodman, Podman: "/usr/bin/podman", Image: "ghcr.io/hal0ai/hal0-toolbox-flm:0.9.43",
		FLM: "flm", CacheDir: "/var/lib/hal0/.config/flm/models"}
}

func hostBox() *Toolbox {
	return &Toolbox{Runtime: RuntimeHost, Podman: "podman", Image: "x", FLM: "/usr/bin/flm", CacheDir: "/srv/flm/models"}
}

func TestToolboxCommands(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  Cmd
		want Cmd
	}{
		{"podman list", podmanBox().List(), Cmd{Argv: []string{"/usr/bin/podman", "run", "--rm", "--security-opt", "apparmor=unconfined",
			"-v", "/var/lib/hal0/.config/flm/models:/var/lib/hal0/.config/flm/models", "ghcr.io/hal0ai/hal0-toolbox-flm:0.9.43", "list", "-j"}}},
		{"podman pull", podmanBox().Pull("llama3.2:1b"), Cmd{Argv: []string{"/usr/bin/podman", "run", "--rm", "--name", "hal0-flm-pull-llama3.2_1b",
			"--security-opt", "apparmor=unconfined", "-v", "/var/lib/hal0/.config/flm/models:/var/lib/hal0/.config/flm/models",
			"ghcr.io/hal0ai/hal0-toolbox-flm:0.9.43", "pull", "llama3.2:1b"}, Container: "hal0-flm-pull-llama3.2_1b"}},
		{"podman serve", podmanBox().Serve("qwen3:4b", ServeOptions{Port: 8088, Context: 16384, Name: "hal0-slot-npu",
			Devices: []string{"/dev/accel/accel0"}, Extra: []string{"--embed", "1"}}),
			Cmd{Argv: []string{"/usr/bin/podman", "run", "--rm", "--name", "hal0-slot-npu", "--security-opt", "apparmor=unconfined",
				"-v", "/var/lib/hal0/.config/flm/models:/var/lib/hal0/.config/flm/models",
				"--device", "/dev/accel/accel0", "--ulimit", "memlock=-1:-1", "-p", "127.0.0.1:8088:8088",
				"ghcr.io/hal0ai/hal0-toolbox-flm:0.9.43", "serve", "qwen3:4b", "--port", "8088", "--host", "0.0.0.0",
				"--ctx-len", "16384", "--embed", "1"}, Container: "hal0-slot-npu"}},
		// A host flm keeps models in $FLM_MODEL_PATH/models.
		{"host list", hostBox().List(), Cmd{Argv: []string{"/usr/bin/flm", "list", "-j"}, Env: []string{"FLM_MODEL_PATH=/srv/flm"}}},
		{"host pull", hostBox().Pull("qwen3:4b"), Cmd{Argv: []string{"/usr/bin/flm", "pull", "qwen3:4b"}, Env: []string{"FLM_MODEL_PATH=/srv/flm"}}},
		{"host serve", hostBox().Serve("qwen3:4b", ServeOptions{Port: 8088, Name: "ignored", Devices: []string{"/dev/accel/accel0"}}),
			Cmd{Argv: []string{"/usr/bin/flm", "serve", "qwen3:4b", "--port", "8088", "--host", "127.0.0.1"}, Env: []string{"FLM_MODEL_PATH=/srv/flm"}}},
	} {
		if !reflect.DeepEqual(tc.cmd, tc.want) {
			t.Errorf("%s:\n got %#v\nwant %#v", tc.name, tc.cmd, tc.want)
		}
	}
	if c, ok := podmanBox().Stop("hal0-flm-pull-qwen3_4b", 7); !ok || !reflect.DeepEqual(c.Argv, []string{"/usr/bin/podman", "stop", "-t", "7", "hal0-flm-pull-qwen3_4b"}) {
		t.Errorf("stop %v %v", c, ok)
	}
	if c, ok := podmanBox().Remove("n"); !ok || !reflect.DeepEqual(c.Argv, []string{"/usr/bin/podman", "rm", "-f", "--ignore", "n"}) {
		t.Errorf("rm %v %v", c, ok)
	}
	if _, ok := hostBox().Stop("n", 5); ok {
		t.Error("a host flm has no container to stop")
	}
}

func TestToolboxFromConfig(t *testing.T) {
	cfg := config.Default("/h")
	tb := New(cfg)
	if tb.Runtime != "podman" || tb.Image != config.DefaultFLMImage || tb.CacheDir != "/h/var/lib/hal0/.config/flm/models" {
		t.Fatalf("%+v", tb)
	}
}
