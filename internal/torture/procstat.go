package torture

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ProcSample is one look at a process: resident memory (VmRSS) and the
// number of open file descriptors.
type ProcSample struct {
	RSSKiB int64
	FDs    int
}

// SampleProc reads /proc/PID/status and /proc/PID/fd.
func SampleProc(pid int) (ProcSample, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcSample{}, err
	}
	defer f.Close()
	var s ProcSample
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		// "VmRSS:	   12345 kB"
		fields := strings.Fields(v)
		if len(fields) != 2 || fields[1] != "kB" {
			return ProcSample{}, fmt.Errorf("/proc/%d/status: odd VmRSS line %q", pid, sc.Text())
		}
		if s.RSSKiB, err = strconv.ParseInt(fields[0], 10, 64); err != nil {
			return ProcSample{}, fmt.Errorf("/proc/%d/status: %v", pid, err)
		}
		found = true
	}
	if err := sc.Err(); err != nil {
		return ProcSample{}, err
	}
	if !found {
		// Zombies and kernel threads have no VmRSS.
		return ProcSample{}, fmt.Errorf("/proc/%d/status has no VmRSS (exited?)", pid)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return ProcSample{}, err
	}
	s.FDs = len(fds)
	return s, nil
}

// Growth compares the start and the end of a series of samples taken after
// warm-up: the medians of its first and last quarter (at least one sample
// each), so that one garbage collection or one request in flight does not
// decide. RSS is allowed to grow by RSSSlackKiB or RSSSlackPct percent,
// whichever is larger, and descriptors by FDSlack.
type Growth struct {
	RSSSlackKiB int64
	RSSSlackPct float64
	FDSlack     int
}

// GrowthVerdict is what Check found.
type GrowthVerdict struct {
	StartRSS, EndRSS int64 // KiB, medians
	StartFDs, EndFDs int   // medians
	RSSOK, FDOK      bool
}

// Check judges samples (oldest first). Fewer than two samples cannot show
// growth and pass.
func (g Growth) Check(samples []ProcSample) GrowthVerdict {
	v := GrowthVerdict{RSSOK: true, FDOK: true}
	if len(samples) == 0 {
		return v
	}
	q := max(len(samples)/4, 1)
	head, tail := samples[:q], samples[len(samples)-q:]
	v.StartRSS, v.EndRSS = median(head, rss), median(tail, rss)
	v.StartFDs, v.EndFDs = median(head, fds), median(tail, fds)
	slack := max(g.RSSSlackKiB, int64(float64(v.StartRSS)*g.RSSSlackPct/100))
	v.RSSOK = v.EndRSS <= v.StartRSS+slack
	v.FDOK = v.EndFDs <= v.StartFDs+g.FDSlack
	return v
}

func rss(p ProcSample) int64 { return p.RSSKiB }
func fds(p ProcSample) int   { return p.FDs }

// median is the middle value of field over the samples.
func median[T int | int64](s []ProcSample, field func(ProcSample) T) T {
	v := make([]T, len(s))
	for i, x := range s {
		v[i] = field(x)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// ProcsNamed returns the pids of processes whose executable's base name is
// one of names (read from /proc/PID/exe, so argv tricks do not matter; a
// process of another user we cannot inspect is skipped).
func ProcsNamed(names ...string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil {
			continue
		}
		exe = strings.TrimSuffix(exe, " (deleted)")
		if slices.Contains(names, filepath.Base(exe)) {
			out = append(out, pid)
		}
	}
	return out
}

// procStatusFields reads /proc/PID/status into a map.
func procStatusFields(pid int) (map[string]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out, nil
}
