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

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		f := fileFencer(path)
		err := Serve(context.Background(), os.NewFile(3, "pipe"), f, boottime.Now, zap.NewNop())
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
