package probe

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestWatchProcess(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- WatchProcess(context.Background(), cmd.Process.Pid) }()
	select {
	case err := <-done:
		t.Fatalf("returned %v while the process runs", err)
	case <-time.After(300 * time.Millisecond):
	}
	killed := time.Now()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // the exit status of a killed sleep is expected
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("exit noticed %v after SIGKILL", time.Since(killed))
	case <-time.After(2 * time.Second):
		t.Fatal("exit not noticed within 2s")
	}

	ctx, cancel := context.WithCancel(context.Background())
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Process.Kill(); _ = other.Wait() }()
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	if err := WatchProcess(ctx, other.Process.Pid); err != context.Canceled {
		t.Fatalf("WatchProcess after cancel = %v, want context.Canceled", err)
	}
}

// TestWatchProcessHoldsNoThread checks that a watch waits in the runtime's poller: a
// watch blocked in poll(2) holds an OS thread (and, with one P, the P) for as long as it
// waits.
func TestWatchProcessHoldsNoThread(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	const watchers = 16
	before := threads(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range watchers {
		wg.Go(func() {
			if err := WatchProcess(ctx, cmd.Process.Pid); err != context.Canceled {
				t.Errorf("WatchProcess after cancel = %v, want context.Canceled", err)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	during := threads(t)
	cancel()
	wg.Wait()
	if during-before >= watchers/2 {
		t.Fatalf("%d watches of one process: %d threads before, %d while they wait", watchers, before, during)
	}
}

// threads is the number of OS threads of this process.
func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads line in /proc/self/status")
	return 0
}

func TestProcessState(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if got := ProcessState(pid); got != ProcessRunning {
		t.Fatalf("running sleep: state %d", got)
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for ProcessState(pid) != ProcessStopped && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := ProcessState(pid); got != ProcessStopped {
		t.Fatalf("stopped sleep: state %d", got)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if got := ProcessState(pid); got != ProcessGone {
		t.Fatalf("reaped sleep: state %d", got)
	}
	if got := ProcessState(0); got != ProcessUnknown {
		t.Fatalf("pid 0: state %d", got)
	}
}
