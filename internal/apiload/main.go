package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(cli(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// headers collects repeated -H flags.
type headers http.Header

func (h headers) String() string { return "" }

func (h headers) Set(v string) error {
	k, val, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("header %q: want \"Name: value\"", v)
	}
	http.Header(h).Add(strings.TrimSpace(k), strings.TrimSpace(val))
	return nil
}

// cli parses args, runs the load and prints the summary; it returns the
// exit status.
func cli(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("apiload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := config{Header: http.Header{}}
	fs.StringVar(&c.Unix, "unix", "", "connect to this unix socket instead of the URL's host (the URL's path and Host header are still used)")
	fs.StringVar(&c.Method, "X", http.MethodGet, "request method")
	fs.Var(headers(c.Header), "H", "extra request header \"Name: value\" (repeatable)")
	fs.IntVar(&c.Clients, "c", 8, "concurrent clients, one keep-alive connection each")
	fs.DurationVar(&c.Duration, "d", 10*time.Second, "how long to measure (after the warm-up)")
	fs.Int64Var(&c.Requests, "n", 0, "stop after this many measured requests instead of after -d")
	fs.Float64Var(&c.Rate, "rate", 0, "total requests per second, open loop; 0: each client sends as fast as it is answered")
	fs.DurationVar(&c.Warmup, "warmup", time.Second, "send but do not count requests for this long first")
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Second, "per-request timeout")
	fs.IntVar(&c.Expect, "expect", http.StatusOK, "the status that counts as success")
	fs.BoolVar(&c.Gzip, "gzip", true, "ask for gzip like Go clients do by default")
	asJSON := fs.Bool("json", false, "print one JSON object instead of the summary")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: apiload [flags] URL\n\nLoad-tests one URL; see `go doc ./internal/apiload`.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	c.URL = fs.Arg(0)
	if err := c.validate(); err != nil {
		fmt.Fprintln(stderr, "apiload:", err)
		return 2
	}
	r, err := run(ctx, c)
	if err != nil {
		fmt.Fprintln(stderr, "apiload:", err)
		return 2
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "apiload: interrupted; figures cover the requests made so far")
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(r)
	} else {
		printSummary(stdout, c, r)
	}
	if r.Errors > 0 || r.Requests == 0 {
		return 1
	}
	return 0
}

func printSummary(w io.Writer, c config, r *result) {
	via := ""
	if c.Unix != "" {
		via = " via " + c.Unix
	}
	fmt.Fprintf(w, "%s %s%s\n", c.Method, c.URL, via)
	mode := "closed loop"
	if c.Rate > 0 {
		mode = fmt.Sprintf("open loop at %.0f req/s", c.Rate)
	}
	fmt.Fprintf(w, "  %d clients, %s, %d measured requests in %.2fs after %v warm-up\n", r.Clients, mode, r.Requests, r.DurationS, c.Warmup)
	fmt.Fprintf(w, "  throughput %.1f req/s, errors %d", r.RPS, r.Errors)
	if c.Rate > 0 {
		fmt.Fprintf(w, ", late starts %d", r.Late)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  latency p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms\n", r.P50MS, r.P90MS, r.P99MS, r.MaxMS)
	if c.Rate > 0 {
		fmt.Fprintf(w, "  service p50 %.3f ms  p99 %.3f ms (from send, without the wait for a client)\n", r.SvcP50MS, r.SvcP99MS)
	}
	fmt.Fprintf(w, "  status %s\n", counts(r.Status))
	if len(r.ErrorKinds) > 0 {
		fmt.Fprintf(w, "  errors %s\n", counts(r.ErrorKinds))
	}
}

// counts formats a tally in a stable order.
func counts(m map[string]int64) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
