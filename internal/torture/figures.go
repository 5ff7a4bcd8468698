package torture

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// Table is a plain-text table of figures, printed with aligned columns.
type Table struct {
	Title  string
	Header []string
	Rows   [][]string
	Notes  []string
}

// Add appends a row; values are formatted with %v.
func (t *Table) Add(cells ...any) {
	row := make([]string, len(cells))
	for i, c := range cells {
		row[i] = fmt.Sprint(c)
	}
	t.Rows = append(t.Rows, row)
}

// Note appends a line printed under the table.
func (t *Table) Note(format string, a ...any) { t.Notes = append(t.Notes, fmt.Sprintf(format, a...)) }

// String renders the table.
func (t *Table) String() string {
	var b strings.Builder
	t.Write(&b)
	return b.String()
}

// Write renders the table to w.
func (t *Table) Write(w io.Writer) {
	width := make([]int, len(t.Header))
	for i, h := range t.Header {
		width[i] = len(h)
	}
	for _, r := range t.Rows {
		for i, c := range r {
			if i < len(width) {
				width[i] = max(width[i], len(c))
			}
		}
	}
	line := func(cells []string) {
		for i, c := range cells {
			if i >= len(width) {
				break
			}
			if i > 0 {
				io.WriteString(w, "  ")
			}
			if i == len(cells)-1 {
				io.WriteString(w, c)
			} else {
				fmt.Fprintf(w, "%-*s", width[i], c)
			}
		}
		io.WriteString(w, "\n")
	}
	if t.Title != "" {
		fmt.Fprintf(w, "%s\n", t.Title)
	}
	line(t.Header)
	seps := make([]string, len(width))
	for i, n := range width {
		seps[i] = strings.Repeat("-", n)
	}
	line(seps)
	for _, r := range t.Rows {
		line(r)
	}
	for _, n := range t.Notes {
		fmt.Fprintf(w, "%s\n", n)
	}
}

// Stats summarises a series of numbers.
type Stats struct {
	N                      int
	Min, Median, Mean, Max float64
}

// Summarize returns the statistics of v (zero for an empty series).
func Summarize(v []float64) Stats {
	if len(v) == 0 {
		return Stats{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	var sum float64
	for _, x := range s {
		sum += x
	}
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stats{N: len(s), Min: s[0], Median: med, Mean: sum / float64(len(s)), Max: s[len(s)-1]}
}

// MiB formats bytes as MiB with two decimals.
func MiB(b int64) string { return fmt.Sprintf("%.2f MiB", float64(b)/(1<<20)) }
