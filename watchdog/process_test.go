package watchdog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/keepraft/keepraft/internal/boottime"
)

// childEnv makes the test binary run as a watchdog child that records its fences in the
// named file (one line per fence: the boottime in ns).
const childEnv = "KEEPRAFT_WATCHDOG_CHILD"

// childNoAckEnv makes the child ignore the shared page, as an older watchdog would.
const childNoAckEnv = "KEEPRAFT_WATCHDOG_CHILD_NOACK"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		f := fileFencer(path)
		shared, err := OpenShared()
		if err != nil {
			os.Exit(4)
		}
		var latest func() time.Duration
		if shared != nil && os.Getenv(childNoAckEnv) == "" {
			shared.Ack(os.Getpid())
			latest = shared.Load
		}
		err = Serve(context.Background(), os.NewFile(3, "pipe"), latest, f, boottime.Now, zap.NewNop())
		if err != nil {
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type fileFencer string

func (f fileFencer) Fence(context.Context) (string, error) {
	fh, err := os.OpenFile(string(f), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	_, err = fmt.Fprintln(fh, int64(boottime.Now()))
	return "", err
}

func fences(t *testing.T, path string) []time.Duration {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []time.Duration
	for l := range strings.FieldsSeq(string(b)) {
		n, err := strconv.ParseInt(l, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, time.Duration(n))
	}
	return out
}

// TestProcessFencesAfterParentLetGo: a real child process armed with a deadline fences
// the server as soon as its pipe closes (keepraftd gone), before the deadline, and then
// exits; disarmed, it exits at once without fencing.
func TestProcessFencesAfterParentLetGo(t *testing.T) {
	for _, armed := range []bool{true, false} {
		t.Run(fmt.Sprintf("armed=%v", armed), func(t *testing.T) {
			out := t.TempDir() + "/fences"
			p := &Process{Log: zaptest.NewLogger(t), Command: func() *exec.Cmd {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), childEnv+"="+out)
				return cmd
			}}
			if err := p.Arm(boottime.Now() + time.Minute); !errors.Is(err, ErrNotRunning) {
				t.Fatalf("Arm without a running watchdog = %v, want ErrNotRunning", err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			deadline := time.Now().Add(5 * time.Second)
			var err error
			for {
				if err = p.Arm(boottime.Now() + time.Minute); err == nil || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("arm: %v", err)
			}
			closed := boottime.Now()
			if !armed {
				if err := p.Disarm(); err != nil {
					t.Fatal(err)
				}
			}
			cancel() // the pipe closes, as when keepraftd exits
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after its context ended")
			}
			got := fences(t, out)
			switch {
			case !armed && len(got) != 0:
				t.Fatalf("disarmed watchdog fenced at %v", got)
			case armed && len(got) != 1:
				t.Fatalf("armed watchdog fenced %d times, want once", len(got))
			case armed && got[0]-closed > 5*time.Second:
				t.Fatalf("fenced %v after the pipe closed, want at once (the deadline was a minute away)", got[0]-closed)
			}
		})
	}
}

// startChild runs a Process whose watchdog is this test binary recording fences in out,
// and waits until it can be armed (with deadline); stop ends it and waits.
func startChild(t *testing.T, out string, env ...string) (p *Process, stop func()) {
	t.Helper()
	p = &Process{Log: zaptest.NewLogger(t), Command: func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(append(os.Environ(), childEnv+"="+out), env...)
		return cmd
	}}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.Arm(boottime.Now()+time.Minute) != nil {
		if time.Now().After(deadline) {
			stop()
			t.Fatal("the watchdog could not be armed within 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p, stop
}

// TestProcessRenewalsThroughPage: once the watchdog acknowledged the shared page, renewals
// made in time are published there and not written to the pipe, and the watchdog still
// fences at the last one's deadline (not at the deadline of the last message) when they
// stop; a renewal after the deadline passed is a message. A watchdog that does not read
// the page (an older binary) gets every renewal as a message, and fences the same.
func TestProcessRenewalsThroughPage(t *testing.T) {
	const (
		lease = 300 * time.Millisecond
		every = 100 * time.Millisecond
		n     = 15
	)
	tests := []struct {
		name      string
		env       []string
		wantFewer bool // renewals left out of the pipe
	}{
		{name: "page acknowledged", wantFewer: true},
		{name: "older watchdog without the page", env: []string{childNoAckEnv + "=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := t.TempDir() + "/fences"
			p, stop := startChild(t, out, tt.env...)
			defer stop()
			// Wait for the acknowledgement (or give the older one as long).
			for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
				p.mu.Lock()
				acked := p.shared != nil && p.shared.Acked(p.pid)
				p.mu.Unlock()
				if acked {
					break
				}
			}
			before := p.sent()
			var last time.Duration
			for range n {
				last = boottime.Now() + lease
				if err := p.Arm(last); err != nil {
					t.Fatal(err)
				}
				time.Sleep(every)
			}
			sent := p.sent() - before
			if tt.wantFewer && sent > 1 {
				t.Errorf("%d of %d renewals made in time were messages, want at most 1", sent, n)
			}
			if !tt.wantFewer && sent != n {
				t.Errorf("%d of %d renewals were messages to a watchdog without the page, want all", sent, n)
			}
			if got := fences(t, out); len(got) != 0 {
				t.Fatalf("fenced at %v while renewals came in time", got)
			}
			// The renewals stop: fenced at the last deadline, not before.
			time.Sleep(lease + 500*time.Millisecond)
			got := fences(t, out)
			if len(got) != 1 || got[0] < last || got[0]-last > 200*time.Millisecond {
				t.Fatalf("fences at %v, want one within 200 ms after the last deadline %v", got, last)
			}
			// A renewal after the deadline passed is a message: the watchdog re-arms.
			before = p.sent()
			if err := p.Arm(boottime.Now() + lease); err != nil {
				t.Fatal(err)
			}
			if p.sent() != before+1 {
				t.Errorf("a renewal after the deadline passed was not a message")
			}
			if err := p.Disarm(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
