package watchdog

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap/zaptest"
)

// fakeFencer records when it fenced, on the bubble's clock.
type fakeFencer struct {
	mu    sync.Mutex
	at    []time.Duration
	fails int // the first fails attempts fail
	now   func() time.Duration
}

func (f *fakeFencer) Fence(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fails > 0 {
		f.fails--
		return "", errors.New("connection refused")
	}
	f.at = append(f.at, f.now())
	return "0-1-5", nil
}

func (f *fakeFencer) fenced() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.at...)
}

func TestServe(t *testing.T) {
	ms := time.Millisecond
	type step struct {
		at   time.Duration // since start
		line string        // "" closes the pipe; "arm+N" arms at start+N ms; "pub+N" publishes start+N ms in the page
	}
	tests := []struct {
		name   string
		steps  []step
		fails  int
		end    time.Duration // how long the test watches
		want   []time.Duration
		exited bool // Serve returned by the end
		err    bool
	}{
		{name: "armed, never renewed: fenced at the deadline", steps: []step{{0, "arm+500"}}, end: 2 * time.Second, want: []time.Duration{500 * ms}},
		{name: "renewed in time: never fenced", steps: []step{{0, "arm+500"}, {300 * ms, "arm+800"}, {600 * ms, "arm+1100"}, {900 * ms, "disarm"}}, end: 3 * time.Second},
		{name: "renewals stop: fenced at the last deadline", steps: []step{{0, "arm+500"}, {300 * ms, "arm+800"}}, end: 2 * time.Second, want: []time.Duration{800 * ms}},
		{name: "disarmed: never fenced", steps: []step{{0, "arm+500"}, {100 * ms, "disarm"}}, end: 2 * time.Second},
		{name: "pipe closed while armed: fenced at once, then exits", steps: []step{{0, "arm+500"}, {100 * ms, ""}}, end: 2 * time.Second, want: []time.Duration{100 * ms}, exited: true},
		{name: "pipe closed while disarmed: exits without fencing", steps: []step{{0, "arm+500"}, {100 * ms, "disarm"}, {200 * ms, ""}}, end: 2 * time.Second, exited: true},
		{name: "fence fails twice: retried", steps: []step{{0, "arm+500"}}, fails: 2, end: 2 * time.Second, want: []time.Duration{500*ms + 2*retryEvery}},
		{name: "re-armed after a fence: fenced again at the new deadline", steps: []step{{0, "arm+500"}, {700 * ms, "arm+1200"}}, end: 2 * time.Second, want: []time.Duration{500 * ms, 1200 * ms}},
		{name: "renewed through the page: fenced at the last published deadline", steps: []step{{0, "arm+500"}, {300 * ms, "pub+800"}, {600 * ms, "pub+1100"}}, end: 3 * time.Second, want: []time.Duration{1100 * ms}},
		{name: "renewed through the page, then disarmed: never fenced", steps: []step{{0, "arm+500"}, {300 * ms, "pub+800"}, {600 * ms, "disarm"}}, end: 3 * time.Second},
		{name: "page older than the deadline: ignored", steps: []step{{0, "arm+500"}, {100 * ms, "pub+400"}}, end: 2 * time.Second, want: []time.Duration{500 * ms}},
		{name: "page published after a fence: ignored until a message re-arms", steps: []step{{0, "arm+500"}, {700 * ms, "pub+1200"}, {900 * ms, "arm+1500"}}, end: 3 * time.Second, want: []time.Duration{500 * ms, 1500 * ms}},
		{name: "garbage: fenced at once, exits with an error", steps: []step{{0, "arm+500"}, {100 * ms, "arm soon"}}, end: 2 * time.Second, want: []time.Duration{100 * ms}, exited: true, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				now := func() time.Duration { return time.Hour + time.Since(start) }
				f := &fakeFencer{now: func() time.Duration { return time.Since(start) }, fails: tt.fails}
				pr, pw := io.Pipe()
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				done := make(chan error, 1)
				var page atomic.Int64
				latest := func() time.Duration { return time.Duration(page.Load()) }
				go func() { done <- Serve(ctx, pr, latest, f, now, zaptest.NewLogger(t)) }()
				for _, s := range tt.steps {
					time.Sleep(s.at - time.Since(start))
					switch {
					case s.line == "":
						_ = pw.Close()
					case len(s.line) > 4 && s.line[:4] == "arm+":
						var n int
						for _, c := range s.line[4:] {
							n = n*10 + int(c-'0')
						}
						_, _ = io.WriteString(pw, Encode(true, time.Hour+time.Duration(n)*ms))
					case len(s.line) > 4 && s.line[:4] == "pub+":
						n, _ := strconv.Atoi(s.line[4:])
						page.Store(int64(time.Hour + time.Duration(n)*ms))
					case s.line == "disarm":
						_, _ = io.WriteString(pw, Encode(false, 0))
					default:
						_, _ = io.WriteString(pw, s.line+"\n")
					}
				}
				time.Sleep(tt.end - time.Since(start))
				synctest.Wait()
				var err error
				exited := false
				select {
				case err = <-done:
					exited = true
				default:
				}
				if exited != tt.exited || (err != nil) != tt.err {
					t.Errorf("Serve exited=%v err=%v, want exited=%v error=%v", exited, err, tt.exited, tt.err)
				}
				got := f.fenced()
				if len(got) != len(tt.want) {
					t.Fatalf("fenced at %v, want %v", got, tt.want)
				}
				for i := range got {
					if got[i] != tt.want[i] {
						t.Fatalf("fenced at %v, want %v", got, tt.want)
					}
				}
				cancel()
				_ = pw.Close()
				if !exited {
					<-done
				}
			})
		})
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		line string
		want message
		err  bool
	}{
		{line: "arm 1500000000", want: message{arm: true, deadline: 1500 * time.Millisecond}},
		{line: "disarm", want: message{}},
		{line: "arm", err: true},
		{line: "arm -5", err: true},
		{line: "arm 12x", err: true},
		{line: "open 5", err: true},
		{line: "", err: true},
	}
	for _, tt := range tests {
		got, err := decode(tt.line)
		if (err != nil) != tt.err || (err == nil && got != tt.want) {
			t.Errorf("decode(%q) = %+v, %v; want %+v, error %v", tt.line, got, err, tt.want, tt.err)
		}
		if err == nil {
			if back, _ := decode(Encode(got.arm, got.deadline)); back != got {
				t.Errorf("Encode/decode round trip of %+v gave %+v", got, back)
			}
		}
	}
}
