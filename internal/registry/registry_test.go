package registry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestReadPythonRegistry(t *testing.T) {
	data, err := os.ReadFile("testdata/python-registry.toml")
	if err != nil {
		t.Fatal(err)
	}
	r, err := Parse("python-registry.toml", data)
	if err != nil {
		t.Fatal(err)
	}
	flm, ok := r.Get("qwen3:0.6b")
	if !ok {
		t.Fatal("qwen3:0.6b missing")
	}
	if flm.SizeBytes != 652100000 || flm.Backends[0] != "npu" || flm.Metadata["runtime"] != "flm" {
		t.Errorf("flm entry %+v", flm)
	}
	q, _ := r.Get("qwen2.5-7b-instruct")
	if q.HFRepo != "Qwen/Qwen2.5-7B-Instruct-GGUF" || q.MMProj == "" || q.Defaults["context_size"] != int64(32768) {
		t.Errorf("hf entry %+v", q)
	}
	if q.Extra["provider"] != "llama-server" {
		t.Errorf("unknown key not kept: %v", q.Extra)
	}

	// Rewriting keeps every value, including keys this version ignores.
	out, err := Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Parse("rewritten", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	q2, _ := r2.Get("qwen2.5-7b-instruct")
	if q2.Extra["provider"] != "llama-server" || q2.Metadata["sha256"] != q.Metadata["sha256"] || fmt.Sprint(q2.Defaults["extra_args"]) != "[--jinja]" {
		t.Errorf("round trip lost data:\n%s", out)
	}
}

func TestReadListForm(t *testing.T) {
	data, _ := os.ReadFile("testdata/python-list-form.toml")
	r, err := Parse("list.toml", data)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Models) != 2 || r.Models["kokoro-v1"].Path == "" || r.Models["bge-m3"].SizeBytes != 1160000000 {
		t.Errorf("got %+v", r.Models)
	}
	if _, ok := r.Models["kokoro-v1"].Extra["id"]; ok {
		t.Error("id kept as a field")
	}
}

func TestCorruptRegistryIsReportedAndKept(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"syntax", "[models.\"a\"]\npath = \"/x\"\nsize_bytes = = 3\n", ":3:"},
		{"type", "[models.\"a\"]\npath = 7\n", `model "a"`},
		{"not a table", "models = 3\n", "table of tables"},
		{"list without id", "[[models]]\npath = \"/x\"\n", "has no id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "registry.toml")
			os.WriteFile(p, []byte(tc.body), 0o644)
			s := Open(p)
			_, err := s.Load()
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("Load error %v; want corrupt naming %q and the file", err, tc.want)
			}
			called := false
			err = s.Update(context.Background(), func(r *Registry) error { called = true; return nil })
			if !errors.Is(err, ErrCorrupt) || called {
				t.Fatalf("Update on corrupt file: err %v, fn called %v", err, called)
			}
			if got, _ := os.ReadFile(p); string(got) != tc.body {
				t.Fatal("corrupt registry was overwritten")
			}
		})
	}
}

func TestUpdateRoundTrip(t *testing.T) {
	s := Open(filepath.Join(t.TempDir(), "registry", "registry.toml"))
	m := &Model{
		ID: "Qwen/Qwen3-4B-GGUF:Q4_K_M", Name: "Qwen3 4B", Path: "/mnt/ai-models/local/Qwen/Qwen3-4B-GGUF",
		SizeBytes: 30, Source: "hf", HFRepo: "Qwen/Qwen3-4B-GGUF", Commit: strings.Repeat("a", 40),
		Files:    []File{{Path: "a-00001-of-00002.gguf", Size: 10, SHA256: strings.Repeat("1", 64)}, {Path: "a-00002-of-00002.gguf", Size: 20, SHA256: strings.Repeat("2", 64)}},
		Metadata: map[string]any{"context_length": int64(4096)},
	}
	if err := s.Update(context.Background(), func(r *Registry) error { r.Put(m); return nil }); err != nil {
		t.Fatal(err)
	}
	r, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	got, ok := r.Get(m.ID)
	if !ok || len(got.Files) != 2 || got.Files[1].SHA256 != m.Files[1].SHA256 || got.Commit != m.Commit || got.Metadata["context_length"] != int64(4096) {
		t.Fatalf("got %+v", got)
	}
	// A failing update writes nothing.
	boom := errors.New("boom")
	before, _ := os.ReadFile(s.Path())
	if err := s.Update(context.Background(), func(r *Registry) error { r.Delete(m.ID); return boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(s.Path()); string(after) != string(before) {
		t.Fatal("failed update changed the file")
	}
}

func TestUpdateHonoursContext(t *testing.T) {
	s := Open(filepath.Join(t.TempDir(), "registry.toml"))
	hold := make(chan struct{})
	held := make(chan struct{})
	go s.Update(context.Background(), func(*Registry) error { close(held); <-hold; return nil })
	<-held
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := s.Update(ctx, func(*Registry) error { return nil })
	close(hold)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded while the lock is held", err)
	}
}

// TestConcurrentWriterProcesses runs several processes that each add
// entries; none may be lost. The children are this test binary re-executed.
func TestConcurrentWriterProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	path := filepath.Join(t.TempDir(), "registry.toml")
	const procs, each = 6, 15
	var wg sync.WaitGroup
	errs := make(chan error, procs)
	for p := 0; p < procs; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^TestWriterChild$")
			cmd.Env = append(os.Environ(), "HAL0_REGISTRY_CHILD="+path, "HAL0_CHILD_N="+strconv.Itoa(p), "HAL0_CHILD_EACH="+strconv.Itoa(each))
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("child %d: %v\n%s", p, err, out)
			}
		}(p)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	r, err := Open(path).Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Models) != procs*each {
		t.Fatalf("%d entries, want %d: writers lost updates", len(r.Models), procs*each)
	}
	for p := 0; p < procs; p++ {
		for i := 0; i < each; i++ {
			if _, ok := r.Get(fmt.Sprintf("p%d-m%d", p, i)); !ok {
				t.Errorf("missing p%d-m%d", p, i)
			}
		}
	}
}

func TestWriterChild(t *testing.T) {
	path := os.Getenv("HAL0_REGISTRY_CHILD")
	if path == "" {
		t.Skip("helper process for TestConcurrentWriterProcesses")
	}
	n := os.Getenv("HAL0_CHILD_N")
	each, _ := strconv.Atoi(os.Getenv("HAL0_CHILD_EACH"))
	s := Open(path)
	for i := 0; i < each; i++ {
		id := fmt.Sprintf("p%s-m%d", n, i)
		if err := s.Update(context.Background(), func(r *Registry) error {
			r.Put(&Model{ID: id, Path: "/x/" + id, SizeBytes: int64(i)})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/python-registry.toml", "testdata/python-list-form.toml"} {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte("[models.\"x\"]\npath=\"/a\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse("fuzz.toml", data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		out, err := Encode(r)
		if err != nil {
			return // ids that cannot be written are refused, not mangled
		}
		r2, err := Parse("re-encoded", out)
		if err != nil {
			t.Fatalf("re-encoded registry does not parse: %v\n%s", err, out)
		}
		if len(r2.Models) != len(r.Models) {
			t.Fatalf("model count %d -> %d", len(r.Models), len(r2.Models))
		}
	})
}
