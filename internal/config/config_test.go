package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// envMap returns an Env backed by m, so tests never touch the process
// environment.
func envMap(m map[string]string) Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaults(t *testing.T) {
	c, err := LoadEnv(envMap(map[string]string{"HAL0_CONFIG_DIR": t.TempDir()}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Paths.ModelRoot != "/mnt/ai-models" || c.Paths.StateDir != "/var/lib/hal0" ||
		c.Paths.RuntimeDir != "/run/hal0" || c.Paths.InstallDir != "/usr/lib/hal0/current" {
		t.Errorf("default paths: %+v", c.Paths)
	}
	if got := c.Paths.RegistryFile(); got != "/var/lib/hal0/registry/registry.toml" {
		t.Errorf("registry file %s", got)
	}
	if got := c.Paths.PullDir(); got != "/mnt/ai-models/local" {
		t.Errorf("pull dir %s", got)
	}
	if c.File != "" {
		t.Errorf("File = %q with no config present", c.File)
	}
}

func TestHomeRemapsEveryRoot(t *testing.T) {
	home := t.TempDir()
	c, err := LoadEnv(envMap(map[string]string{"HAL0_HOME": home}))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{c.Paths.ConfigDir, c.Paths.StateDir, c.Paths.RuntimeDir, c.Paths.InstallDir, c.Paths.ModelRoot} {
		if !strings.HasPrefix(p, home+"/") {
			t.Errorf("%s not under HAL0_HOME %s", p, home)
		}
	}
	if c.Paths.ModelRoot != filepath.Join(home, "mnt/ai-models") {
		t.Errorf("model root %s", c.Paths.ModelRoot)
	}
}

func writeConfig(t *testing.T, home, body string) {
	t.Helper()
	dir := filepath.Join(home, "etc/hal0")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hal0.toml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFileAndEnvPrecedence(t *testing.T) {
	home := t.TempDir()
	writeConfig(t, home, `
[hf]
endpoint = "http://127.0.0.1:9/"
mirrors = ["http://127.0.0.1:10"]

[pull]
concurrency = 2
chunk_size = "16MiB"
disk_reserve = 0
stall_timeout = "45s"

[api]
idle_exit = 120
`)
	c, err := LoadEnv(envMap(map[string]string{
		"HAL0_HOME":             home,
		"HAL0_PULL_CONCURRENCY": "6",
		"HF_HUB_OFFLINE":        "yes",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Pull.Concurrency != 6 {
		t.Errorf("env did not override file: concurrency %d", c.Pull.Concurrency)
	}
	if c.Pull.ChunkSize != 16<<20 || c.Pull.DiskReserve != 0 || c.Pull.StallTimeout.D() != 45*time.Second {
		t.Errorf("pull = %+v", c.Pull)
	}
	if c.API.IdleExit.D() != 2*time.Minute {
		t.Errorf("idle_exit integer seconds: %v", c.API.IdleExit)
	}
	if !c.HF.Offline {
		t.Error("HF_HUB_OFFLINE=yes not honoured")
	}
	if got := c.Endpoints(); fmt.Sprint(got) != "[http://127.0.0.1:9 http://127.0.0.1:10]" {
		t.Errorf("endpoints %v", got)
	}
	if c.File == "" {
		t.Error("File not recorded")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		env        map[string]string
		want       []string // every fragment must appear in the error
	}{
		{"unknown key", "[pull]\nconcurency = 3\n", nil, []string{"hal0.toml:2", `unknown key "pull.concurency"`}},
		{"unknown table", "\n[pulls]\nx = 1\n", nil, []string{"hal0.toml:2", `"pulls"`}},
		{"syntax", "[pull\n", nil, []string{"hal0.toml:", "table name"}},
		{"bad size", "[pull]\nchunk_size = \"lots\"\n", nil, []string{"invalid size", "lots"}},
		{"small chunk", "[pull]\nchunk_size = 100\n", nil, []string{"pull.chunk_size", "at least 1MiB"}},
		{"bad endpoint", "[hf]\nendpoint = \"ftp://x\"\n", nil, []string{"hf.endpoint", "not an http(s) URL"}},
		{"bad mirror", "[hf]\nmirrors = [\"huggingface.co\"]\n", nil, []string{"hf.mirrors[0]"}},
		{"relative path", "[paths]\nmodel_root = \"models\"\n", nil, []string{"paths.model_root", "absolute"}},
		{"bad env int", "", map[string]string{"HAL0_PULL_CONNECTIONS": "many"}, []string{"HAL0_PULL_CONNECTIONS", "many"}},
		{"bad env bool", "", map[string]string{"HF_HUB_OFFLINE": "maybe"}, []string{"HF_HUB_OFFLINE"}},
		{"missing explicit", "", map[string]string{"HAL0_CONFIG": "/nonexistent/hal0.toml"}, []string{"HAL0_CONFIG"}},
		{"bad listen", "[api]\nlisten = [\"8080\"]\n", nil, []string{"api.listen"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			writeConfig(t, home, tc.body)
			env := map[string]string{"HAL0_HOME": home}
			for k, v := range tc.env {
				env[k] = v
			}
			_, err := LoadEnv(envMap(env))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestTokenResolution(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o600)
		return p
	}
	credDir := filepath.Join(dir, "creds")
	os.MkdirAll(credDir, 0o700)
	os.WriteFile(filepath.Join(credDir, "hf-token"), []byte("hf_fromcredential\n"), 0o600)
	tokenPath := write("tokpath", "hf_fromtokenpath\n")
	// hal0-pull@.service's SetCredential= default when /etc/hal0/hf-token
	// is missing: a bare newline, which means "no token".
	emptyCredDir := filepath.Join(dir, "emptycreds")
	os.MkdirAll(emptyCredDir, 0o700)
	os.WriteFile(filepath.Join(emptyCredDir, "hf-token"), []byte("\n"), 0o600)
	hfHome := filepath.Join(dir, "hfhome")
	os.MkdirAll(hfHome, 0o700)
	os.WriteFile(filepath.Join(hfHome, "token"), []byte("hf_fromhfhome"), 0o600)

	for _, tc := range []struct {
		name      string
		env       map[string]string
		want, src string
	}{
		{"HF_TOKEN wins", map[string]string{"HF_TOKEN": " hf_env \n", "HUGGING_FACE_HUB_TOKEN": "hf_legacy", "CREDENTIALS_DIRECTORY": credDir}, "hf_env", "environment HF_TOKEN"},
		{"legacy name", map[string]string{"HUGGING_FACE_HUB_TOKEN": "hf_legacy"}, "hf_legacy", "environment HUGGING_FACE_HUB_TOKEN"},
		{"credential", map[string]string{"CREDENTIALS_DIRECTORY": credDir, "HF_TOKEN_PATH": tokenPath}, "hf_fromcredential", "systemd credential hf-token"},
		{"token path", map[string]string{"HF_TOKEN_PATH": tokenPath}, "hf_fromtokenpath", "HF_TOKEN_PATH"},
		{"empty credential", map[string]string{"CREDENTIALS_DIRECTORY": emptyCredDir, "HF_TOKEN_PATH": tokenPath}, "hf_fromtokenpath", "HF_TOKEN_PATH"},
		{"hf home", map[string]string{"HF_HOME": hfHome}, "hf_fromhfhome", "$HF_HOME/token"},
		{"none", map[string]string{"HOME": filepath.Join(dir, "nohome")}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"HAL0_HOME": t.TempDir()}
			for k, v := range tc.env {
				env[k] = v
			}
			c, err := LoadEnv(envMap(env))
			if err != nil {
				t.Fatal(err)
			}
			if c.HF.Token.Reveal() != tc.want || c.HF.TokenSource != tc.src {
				t.Errorf("token from %q, want %q", c.HF.TokenSource, tc.src)
			}
		})
	}
}

func TestTokenNeverFormatted(t *testing.T) {
	s := NewSecret("hf_supersecretvalue")
	cfg := HF{Token: s}
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q", s, cfg, cfg, s, s)} {
		if strings.Contains(out, "supersecret") {
			t.Fatalf("secret leaked in %q", out)
		}
	}
	b, _ := s.MarshalText()
	if strings.Contains(string(b), "supersecret") {
		t.Fatal("secret leaked by MarshalText")
	}
}

func TestMalformedTokenErrorHidesValue(t *testing.T) {
	_, err := LoadEnv(envMap(map[string]string{"HAL0_HOME": t.TempDir(), "HF_TOKEN": "hf_abc def"}))
	if err == nil || strings.Contains(err.Error(), "hf_abc") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{"0": 0, "1024": 1024, "64MiB": 64 << 20, "1.5GiB": 3 << 29, "2GB": 2e9, "512k": 512 << 10, " 8 m ": 8 << 20} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1", "1XB", "1e30"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

func TestAPIToken(t *testing.T) {
	home := t.TempDir()
	writeConfig(t, home, "")
	envFile := filepath.Join(home, "etc/hal0/api.env")
	os.WriteFile(envFile, []byte("# token for TCP\nHAL0_API_TOKEN=\"abc123\"\n"), 0o600)
	c, err := LoadEnv(envMap(map[string]string{"HAL0_HOME": home}))
	if err != nil || c.API.Token.Reveal() != "abc123" {
		t.Fatalf("token from api.env: %v %v", c.API.Token.Reveal(), err)
	}
	c, _ = LoadEnv(envMap(map[string]string{"HAL0_HOME": home, "HAL0_API_TOKEN": "fromenv"}))
	if c.API.Token.Reveal() != "fromenv" {
		t.Fatal("HAL0_API_TOKEN does not win")
	}
	// An unreadable default api.env (root-only, read by a group member) is
	// not an error; a configured token_file that is missing is.
	os.Chmod(envFile, 0o000)
	if os.Geteuid() != 0 {
		if _, err := LoadEnv(envMap(map[string]string{"HAL0_HOME": home})); err != nil {
			t.Fatalf("unreadable default api.env: %v", err)
		}
	}
	writeConfig(t, home, "[api]\ntoken_file = \"/nonexistent/api.env\"\n")
	if _, err := LoadEnv(envMap(map[string]string{"HAL0_HOME": home})); err == nil {
		t.Fatal("missing configured token file accepted")
	}
}

// TestHFPullThroughAndGated: both /hf/ switches are off by default, come
// from [api] in hal0.toml, and HAL0_HF_PULL_THROUGH overrides the file.
func TestHFPullThroughAndGated(t *testing.T) {
	home := t.TempDir()
	c, err := LoadEnv(envMap(map[string]string{"HAL0_HOME": home}))
	if err != nil || c.API.HFPullThrough || c.API.HFServeGated {
		t.Fatalf("defaults: %+v %v", c.API, err)
	}
	writeConfig(t, home, "[api]\nhf_pull_through = true\nhf_serve_gated = true\n")
	c, err = LoadEnv(envMap(map[string]string{"HAL0_HOME": home}))
	if err != nil || !c.API.HFPullThrough || !c.API.HFServeGated {
		t.Fatalf("from the file: %+v %v", c.API, err)
	}
	c, err = LoadEnv(envMap(map[string]string{"HAL0_HOME": home, "HAL0_HF_PULL_THROUGH": "0"}))
	if err != nil || c.API.HFPullThrough {
		t.Fatalf("HAL0_HF_PULL_THROUGH=0: %+v %v", c.API, err)
	}
	if _, err = LoadEnv(envMap(map[string]string{"HAL0_HOME": home, "HAL0_HF_PULL_THROUGH": "maybe"})); err == nil || !strings.Contains(err.Error(), "HAL0_HF_PULL_THROUGH") {
		t.Fatalf("bad value: %v", err)
	}
}

func TestFLMSection(t *testing.T) {
	home := t.TempDir()
	c, err := LoadEnv(envMap(map[string]string{"HAL0_HOME": home}))
	if err != nil {
		t.Fatal(err)
	}
	if c.FLM.Runtime != "podman" || c.FLM.ToolboxImage != DefaultFLMImage || c.FLM.CatalogTTL != Duration(5*time.Minute) ||
		c.FLMCacheDir() != filepath.Join(home, "var/lib/hal0/.config/flm/models") {
		t.Fatalf("defaults %+v, cache %s", c.FLM, c.FLMCacheDir())
	}
	writeConfig(t, home, `
[flm]
runtime = "host"
flm_path = "/opt/flm/bin/flm"
cache_dir = "/srv/flm/models"
catalog_ttl = "30s"
devices = ["/dev/accel/accel0"]
`)
	c, err = LoadEnv(envMap(map[string]string{"HAL0_HOME": home, "HAL0_FLM_CATALOG_TTL": "1m"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.FLM.Runtime != "host" || c.FLM.FLMPath != "/opt/flm/bin/flm" || c.FLMCacheDir() != "/srv/flm/models" ||
		c.FLM.CatalogTTL != Duration(time.Minute) || len(c.FLM.Devices) != 1 {
		t.Fatalf("from file and env: %+v", c.FLM)
	}
	for body, want := range map[string]string{
		"[flm]\nruntime = \"docker\"\n":                                `flm.runtime = "docker": use podman`,
		"[flm]\ntoolbox_image = \"\"\n":                                "flm.toolbox_image is empty",
		"[flm]\nruntime = \"host\"\ncache_dir = \"/srv/flm\"\n":        "must end in /models",
		"[flm]\ncache_dir = \"relative/models\"\n":                     "must be an absolute path",
		"[flm]\nprobe_timeout = \"10ms\"\n":                            "flm.probe_timeout",
		"[flm]\nimage = \"x\"\n":                                       `unknown key "flm.image"`,
		"[flm]\nruntime = \"host\"\nflm_path = \"\"\n":                 "flm.flm_path is empty",
		"[flm]\nruntime = \"podman\"\npodman_path = \"\"\n":            "flm.podman_path is empty",
		"[flm]\nruntime = \"host\"\ncache_dir = \"/x/models\"\n[pull]": "",
	} {
		writeConfig(t, home, body)
		_, err := LoadEnv(envMap(map[string]string{"HAL0_HOME": home}))
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", body, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", body, err, want)
		}
	}
}
