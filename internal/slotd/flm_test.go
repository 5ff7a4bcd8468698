package slotd

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/flm/flmtest"
	"github.com/hal0ai/hal0/internal/registry"
	"github.com/hal0ai/hal0/internal/slots"
)

func TestLaunchFor(t *testing.T) {
	spec := &RunSpec{Slot: "npu", ModelID: "qwen3:4b", Model: "qwen3:4b", Port: 8088, Context: 16384, Backend: "flm"}
	c := parseSlot(t, "[slot]\nname = \"primary\"\nport = 8088\nbackend = \"flm\"\n[server]\nextra_args = [\"--embed\", \"1\", \"--alias={model}\"]\n")

	cfg := config.Default("/h")
	l, err := LaunchFor(cfg, c, spec, []string{"/dev/accel/accel0"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"podman", "run", "--rm", "--name", "hal0-slot-primary", "--security-opt", "apparmor=unconfined",
		"-v", "/h/var/lib/hal0/.config/flm/models:/var/lib/hal0/.config/flm/models",
		"--device", "/dev/accel/accel0", "--ulimit", "memlock=-1:-1", "-p", "127.0.0.1:8088:8088",
		config.DefaultFLMImage, "serve", "qwen3:4b", "--port", "8088", "--host", "0.0.0.0", "--ctx-len", "16384",
		"--embed", "1", "--alias=qwen3:4b"}
	if !slices.Equal(l.Argv, want) || len(l.Env) != 0 || !slices.Equal(l.Cleanup, []string{"podman", "rm", "-f", "--ignore", "hal0-slot-primary"}) {
		t.Fatalf("toolbox launch %+v\nwant argv %q", l, want)
	}

	cfg.FLM.Runtime, cfg.FLM.FLMPath = "host", "/usr/bin/flm"
	l, err = LaunchFor(cfg, c, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"/usr/bin/flm", "serve", "qwen3:4b", "--port", "8088", "--host", "127.0.0.1", "--ctx-len", "16384", "--embed", "1", "--alias=qwen3:4b"}
	if !slices.Equal(l.Argv, want) || !slices.Equal(l.Env, []string{"FLM_MODEL_PATH=/h/var/lib/hal0/.config/flm"}) || l.Cleanup != nil {
		t.Fatalf("host launch %+v", l)
	}

	// A [server] command wins, as for llama-server.
	c = parseSlot(t, "[slot]\nport = 8088\nbackend = \"flm\"\n[server]\ncommand = [\"/opt/flm\", \"serve\", \"{model}\", \"-p\", \"{port}\"]\n")
	l, err = LaunchFor(cfg, c, spec, nil)
	if err != nil || !slices.Equal(l.Argv, []string{"/opt/flm", "serve", "qwen3:4b", "-p", "8088"}) {
		t.Fatalf("explicit command %+v %v", l, err)
	}
	if got := NPUDevices([]string{filepath.Join(t.TempDir(), "accel*")}); len(got) != 0 {
		t.Fatalf("devices %v", got)
	}
}

// TestLiveFLMSlot: an flm slot (no [server] command: hal0 builds flm
// serve) asked to swap to qwen3:4b, which is not installed, pulls it with
// hal0-pull@qwen3:4b.service, starts hal0-slot@ with `flm serve qwen3:4b`
// and warms it until /v1/models lists the model and a one-token
// completion answers. flm is flmtest's stand-in run as the host flm: no
// NPU can exist here.
func TestLiveFLMSlot(t *testing.T) {
	var fe *flmtest.Env
	e := newEnv(t, slotOpts{flm: func(home string) map[string]string {
		var err error
		fe, err = flmtest.NewEnv(home, bins.flm, "", flmtest.Catalog(2<<20))
		if err != nil {
			t.Fatal(err)
		}
		vars := fe.Vars("host")
		delete(vars, "HAL0_FLM_CACHE_DIR") // the default, under HAL0_HOME
		return vars
	}})
	const model = "qwen3:4b"
	e.request(slots.EvSwap, model)
	st := e.waitState("ready", state(slots.Ready))
	if st.ModelID != model || st.Port != e.port {
		t.Fatalf("ready status %+v", st)
	}
	e.wantTransitions("pulling", "starting", "warming", "ready")
	reg, err := registry.Open(e.cfg.Paths.RegistryFile()).Load()
	if err != nil {
		t.Fatal(err)
	}
	m, ok := reg.Get(model)
	if !ok || !reflect.DeepEqual(m.Backends, []string{"npu"}) || m.Metadata["runtime"] != "flm" || m.Path != fe.ModelDir(model) {
		t.Fatalf("registry entry %+v", m)
	}
	spec, err := ReadRunSpec(RunSpecPath(e.cfg.Paths.StateDir, slotName))
	if err != nil || spec.Model != model || spec.Backend != "flm" {
		t.Fatalf("run.json %+v %v", spec, err)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/models", e.port))
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Data []struct{ ID string } `json:"data"`
	}
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list.Data) != 1 || list.Data[0].ID != model {
		t.Fatalf("/v1/models %+v", list)
	}
	if j := e.journal(slotUnit); !strings.Contains(j, "serve qwen3:4b --port") || !strings.Contains(j, "Starting server on port") {
		t.Errorf("slot journal:\n%s", j)
	}

	e.request(slots.EvUnload, "")
	e.waitState("offline", state(slots.Offline))
	if _, err := os.Stat(fe.ModelDir(model)); err != nil {
		t.Errorf("the model went with the slot: %v", err)
	}
}
