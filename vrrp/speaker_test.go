package vrrp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap/zaptest"
)

// fakeWire records adverts with the (bubble) time they were written.
type fakeWire struct {
	mu   sync.Mutex
	t0   time.Time
	sent []string
	fail bool
}

func (f *fakeWire) WriteAdvert(p *Packet) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("network is down")
	}
	f.sent = append(f.sent, fmt.Sprintf("%s prio=%d", time.Since(f.t0), p.Priority))
	return nil
}

// String dumps the adverts, one per line.
func (f *fakeWire) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.sent, "\n")
}

func testConfig() Config {
	return Config{Interface: "eth0", Version: 2, VRID: 51, Priority: 150, AdvertInt: time.Second,
		AuthPass: "1111", VIPs: addrs("198.18.2.100")}
}

// script switches enabled on and off at given offsets from the start, and signals each
// switch on changed when that is not nil. It counts the calls of enabled.
type script struct {
	on      atomic.Bool
	calls   atomic.Int64
	changed chan struct{}
}

func (s *script) enabled() bool {
	s.calls.Add(1)
	return s.on.Load()
}

func (s *script) set(on bool) {
	s.on.Store(on)
	if s.changed != nil {
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}
}

func TestSpeakerCadence(t *testing.T) {
	tests := []struct {
		name string
		// steps: at each offset, enabled becomes the given value.
		give []step
		run  time.Duration
		// signal: the script signals each switch on the speaker's change channel.
		signal bool
		want   []string
	}{
		{
			name: "always enabled: exact 1 s cadence from t=0",
			give: []step{{0, true}},
			run:  3500 * time.Millisecond,
			want: []string{"0s prio=150", "1s prio=150", "2s prio=150", "3s prio=150"},
		},
		{
			name: "never enabled: silent",
			give: nil,
			run:  5 * time.Second,
			want: nil,
		},
		{
			name: "enabled at 2.05 s: first advert at the next 100 ms poll",
			give: []step{{2050 * time.Millisecond, true}},
			run:  4200 * time.Millisecond,
			want: []string{"2.1s prio=150", "3.1s prio=150", "4.1s prio=150"},
		},
		{
			name: "disabled at 2.45 s: silent after",
			give: []step{{0, true}, {2450 * time.Millisecond, false}},
			run:  6 * time.Second,
			want: []string{"0s prio=150", "1s prio=150", "2s prio=150"},
		},
		{
			name: "off and on again: cadence restarts",
			give: []step{{0, true}, {1450 * time.Millisecond, false}, {3010 * time.Millisecond, true}},
			run:  4500 * time.Millisecond,
			want: []string{"0s prio=150", "1s prio=150", "3.1s prio=150", "4.1s prio=150"},
		},
		{
			name:   "signalled: enabled at 2.05 s, first advert at once",
			give:   []step{{2050 * time.Millisecond, true}},
			run:    4200 * time.Millisecond,
			signal: true,
			want:   []string{"2.05s prio=150", "3.05s prio=150", "4.05s prio=150"},
		},
		{
			name:   "signalled: disabled at 2.45 s, silent after",
			give:   []step{{0, true}, {2450 * time.Millisecond, false}},
			run:    6 * time.Second,
			signal: true,
			want:   []string{"0s prio=150", "1s prio=150", "2s prio=150"},
		},
		{
			name:   "signalled: off and on again, cadence restarts",
			give:   []step{{0, true}, {1450 * time.Millisecond, false}, {3010 * time.Millisecond, true}},
			run:    4500 * time.Millisecond,
			signal: true,
			want:   []string{"0s prio=150", "1s prio=150", "3.01s prio=150", "4.01s prio=150"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := &fakeWire{t0: time.Now()}
				var sc script
				var changed <-chan struct{}
				if tt.signal {
					sc.changed = make(chan struct{}, 1)
					changed = sc.changed
				}
				s := NewSpeaker(w, testConfig(), sc.enabled, changed, zaptest.NewLogger(t))
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan error)
				runScript(ctx, &sc, tt.give)
				go func() { done <- s.Run(ctx) }()
				time.Sleep(tt.run)
				cancel()
				if err := <-done; err != nil {
					t.Fatalf("Run = %v", err)
				}
				if got, want := w.String(), strings.Join(tt.want, "\n"); got != want {
					t.Errorf("adverts:\n%s\nwant:\n%s", got, want)
				}
			})
		})
	}
}

type step struct {
	at time.Duration
	on bool
}

func runScript(ctx context.Context, sc *script, steps []step) {
	if len(steps) > 0 && steps[0].at == 0 {
		sc.set(steps[0].on)
		steps = steps[1:]
	}
	go func() {
		start := time.Now()
		for _, st := range steps {
			select {
			case <-ctx.Done():
				return
			case <-time.After(st.at - time.Since(start)):
				sc.set(st.on)
			}
		}
	}()
}

// TestSpeakerIdleWithoutPolling: with a change channel, a speaker that is not enabled looks
// at enabled() once and then only when signalled, and a speaking one at each advert;
// without one it polls every 100 ms.
func TestSpeakerIdleWithoutPolling(t *testing.T) {
	tests := []struct {
		name      string
		signal    bool
		give      []step
		wantCalls int64
	}{
		{name: "signalled, never enabled: one look", signal: true, wantCalls: 1},
		{name: "signalled, enabled at 1 s: a look per switch and per advert", signal: true, give: []step{{time.Second, true}}, wantCalls: 1 + 1 + 9},
		{name: "no channel, never enabled: a poll every 100 ms", wantCalls: 101},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var sc script
				var changed <-chan struct{}
				if tt.signal {
					sc.changed = make(chan struct{}, 1)
					changed = sc.changed
				}
				s := NewSpeaker(&fakeWire{t0: time.Now()}, testConfig(), sc.enabled, changed, zaptest.NewLogger(t))
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan error)
				runScript(ctx, &sc, tt.give)
				go func() { done <- s.Run(ctx) }()
				time.Sleep(10*time.Second + time.Millisecond)
				cancel()
				if err := <-done; err != nil {
					t.Fatalf("Run = %v", err)
				}
				if got := sc.calls.Load(); got != tt.wantCalls {
					t.Errorf("enabled() called %d times in 10 s, want %d", got, tt.wantCalls)
				}
			})
		})
	}
}

func TestSpeakerWriteErrorsAreCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &fakeWire{t0: time.Now(), fail: true}
		s := NewSpeaker(w, testConfig(), func() bool { return true }, nil, zaptest.NewLogger(t))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()
		time.Sleep(2500 * time.Millisecond)
		w.mu.Lock()
		w.fail = false
		w.mu.Unlock()
		time.Sleep(time.Second)
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v", err)
		}
		if got, want := s.Stats(), (SpeakerStats{Sent: 1, Failed: 3}); got != want {
			t.Errorf("Stats = %+v, want %+v", got, want)
		}
		if got, want := w.String(), "3s prio=150"; got != want {
			t.Errorf("adverts %q, want %q", got, want)
		}
	})
}

func TestSpeakerResign(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &fakeWire{t0: time.Now()}
		var sc script
		sc.on.Store(true)
		s := NewSpeaker(w, testConfig(), sc.enabled, nil, zaptest.NewLogger(t))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()
		time.Sleep(1500 * time.Millisecond)
		if err := s.Resign(ctx); err != nil {
			t.Fatalf("Resign = %v", err)
		}
		// Still enabled, but resigned: silent.
		time.Sleep(2950 * time.Millisecond)
		// Disabled then enabled again: re-armed.
		sc.on.Store(false)
		time.Sleep(600 * time.Millisecond)
		sc.on.Store(true)
		time.Sleep(1100 * time.Millisecond)
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v", err)
		}
		want := strings.Join([]string{
			"0s prio=150", "1s prio=150",
			"1.5s prio=0", "1.52s prio=0", "1.54s prio=0",
			"5.1s prio=150", "6.1s prio=150",
		}, "\n")
		if got := w.String(); got != want {
			t.Errorf("adverts:\n%s\nwant:\n%s", got, want)
		}
	})
}

func TestSpeakerResignFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &fakeWire{fail: true}
		s := NewSpeaker(w, testConfig(), func() bool { return false }, nil, zaptest.NewLogger(t))
		if err := s.Resign(t.Context()); err == nil {
			t.Fatal("Resign with a failing wire returned nil")
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		w.fail = false
		if err := s.Resign(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Resign with a done ctx = %v, want context.Canceled", err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		give func(c *Config)
		want string // substring of the error; "" = valid
	}{
		{name: "valid", give: func(c *Config) {}},
		{name: "valid v3 centiseconds", give: func(c *Config) { c.Version = 3; c.AuthPass = ""; c.AdvertInt = 250 * time.Millisecond }},
		{name: "no interface", give: func(c *Config) { c.Interface = "" }, want: "interface: must be set"},
		{name: "version 4", give: func(c *Config) { c.Version = 4 }, want: "version: must be 2 or 3"},
		{name: "vrid 0", give: func(c *Config) { c.VRID = 0 }, want: "virtual_router_id"},
		{name: "priority 255", give: func(c *Config) { c.Priority = 255 }, want: "priority: must be 1..254"},
		{name: "priority 0", give: func(c *Config) { c.Priority = 0 }, want: "priority: must be 1..254"},
		{name: "v2 fractional interval", give: func(c *Config) { c.AdvertInt = 1500 * time.Millisecond }, want: "advert_int: v2"},
		{name: "v3 5ms interval", give: func(c *Config) { c.Version = 3; c.AuthPass = ""; c.AdvertInt = 5 * time.Millisecond }, want: "advert_int: v3"},
		{name: "long password", give: func(c *Config) { c.AuthPass = "123456789" }, want: "auth_pass: at most 8 bytes"},
		{name: "v3 password", give: func(c *Config) { c.Version = 3 }, want: "auth_pass: only VRRPv2"},
		{name: "no VIPs", give: func(c *Config) { c.VIPs = nil }, want: "vips: need 1..255"},
		{name: "IPv6 VIP", give: func(c *Config) { c.VIPs = addrs("2001:db8::1") }, want: "vips[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			tt.give(&c)
			err := c.Validate()
			if got := fmt.Sprint(err); (tt.want == "" && err != nil) || !strings.Contains(got, tt.want) {
				t.Errorf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestMasterDownInterval(t *testing.T) {
	tests := []struct {
		version int
		intv    time.Duration
		prio    uint8
		want    time.Duration
	}{
		{version: 2, intv: time.Second, prio: 100, want: 3609375 * time.Microsecond},
		{version: 2, intv: 5 * time.Second, prio: 100, want: 15609375 * time.Microsecond},
		{version: 3, intv: 5 * time.Second, prio: 100, want: 18046875 * time.Microsecond},
		{version: 3, intv: time.Second, prio: 255, want: 3003906250 * time.Nanosecond},
	}
	for _, tt := range tests {
		c := Config{Version: tt.version, AdvertInt: tt.intv}
		if got := c.MasterDownInterval(tt.prio); got != tt.want {
			t.Errorf("v%d %s prio %d: MasterDownInterval = %s, want %s", tt.version, tt.intv, tt.prio, got, tt.want)
		}
	}
}
