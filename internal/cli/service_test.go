package cli

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/livesystemd"
	"github.com/hal0ai/hal0/internal/testbin"
)

// TestServiceLive runs `hal0 service …` inside a real private systemd
// (the host's PID 1 is not systemd, so systemctl works only in there).
func TestServiceLive(t *testing.T) {
	s := livesystemd.Boot(t, livesystemd.WithUnit("hal0-slotd.service", "[Service]\nType=exec\nExecStart=/bin/sh -c 'echo slotd stand-in up; exec sleep infinity'\n"),
		livesystemd.WithBootUnits("hal0-slotd.service"))
	// The binary must live where the namespace sees it: not under /tmp.
	dir, err := os.MkdirTemp("/var/lib", "hal0-clitest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p, err := testbin.Build(dir, "github.com/hal0ai/hal0/hal0")
	if err != nil {
		t.Fatal(err)
	}
	bin := p[0]
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	invocation := func() string {
		out, err := s.Systemctl(ctx, "show", "-p", "InvocationID", "--value", "hal0-slotd.service")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}

	out, err := s.Run(ctx, bin, "service", "status", "hal0-slotd.service")
	if err != nil || !strings.Contains(out, "Active: active (running)") {
		t.Fatalf("service status: %v\n%s", err, out)
	}
	// Units that are not installed (here: apid's) are named as such.
	if out, err := s.Run(ctx, bin, "service", "status"); err == nil || !strings.Contains(out+err.Error(), "is hal0 installed") {
		t.Fatalf("service status with apid's units missing: %v\n%s", err, out)
	}
	// An inactive unit is an answer (systemctl exits 3), not a failure.
	s.Systemctl(ctx, "stop", "hal0-slotd.service")
	if out, err := s.Run(ctx, bin, "service", "status", "hal0-slotd.service"); err != nil || !strings.Contains(out, "inactive") {
		t.Fatalf("status of a stopped unit: %v\n%s", err, out)
	}
	s.Systemctl(ctx, "start", "hal0-slotd.service")
	out, err = s.Run(ctx, bin, "service", "status", "--json", "hal0-slotd.service", "hal0-apid.service")
	var units []UnitStatus
	if err != nil || json.Unmarshal([]byte(out), &units) != nil || len(units) != 2 ||
		units[0].Unit != "hal0-slotd.service" || units[0].ActiveState != "active" || units[0].MainPID == 0 || units[1].LoadState != "not-found" {
		t.Fatalf("service status --json: %v\n%s", err, out)
	}
	before := invocation()
	if out, err := s.Run(ctx, bin, "service", "restart", "hal0-slotd.service"); err != nil {
		t.Fatalf("service restart: %v\n%s", err, out)
	}
	if after := invocation(); after == before || after == "" {
		t.Fatalf("restart did not start a new run: %s → %s", before, after)
	}
	if out, err := s.Run(ctx, bin, "service", "logs", "hal0-slotd.service"); err != nil || !strings.Contains(out, "slotd stand-in up") {
		t.Fatalf("service logs: %v\n%s", err, out)
	}
	if out, err := s.Run(ctx, bin, "service", "restart", "sshd.service"); err == nil || !strings.Contains(out+err.Error(), "not a hal0 unit") {
		t.Fatalf("restarting a foreign unit: %v\n%s", err, out)
	}
}

func TestCompletion(t *testing.T) {
	r := run(t, "completion", "bash")
	if r.code != 0 {
		t.Fatalf("completion bash: %s", r)
	}
	script := filepath.Join(t.TempDir(), "hal0.bash")
	os.WriteFile(script, []byte(r.stdout), 0o644)
	// Drive the completion function as bash would, word by word.
	for _, tc := range []struct {
		words []string
		want  string
	}{
		{[]string{"hal0", "mo"}, "model"},
		{[]string{"hal0", "model", "p"}, "pull"},
		{[]string{"hal0", "model", "pull", "--qu"}, "--quant"},
		{[]string{"hal0", "slot", "sw"}, "swap"},
		{[]string{"hal0", "completion", "z"}, "zsh"},
	} {
		cmd := exec.Command("bash", "-c", `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($#-1)); _hal0; echo "${COMPREPLY[*]}"`, "bash", script)
		cmd.Args = append(cmd.Args, tc.words...)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("complete %q = %q (%v), want %q", tc.words, out, err, tc.want)
		}
	}
	if r := run(t, "completion", "zsh"); r.code != 0 || !strings.HasPrefix(r.stdout, "#compdef hal0") {
		t.Errorf("completion zsh: %s", r)
	}
	if zsh, err := exec.LookPath("zsh"); err == nil {
		z := filepath.Join(t.TempDir(), "_hal0")
		os.WriteFile(z, []byte(run(t, "completion", "zsh").stdout), 0o644)
		if out, err := exec.Command(zsh, "-n", z).CombinedOutput(); err != nil {
			t.Errorf("zsh -n: %v\n%s", err, out)
		}
	}
	if r := run(t, "completion", "fish"); r.code != 2 {
		t.Errorf("unknown shell: %s", r)
	}
}
