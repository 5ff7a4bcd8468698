package sd

import (
	"os/exec"
	"strings"
	"testing"
)

// TestOnlySystemdPackagesImportDBus keeps go-systemd and godbus behind the
// systemd seams: everything else talks to systemd through sd, sdbus or
// unitwatch, which keeps it testable and the CLI and API client light.
func TestOnlySystemdPackagesImportDBus(t *testing.T) {
	allowed := map[string]bool{
		"github.com/hal0ai/hal0/internal/sd":          true,
		"github.com/hal0ai/hal0/internal/sdbus":       true,
		"github.com/hal0ai/hal0/internal/unitwatch":   true,
		"github.com/hal0ai/hal0/internal/livesystemd": true,
	}
	out, err := exec.Command("go", "list", "-test", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "github.com/hal0ai/hal0/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, " ")
		// Test variants are listed as "p [p.test]" or "p_test [p.test]".
		base := strings.TrimSuffix(strings.Fields(pkg)[0], "_test")
		for _, imp := range strings.Fields(imports) {
			if (strings.HasPrefix(imp, "github.com/coreos/go-systemd/") || strings.HasPrefix(imp, "github.com/godbus/dbus/")) && !allowed[base] {
				t.Errorf("%s imports %s; go through internal/sd, internal/sdbus or internal/unitwatch instead", pkg, imp)
			}
		}
	}
}
