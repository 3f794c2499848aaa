package watchdog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/keepraft/keepraft/internal/boottime"
)

// Process timing.
const (
	// writeTimeout bounds one message; a watchdog that does not drain its pipe is stuck.
	writeTimeout = 100 * time.Millisecond
	// restartEvery is the pause before a watchdog that exited is started again.
	restartEvery = time.Second
	// stopWait is how long Run waits for the watchdog to exit after closing its pipe
	// before it kills it by PID.
	stopWait = 15 * time.Second
)

// ErrNotRunning is returned by Arm and Disarm while no watchdog process runs.
var ErrNotRunning = errors.New("watchdog: not running")

// Process starts and supervises the watchdog process (Command with the pipe's read end
// as file descriptor 3 and the shared lease page as 4) and sends it the lease.
type Process struct {
	// Command builds the watchdog command; it is called for every start.
	Command func() *exec.Cmd
	Log     *zap.Logger
	// Now reads CLOCK_BOOTTIME; nil means boottime.Now.
	Now func() time.Duration

	mu       sync.Mutex
	w        *os.File // the pipe's write end; nil while no watchdog runs
	pid      int      // the running watchdog's PID
	shared   *Shared  // nil when the page could not be made: every change is a message
	armed    bool
	deadline time.Duration
	messages uint64 // messages written, for tests
}

// renewMargin is how long before the watchdog's deadline a renewal must be published for
// the page alone to carry it: the watchdog reads the page only once that deadline has
// passed, and the margin covers the store's visibility to the other process.
const renewMargin = time.Millisecond

// Arm tells the watchdog to fence the server at deadline (CLOCK_BOOTTIME) unless armed
// again later or disarmed. It returns once the watchdog is sure to see it: the deadline is
// in the pipe, or (a later deadline, while the one the watchdog holds has not passed)
// published in the shared page that watchdog acknowledged.
func (p *Process) Arm(deadline time.Duration) error { return p.send(true, deadline) }

// Disarm tells the watchdog the server is fenced: nothing to do at the deadline.
func (p *Process) Disarm() error { return p.send(false, 0) }

func (p *Process) send(arm bool, deadline time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	prevArmed, prev := p.armed, p.deadline
	p.armed, p.deadline = arm, deadline
	if p.shared != nil {
		p.shared.Store(deadline) // 0 when disarmed
		// The store above is visible to the watchdog before it reads the page at its
		// deadline prev, as long as prev is still ahead now, after the store.
		if arm && prevArmed && deadline >= prev && p.w != nil && p.shared.Acked(p.pid) && p.now() < prev-renewMargin {
			return nil
		}
	}
	return p.writeLocked()
}

func (p *Process) now() time.Duration {
	if p.Now != nil {
		return p.Now()
	}
	return boottime.Now()
}

// sent counts the messages written to watchdogs so far (for tests).
func (p *Process) sent() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.messages
}

func (p *Process) writeLocked() error {
	if p.w == nil {
		return ErrNotRunning
	}
	if err := p.w.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	if _, err := p.w.WriteString(Encode(p.armed, p.deadline)); err != nil {
		return fmt.Errorf("watchdog: write: %w", err)
	}
	p.messages++
	return nil
}

// Run starts the watchdog and starts it again whenever it exits, until ctx ends. Then it
// closes the pipe (the watchdog exits by itself, after fencing if it is armed) and waits
// for it, killing it by PID if it lingers.
func (p *Process) Run(ctx context.Context) error {
	shared, err := NewShared()
	if err != nil {
		p.Log.Warn("no shared lease page: every renewal is a message to the watchdog", zap.Error(err))
	} else {
		p.mu.Lock()
		p.shared = shared
		p.mu.Unlock()
		defer func() {
			p.mu.Lock()
			p.shared = nil
			p.mu.Unlock()
			_ = shared.Close()
		}()
	}
	for {
		err := p.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		p.Log.Error("fence watchdog exited; starting it again", zap.Error(err), zap.Duration("in", restartEvery))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(restartEvery):
		}
	}
}

func (p *Process) runOnce(ctx context.Context) error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("pipe: %w", err)
	}
	cmd := p.Command()
	cmd.ExtraFiles = []*os.File{r}
	p.mu.Lock()
	if p.shared != nil {
		p.shared.Ack(0) // until this watchdog acknowledges the page, renewals are messages
		cmd.ExtraFiles = append(cmd.ExtraFiles, p.shared.file())
		if cmd.Env == nil {
			cmd.Env = os.Environ()
		}
		cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d", LeaseFDEnv, leaseFD))
	}
	p.mu.Unlock()
	if err := cmd.Start(); err != nil {
		_ = r.Close()
		_ = w.Close()
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	_ = r.Close() // the child holds it now
	p.Log.Info("fence watchdog started", zap.Int("pid", cmd.Process.Pid))
	p.mu.Lock()
	p.w, p.pid = w, cmd.Process.Pid
	if p.armed { // a restarted watchdog learns the lease at once
		if err := p.writeLocked(); err != nil {
			p.Log.Error("send the lease to the restarted watchdog", zap.Error(err))
		}
	}
	p.mu.Unlock()

	exited := make(chan error, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { exited <- cmd.Wait() })
	closePipe := func() {
		p.mu.Lock()
		if p.w == w {
			p.w = nil
		}
		p.mu.Unlock()
		_ = w.Close()
	}
	select {
	case err := <-exited:
		closePipe()
		if err == nil {
			err = errors.New("exited with status 0")
		}
		return err
	case <-ctx.Done():
	}
	closePipe()
	select {
	case <-exited:
	case <-time.After(stopWait):
		p.Log.Error("fence watchdog did not exit after its pipe closed; killing it", zap.Int("pid", cmd.Process.Pid))
		_ = cmd.Process.Kill()
		<-exited
	}
	return nil
}
