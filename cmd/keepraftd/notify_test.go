package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// notifySocket is a fake systemd notify socket: a unixgram listener that collects every
// datagram with the time it arrived.
type notifySocket struct {
	path string
	conn *net.UnixConn

	mu   sync.Mutex
	msgs []notifyMsg
	done chan struct{}
}

type notifyMsg struct {
	state string
	at    time.Time
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	// A short path: sun_path holds 108 bytes, and t.TempDir() can be long.
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &notifySocket{path: filepath.Join(dir, "notify"), done: make(chan struct{})}
	s.conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: s.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(s.done)
		buf := make([]byte, 4096)
		for {
			n, _, err := s.conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, notifyMsg{string(buf[:n]), time.Now()})
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		s.conn.Close()
		<-s.done
	})
	return s
}

func (s *notifySocket) states() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, m := range s.msgs {
		out = append(out, m.state)
	}
	return out
}

func (s *notifySocket) count(state string) int {
	n := 0
	for _, st := range s.states() {
		if st == state {
			n++
		}
	}
	return n
}

// waitFor polls until cond holds or the bound passes.
func (s *notifySocket) waitFor(t *testing.T, what string, bound time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; messages so far: %q", what, bound, s.states())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNotifierRun(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	tests := []struct {
		name string
		// socket: NOTIFY_SOCKET points at the fake socket.
		socket       bool
		usec, pid    string
		wantPings    bool
		wantMessages bool
	}{
		{name: "no NOTIFY_SOCKET: nothing sent", socket: false, usec: "20000", pid: self},
		{name: "no watchdog: ready and stopping only", socket: true, wantMessages: true},
		{name: "watchdog for this pid: pings", socket: true, usec: "20000", pid: self, wantPings: true, wantMessages: true},
		{name: "watchdog without WATCHDOG_PID: pings", socket: true, usec: "20000", wantPings: true, wantMessages: true},
		{name: "watchdog of another pid: no pings", socket: true, usec: "20000", pid: strconv.Itoa(os.Getpid() + 1), wantMessages: true},
		{name: "malformed WATCHDOG_USEC: no pings, still ready", socket: true, usec: "soon", wantMessages: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := newNotifySocket(t)
			t.Setenv("NOTIFY_SOCKET", "")
			if tt.socket {
				t.Setenv("NOTIFY_SOCKET", sock.path)
			}
			t.Setenv("WATCHDOG_USEC", tt.usec)
			t.Setenv("WATCHDOG_PID", tt.pid)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- newNotifier(zaptest.NewLogger(t)).Run(ctx) }()
			if tt.wantPings {
				// 20 ms watchdog: a ping every 10 ms.
				sock.waitFor(t, "three watchdog pings", 2*time.Second, func() bool { return sock.count("WATCHDOG=1") >= 3 })
			} else {
				time.Sleep(100 * time.Millisecond) // ten ping intervals of a 20 ms watchdog
			}
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("Run did not return after its context ended")
			}
			if !tt.wantMessages {
				time.Sleep(20 * time.Millisecond)
				if got := sock.states(); len(got) != 0 {
					t.Fatalf("sent %q without NOTIFY_SOCKET", got)
				}
				return
			}
			sock.waitFor(t, "STOPPING=1", 2*time.Second, func() bool { return sock.count("STOPPING=1") == 1 })
			got := sock.states()
			if got[0] != "READY=1" || got[len(got)-1] != "STOPPING=1" || sock.count("READY=1") != 1 {
				t.Errorf("messages %q: want READY=1 first, STOPPING=1 last, each once", got)
			}
			if pings := sock.count("WATCHDOG=1"); !tt.wantPings && pings != 0 {
				t.Errorf("%d watchdog pings, want none: %q", pings, got)
			}
			for _, st := range got {
				if !slices.Contains([]string{"READY=1", "WATCHDOG=1", "STOPPING=1"}, st) {
					t.Errorf("unexpected message %q", st)
				}
			}
		})
	}
}

// TestNotifierPingInterval: pings come at half of WATCHDOG_USEC, not faster and not so
// slowly that systemd would fire.
func TestNotifierPingInterval(t *testing.T) {
	sock := newNotifySocket(t)
	t.Setenv("NOTIFY_SOCKET", sock.path)
	t.Setenv("WATCHDOG_USEC", "200000") // 200 ms: pings every 100 ms
	t.Setenv("WATCHDOG_PID", "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- newNotifier(zaptest.NewLogger(t)).Run(ctx) }()
	sock.waitFor(t, "four pings", 3*time.Second, func() bool { return sock.count("WATCHDOG=1") >= 4 })
	cancel()
	<-errc
	sock.mu.Lock()
	var at []time.Time
	for _, m := range sock.msgs {
		if m.state == "WATCHDOG=1" {
			at = append(at, m.at)
		}
	}
	sock.mu.Unlock()
	for i := 1; i < len(at); i++ {
		// A loaded 2-core machine delays a tick; a gap must stay well below the 200 ms
		// timeout on average and never be a burst.
		if gap := at[i].Sub(at[i-1]); gap < 50*time.Millisecond || gap > 190*time.Millisecond {
			t.Errorf("ping gap %d = %s, want about 100 ms", i, gap)
		}
	}
}

// fakeRunner stands in for the node: Run blocks until ctx ends or fail is closed.
type fakeRunner struct {
	fail chan struct{}
	err  error
}

func (f *fakeRunner) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-f.fail:
		return f.err
	}
}

// TestRunNodeNotifies: runNode sends READY=1 while the node runs and STOPPING=1 when it
// ends, on a signal and on the node's own failure, whose error it returns; the pings stop
// with the node.
func TestRunNodeNotifies(t *testing.T) {
	boom := errors.New("raft: boom")
	tests := []struct {
		name    string
		nodeErr bool // the node fails by itself; else the context (a signal) ends
	}{
		{"signal", false},
		{"node fails", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := newNotifySocket(t)
			t.Setenv("NOTIFY_SOCKET", sock.path)
			t.Setenv("WATCHDOG_USEC", "20000")
			t.Setenv("WATCHDOG_PID", "")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			f := &fakeRunner{fail: make(chan struct{}), err: boom}
			errc := make(chan error, 1)
			go func() { errc <- runNode(ctx, f, newNotifier(zaptest.NewLogger(t))) }()
			sock.waitFor(t, "READY=1 and pings", 2*time.Second, func() bool {
				return sock.count("READY=1") == 1 && sock.count("WATCHDOG=1") >= 2
			})
			if tt.nodeErr {
				close(f.fail)
			} else {
				cancel()
			}
			var err error
			select {
			case err = <-errc:
			case <-time.After(2 * time.Second):
				t.Fatal("runNode did not return")
			}
			if tt.nodeErr != errors.Is(err, boom) || (!tt.nodeErr && err != nil) {
				t.Fatalf("runNode = %v, want the node's error only when it failed", err)
			}
			sock.waitFor(t, "STOPPING=1", 2*time.Second, func() bool { return sock.count("STOPPING=1") == 1 })
			pings := sock.count("WATCHDOG=1")
			time.Sleep(60 * time.Millisecond) // six ping intervals
			if after := sock.count("WATCHDOG=1"); after != pings {
				t.Errorf("%d pings after the node stopped", after-pings)
			}
			if got := sock.states(); got[len(got)-1] != "STOPPING=1" {
				t.Errorf("last message %q, want STOPPING=1: %q", got[len(got)-1], strings.Join(got, " "))
			}
		})
	}
}

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
	sock := newNotifySocket(t)
	var logBuf safeBuffer
	cmd := exec.Command(bin, "--config", cfg, "--no-vip")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock.path, "WATCHDOG_USEC=200000")
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
	sock.waitFor(t, "READY=1 and two pings", 20*time.Second, func() bool {
		return sock.count("READY=1") == 1 && sock.count("WATCHDOG=1") >= 2
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
	got := sock.states()
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
