// Package timerslack widens the kernel's timer slack of every thread of this process.
//
// An idle keepraftd is a few dozen short bursts of work a second. In each burst the Go
// runtime's monitor thread (sysmon) wakes, sleeps 20 µs and looks again until the burst
// is over: with the default 50 µs slack that is several wakeups per burst, about two
// thirds of an idle daemon's context switches. With a slack of a millisecond the first
// of those sleeps outlasts the burst. The slack delays any sleep of the process by at
// most that much; no deadline of keepraft depends on a wakeup being punctual to the
// millisecond (the lease is enforced by the kernel, not by the daemon's timers).
package timerslack

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Default is the slack keepraftd runs with.
const Default = time.Millisecond

// Set raises the timer slack of every thread of the process to at least d and returns
// how many threads it changed. The calling thread's slack is set through prctl; the
// other threads' through /proc/TID/timerslack_ns, which needs CAP_SYS_NICE (the systemd
// unit sets TimerSlackNSec instead, which every thread inherits). Threads the runtime
// creates later inherit the slack of the thread that creates them. A thread whose slack
// is already at least d is left alone.
func Set(d time.Duration) (int, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	changed := 0
	cur, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		return 0, fmt.Errorf("prctl PR_GET_TIMERSLACK: %w", err)
	}
	if time.Duration(cur) < d {
		if err := unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(d.Nanoseconds()), 0, 0, 0); err != nil {
			return 0, fmt.Errorf("prctl PR_SET_TIMERSLACK: %w", err)
		}
		changed++
	}
	self := strconv.Itoa(unix.Gettid())
	var errs []error
	// Twice: a thread the runtime created from a thread not yet changed inherited the
	// old slack.
	for range 2 {
		tids, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return changed, fmt.Errorf("list threads: %w", err)
		}
		errs = errs[:0]
		for _, e := range tids {
			if e.Name() == self {
				continue
			}
			ok, err := raise(e.Name(), d)
			if err != nil {
				errs = append(errs, err)
			} else if ok {
				changed++
			}
		}
	}
	return changed, errors.Join(errs...)
}

// Of returns the timer slack of thread tid ("self" for the process's main thread).
func Of(tid string) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + tid + "/timerslack_ns")
	if err != nil {
		return 0, fmt.Errorf("read timer slack of thread %s: %w", tid, err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("timer slack of thread %s: %w", tid, err)
	}
	return time.Duration(ns), nil
}

// raise sets thread tid's slack to d unless it is at least d already.
func raise(tid string, d time.Duration) (bool, error) {
	cur, err := Of(tid)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			return false, nil // the thread exited
		}
		return false, err
	}
	if cur >= d {
		return false, nil
	}
	path := "/proc/" + tid + "/timerslack_ns"
	if err := os.WriteFile(path, []byte(strconv.FormatInt(d.Nanoseconds(), 10)), 0); err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			return false, nil // the thread exited
		}
		return false, fmt.Errorf("set timer slack of thread %s: %w", tid, err)
	}
	return true, nil
}
