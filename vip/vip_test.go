package vip

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/vishvananda/netlink"
	"go.uber.org/zap/zaptest"
)

var (
	vipA = netip.MustParsePrefix("198.18.0.10/32")
	vipB = netip.MustParsePrefix("198.18.0.11/32")
	vipC = netip.MustParsePrefix("198.18.7.7/24")
	// hostAddr and foreign are on the interface but not managed; Set must never touch them.
	hostAddr = "198.18.0.1/24"
	foreign  = "198.18.0.10/24" // same IP as vipA, other prefix length: a different address
)

// newTestManager builds a Manager on a fake interface "eth0" that already carries two
// unmanaged addresses.
func newTestManager(t *testing.T, opts Options) (*Manager, *fakeLinks, *fakeDialer) {
	t.Helper()
	if opts.Interface == "" {
		opts.Interface = "eth0"
	}
	if opts.Managed == nil {
		opts.Managed = []netip.Prefix{vipA, vipB, vipC}
	}
	opts, err := opts.validate()
	if err != nil {
		t.Fatalf("validate: %v", err)
	}
	fl := newFakeLinks("eth0", hostAddr, foreign)
	fd := &fakeDialer{}
	return newManager(opts, zaptest.NewLogger(t), fl, fd.dial), fl, fd
}

// base is the fake's dump line for the unmanaged addresses.
const base = "ip addr add 198.18.0.1/24 dev eth0\nip addr add 198.18.0.10/24 dev eth0"

// setStates is the table of desired states; want is the fake's full dump afterwards.
var setStates = []struct {
	name string
	give []netip.Prefix
	want string
}{
	{
		name: "none",
		give: nil,
		want: base,
	},
	{
		name: "A",
		give: []netip.Prefix{vipA},
		want: base + "\nip addr add 198.18.0.10/32 dev eth0 label eth0:vip valid_lft 2 preferred_lft 2",
	},
	{
		name: "B",
		give: []netip.Prefix{vipB},
		want: base + "\nip addr add 198.18.0.11/32 dev eth0 label eth0:vip valid_lft 2 preferred_lft 2",
	},
	{
		name: "A+B",
		give: []netip.Prefix{vipB, vipA},
		want: base + "\nip addr add 198.18.0.10/32 dev eth0 label eth0:vip valid_lft 2 preferred_lft 2" +
			"\nip addr add 198.18.0.11/32 dev eth0 label eth0:vip valid_lft 2 preferred_lft 2",
	},
	{
		name: "A+B+C",
		give: []netip.Prefix{vipA, vipB, vipC, vipA},
		want: base + "\nip addr add 198.18.0.10/32 dev eth0 label eth0:vip valid_lft 2 preferred_lft 2" +
			"\nip addr add 198.18.0.11/32 dev eth0 label eth0:vip valid_lft 2 preferred_lft 2" +
			"\nip addr add 198.18.7.7/24 dev eth0 label eth0:vip valid_lft 2 preferred_lft 2",
	},
	{
		name: "C",
		give: []netip.Prefix{vipC},
		want: base + "\nip addr add 198.18.7.7/24 dev eth0 label eth0:vip valid_lft 2 preferred_lft 2",
	},
}

var testOpts = Options{Label: "eth0:vip", KernelLease: 1500 * time.Millisecond, GARPRepeat: 3, GARPInterval: 20 * time.Millisecond}

// checkTransition runs one Set from the fake's current state and checks Result, GARPs
// and the final dump against what the previous state implies.
func checkTransition(t *testing.T, m *Manager, fl *fakeLinks, fd *fakeDialer, give []netip.Prefix, want string) {
	t.Helper()
	before, err := m.Held(t.Context())
	if err != nil {
		t.Fatalf("Held: %v", err)
	}
	sentBefore := len(fd.sent())

	res, err := m.Set(t.Context(), give)
	if err != nil {
		t.Fatalf("Set(%v): %v", give, err)
	}
	if got := fl.String(); got != want {
		t.Fatalf("Set(%v) state:\n%s\nwant:\n%s", give, got, want)
	}

	wantRes := expectResult(m.opts.Managed, before, give)
	if !equalResult(res, wantRes) {
		t.Fatalf("Set(%v) from %v = %+v, want %+v", give, before, res, wantRes)
	}

	garps := fd.sent()[sentBefore:]
	if len(garps) != len(wantRes.Added)*m.opts.GARPRepeat {
		t.Fatalf("Set(%v) from %v sent %d GARPs, want %d (added %v × %d)", give, before, len(garps), len(wantRes.Added)*m.opts.GARPRepeat, wantRes.Added, m.opts.GARPRepeat)
	}
	counts := map[netip.Addr]int{}
	for _, s := range garps {
		checkGARP(t, s, fl.mac)
		counts[s.pkt.SenderIP]++
	}
	for _, p := range wantRes.Added {
		if counts[p.Addr()] != m.opts.GARPRepeat {
			t.Fatalf("GARPs for %s: %d, want %d", p, counts[p.Addr()], m.opts.GARPRepeat)
		}
	}
}

// expectResult is what Set(give) must report when before was held.
func expectResult(managed, before, give []netip.Prefix) Result {
	var r Result
	for _, p := range managed {
		switch {
		case slices.Contains(give, p) && slices.Contains(before, p):
			r.Renewed = append(r.Renewed, p)
		case slices.Contains(give, p):
			r.Added = append(r.Added, p)
		case slices.Contains(before, p):
			r.Removed = append(r.Removed, p)
		}
	}
	return r
}

func equalResult(a, b Result) bool {
	return slices.Equal(a.Added, b.Added) && slices.Equal(a.Renewed, b.Renewed) && slices.Equal(a.Removed, b.Removed)
}

// checkGARP checks the shape of a gratuitous ARP: request, broadcast, sender IP = target
// IP, sender MAC = the NIC, target MAC zero.
func checkGARP(t *testing.T, s sentPacket, mac net.HardwareAddr) {
	t.Helper()
	p := s.pkt
	if p.Operation != arp.OperationRequest || !bytes.Equal(s.dst, ethernet.Broadcast) ||
		p.SenderIP != p.TargetIP || !bytes.Equal(p.SenderHardwareAddr, mac) || !bytes.Equal(p.TargetHardwareAddr, zeroMAC) {
		t.Fatalf("not a gratuitous ARP from %s: %+v to %s", mac, p, s.dst)
	}
}

func TestSetStates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, fl, fd := newTestManager(t, testOpts)
		// The states build on each other, so they run in one bubble, in table order.
		for _, tt := range setStates {
			t.Logf("state %s", tt.name)
			checkTransition(t, m, fl, fd, tt.give, tt.want)
		}
	})
}

func TestSetStatesRandomOrder(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	synctest.Test(t, func(t *testing.T) {
		m, fl, fd := newTestManager(t, testOpts)
		for round := range 200 {
			tt := setStates[rng.IntN(len(setStates))]
			// Sometimes someone changes the interface by hand (or the kernel expires an
			// address) between two Sets; Set must repair it and announce what it re-adds.
			switch rng.IntN(4) {
			case 0:
				fl.handDelete(m.opts.Managed[rng.IntN(len(m.opts.Managed))])
			case 1:
				fl.handAdd(m.opts.Managed[rng.IntN(len(m.opts.Managed))], "eth0:vip")
			}
			t.Logf("round %d: %s (state before:\n%s)", round, tt.name, fl)
			checkTransition(t, m, fl, fd, tt.give, tt.want)
		}
		if n := len(fd.conns); n != 1 {
			t.Errorf("sender opened %d times, want once", n)
		}
	})
}

func TestSetHandDeletedIsReannounced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, fl, fd := newTestManager(t, testOpts)
		give := []netip.Prefix{vipA}
		if _, err := m.Set(t.Context(), give); err != nil {
			t.Fatal(err)
		}
		res, err := m.Set(t.Context(), give)
		if err != nil || !equalResult(res, Result{Renewed: give}) {
			t.Fatalf("renew: %+v, %v", res, err)
		}
		n := len(fd.sent())
		fl.handDelete(vipA)
		res, err = m.Set(t.Context(), give)
		if err != nil || !equalResult(res, Result{Added: give}) {
			t.Fatalf("after hand delete: %+v, %v; want Added %v", res, err, give)
		}
		if got := len(fd.sent()) - n; got != 3 {
			t.Fatalf("after hand delete: %d GARPs, want 3", got)
		}
	})
}

func TestSetUnmanaged(t *testing.T) {
	tests := []struct {
		name string
		give []netip.Prefix
		want string
	}{
		{name: "other address", give: []netip.Prefix{vipA, netip.MustParsePrefix("198.18.0.99/32")}, want: "198.18.0.99/32"},
		{name: "other prefix length", give: []netip.Prefix{netip.MustParsePrefix("198.18.0.10/24")}, want: "198.18.0.10/24"},
		{name: "host address", give: []netip.Prefix{netip.MustParsePrefix(hostAddr)}, want: hostAddr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, fl, fd := newTestManager(t, testOpts)
			if _, err := m.Set(t.Context(), []netip.Prefix{vipB}); err != nil {
				t.Fatal(err)
			}
			state, sent := fl.String(), len(fd.sent())
			res, err := m.Set(t.Context(), tt.give)
			if !errors.Is(err, ErrUnmanaged) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Set(%v) error = %v, want ErrUnmanaged naming %s", tt.give, err, tt.want)
			}
			if !equalResult(res, Result{}) || fl.String() != state || len(fd.sent()) != sent {
				t.Fatalf("Set(%v) changed something: %+v\n%s", tt.give, res, fl)
			}
		})
	}
}

func TestSetPartialFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, fl, _ := newTestManager(t, testOpts)
		if _, err := m.Set(t.Context(), []netip.Prefix{vipC}); err != nil {
			t.Fatal(err)
		}
		fl.failAdd = map[netip.Prefix]error{vipA: errFake}
		res, err := m.Set(t.Context(), []netip.Prefix{vipA, vipB})
		if !errors.Is(err, errFake) || !strings.Contains(err.Error(), vipA.String()) {
			t.Fatalf("error = %v, want the injected failure naming %s", err, vipA)
		}
		want := Result{Added: []netip.Prefix{vipB}, Removed: []netip.Prefix{vipC}}
		if !equalResult(res, want) {
			t.Fatalf("result = %+v, want %+v", res, want)
		}
	})
}

func TestSetGARPFailureStillAdds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, fl, fd := newTestManager(t, testOpts)
		fd.next = &fakeConn{failSend: errFake}
		res, err := m.Set(t.Context(), []netip.Prefix{vipA})
		if !errors.Is(err, errFake) || !equalResult(res, Result{Added: []netip.Prefix{vipA}}) {
			t.Fatalf("Set = %+v, %v; want Added A and the send error", res, err)
		}
		if !strings.Contains(fl.String(), "198.18.0.10/32") {
			t.Fatalf("address missing after GARP failure:\n%s", fl)
		}
		// The broken socket is dropped, and the next acquisition opens a new one.
		fl.handDelete(vipA)
		if _, err := m.Set(t.Context(), []netip.Prefix{vipA}); err != nil {
			t.Fatalf("Set after send failure: %v", err)
		}
		if len(fd.conns) != 2 {
			t.Fatalf("dials = %d, want 2", len(fd.conns))
		}
	})
}

func TestGARPTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, _, fd := newTestManager(t, Options{GARPRepeat: 4, GARPInterval: 30 * time.Millisecond})
		start := time.Now()
		if _, err := m.Set(t.Context(), []netip.Prefix{vipA, vipB}); err != nil {
			t.Fatal(err)
		}
		sent := fd.sent()
		if len(sent) != 8 {
			t.Fatalf("sent %d, want 8", len(sent))
		}
		for i, s := range sent {
			wantAt := start.Add(time.Duration(i/2) * 30 * time.Millisecond)
			wantIP := []netip.Prefix{vipA, vipB}[i%2].Addr()
			if !s.at.Equal(wantAt) || s.pkt.SenderIP != wantIP {
				t.Errorf("GARP %d: %s at +%s, want %s at +%s", i, s.pkt.SenderIP, s.at.Sub(start), wantIP, wantAt.Sub(start))
			}
		}
	})
}

func TestGARPCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, _, fd := newTestManager(t, testOpts)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
		defer cancel()
		res, err := m.Set(ctx, []netip.Prefix{vipA})
		if !errors.Is(err, context.DeadlineExceeded) || len(res.Added) != 1 {
			t.Fatalf("Set = %+v, %v; want Added A and a deadline error", res, err)
		}
		if n := len(fd.sent()); n != 1 {
			t.Fatalf("sent %d GARPs before the deadline, want 1", n)
		}
	})
}

func TestAnnounce(t *testing.T) {
	tests := []struct {
		name    string
		held    []netip.Prefix
		give    netip.Prefix
		wantErr error
		wantN   int
	}{
		{name: "held", held: []netip.Prefix{vipA}, give: vipA, wantN: 3},
		{name: "not held", held: []netip.Prefix{vipB}, give: vipA, wantErr: ErrNotHeld},
		{name: "unmanaged", held: []netip.Prefix{vipA}, give: netip.MustParsePrefix("198.18.0.10/24"), wantErr: ErrUnmanaged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m, _, fd := newTestManager(t, testOpts)
				if _, err := m.Set(t.Context(), tt.held); err != nil {
					t.Fatal(err)
				}
				n := len(fd.sent())
				err := m.Announce(t.Context(), tt.give)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Announce(%s) = %v, want %v", tt.give, err, tt.wantErr)
				}
				if got := len(fd.sent()) - n; got != tt.wantN {
					t.Fatalf("Announce(%s) sent %d, want %d", tt.give, got, tt.wantN)
				}
			})
		})
	}
}

func TestHeld(t *testing.T) {
	m, fl, _ := newTestManager(t, Options{})
	fl.handAdd(vipC, "")
	fl.handAdd(vipA, "")
	got, err := m.Held(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// Managed order, and the unmanaged 198.18.0.10/24 (same IP as A) does not count.
	if want := []netip.Prefix{vipA, vipC}; !slices.Equal(got, want) {
		t.Fatalf("Held = %v, want %v", got, want)
	}
}

func TestPermanentWhenNoLease(t *testing.T) {
	m, fl, _ := newTestManager(t, Options{GARPInterval: time.Nanosecond})
	if _, err := m.Set(t.Context(), []netip.Prefix{vipB}); err != nil {
		t.Fatal(err)
	}
	if want := base + "\nip addr add 198.18.0.11/32 dev eth0"; fl.String() != want {
		t.Fatalf("state:\n%s\nwant:\n%s", fl, want)
	}
}

func TestClosed(t *testing.T) {
	m, _, _ := newTestManager(t, Options{})
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Set(t.Context(), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Set after Close = %v", err)
	}
	if _, err := m.Held(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Held after Close = %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestLeaseSeconds(t *testing.T) {
	tests := []struct {
		give time.Duration
		want int
	}{
		{give: 0, want: 0},
		{give: -time.Second, want: 0},
		{give: time.Nanosecond, want: 1},
		{give: time.Second, want: 1},
		{give: time.Second + time.Millisecond, want: 2},
		{give: 1500 * time.Millisecond, want: 2},
		{give: 2 * time.Second, want: 2},
		{give: 200 * 365 * 24 * time.Hour, want: 1<<32 - 2},
	}
	for _, tt := range tests {
		if got := leaseSeconds(tt.give); got != tt.want {
			t.Errorf("leaseSeconds(%s) = %d, want %d", tt.give, got, tt.want)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	good := Options{Interface: "eth0", Managed: []netip.Prefix{vipA}}
	tests := []struct {
		name string
		give func(o *Options)
		want string // substring of the error, "" = valid
	}{
		{name: "ok", give: func(o *Options) {}},
		{name: "ok label", give: func(o *Options) { o.Label = "eth0:vip" }},
		{name: "no interface", give: func(o *Options) { o.Interface = "" }, want: "Interface: must be set"},
		{name: "ipv6", give: func(o *Options) { o.Managed = []netip.Prefix{netip.MustParsePrefix("2001:db8::1/128")} }, want: "only IPv4"},
		{name: "duplicate", give: func(o *Options) { o.Managed = []netip.Prefix{vipA, vipA} }, want: "duplicate"},
		{name: "invalid prefix", give: func(o *Options) { o.Managed = []netip.Prefix{{}} }, want: "Managed[0]: invalid"},
		{name: "label prefix", give: func(o *Options) { o.Label = "vip" }, want: "Label"},
		{name: "label length", give: func(o *Options) { o.Label = "eth0:0123456789a" }, want: "Label"},
		{name: "negative lease", give: func(o *Options) { o.KernelLease = -1 }, want: "KernelLease"},
		{name: "negative repeat", give: func(o *Options) { o.GARPRepeat = -1 }, want: "GARPRepeat"},
		{name: "negative interval", give: func(o *Options) { o.GARPInterval = -1 }, want: "GARPInterval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good
			o.Managed = slices.Clone(good.Managed)
			tt.give(&o)
			got, err := o.validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				if got.GARPRepeat != DefaultGARPRepeat || got.GARPInterval != DefaultGARPInterval {
					t.Fatalf("defaults not applied: %+v", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("validate error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestPrefixOf(t *testing.T) {
	tests := []struct {
		give   netlink.Addr
		want   netip.Prefix
		wantOK bool
	}{
		{give: netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(198, 18, 0, 10).To4(), Mask: net.CIDRMask(32, 32)}}, want: vipA, wantOK: true},
		{give: netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(198, 18, 7, 7), Mask: net.CIDRMask(120, 128)}}, want: vipC, wantOK: true},
		{give: netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("2001:db8::1"), Mask: net.CIDRMask(128, 128)}}},
		{give: netlink.Addr{}},
	}
	for _, tt := range tests {
		got, ok := prefixOf(tt.give)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("prefixOf(%v) = %v, %v; want %v, %v", tt.give, got, ok, tt.want, tt.wantOK)
		}
	}
}

// interruptedLinks returns ErrDumpInterrupted from its first n dumps.
type interruptedLinks struct {
	*fakeLinks
	n, calls int
}

func (l *interruptedLinks) AddrList(link netlink.Link, family int) ([]netlink.Addr, error) {
	l.calls++
	addrs, err := l.fakeLinks.AddrList(link, family)
	if err == nil && l.calls <= l.n {
		// A partial, inconsistent dump.
		return addrs[:1], netlink.ErrDumpInterrupted
	}
	return addrs, err
}

func TestNLLinksRetriesInterruptedDump(t *testing.T) {
	tests := []struct {
		name      string
		give      int // interrupted dumps before a clean one
		wantCalls int
		wantN     int
	}{
		{name: "clean", give: 0, wantCalls: 1, wantN: 2},
		{name: "one interruption", give: 1, wantCalls: 2, wantN: 2},
		{name: "always interrupted: accept the last dump", give: 100, wantCalls: dumpAttempts, wantN: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := &interruptedLinks{fakeLinks: newFakeLinks("eth0", hostAddr, foreign), n: tt.give}
			l := &nlLinks{h: inner, log: zaptest.NewLogger(t)}
			link, err := l.LinkByName("eth0")
			if err != nil {
				t.Fatal(err)
			}
			addrs, err := l.AddrList(link, netlink.FAMILY_V4)
			if err != nil || len(addrs) != tt.wantN || inner.calls != tt.wantCalls {
				t.Fatalf("AddrList = %d addrs, %v after %d calls; want %d addrs after %d calls", len(addrs), err, inner.calls, tt.wantN, tt.wantCalls)
			}
		})
	}
}

// TestReleaseResetsConnections: every managed VIP that Set removes has its TCP connections
// reset while the address is still on the interface (the kernel sends a reset only from an
// address it has); a renewal and a VIP that was not there reset nothing.
func TestReleaseResetsConnections(t *testing.T) {
	m, fl, _ := newTestManager(t, testOpts)
	type call struct {
		addr    netip.Addr
		present bool
	}
	var calls []call
	m.reset = func(a netip.Addr) (int, error) {
		present := false
		for _, p := range []netip.Prefix{vipA, vipB, vipC} {
			present = present || p.Addr() == a && fl.find(p) >= 0
		}
		calls = append(calls, call{a, present})
		return 1, nil
	}
	if _, err := m.Set(t.Context(), []netip.Prefix{vipA, vipB}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Set(t.Context(), []netip.Prefix{vipA, vipB}); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 0 {
		t.Fatalf("acquisition and renewal reset %+v, want nothing", calls)
	}
	if _, err := m.Set(t.Context(), []netip.Prefix{vipA}); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 || calls[0].addr != vipB.Addr() || !calls[0].present {
		t.Fatalf("releasing %s reset %+v, want one reset of it while still present", vipB, calls)
	}
	m.reset = func(netip.Addr) (int, error) { return 0, errors.New("no INET_DIAG_DESTROY") }
	if res, err := m.Set(t.Context(), nil); err != nil || !equalResult(res, Result{Removed: []netip.Prefix{vipA}}) {
		t.Fatalf("a failed reset must not fail the release: %+v, %v", res, err)
	}
}
