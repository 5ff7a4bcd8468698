package packagetest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hal0ai/hal0/internal/config"
)

// TestDefaultConfig checks the /etc/hal0/hal0.toml the package installs:
// as shipped (every setting commented out) it loads to the built-in
// defaults, and with every setting uncommented it still does, so each
// value it shows is the default it claims to be and each key is one
// hal0 knows.
func TestDefaultConfig(t *testing.T) {
	shipped, err := os.ReadFile("../../packaging/hal0.toml")
	if err != nil {
		t.Fatal(err)
	}
	setting := regexp.MustCompile(`(?m)^# ([a-z_]+ *= *.*)$`)
	uncommented := setting.ReplaceAllString(string(shipped), "$1")
	if n := len(setting.FindAllString(string(shipped), -1)); n < 20 {
		t.Fatalf("only %d commented settings in packaging/hal0.toml", n)
	}
	load := func(name, content string) *config.Config {
		t.Helper()
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := config.LoadEnv(func(k string) (string, bool) {
			if k == "HAL0_CONFIG" {
				return p, true
			}
			return "", false
		})
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, content)
		}
		c.File = ""
		return c
	}
	// Compared as printed: a list the file sets to [] is empty where the
	// default is nil, which means the same.
	want := fmt.Sprintf("%+v", config.Default(""))
	for name, content := range map[string]string{"shipped": string(shipped), "uncommented": uncommented} {
		if got := fmt.Sprintf("%+v", load(name, content)); got != want {
			t.Errorf("%s hal0.toml loads to\n%s\nwant the built-in defaults\n%s", name, got, want)
		}
	}
	if strings.Contains(uncommented, "\n# endpoint") {
		t.Fatal("the test did not uncomment the settings")
	}
}
