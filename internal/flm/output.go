package flm

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
)

// flm's pull output. Every line starts with "[FLM]  ", "[WARNING]  " or
// "[ERROR]  ". Download progress is redrawn in place, throttled to once a
// second, as "\r\033[K[FLM]  Downloading: 38.8% (253.0MB / 652.1MB)"
// without a newline until the file is done; the cursor is hidden and
// shown with \033[?25l and \033[?25h. So the output is split on \r as well
// as \n, and ANSI escapes are dropped, before lines are parsed.

// ScanLines is a bufio.SplitFunc that ends a line at \n, \r or \r\n.
// Empty lines are returned as empty tokens.
func ScanLines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	if atEOF && len(data) == 0 {
		return 0, nil, nil
	}
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		if data[i] == '\r' {
			if i+1 < len(data) {
				if data[i+1] == '\n' {
					return i + 2, data[:i], nil
				}
			} else if !atEOF {
				// A lone \r at the end of the buffer may be half of a
				// \r\n: wait for the next byte.
				return 0, nil, nil
			}
		}
		return i + 1, data[:i], nil
	}
	if atEOF {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// ansiRe matches CSI sequences (ESC [ params final), OSC sequences and
// two-byte escapes.
var ansiRe = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])`)

// StripANSI removes terminal escape sequences.
func StripANSI(s string) string {
	if !strings.Contains(s, "\x1b") {
		return s
	}
	return ansiRe.ReplaceAllString(s, "")
}

// Event kinds of a parsed output line.
const (
	EvOther       = iota
	EvFileStart   // Downloading i/N: file
	EvFilePercent // Downloading: p% (a MB / b MB)
	EvFileDone    // Download completed: path
	EvOverall     // Overall progress: i/N files
	EvMissing     // Downloading N missing files...
	EvAlready     // Model already downloaded
	EvError       // [ERROR] …
	EvWarning     // [WARNING] …
	EvSuccess     // Model downloaded successfully / All downloads completed
)

// Event is what one line of flm's output says.
type Event struct {
	Kind    int
	Index   int     // EvFileStart, EvOverall: 1-based file number
	Count   int     // EvFileStart, EvOverall, EvMissing: number of files
	File    string  // EvFileStart, EvFileDone
	Percent float64 // EvFilePercent
	Done    int64   // EvFilePercent: bytes of the current file
	Total   int64   // EvFilePercent: size of the current file
	Text    string  // the line without its prefix
}

var (
	reFileStart = regexp.MustCompile(`^Downloading (\d+)/(\d+): (.+)$`)
	rePercent   = regexp.MustCompile(`^Downloading:\s*([0-9.]+)%\s*\(([0-9.]+)\s*([KMG]?)B\s*/\s*([0-9.]+)\s*([KMG]?)B\)`)
	reOverall   = regexp.MustCompile(`^Overall progress:\s*(?:[0-9.]+%\s*\()?(\d+)/(\d+) files`)
	reMissing   = regexp.MustCompile(`^Downloading (\d+) missing files`)
	reDone      = regexp.MustCompile(`^Download completed: (.+)$`)
)

// ParseLine parses one line (split with ScanLines; escapes are stripped
// here).
func ParseLine(line string) Event {
	s := strings.TrimSpace(StripANSI(line))
	var body string
	switch {
	case strings.HasPrefix(s, "[ERROR]"):
		return Event{Kind: EvError, Text: strings.TrimSpace(strings.TrimPrefix(s, "[ERROR]"))}
	case strings.HasPrefix(s, "[WARNING]"):
		return Event{Kind: EvWarning, Text: strings.TrimSpace(strings.TrimPrefix(s, "[WARNING]"))}
	case strings.HasPrefix(s, "[FLM]"):
		body = strings.TrimSpace(strings.TrimPrefix(s, "[FLM]"))
	default:
		if strings.HasPrefix(s, "Error:") {
			return Event{Kind: EvError, Text: strings.TrimSpace(strings.TrimPrefix(s, "Error:"))}
		}
		return Event{Kind: EvOther, Text: s}
	}
	ev := Event{Kind: EvOther, Text: body}
	if m := reFileStart.FindStringSubmatch(body); m != nil {
		ev.Kind, ev.Index, ev.Count, ev.File = EvFileStart, atoi(m[1]), atoi(m[2]), strings.TrimSpace(m[3])
	} else if m := rePercent.FindStringSubmatch(body); m != nil {
		ev.Kind = EvFilePercent
		ev.Percent, _ = strconv.ParseFloat(m[1], 64)
		ev.Done, ev.Total = mib(m[2], m[3]), mib(m[4], m[5])
	} else if m := reOverall.FindStringSubmatch(body); m != nil {
		ev.Kind, ev.Index, ev.Count = EvOverall, atoi(m[1]), atoi(m[2])
	} else if m := reMissing.FindStringSubmatch(body); m != nil {
		ev.Kind, ev.Count = EvMissing, atoi(m[1])
	} else if m := reDone.FindStringSubmatch(body); m != nil {
		ev.Kind, ev.File = EvFileDone, strings.TrimSpace(m[1])
	} else if strings.HasPrefix(body, "Model already downloaded") {
		ev.Kind = EvAlready
	} else if strings.HasPrefix(body, "Model downloaded successfully") || strings.HasPrefix(body, "All downloads completed") {
		ev.Kind = EvSuccess
	}
	return ev
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// mib converts flm's figures, which say MB but count MiB (bytes/1024/1024).
func mib(num, unit string) int64 {
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0
	}
	switch unit {
	case "K":
		f *= 1 << 10
	case "M":
		f *= 1 << 20
	case "G":
		f *= 1 << 30
	}
	return int64(f)
}

// Output follows flm's pull output line by line and keeps what the
// progress report and the error message need.
type Output struct {
	CurrentFile string
	FilesDone   int
	FilesTotal  int
	Already     bool
	Succeeded   bool
	// Errors are the [ERROR] lines, oldest first (at most 8).
	Errors []string
	// Tail is the last lines of output (at most 8), for error messages
	// when flm failed without an [ERROR] line.
	Tail []string
}

// Feed records one line.
func (o *Output) Feed(line string) Event {
	ev := ParseLine(line)
	if ev.Text != "" && ev.Kind != EvFilePercent {
		o.Tail = appendCapped(o.Tail, ev.Text, 8)
	}
	switch ev.Kind {
	case EvFileStart:
		o.CurrentFile, o.FilesTotal = ev.File, max(o.FilesTotal, ev.Count)
		o.FilesDone = max(o.FilesDone, ev.Index-1)
	case EvOverall:
		o.FilesDone, o.FilesTotal = max(o.FilesDone, ev.Index), max(o.FilesTotal, ev.Count)
	case EvMissing:
		o.FilesTotal = max(o.FilesTotal, ev.Count)
	case EvAlready:
		o.Already = true
	case EvSuccess:
		o.Succeeded = true
		o.CurrentFile = ""
	case EvError:
		o.Errors = appendCapped(o.Errors, ev.Text, 8)
	}
	return ev
}

func appendCapped(list []string, s string, n int) []string {
	list = append(list, s)
	if len(list) > n {
		list = list[len(list)-n:]
	}
	return list
}

// Reason is the best one-line explanation of a failed flm command.
func (o *Output) Reason() string {
	if len(o.Errors) > 0 {
		return strings.Join(o.Errors, "; ")
	}
	if len(o.Tail) > 0 {
		return o.Tail[len(o.Tail)-1]
	}
	return ""
}
