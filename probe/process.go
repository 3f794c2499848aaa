package probe

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotLocal is returned by [ServerPID] when the server's process is not visible from
// here (another host, another PID namespace, or its pid file unreadable).
var ErrNotLocal = errors.New("mysqld process not visible from this host")

// ServerPID returns the process id of the server behind db when it runs on this host:
// it reads @@pid_file and that file, and checks that the process is a mysqld or mariadbd.
func ServerPID(ctx context.Context, db *sql.DB) (int, error) {
	var path string
	if err := db.QueryRowContext(ctx, "SELECT @@pid_file").Scan(&path); err != nil {
		return 0, fmt.Errorf("read @@pid_file: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("%w: read pid file %s: %w", ErrNotLocal, path, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("%w: pid file %s holds %q", ErrNotLocal, path, strings.TrimSpace(string(b)))
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return 0, fmt.Errorf("%w: process %d from %s: %w", ErrNotLocal, pid, path, err)
	}
	if name := strings.TrimSpace(string(comm)); name != "mysqld" && name != "mariadbd" {
		return 0, fmt.Errorf("%w: process %d from %s is %q, not mysqld", ErrNotLocal, pid, path, name)
	}
	return pid, nil
}

// WatchProcess waits until process pid exits and returns nil then, or ctx's error when
// ctx ends first. It holds a pidfd, so a pid reused by another process is never
// mistaken for the server: a SIGKILLed or crashed mysqld is noticed within milliseconds,
// without waiting for the next probe.
//
// The pidfd waits in the Go runtime's network poller (epoll), not in a blocking poll(2):
// a goroutine blocked in a system call holds its thread and, with GOMAXPROCS=1, the only
// P until the runtime's monitor takes it back, which both delays every other goroutine
// and puts the monitor into its busiest polling mode each time the call is entered.
func WatchProcess(ctx context.Context, pid int) error {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil // already gone
		}
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	// A non-blocking descriptor handed to os.NewFile is registered with the poller.
	f := os.NewFile(uintptr(fd), fmt.Sprintf("pidfd %d", pid))
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("pidfd of %d: %w", pid, err)
	}
	// Cancellation ends the wait through a deadline in the past.
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		// The pidfd is readable once the process has exited; poll without waiting.
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		if err != nil && !errors.Is(err, unix.EINTR) {
			perr = err
			return true
		}
		return n > 0
	})
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return fmt.Errorf("wait for pidfd of %d: %w", pid, err)
	case perr != nil:
		return fmt.Errorf("poll pidfd of %d: %w", pid, perr)
	}
	return nil
}

// Process states as [ProcessState] reports them.
const (
	ProcessUnknown = iota // not watched (another host, no pid file seen yet)
	ProcessRunning        // running or sleeping: alive, it may accept writes
	ProcessStopped        // stopped (SIGSTOP) or traced: alive but serves nothing until continued
	ProcessGone           // exited or a zombie
)

// ProcessState reads the state of process pid from /proc/PID/stat.
func ProcessState(pid int) int {
	if pid <= 1 {
		return ProcessUnknown
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return ProcessGone
		}
		return ProcessUnknown
	}
	// The state follows the command name in parentheses, which may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return ProcessUnknown
	}
	switch b[i+2] {
	case 'T', 't':
		return ProcessStopped
	case 'Z', 'X', 'x':
		return ProcessGone
	}
	return ProcessRunning
}

// KillStopped kills process pid with SIGKILL when it is stopped by a signal (SIGSTOP,
// state 'T'), and reports whether it did. A server frozen that way with read_only=0 cannot
// be fenced (it answers nothing), but it resumes writable the moment it is continued,
// beside the next owner: killing it makes it come back read-only from my.cnf instead. A
// process stopped by a debugger ('t'), running or gone is left alone. The signal goes
// through a pidfd opened before the state is read, so a reused pid is never hit.
func KillStopped(pid int) (bool, error) {
	if pid <= 1 {
		return false, nil
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return false, nil
		}
		return false, fmt.Errorf("pidfd of %d: %w", pid, err)
	}
	defer unix.Close(fd)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false, nil // gone meanwhile
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
		return false, nil
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return false, nil
		}
		return false, fmt.Errorf("kill stopped process %d: %w", pid, err)
	}
	return true, nil
}
