package flm

import (
	"bufio"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

func scanAll(t *testing.T, in string, chunk bool) []string {
	t.Helper()
	r := strings.NewReader(in)
	sc := bufio.NewScanner(r)
	if chunk {
		// One byte at a time: a \r\n split across reads must still be one
		// line end.
		sc = bufio.NewScanner(iotest.OneByteReader(strings.NewReader(in)))
	}
	sc.Split(ScanLines)
	var out []string
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestScanLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"a\nb\n", []string{"a", "b"}},
		{"a\r\nb", []string{"a", "b"}},
		{"x\r1%\r2%\r3%\ndone\n", []string{"x", "1%", "2%", "3%", "done"}},
		{"a\n\nb", []string{"a", "", "b"}},
		{"tail\r", []string{"tail"}},
		{"", nil},
	} {
		for _, chunk := range []bool{false, true} {
			if got := scanAll(t, tc.in, chunk); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%q (one byte at a time: %v): %q, want %q", tc.in, chunk, got, tc.want)
			}
		}
	}
}

func TestStripANSI(t *testing.T) {
	for in, want := range map[string]string{
		"\x1b[K[FLM]  Downloading: 1.0%":         "[FLM]  Downloading: 1.0%",
		"\x1b[?25l[FLM]  Downloading 1/2: a.bin": "[FLM]  Downloading 1/2: a.bin",
		"\x1b[1;32mgreen\x1b[0m":                 "green",
		"\x1b]0;title\x07text":                   "text",
		"plain":                                  "plain",
	} {
		if got := StripANSI(in); got != want {
			t.Errorf("StripANSI(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Event
	}{
		{"[FLM]  Downloading 2/3: model.q4nx", Event{Kind: EvFileStart, Index: 2, Count: 3, File: "model.q4nx", Text: "Downloading 2/3: model.q4nx"}},
		{"\x1b[K[FLM]  Downloading: 38.8% (253.0MB / 652.1MB)", Event{Kind: EvFilePercent, Percent: 38.8, Done: 253 << 20, Total: 683776409 /* 652.1 MiB */, Text: "Downloading: 38.8% (253.0MB / 652.1MB)"}},
		{"[FLM]  Overall progress:  2/3 files", Event{Kind: EvOverall, Index: 2, Count: 3, Text: "Overall progress:  2/3 files"}},
		// The older build's form, which Lemonade parses.
		{"[FLM]  Overall progress: 38.0% (1/4 files)", Event{Kind: EvOverall, Index: 1, Count: 4, Text: "Overall progress: 38.0% (1/4 files)"}},
		{"[FLM]  Downloading 3 missing files...", Event{Kind: EvMissing, Count: 3, Text: "Downloading 3 missing files..."}},
		{"[FLM]  Download completed: /m/Qwen3/model.q4nx", Event{Kind: EvFileDone, File: "/m/Qwen3/model.q4nx", Text: "Download completed: /m/Qwen3/model.q4nx"}},
		{"[FLM]  Model already downloaded. Use --force to re-download.", Event{Kind: EvAlready, Text: "Model already downloaded. Use --force to re-download."}},
		{"[FLM]  Model downloaded successfully!", Event{Kind: EvSuccess, Text: "Model downloaded successfully!"}},
		{"[ERROR]  Failed to pull model: qwen3:4b", Event{Kind: EvError, Text: "Failed to pull model: qwen3:4b"}},
		{"Error: bad_alloc", Event{Kind: EvError, Text: "bad_alloc"}},
		{"[WARNING]  FLM is outdated", Event{Kind: EvWarning, Text: "FLM is outdated"}},
		{"  - model.q4nx (1.43 MB)", Event{Kind: EvOther, Text: "- model.q4nx (1.43 MB)"}},
	} {
		if got := ParseLine(tc.in); got != tc.want {
			t.Errorf("ParseLine(%q)\n got %+v\nwant %+v", tc.in, got, tc.want)
		}
	}
}

// transcript is flm pull's output as the FastFlowLM sources print it, two
// files, one of them redrawn in place.
const transcript = "[FLM]  Pulling model from HuggingFace...\n[FLM]  Model: qwen3:4b\n[FLM]  Name: Qwen3-4B-NPU2\n" +
	"[FLM]  Missing files (2):\n  - config.json\n  - model.q4nx\n[FLM]  Downloading 2 missing files...\n" +
	"\x1b[?25l[FLM]  Downloading 1/2: config.json\n\r\x1b[K[FLM]  Downloading: 100.0% (0.0MB / 0.0MB)\n" +
	"[FLM]  Checking Hash...\n[FLM]  Download completed: /c/Qwen3-4B-NPU2/config.json\n[FLM]  Overall progress:  1/2 files\n" +
	"[FLM]  Downloading 2/2: model.q4nx\n\r\x1b[K[FLM]  Downloading: 10.0% (1.0MB / 10.0MB)\r\x1b[K[FLM]  Downloading: 50.0% (5.0MB / 10.0MB)"

func TestOutputFollowsAPull(t *testing.T) {
	var o Output
	for _, l := range scanAll(t, transcript, false) {
		o.Feed(l)
	}
	if o.CurrentFile != "model.q4nx" || o.FilesDone != 1 || o.FilesTotal != 2 || o.Succeeded || o.Already {
		t.Fatalf("mid-pull: %+v", o)
	}
	for _, l := range scanAll(t, "\r\x1b[K[FLM]  Downloading: 100.0% (10.0MB / 10.0MB)\n[FLM]  Overall progress:  2/2 files\n\x1b[?25h[ERROR]  Hash not matched!\n[FLM]  Model downloaded successfully!\n", false) {
		o.Feed(l)
	}
	if o.FilesDone != 2 || !o.Succeeded || o.CurrentFile != "" || o.Reason() != "Hash not matched!" {
		t.Fatalf("done: %+v, reason %q", o, o.Reason())
	}
	// Without an [ERROR] line, the reason is the last thing flm said;
	// progress redraws do not count.
	var o2 Output
	o2.Feed("[FLM]  Something odd happened")
	o2.Feed("[FLM]  Downloading: 3.0% (1.0MB / 30.0MB)")
	if got := o2.Reason(); got != "Something odd happened" {
		t.Fatalf("reason %q", got)
	}
}

// FuzzFLMOutput feeds arbitrary bytes to what reads flm's output: the
// list -j parser and the pull output follower. Neither may panic, and a
// parsed catalog answers IsTag for each of its tags.
func FuzzFLMOutput(f *testing.F) {
	f.Add([]byte(transcript))
	f.Add([]byte(listOut))
	f.Add([]byte(`{"models":[{"model":"a:b","installed":true,"size":"x","label":7}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, err := ParseList(data); err == nil {
			for _, e := range c.Entries {
				if strings.Contains(e.Tag, ":") && !c.IsTag(e.Tag) {
					t.Fatalf("%q parsed but IsTag is false", e.Tag)
				}
				e.RepoDir()
				e.Capabilities()
			}
		}
		var o Output
		sc := bufio.NewScanner(strings.NewReader(string(data)))
		sc.Buffer(make([]byte, 4096), 1<<20)
		sc.Split(ScanLines)
		for sc.Scan() {
			o.Feed(sc.Text())
		}
		if o.FilesDone < 0 || o.FilesTotal < 0 {
			t.Fatalf("%+v", o)
		}
	})
}
