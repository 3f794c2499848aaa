package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

// fakeAir delivers scripted reads to a Listener; when the script is exhausted it blocks
// until ctx ends.
type fakeAir struct {
	reads []airRead
}

type airRead struct {
	after time.Duration // wait before delivering
	p     *Packet
	m     Meta
	err   error
}

func (f *fakeAir) ReadAdvert(ctx context.Context) (*Packet, Meta, error) {
	if len(f.reads) == 0 {
		<-ctx.Done()
		return nil, Meta{}, ctx.Err()
	}
	r := f.reads[0]
	f.reads = f.reads[1:]
	select {
	case <-ctx.Done():
		return nil, Meta{}, ctx.Err()
	case <-time.After(r.after):
	}
	r.m.At = time.Now()
	return r.p, r.m, r.err
}

var (
	kaSrc   = netip.MustParseAddr("198.18.2.1")
	selfSrc = netip.MustParseAddr("198.18.2.2")
)

// kaAdvert is what a keepalived peer configured like testConfig sends.
func kaAdvert(mut func(p *Packet)) *Packet {
	c := testConfig()
	p := c.Advert(100)
	if mut != nil {
		mut(p)
	}
	return p
}

func TestListenerDrops(t *testing.T) {
	good := Meta{Src: kaSrc, Dst: IPv4Group, TTL: 255}
	tests := []struct {
		name string
		give airRead
		want DropReason // "" = accepted
	}{
		{name: "keepalived advert", give: airRead{p: kaAdvert(nil), m: good}},
		{name: "resign advert accepted", give: airRead{p: kaAdvert(func(p *Packet) { p.Priority = 0 }), m: good}},
		{name: "short", give: airRead{m: good, err: fmt.Errorf("from x: %w", ErrShort)}, want: DropShort},
		{name: "bad checksum", give: airRead{m: good, err: fmt.Errorf("from x: %w: 0x1234", ErrChecksum)}, want: DropChecksum},
		{name: "unknown version", give: airRead{m: good, err: fmt.Errorf("%w: 4", ErrVersion)}, want: DropVersion},
		{name: "type 2", give: airRead{m: good, err: ErrType}, want: DropType},
		{name: "length vs count", give: airRead{m: good, err: ErrAddrCount}, want: DropAddrCount},
		{name: "auth type 7", give: airRead{m: good, err: ErrAuth}, want: DropAuth},
		{name: "vrid 0", give: airRead{m: good, err: ErrVRID}, want: DropMalformed},
		{name: "own advert", give: airRead{p: kaAdvert(nil), m: Meta{Src: selfSrc, TTL: 255}}, want: DropSelf},
		{name: "TTL 254", give: airRead{p: kaAdvert(nil), m: Meta{Src: kaSrc, TTL: 254}}, want: DropTTL},
		{name: "TTL 1", give: airRead{p: kaAdvert(nil), m: Meta{Src: kaSrc, TTL: 1}}, want: DropTTL},
		{name: "v3 peer", give: airRead{p: kaAdvert(func(p *Packet) { p.Version = 3; p.AuthType = 0; p.AuthData = [8]byte{} }), m: good}, want: DropVersion},
		{name: "other VRID", give: airRead{p: kaAdvert(func(p *Packet) { p.VRID = 52 }), m: good}, want: DropOtherVRID},
		{name: "wrong password", give: airRead{p: kaAdvert(func(p *Packet) { p.AuthData = AuthString("2222") }), m: good}, want: DropAuth},
		{name: "no auth", give: airRead{p: kaAdvert(func(p *Packet) { p.AuthType = 0; p.AuthData = [8]byte{} }), m: good}, want: DropAuth},
		{name: "v2 advert_int 5s", give: airRead{p: kaAdvert(func(p *Packet) { p.AdvertInt = 5 * time.Second }), m: good}, want: DropAdvertInt},
		{name: "extra VIP", give: airRead{p: kaAdvert(func(p *Packet) { p.Addresses = addrs("198.18.2.100", "198.18.2.101") }), m: good}, want: DropAddrCount},
		{name: "no VIP", give: airRead{p: kaAdvert(func(p *Packet) { p.Addresses = nil }), m: good}, want: DropAddrCount},
		{name: "other VIP", give: airRead{p: kaAdvert(func(p *Packet) { p.Addresses = addrs("198.18.2.101") }), m: good}, want: DropAddresses},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var seen []Router
				l := NewListener(&fakeAir{reads: []airRead{tt.give}}, testConfig(), []netip.Addr{selfSrc},
					func(r Router) { seen = append(seen, r) }, zaptest.NewLogger(t))
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan error)
				go func() { done <- l.Run(ctx) }()
				synctest.Wait()
				cancel()
				if err := <-done; err != nil {
					t.Fatalf("Run = %v", err)
				}
				st := l.Stats()
				wantStats := Stats{Received: 1, Accepted: 1, Dropped: map[DropReason]uint64{}}
				if tt.want != "" {
					wantStats = Stats{Received: 1, Dropped: map[DropReason]uint64{tt.want: 1}}
				}
				if fmt.Sprint(st) != fmt.Sprint(wantStats) {
					t.Errorf("Stats = %+v, want %+v", st, wantStats)
				}
				if got := len(seen); got != int(wantStats.Accepted) {
					t.Errorf("onForeign called %d times, want %d", got, wantStats.Accepted)
				}
			})
		})
	}
}

// TestListenerTracksRouters checks the router table and when onForeign fires.
func TestListenerTracksRouters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		good := Meta{Src: kaSrc, TTL: 255}
		other := Meta{Src: netip.MustParseAddr("198.18.2.3"), TTL: 255}
		air := &fakeAir{reads: []airRead{
			{after: 0, p: kaAdvert(nil), m: good},                                          // new: notify
			{after: time.Second, p: kaAdvert(nil), m: good},                                // same: quiet
			{after: time.Second, p: kaAdvert(nil), m: good},                                // same: quiet
			{after: time.Second, p: kaAdvert(func(p *Packet) { p.Priority = 0 }), m: good}, // resign: notify
			{after: 10 * time.Second, p: kaAdvert(nil), m: good},                           // back after silence: notify
			{after: time.Second, p: kaAdvert(func(p *Packet) { p.VRID = 9 }), m: other},    // other VRID: tracked, no notify
		}}
		var notes []string
		start := time.Now()
		l := NewListener(air, testConfig(), nil, func(r Router) {
			notes = append(notes, fmt.Sprintf("%s %s prio=%d count=%d", time.Since(start), r.Src, r.Priority, r.Count))
		}, zaptest.NewLogger(t))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- l.Run(ctx) }()
		time.Sleep(20 * time.Second)
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v", err)
		}
		want := strings.Join([]string{
			"0s 198.18.2.1 prio=100 count=1",
			"3s 198.18.2.1 prio=0 count=4",
			"13s 198.18.2.1 prio=100 count=5",
		}, "\n")
		if got := strings.Join(notes, "\n"); got != want {
			t.Errorf("onForeign:\n%s\nwant:\n%s", got, want)
		}
		rs := l.Routers()
		var got []string
		for _, r := range rs {
			got = append(got, fmt.Sprintf("vrid=%d %s prio=%d v%d %s %v seen=%s count=%d",
				r.VRID, r.Src, r.Priority, r.Version, r.AdvertInt, r.Addresses, r.LastSeen.Sub(start), r.Count))
		}
		wantR := []string{
			"vrid=9 198.18.2.3 prio=100 v2 1s [198.18.2.100] seen=14s count=1",
			"vrid=51 198.18.2.1 prio=100 v2 1s [198.18.2.100] seen=13s count=5",
		}
		if !slices.Equal(got, wantR) {
			t.Errorf("Routers:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantR, "\n"))
		}
		if st := l.Stats(); st.Received != 6 || st.Accepted != 5 || st.Dropped[DropOtherVRID] != 1 {
			t.Errorf("Stats = %+v", st)
		}
	})
}

func TestListenerRateLimitsWarnings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var reads []airRead
		for range 100 {
			reads = append(reads, airRead{after: time.Second, m: Meta{Src: kaSrc, TTL: 255}, err: ErrChecksum})
		}
		core, logs := observer.New(zap.DebugLevel)
		l := NewListener(&fakeAir{reads: reads}, testConfig(), nil, nil, zap.New(core))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- l.Run(ctx) }()
		time.Sleep(101 * time.Second)
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v", err)
		}
		warns := logs.FilterLevelExact(zap.WarnLevel).Len()
		debugs := logs.FilterLevelExact(zap.DebugLevel).Len()
		// Drops at 1..100 s; warnings at 1, 31, 61, 91 s.
		if warns != 4 || debugs != 96 {
			t.Errorf("warn %d debug %d, want 4 and 96", warns, debugs)
		}
		if got := l.Stats().Dropped[DropChecksum]; got != 100 {
			t.Errorf("checksum drops %d, want 100", got)
		}
	})
}

func TestListenerReturnsSocketErrors(t *testing.T) {
	sockErr := errors.New("socket closed")
	l := NewListener(&fakeAir{reads: []airRead{{err: sockErr}}}, testConfig(), nil, nil, zap.NewNop())
	if err := l.Run(t.Context()); !errors.Is(err, sockErr) {
		t.Fatalf("Run = %v, want %v", err, sockErr)
	}
}

func TestSameAddrs(t *testing.T) {
	tests := []struct {
		a, b []netip.Addr
		want bool
	}{
		{a: addrs("198.18.2.1", "198.18.2.2"), b: addrs("198.18.2.2", "198.18.2.1"), want: true},
		{a: addrs("198.18.2.1"), b: addrs("::ffff:198.18.2.1"), want: true},
		{a: addrs("198.18.2.1", "198.18.2.1"), b: addrs("198.18.2.1", "198.18.2.2"), want: false},
		{a: nil, b: addrs("198.18.2.1"), want: false},
		{a: nil, b: nil, want: true},
	}
	for _, tt := range tests {
		if got := sameAddrs(tt.a, tt.b); got != tt.want {
			t.Errorf("sameAddrs(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
