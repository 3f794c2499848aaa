package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keepraft/keepraft/internal/sdnotify/sdnotifytest"
)

// TestDaemonUnderSystemd runs the real binary as systemd would (NOTIFY_SOCKET and
// WATCHDOG_USEC set) as a lone witness whose peers are down: it reports its -ldflags
// version in --version and in its start log line, sends READY=1 and watchdog pings while
// it runs, and STOPPING=1 then exits 0 on SIGTERM.
func TestDaemonUnderSystemd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts keepraftd")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "keepraftd")
	const ver = "v9.8.7-test"
	if out, err := exec.Command("go", "build", "-ldflags", "-X main.version="+ver, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "keepraftd version "+ver {
		t.Fatalf("--version = %q, %v", out, err)
	}

	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := func() string { return "127.0.0.1:" + strconv.Itoa(freePort(t, "127.0.0.1")) }
	raft, apiAddr := addr(), addr()
	cfg := filepath.Join(dir, "w.yaml")
	if err := os.WriteFile(cfg, []byte(`node: {id: w, role: witness, data_dir: `+filepath.Join(dir, "data")+`}
cluster:
  raft_addr: `+raft+`
  api_addr: `+apiAddr+`
  token_file: `+token+`
  peers:
    - {id: a, raft_addr: `+addr()+`, api_addr: `+addr()+`}
    - {id: b, raft_addr: `+addr()+`, api_addr: `+addr()+`}
    - {id: w, raft_addr: `+raft+`, api_addr: `+apiAddr+`}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := sdnotifytest.NewSocket(t)
	var logBuf safeBuffer
	cmd := exec.Command(bin, "--config", cfg, "--no-vip")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock.Path, "WATCHDOG_USEC=200000")
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("keepraftd log:\n%s", logBuf.String())
		}
	})
	sock.WaitFor(t, "READY=1 and two pings", 20*time.Second, func() bool {
		return sock.Count("READY=1") == 1 && sock.Count("WATCHDOG=1") >= 2
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Fatalf("keepraftd exited with %v after SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("keepraftd still runs 20 s after SIGTERM")
	}
	got := sock.States()
	if got[0] != "READY=1" || got[len(got)-1] != "STOPPING=1" {
		t.Errorf("messages %q: want READY=1 first and STOPPING=1 last", got)
	}
	var started bool
	for _, line := range strings.Split(logBuf.String(), "\n") {
		if strings.Contains(line, `"keepraftd starting"`) && strings.Contains(line, `"version":"`+ver+`"`) {
			started = true
		}
	}
	if !started {
		t.Errorf("no start log line with version %s:\n%s", ver, logBuf.String())
	}
}

// safeBuffer is a bytes.Buffer for a child's output read while it runs.
type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
