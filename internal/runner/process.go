package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/hal0ai/hal0/internal/jobs"
)

// Process runs workers as child processes of hal0-apid: the embedded mode
// for machines without a reachable systemd. Workers run in their own
// process group so a Ctrl-C meant for apid does not cancel them; the job
// records are the same as under systemd.
type Process struct {
	// Bin is the hal0-pull executable.
	Bin string
	// Env is the workers' environment (default: apid's).
	Env []string
	// Stderr receives the workers' output (their log lines).
	Stderr *os.File
	// StopGrace is how long Stop waits after SIGTERM before SIGKILL.
	StopGrace time.Duration

	mu    sync.Mutex
	procs map[string]*child
}

type child struct {
	cmd  *exec.Cmd
	done chan struct{}
	st   *os.ProcessState
}

func (p *Process) Name() string { return "process" }

// Start spawns `hal0-pull --runner=process --job ID REF`.
func (p *Process) Start(ctx context.Context, j *jobs.Job) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.procs == nil {
		p.procs = map[string]*child{}
	}
	if c, ok := p.procs[j.ID]; ok && c.st == nil {
		return nil // already running
	}
	cmd := exec.Command(p.Bin, "--runner=process", "--job", j.ID, "--", j.Ref)
	cmd.Env = p.Env
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Stdout, cmd.Stderr = p.Stderr, p.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Bin, err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	p.procs[j.ID] = c
	go func() {
		cmd.Wait()
		p.mu.Lock()
		c.st = cmd.ProcessState
		p.mu.Unlock()
		close(c.done)
	}()
	return nil
}

// Stop sends SIGTERM and waits for the worker to record its cancel,
// escalating to SIGKILL after StopGrace.
func (p *Process) Stop(ctx context.Context, j *jobs.Job) error {
	p.mu.Lock()
	c, ok := p.procs[j.ID]
	p.mu.Unlock()
	if !ok {
		// Not ours (apid restarted since): signal the worker by the PID
		// it recorded, if it is still the one holding the job.
		if j.PID > 0 {
			if err := syscall.Kill(j.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
				return err
			}
		}
		return nil
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	grace := p.StopGrace
	if grace == 0 {
		grace = 15 * time.Second
	}
	select {
	case <-c.done:
	case <-time.After(grace):
		c.cmd.Process.Kill()
		<-c.done
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// State reports on a child started by this process.
func (p *Process) State(ctx context.Context, j *jobs.Job) (State, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.procs[j.ID]
	if !ok {
		return State{}, nil
	}
	if c.st == nil {
		return State{Active: true, UnitState: "running"}, nil
	}
	st := State{UnitState: "exited"}
	if ws, ok := c.st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		st.Signal = int(ws.Signal())
	} else {
		v := c.st.ExitCode()
		st.ExitStatus = &v
	}
	return st, nil
}

// Active counts running children.
func (p *Process) Active() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.procs {
		if c.st == nil {
			n++
		}
	}
	return n
}

// Close leaves running workers alone: they finish and record their
// outcome without apid.
func (p *Process) Close() error { return nil }
