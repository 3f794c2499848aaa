package probe

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestKillStopped: a process stopped by SIGSTOP is killed; a running one is not.
func TestKillStopped(t *testing.T) {
	start := func(t *testing.T) *exec.Cmd {
		t.Helper()
		cmd := exec.Command("sleep", "30")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	running := start(t)
	if killed, err := KillStopped(running.Process.Pid); err != nil || killed {
		t.Fatalf("running process: killed=%v, %v", killed, err)
	}
	stopped := start(t)
	if err := stopped.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for ProcessState(stopped.Process.Pid) != ProcessStopped {
		if time.Now().After(deadline) {
			t.Fatal("process not stopped after SIGSTOP")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if killed, err := KillStopped(stopped.Process.Pid); err != nil || !killed {
		t.Fatalf("stopped process: killed=%v, %v", killed, err)
	}
	err := stopped.Wait()
	if ws, ok := stopped.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("stopped process ended with %v, want SIGKILL", err)
	}
}
