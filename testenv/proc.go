package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// killWait bounds how long Kill and Close wait for a SIGKILLed process to disappear.
const killWait = 10 * time.Second

// freezeWait bounds how long Freeze waits for every thread to stop; freezePoll is how
// often it looks.
const (
	freezeWait = time.Second
	freezePoll = time.Millisecond
)

// ErrProcessGone is returned by [Proc] methods when the process has already exited, or when
// its PID now belongs to a different process (start time mismatch).
var ErrProcessGone = errors.New("process gone")

// Proc is a long-running process started by [Lab.Spawn] (or adopted from a state file). It runs
// as the leader of its own process group, so Freeze, Thaw and Kill reach its children too.
// Methods are safe for concurrent use.
type Proc struct {
	// Name names the process in logs and the state file; its log is Dir/logs/<Name>.log.
	Name string
	// PID is the process id.
	PID int
	// LogPath is the file that receives stdout and stderr.
	LogPath string
	// Host is the host name whose namespace the process runs in, "" for the root namespace.
	Host string
	// StartTime is field 22 of /proc/PID/stat (clock ticks since boot); it tells a reused PID apart.
	StartTime uint64
	// Argv is the command line as given to Spawn.
	Argv []string

	cmd     *exec.Cmd // nil when adopted from a state file
	done    chan struct{}
	mu      sync.Mutex
	waitErr error
	stopCh  chan struct{} // closes the adopted-process poller
}

// Signal sends sig to the process itself (not its group).
func (p *Proc) Signal(sig syscall.Signal) error {
	if !p.Alive() {
		return fmt.Errorf("signal %s %s (pid %d): %w", sig, p.Name, p.PID, ErrProcessGone)
	}
	if err := syscall.Kill(p.PID, sig); err != nil {
		return fmt.Errorf("signal %s %s (pid %d): %w", sig, p.Name, p.PID, err)
	}
	return nil
}

// signalGroup sends sig to the whole process group led by p, only while p itself still
// exists (so the group id cannot have been reused).
func (p *Proc) signalGroup(sig syscall.Signal) error {
	if !p.Alive() {
		return fmt.Errorf("signal group %s %s (pid %d): %w", sig, p.Name, p.PID, ErrProcessGone)
	}
	if pg, err := syscall.Getpgid(p.PID); err != nil || pg != p.PID {
		return p.Signal(sig)
	}
	if err := syscall.Kill(-p.PID, sig); err != nil {
		return fmt.Errorf("signal group %s %s (pid %d): %w", sig, p.Name, p.PID, err)
	}
	return nil
}

// Freeze stops the process and its group with SIGSTOP.
//
// kill(2) returns before every thread has stopped (a thread running on another CPU stops
// at its next interruption), so Freeze then waits, at most freezeWait, until every thread
// of the process shows the stopped state: a test acting right after Freeze meets a frozen
// process. A thread in uninterruptible sleep (a full disk) may not stop in time; Freeze
// then returns anyway, the signal stays pending.
func (p *Proc) Freeze() error {
	if err := p.signalGroup(syscall.SIGSTOP); err != nil {
		return err
	}
	deadline := time.Now().Add(freezeWait)
	for !allStopped(p.PID) && time.Now().Before(deadline) {
		time.Sleep(freezePoll)
	}
	return nil
}

// allStopped reports whether every thread of pid is in the stopped state ('T' or 't' in
// /proc/PID/task/TID/stat); a process that is gone counts as stopped.
func allStopped(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return true
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			continue // the thread exited
		}
		// The state is the first field after the command name, which ends with ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) {
			return false
		}
		if st := b[i+2]; st != 'T' && st != 't' {
			return false
		}
	}
	return true
}

// Thaw resumes a frozen process group with SIGCONT.
func (p *Proc) Thaw() error { return p.signalGroup(syscall.SIGCONT) }

// Kill sends SIGKILL to the process group and waits (bounded) until the process is reaped.
// Killing a process that has already exited returns nil.
func (p *Proc) Kill() error {
	select {
	case <-p.Done():
		return nil
	default:
	}
	if err := p.signalGroup(syscall.SIGKILL); err != nil && !errors.Is(err, ErrProcessGone) {
		return err
	}
	select {
	case <-p.Done():
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("kill %s (pid %d): still running after %s", p.Name, p.PID, killWait)
	}
}

// Stop sends SIGTERM (and SIGCONT, in case the process is frozen), waits for the exit and
// sends SIGKILL when ctx ends first. It returns nil once the process is gone.
func (p *Proc) Stop(ctx context.Context) error {
	select {
	case <-p.Done():
		return nil
	default:
	}
	if err := p.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, ErrProcessGone) {
		return err
	}
	_ = p.signalGroup(syscall.SIGCONT)
	select {
	case <-p.Done():
		return nil
	case <-ctx.Done():
		return p.Kill()
	}
}

// Done is closed when the process has exited (and, for own children, been reaped).
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, without blocking.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err returns the wait error of an exited own child (nil while running or after a clean exit).
func (p *Proc) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// Tail returns the last n lines of the process log.
func (p *Proc) Tail(n int) string { return tailFile(p.LogPath, n) }

// Alive reports whether PID still names this process (same start time, not a zombie that
// has been reaped). An unreaped zombie child counts as alive: its PID cannot be reused.
func (p *Proc) Alive() bool {
	if p.cmd != nil {
		return !p.Exited()
	}
	st, state, err := procStat(p.PID)
	return err == nil && st == p.StartTime && state != 'Z' && state != 'X'
}

// watch waits for an own child to exit. Before reaping it, it kills what is left of the
// process group, so children of a killed leader do not linger (the group id cannot be
// reused while the unreaped leader holds its PID).
func (p *Proc) watch() {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.PID, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	_ = syscall.Kill(-p.PID, syscall.SIGKILL)
	err := p.cmd.Wait()
	p.mu.Lock()
	p.waitErr = err
	p.mu.Unlock()
	close(p.done)
}

// pollAdopted watches a process that is not our child until it is gone or stop closes.
func (p *Proc) pollAdopted() {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if !p.Alive() {
			close(p.done)
			return
		}
		select {
		case <-t.C:
		case <-p.stopCh:
			return
		}
	}
}

// procStat reads the start time (field 22) and state (field 3) of pid from /proc.
func procStat(pid int) (uint64, byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat start time: %w", pid, err)
	}
	return st, f[0][0], nil
}

// pidAlive reports whether pid is running and started at start.
func pidAlive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st, state, err := procStat(pid)
	return err == nil && st == start && state != 'Z' && state != 'X'
}

// tailFile returns the last n lines of a file, or a note when it cannot be read.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", path, err)
	}
	defer f.Close()
	ring := make([]string, 0, n)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if len(ring) == n {
			ring = ring[1:]
		}
		ring = append(ring, sc.Text())
	}
	return strings.Join(ring, "\n")
}

// spawner starts children from one OS thread that never exits, because Pdeathsig fires when
// the thread that forked a child ends, not when the process does.
type spawnReq struct {
	cmd *exec.Cmd
	err chan error
}

var (
	spawnOnce sync.Once
	spawnCh   chan spawnReq
)

func startOnSpawnThread(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread lives as long as the process
			for r := range spawnCh {
				r.err <- r.cmd.Start()
			}
		}()
	})
	r := spawnReq{cmd: cmd, err: make(chan error, 1)}
	spawnCh <- r
	return <-r.err
}
