package sdnotify_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/keepraft/keepraft/internal/sdnotify"
	"github.com/keepraft/keepraft/internal/sdnotify/sdnotifytest"
)

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
			sock := sdnotifytest.NewSocket(t)
			t.Setenv("NOTIFY_SOCKET", "")
			if tt.socket {
				t.Setenv("NOTIFY_SOCKET", sock.Path)
			}
			t.Setenv("WATCHDOG_USEC", tt.usec)
			t.Setenv("WATCHDOG_PID", tt.pid)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- sdnotify.New(zaptest.NewLogger(t)).Run(ctx) }()
			if tt.wantPings {
				// 20 ms watchdog: a ping every 10 ms.
				sock.WaitFor(t, "three watchdog pings", 2*time.Second, func() bool { return sock.Count("WATCHDOG=1") >= 3 })
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
				if got := sock.States(); len(got) != 0 {
					t.Fatalf("sent %q without NOTIFY_SOCKET", got)
				}
				return
			}
			sock.WaitFor(t, "STOPPING=1", 2*time.Second, func() bool { return sock.Count("STOPPING=1") == 1 })
			got := sock.States()
			if got[0] != "READY=1" || got[len(got)-1] != "STOPPING=1" || sock.Count("READY=1") != 1 {
				t.Errorf("messages %q: want READY=1 first, STOPPING=1 last, each once", got)
			}
			if pings := sock.Count("WATCHDOG=1"); !tt.wantPings && pings != 0 {
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
	sock := sdnotifytest.NewSocket(t)
	t.Setenv("NOTIFY_SOCKET", sock.Path)
	t.Setenv("WATCHDOG_USEC", "200000") // 200 ms: pings every 100 ms
	t.Setenv("WATCHDOG_PID", "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- sdnotify.New(zaptest.NewLogger(t)).Run(ctx) }()
	sock.WaitFor(t, "four pings", 3*time.Second, func() bool { return sock.Count("WATCHDOG=1") >= 4 })
	cancel()
	<-errc
	at := sock.Times("WATCHDOG=1")
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

// TestSupervise: Supervise sends READY=1 while the node runs and STOPPING=1 when it ends,
// on a signal and on the node's own failure, whose error it returns; the pings stop with
// the node.
func TestSupervise(t *testing.T) {
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
			sock := sdnotifytest.NewSocket(t)
			t.Setenv("NOTIFY_SOCKET", sock.Path)
			t.Setenv("WATCHDOG_USEC", "20000")
			t.Setenv("WATCHDOG_PID", "")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			f := &fakeRunner{fail: make(chan struct{}), err: boom}
			errc := make(chan error, 1)
			go func() { errc <- sdnotify.New(zaptest.NewLogger(t)).Supervise(ctx, f) }()
			sock.WaitFor(t, "READY=1 and pings", 2*time.Second, func() bool {
				return sock.Count("READY=1") == 1 && sock.Count("WATCHDOG=1") >= 2
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
				t.Fatal("Supervise did not return")
			}
			if tt.nodeErr != errors.Is(err, boom) || (!tt.nodeErr && err != nil) {
				t.Fatalf("Supervise = %v, want the node's error only when it failed", err)
			}
			sock.WaitFor(t, "STOPPING=1", 2*time.Second, func() bool { return sock.Count("STOPPING=1") == 1 })
			pings := sock.Count("WATCHDOG=1")
			time.Sleep(60 * time.Millisecond) // six ping intervals
			if after := sock.Count("WATCHDOG=1"); after != pings {
				t.Errorf("%d pings after the node stopped", after-pings)
			}
			if got := sock.States(); got[len(got)-1] != "STOPPING=1" {
				t.Errorf("last message %q, want STOPPING=1: %q", got[len(got)-1], strings.Join(got, " "))
			}
		})
	}
}
