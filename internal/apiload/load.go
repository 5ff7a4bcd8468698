package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// config is one load run.
type config struct {
	URL      string
	Unix     string // dial this socket instead of the URL's host
	Method   string
	Header   http.Header
	Clients  int
	Duration time.Duration // measured phase; ignored when Requests > 0
	Requests int64         // stop after this many measured requests
	Rate     float64       // total requests per second; 0: closed loop
	Warmup   time.Duration
	Timeout  time.Duration // per request
	Expect   int           // the status that counts as success
	Gzip     bool
}

// result is what a run measured. Latencies are in milliseconds so that the
// JSON reads without unit conversions.
type result struct {
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	Late      int64   `json:"late,omitempty"`
	DurationS float64 `json:"duration_s"`
	RPS       float64 `json:"rps"`
	TargetRPS float64 `json:"target_rps,omitempty"`
	Clients   int     `json:"clients"`
	P50MS     float64 `json:"p50_ms"`
	P90MS     float64 `json:"p90_ms"`
	P99MS     float64 `json:"p99_ms"`
	MaxMS     float64 `json:"max_ms"`
	// Service time, from send to answer: in an open loop, latency minus
	// the time a request waited for its client or for the generator to
	// wake up. Equal to the latency in a closed loop.
	SvcP50MS   float64          `json:"svc_p50_ms"`
	SvcP99MS   float64          `json:"svc_p99_ms"`
	Status     map[string]int64 `json:"status"`
	ErrorKinds map[string]int64 `json:"error_kinds,omitempty"`
}

// lateAfter is how far behind its due time an open-loop request may start
// before it counts as late.
const lateAfter = time.Millisecond

// worker holds one client's connection and tallies; nothing in it is
// shared, so the hot path takes no locks.
type worker struct {
	client *http.Client
	req    *http.Request
	lats   []time.Duration
	svcs   []time.Duration
	status map[int]int64
	errs   map[string]int64
	late   int64
	done   time.Time // when its last measured request completed
}

func (c *config) validate() error {
	switch {
	case c.URL == "":
		return errors.New("no URL")
	case c.Clients < 1:
		return fmt.Errorf("-c %d: need at least one client", c.Clients)
	case c.Requests <= 0 && c.Duration <= 0:
		return errors.New("need -d > 0 or -n > 0")
	case c.Rate < 0 || math.IsInf(c.Rate, 0) || math.IsNaN(c.Rate):
		return fmt.Errorf("-rate %v: want a rate >= 0", c.Rate)
	case c.Warmup < 0:
		return fmt.Errorf("-warmup %v is negative", c.Warmup)
	}
	return nil
}

func (c *config) newWorker() (*worker, error) {
	tr := &http.Transport{
		// One connection per client: MaxConnsPerHost makes a client wait
		// for its own connection instead of opening a second one.
		MaxConnsPerHost:     1,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  !c.Gzip,
		ForceAttemptHTTP2:   false,
	}
	d := &net.Dialer{Timeout: c.Timeout}
	if c.Unix != "" {
		path := c.Unix
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		}
	} else {
		tr.DialContext = d.DialContext
	}
	req, err := http.NewRequest(c.Method, c.URL, nil)
	if err != nil {
		return nil, err
	}
	for k, vs := range c.Header {
		req.Header[k] = vs
	}
	return &worker{
		client: &http.Client{Transport: tr, Timeout: c.Timeout},
		req:    req,
		status: map[int]int64{},
		errs:   map[string]int64{},
	}, nil
}

// do sends one request and reads the whole body, so the connection goes
// back to the client for the next request.
func (w *worker) do() (int, error) {
	resp, err := w.client.Do(w.req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

// record books one measured request: lat from when it was due, svc from
// when it was sent (the same in a closed loop).
func (w *worker) record(expect int, lat, svc time.Duration, status int, err error) {
	w.lats = append(w.lats, lat)
	w.svcs = append(w.svcs, svc)
	w.done = time.Now()
	switch {
	case err != nil:
		w.errs[errKind(err)]++
	default:
		w.status[status]++
		if status != expect {
			w.errs["status "+strconv.Itoa(status)]++
		}
	}
}

// errKind shortens a transport error to what tells failures apart; the
// full text of the first one of each kind is good enough to debug.
func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by server"
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Op + ": " + oe.Err.Error()
	}
	return err.Error()
}

// run generates the load until the duration or count is reached, or ctx
// ends, and waits for the requests in flight.
func run(ctx context.Context, c config) (*result, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	workers := make([]*worker, c.Clients)
	for i := range workers {
		w, err := c.newWorker()
		if err != nil {
			return nil, err
		}
		workers[i] = w
		defer w.client.CloseIdleConnections()
	}
	start := time.Now()
	measureFrom := start.Add(c.Warmup)
	var end time.Time // zero: count-bounded
	if c.Requests <= 0 {
		end = measureFrom.Add(c.Duration)
	}
	// budget counts measured requests handed out, so -n is exact however
	// many clients race for the last ones.
	var budget atomic.Int64
	take := func(at time.Time) bool {
		if at.Before(measureFrom) {
			return true
		}
		if !end.IsZero() {
			return at.Before(end)
		}
		return budget.Add(1) <= c.Requests
	}

	var wg sync.WaitGroup
	if c.Rate == 0 {
		for _, w := range workers {
			wg.Go(func() {
				for ctx.Err() == nil {
					t0 := time.Now()
					if !take(t0) {
						return
					}
					status, err := w.do()
					if !t0.Before(measureFrom) {
						d := time.Since(t0)
						w.record(c.Expect, d, d, status, err)
					}
				}
			})
		}
	} else {
		// Each client keeps its own schedule, interleaved with the others
		// (wrk2's way): no dispatcher hop between the due time and the
		// send, which on a small VM costs a wake-up of its own.
		interval := time.Duration(float64(time.Second) / c.Rate)
		for i, w := range workers {
			wg.Go(func() {
				timer := time.NewTimer(time.Hour)
				defer timer.Stop()
				for k := int64(0); ; k++ {
					at := start.Add(time.Duration(k*int64(c.Clients)+int64(i)) * interval)
					if !take(at) {
						return
					}
					if d := time.Until(at); d > 0 {
						timer.Reset(d)
						select {
						case <-timer.C:
						case <-ctx.Done():
							return
						}
					} else if ctx.Err() != nil {
						return
					}
					sent := time.Now()
					status, err := w.do()
					if !at.Before(measureFrom) {
						if sent.Sub(at) > lateAfter {
							w.late++
						}
						// From when it was due: queueing behind a slow
						// server is part of the latency a caller sees.
						w.record(c.Expect, time.Since(at), time.Since(sent), status, err)
					}
				}
			})
		}
	}
	wg.Wait()
	// An interrupted run still reports what it measured; the caller tells
	// the user it was cut short.
	return summarize(c, workers, measureFrom), nil
}

func summarize(c config, workers []*worker, measureFrom time.Time) *result {
	r := &result{Clients: c.Clients, TargetRPS: c.Rate, Status: map[string]int64{}, ErrorKinds: map[string]int64{}}
	var lats, svcs []time.Duration
	var last time.Time
	for _, w := range workers {
		lats = append(lats, w.lats...)
		svcs = append(svcs, w.svcs...)
		for s, n := range w.status {
			r.Status[strconv.Itoa(s)] += n
		}
		for k, n := range w.errs {
			r.ErrorKinds[k] += n
			r.Errors += n
		}
		r.Late += w.late
		if w.done.After(last) {
			last = w.done
		}
	}
	r.Requests = int64(len(lats))
	if r.Requests == 0 {
		return r
	}
	slices.Sort(lats)
	slices.Sort(svcs)
	r.DurationS = last.Sub(measureFrom).Seconds()
	if r.DurationS > 0 {
		r.RPS = float64(r.Requests) / r.DurationS
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	r.P50MS = ms(percentile(lats, 0.50))
	r.P90MS = ms(percentile(lats, 0.90))
	r.P99MS = ms(percentile(lats, 0.99))
	r.MaxMS = ms(lats[len(lats)-1])
	r.SvcP50MS = ms(percentile(svcs, 0.50))
	r.SvcP99MS = ms(percentile(svcs, 0.99))
	return r
}

// percentile is the nearest-rank percentile of sorted: the smallest value
// that at least q of the samples do not exceed.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
