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
// as file descriptor 3) and sends it the lease.
type Process struct {
	// Command builds the watchdog command; it is called for every start.
	Command func() *exec.Cmd
	Log     *zap.Logger

	mu       sync.Mutex
	w        *os.File // the pipe's write end; nil while no watchdog runs
	armed    bool
	deadline time.Duration
}

// Arm tells the watchdog to fence the server at deadline (CLOCK_BOOTTIME) unless armed
// again later or disarmed. It returns once the message is in the pipe.
func (p *Process) Arm(deadline time.Duration) error { return p.send(true, deadline) }

// Disarm tells the watchdog the server is fenced: nothing to do at the deadline.
func (p *Process) Disarm() error { return p.send(false, 0) }

func (p *Process) send(arm bool, deadline time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed, p.deadline = arm, deadline
	return p.writeLocked()
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
	return nil
}

// Run starts the watchdog and starts it again whenever it exits, until ctx ends. Then it
// closes the pipe (the watchdog exits by itself, after fencing if it is armed) and waits
// for it, killing it by PID if it lingers.
func (p *Process) Run(ctx context.Context) error {
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
	if err := cmd.Start(); err != nil {
		_ = r.Close()
		_ = w.Close()
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	_ = r.Close() // the child holds it now
	p.Log.Info("fence watchdog started", zap.Int("pid", cmd.Process.Pid))
	p.mu.Lock()
	p.w = w
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
