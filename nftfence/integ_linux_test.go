package nftfence

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/keepraft/keepraft/internal/netnsdo"
	"github.com/keepraft/keepraft/testenv"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

var (
	macA  = net.HardwareAddr{0x02, 0x00, 0xc6, 0x12, 0x01, 0x01}
	macB  = net.HardwareAddr{0x02, 0x00, 0xc6, 0x12, 0x01, 0x02}
	addrB = netip.MustParseAddr("198.18.1.2")
	vip   = netip.MustParseAddr("198.18.1.100")
)

// nsPair is two fresh, unnamed network namespaces joined by a veth pair: "va"
// (198.18.1.1/24 and the VIP 198.18.1.100/32) in a, where the fence works, and "vb"
// (198.18.1.2/24) in b, the peer. Static neighbour entries on both sides keep ARP out of
// the ICMP measurements. The namespaces disappear when the test closes its handles and
// sockets.
type nsPair struct {
	a, b   netns.NsHandle
	ha, hb *netlink.Handle
}

func newPair(t *testing.T) *nsPair {
	t.Helper()
	testenv.Require(t)
	p := &nsPair{a: newNS(t), b: newNS(t)}
	var err error
	if p.ha, err = netlink.NewHandleAt(p.a); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.ha.Close)
	if p.hb, err = netlink.NewHandleAt(p.b); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.hb.Close)
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: "va", HardwareAddr: macA},
		PeerName:         "vb",
		PeerHardwareAddr: macB,
		PeerNamespace:    netlink.NsFd(int(p.b)),
	}
	if err := p.ha.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	setup(t, p.ha, "va", []string{"198.18.1.1/24", vip.String() + "/32"}, macB, addrB)
	setup(t, p.hb, "vb", []string{"198.18.1.2/24"}, macA, vip)
	return p
}

// newNS creates a namespace on a locked thread (netnsdo.OnThread moves the thread back)
// and closes the handle at cleanup; the namespace goes with its last reference.
func newNS(t *testing.T) netns.NsHandle {
	t.Helper()
	var ns netns.NsHandle
	err := netnsdo.OnThread(func() error {
		var err error
		ns, err = netns.New()
		return err
	})
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	return ns
}

// setup brings link and lo up with addrs and a permanent neighbour entry mac for neigh.
func setup(t *testing.T, h *netlink.Handle, name string, addrs []string, mac net.HardwareAddr, neigh netip.Addr) {
	t.Helper()
	link, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range addrs {
		a, err := netlink.ParseAddr(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.AddrAdd(link, a); err != nil {
			t.Fatalf("add %s to %s: %v", s, name, err)
		}
	}
	for _, l := range []string{name, "lo"} {
		ll, err := h.LinkByName(l)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(ll); err != nil {
			t.Fatal(err)
		}
	}
	n := &netlink.Neigh{LinkIndex: link.Attrs().Index, State: netlink.NUD_PERMANENT, IP: neigh.AsSlice(), HardwareAddr: mac, Family: netlink.FAMILY_V4}
	if err := h.NeighSet(n); err != nil {
		t.Fatalf("set neighbour %s on %s: %v", neigh, name, err)
	}
}

func (p *nsPair) fence(t *testing.T) *Fence {
	t.Helper()
	f, err := New(Options{Interface: "va", VIPs: []netip.Prefix{netip.PrefixFrom(vip, 32)}, NetNS: p.a, CheckInterval: 200 * time.Millisecond}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := f.Remove(); err != nil && !errors.Is(err, ErrRemoved) {
			t.Errorf("Remove: %v", err)
		}
	})
	return f
}

// nft runs the nft command inside ns only (nsenter on a duplicate of the handle).
func nft(t *testing.T, ns netns.NsHandle, args ...string) string {
	t.Helper()
	fd, err := unix.Dup(int(ns))
	if err != nil {
		t.Fatal(err)
	}
	file := os.NewFile(uintptr(fd), "netns")
	defer file.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=/proc/self/fd/3", "nft"}, args...)...)
	cmd.ExtraFiles = []*os.File{file}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s in test netns: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// pinger sends ICMP echo requests from its namespace every interval and records which
// were answered. Its two goroutines end in Stop.
type pinger struct {
	conn  *icmp.PacketConn
	dst   *net.IPAddr
	id    int
	every time.Duration
	stop  chan struct{}
	done  atomic.Bool
	wg    sync.WaitGroup

	mu     sync.Mutex
	probes []probe // index = sequence number
}

type probe struct {
	sent     time.Time
	answered bool
}

func startPinger(t *testing.T, ns netns.NsHandle, src, dst netip.Addr, every time.Duration) *pinger {
	t.Helper()
	var c *icmp.PacketConn
	if err := netnsdo.Do(ns, func() error {
		var err error
		c, err = icmp.ListenPacket("ip4:icmp", src.String())
		return err
	}); err != nil {
		t.Fatalf("open ICMP socket on %s: %v", src, err)
	}
	p := &pinger{conn: c, dst: &net.IPAddr{IP: dst.AsSlice()}, id: os.Getpid() & 0xffff, every: every, stop: make(chan struct{})}
	p.wg.Add(2)
	go p.send(t)
	go p.receive()
	t.Cleanup(func() { p.Stop() })
	return p
}

func (p *pinger) send(t *testing.T) {
	defer p.wg.Done()
	tick := time.NewTicker(p.every)
	defer tick.Stop()
	for seq := 0; seq < 0xffff; seq++ {
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: p.id, Seq: seq, Data: []byte("keepraft-fence")}}
		b, err := msg.Marshal(nil)
		if err != nil {
			t.Error(err)
			return
		}
		p.mu.Lock()
		p.probes = append(p.probes, probe{sent: time.Now()})
		p.mu.Unlock()
		if _, err := p.conn.WriteTo(b, p.dst); err != nil && !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.ENOBUFS) {
			// EPERM and ENOBUFS are drops by a netfilter hook.
			t.Errorf("send echo %d: %v", seq, err)
			return
		}
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
	}
}

func (p *pinger) receive() {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		_ = p.conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		n, from, err := p.conn.ReadFrom(buf)
		if err != nil {
			if p.done.Load() {
				return
			}
			continue
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		e, ok := m.Body.(*icmp.Echo)
		if !ok || e.ID != p.id || from.String() != p.dst.String() {
			continue
		}
		p.mu.Lock()
		if e.Seq < len(p.probes) {
			p.probes[e.Seq].answered = true
		}
		p.mu.Unlock()
	}
}

// Stop stops sending, waits 30 ms for late replies and returns every probe. It is
// idempotent.
func (p *pinger) Stop() []probe {
	if !p.done.Load() {
		close(p.stop)
		time.Sleep(30 * time.Millisecond)
		p.done.Store(true)
		p.wg.Wait()
		_ = p.conn.Close()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]probe(nil), p.probes...)
}

// answered counts the answered probes sent in [from, to).
func answered(ps []probe, from, to time.Time) (yes, no int) {
	for _, pr := range ps {
		if pr.sent.Before(from) || !pr.sent.Before(to) {
			continue
		}
		if pr.answered {
			yes++
		} else {
			no++
		}
	}
	return yes, no
}

// cutoff returns the send time of the last answered probe and of the first unanswered
// probe after it.
func cutoff(ps []probe) (lastYes, firstNo time.Time) {
	for _, pr := range ps {
		if pr.answered {
			lastYes = pr.sent
		}
	}
	for _, pr := range ps {
		if !pr.answered && pr.sent.After(lastYes) {
			return lastYes, pr.sent
		}
	}
	return lastYes, time.Time{}
}

// reach is one way traffic for the VIP can pass; it reports whether it got through
// within 100 ms.
type reach struct {
	name string
	try  func(t *testing.T, p *nsPair) bool
}

var reaches = []reach{
	{"peer pings the VIP (IP in and out)", func(t *testing.T, p *nsPair) bool {
		pg := startPinger(t, p.b, addrB, vip, 5*time.Millisecond)
		time.Sleep(100 * time.Millisecond)
		yes, _ := answered(pg.Stop(), time.Time{}, time.Now())
		return yes > 0
	}},
	{"peer ARPs for the VIP (ARP in, reply out)", func(t *testing.T, p *nsPair) bool {
		c := arpClient(t, p.b, "vb")
		_ = c.SetDeadline(time.Now().Add(100 * time.Millisecond))
		mac, err := c.Resolve(vip)
		if err == nil && mac.String() != macA.String() {
			t.Errorf("ARP reply for %s from %s, want %s", vip, mac, macA)
		}
		return err == nil
	}},
	{"gratuitous ARP from the VIP (ARP out)", func(t *testing.T, p *nsPair) bool {
		listen := arpClient(t, p.b, "vb")
		send := arpClient(t, p.a, "va")
		pkt, err := arp.NewPacket(arp.OperationRequest, macA, vip, ethernet.Broadcast, vip)
		if err != nil {
			t.Fatal(err)
		}
		if err := send.WriteTo(pkt, ethernet.Broadcast); errors.Is(err, syscall.ENOBUFS) {
			return false // dropped by the egress hook: the packet socket says so
		} else if err != nil {
			t.Fatal(err)
		}
		_ = listen.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		for {
			got, _, err := listen.Read()
			if err != nil {
				return false
			}
			if got.SenderIP == vip {
				return true
			}
		}
	}},
	{"echo request from the VIP reaches the peer (IP out)", func(t *testing.T, p *nsPair) bool {
		// The peer's raw socket sees incoming echo requests; the reply is not needed.
		var listen *icmp.PacketConn
		if err := netnsdo.Do(p.b, func() error {
			var err error
			listen, err = icmp.ListenPacket("ip4:icmp", addrB.String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer listen.Close()
		pg := startPinger(t, p.a, vip, addrB, 20*time.Millisecond)
		defer pg.Stop()
		buf := make([]byte, 1500)
		_ = listen.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		for {
			n, from, err := listen.ReadFrom(buf)
			if err != nil {
				return false
			}
			if m, err := icmp.ParseMessage(1, buf[:n]); err == nil && m.Type == ipv4.ICMPTypeEcho && from.String() == vip.String() {
				return true
			}
		}
	}},
}

func arpClient(t *testing.T, ns netns.NsHandle, ifname string) *arp.Client {
	t.Helper()
	var c *arp.Client
	if err := netnsdo.Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		c, err = arp.Dial(ifi)
		return err
	}); err != nil {
		t.Fatalf("open ARP socket on %s: %v", ifname, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// checkReaches runs every reach and compares with want.
func checkReaches(t *testing.T, p *nsPair, state string, want bool) {
	t.Helper()
	for _, r := range reaches {
		if got := r.try(t, p); got != want {
			t.Errorf("%s: %s got through = %v, want %v", state, r.name, got, want)
		}
	}
}

// TestIntegFenceStates: closed, open, shut, removed; each way traffic for the VIP passes.
func TestIntegFenceStates(t *testing.T) {
	p := newPair(t)
	checkReaches(t, p, "no fence", true)
	f := p.fence(t)
	checkReaches(t, p, "new fence (closed)", false)
	if err := f.Open(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	checkReaches(t, p, "open 5s", true)
	if err := f.Shut(); err != nil {
		t.Fatal(err)
	}
	checkReaches(t, p, "shut", false)
	if err := f.Open(0); err != nil {
		t.Fatal(err)
	}
	checkReaches(t, p, "Open(0)", false)
	// A second New replaces the table, closed, even while open.
	if err := f.Open(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	f2 := p.fence(t)
	checkReaches(t, p, "replaced by New", false)
	if err := f2.Check(); err != nil {
		t.Errorf("Check after replace: %v", err)
	}
	t.Logf("ruleset:\n%s", nft(t, p.a, "list", "ruleset"))
	if err := f2.Remove(); err != nil {
		t.Fatal(err)
	}
	if out := nft(t, p.a, "list", "tables"); strings.Contains(out, TableName("va")) {
		t.Errorf("table still listed after Remove: %s", out)
	}
	checkReaches(t, p, "removed", true)
	if err := f2.Open(time.Second); !errors.Is(err, ErrRemoved) {
		t.Errorf("Open after Remove = %v, want ErrRemoved", err)
	}
}

func TestIntegNewErrors(t *testing.T) {
	p := newPair(t)
	_, err := New(Options{Interface: "nosuch0", VIPs: []netip.Prefix{netip.PrefixFrom(vip, 32)}, NetNS: p.a}, zaptest.NewLogger(t))
	if err == nil || !strings.Contains(err.Error(), "find interface nosuch0") {
		t.Errorf("New on a missing interface = %v", err)
	}
}

// TestIntegExpiry: after Open(500ms) and no renewal the VIP stops answering at the
// element's timeout. Probes every 2 ms.
func TestIntegExpiry(t *testing.T) {
	p := newPair(t)
	f := p.fence(t)
	pg := startPinger(t, p.b, addrB, vip, 2*time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	const lease = 500 * time.Millisecond
	before := time.Now()
	if err := f.Open(lease); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	time.Sleep(lease + 200*time.Millisecond)
	ps := pg.Stop()
	expiry := before.Add(lease)
	lastYes, firstNo := cutoff(ps)
	t.Logf("MEASURED: Open(%s) took %s; last answered probe %+.1f ms, first unanswered %+.1f ms from the expected expiry (Open's start + lease)",
		lease, after.Sub(before), ms(lastYes.Sub(expiry)), ms(firstNo.Sub(expiry)))
	if yes, no := answered(ps, before, after); no > 0 && yes == 0 {
		t.Logf("probes in flight during Open: %d answered, %d not", yes, no)
	}
	if yes, no := answered(ps, time.Time{}, before); yes != 0 {
		t.Errorf("closed fence: %d of %d probes answered", yes, yes+no)
	}
	if yes, no := answered(ps, after.Add(5*time.Millisecond), expiry.Add(-20*time.Millisecond)); no != 0 {
		t.Errorf("open fence: %d of %d probes unanswered", no, yes+no)
	}
	if yes, no := answered(ps, expiry.Add(20*time.Millisecond), time.Now()); yes != 0 {
		t.Errorf("expired fence: %d of %d probes answered", yes, yes+no)
	}
	if d := firstNo.Sub(expiry); firstNo.IsZero() || d < -20*time.Millisecond || d > 20*time.Millisecond {
		t.Errorf("traffic stopped %s from the expected expiry, want within ±20 ms", d)
	}
}

// TestIntegRenewal: Open(300ms) every 100 ms for 2 s keeps the VIP answering throughout
// (flush + add in one batch refreshes the timeout), then it expires 300 ms after the last.
func TestIntegRenewal(t *testing.T) {
	p := newPair(t)
	f := p.fence(t)
	pg := startPinger(t, p.b, addrB, vip, 5*time.Millisecond)
	const lease = 300 * time.Millisecond
	start := time.Now()
	var last time.Time
	for time.Since(start) < 2*time.Second {
		last = time.Now()
		if err := f.Open(lease); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The element carries the last timeout, rounded down to the kernel's jiffies.
	elems := setElements(t, p.a)
	if len(elems) != 1 || elems[0].Timeout <= lease-10*time.Millisecond || elems[0].Timeout > lease || elems[0].Expires <= 0 || elems[0].Expires > lease {
		t.Errorf("set elements after renewals: %+v, want one with timeout %s", elems, lease)
	} else {
		t.Logf("MEASURED: Open(%s) element reads back as timeout %s, expires in %s", lease, elems[0].Timeout, elems[0].Expires)
	}
	time.Sleep(lease + 100*time.Millisecond)
	ps := pg.Stop()
	if yes, no := answered(ps, start.Add(5*time.Millisecond), last.Add(lease-20*time.Millisecond)); no != 0 || yes == 0 {
		t.Errorf("renewed fence: %d of %d probes unanswered", no, yes+no)
	}
	_, firstNo := cutoff(ps)
	t.Logf("MEASURED: renewed %s for 2 s every 100 ms; traffic stopped %+.1f ms from the last renewal's expiry", lease, ms(firstNo.Sub(last.Add(lease))))
	if d := firstNo.Sub(last.Add(lease)); firstNo.IsZero() || d < -20*time.Millisecond || d > 20*time.Millisecond {
		t.Errorf("traffic stopped %s from the expected expiry, want within ±20 ms", d)
	}
}

// TestIntegShutAtOnce: no probe sent after Shut returns is answered.
func TestIntegShutAtOnce(t *testing.T) {
	p := newPair(t)
	f := p.fence(t)
	if err := f.Open(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	pg := startPinger(t, p.b, addrB, vip, time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	before := time.Now()
	if err := f.Shut(); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	time.Sleep(100 * time.Millisecond)
	ps := pg.Stop()
	lastYes, firstNo := cutoff(ps)
	t.Logf("MEASURED: Shut took %s; last answered probe sent %+.2f ms, first unanswered %+.2f ms from Shut's return",
		after.Sub(before), ms(lastYes.Sub(after)), ms(firstNo.Sub(after)))
	if yes, no := answered(ps, time.Time{}, before.Add(-5*time.Millisecond)); no != 0 || yes == 0 {
		t.Errorf("open fence: %d of %d probes unanswered", no, yes+no)
	}
	if yes, no := answered(ps, after, time.Now()); yes != 0 || no == 0 {
		t.Errorf("shut fence: %d of %d probes sent after Shut answered", yes, yes+no)
	}
}

// TestIntegWatch: each way of breaking the fence from outside is reported within 100 ms;
// the fence's own renewals are not.
func TestIntegWatch(t *testing.T) {
	tests := []struct {
		name string
		nft  []string // nft arguments run in the test namespace
	}{
		{"flush ruleset", []string{"flush", "ruleset"}},
		{"delete table", []string{"delete", "table", "netdev", "keepraft_va"}},
		{"dormant table", []string{"add", "table", "netdev", "keepraft_va", "{", "flags", "dormant", ";", "}"}},
		{"flush chain", []string{"flush", "chain", "netdev", "keepraft_va", "egress"}},
		{"accept rule inserted", []string{"insert", "rule", "netdev", "keepraft_va", "ingress", "accept"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t)
			f := p.fence(t)
			// Another table in the namespace: its changes must not count.
			nft(t, p.a, "add", "table", "inet", "other")
			ctx, cancel := context.WithCancel(t.Context())
			reasons := make(chan string, 8)
			werr := make(chan error, 1)
			go func() { werr <- f.Watch(ctx, func(r string) { reasons <- r }) }()
			defer func() {
				cancel()
				select {
				case err := <-werr:
					if err != nil {
						t.Errorf("Watch = %v", err)
					}
				case <-time.After(2 * time.Second):
					t.Error("Watch did not return after cancel")
				}
			}()
			for range 5 {
				if err := f.Open(300 * time.Millisecond); err != nil {
					t.Fatal(err)
				}
				nft(t, p.a, "add", "chain", "inet", "other", fmt.Sprintf("c%d", time.Now().UnixNano()))
				time.Sleep(50 * time.Millisecond)
			}
			select {
			case r := <-reasons:
				t.Fatalf("gone before anything broke: %s", r)
			default:
			}
			start := time.Now()
			nft(t, p.a, tt.nft...)
			ran := time.Now()
			select {
			case r := <-reasons:
				t.Logf("MEASURED: gone %s after nft %s returned (nft ran %s): %s", time.Since(ran).Round(10*time.Microsecond), tt.name, ran.Sub(start).Round(time.Millisecond), r)
				if d := time.Since(ran); d > 100*time.Millisecond {
					t.Errorf("gone after %s, want within 100 ms", d)
				}
			case <-time.After(time.Second):
				t.Fatal("gone not called within 1 s")
			}
			if err := f.Check(); !errors.Is(err, ErrGone) {
				t.Errorf("Check = %v, want ErrGone", err)
			}
			// Open on a missing set says so.
			if tt.name == "flush ruleset" || tt.name == "delete table" {
				if err := f.Open(time.Second); !errors.Is(err, ErrGone) {
					t.Errorf("Open = %v, want ErrGone", err)
				}
			}
			// Reinstall puts the table back, closed; Check and Open work again.
			if err := f.Reinstall(); err != nil {
				t.Fatalf("Reinstall: %v", err)
			}
			if err := f.Check(); err != nil {
				t.Errorf("Check after Reinstall = %v", err)
			}
			if err := f.Open(300 * time.Millisecond); err != nil {
				t.Errorf("Open after Reinstall = %v", err)
			}
		})
	}
}

// TestIntegWatchIgnoresRenewals: the fence's own renewals (a flush and an add of the lease
// set's element, and the generation notice after each) do not reach the watcher, which
// they used to wake six times a second; another table's change does.
func TestIntegWatchIgnoresRenewals(t *testing.T) {
	p := newPair(t)
	f := p.fence(t)
	ctx, cancel := context.WithCancel(t.Context())
	werr := make(chan error, 1)
	go func() { werr <- f.Watch(ctx, func(string) {}) }()
	defer func() {
		cancel()
		if err := <-werr; err != nil {
			t.Errorf("Watch = %v", err)
		}
	}()
	time.Sleep(100 * time.Millisecond) // the watcher's socket is open
	for range 20 {
		if err := f.Open(300 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if n := f.eventReads.Load(); n != 0 {
		t.Errorf("20 renewals: the watcher read %d event datagrams, want 0", n)
	}
	nft(t, p.a, "add", "table", "netdev", "other")
	deadline := time.Now().Add(time.Second)
	for f.eventReads.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if f.eventReads.Load() == 0 {
		t.Error("another table's creation did not reach the watcher")
	}
}

// TestIntegKernelReAdd documents whether this kernel refreshes an element's timeout when
// the same element is added again (6.1 does not; Open does not depend on it).
func TestIntegKernelReAdd(t *testing.T) {
	p := newPair(t)
	p.fence(t)
	nft(t, p.a, "add", "element", "netdev", "keepraft_va", "vip_lease", "{", vip.String(), "timeout", "10s", "}")
	nft(t, p.a, "add", "element", "netdev", "keepraft_va", "vip_lease", "{", vip.String(), "timeout", "100s", "}")
	elems := setElements(t, p.a)
	if len(elems) != 1 {
		t.Fatalf("elements %+v", elems)
	}
	t.Logf("MEASURED: kernel %s: after add 10s then re-add 100s the element has timeout %s, expires in %s (refreshed: %v)",
		kernelRelease(t), elems[0].Timeout, elems[0].Expires, elems[0].Expires > 10*time.Second)
}

func setElements(t *testing.T, ns netns.NsHandle) []nftables.SetElement {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	tbl := &nftables.Table{Name: TableName("va"), Family: nftables.TableFamilyNetdev}
	s, err := c.GetSetByName(tbl, LeaseSet)
	if err != nil {
		t.Fatal(err)
	}
	elems, err := c.GetSetElements(s)
	if err != nil {
		t.Fatal(err)
	}
	return elems
}

func kernelRelease(t *testing.T) string {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	return unix.ByteSliceToString(uts.Release[:])
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// helperEnv makes the test binary a renewer for TestIntegFrozenRenewer.
const helperEnv = "KEEPRAFT_NFTFENCE_RENEWER"

// TestIntegFrozenRenewer: a renewer process (this test binary, re-executed) opens the
// fence for 300 ms every 100 ms and prints the start of each renewal; after SIGSTOP the
// VIP stops answering at the last renewal's expiry.
func TestIntegFrozenRenewer(t *testing.T) {
	if os.Getenv(helperEnv) == "1" {
		renewer()
		return
	}
	p := newPair(t)
	p.fence(t)
	fd, err := unix.Dup(int(p.a))
	if err != nil {
		t.Fatal(err)
	}
	nsFile := os.NewFile(uintptr(fd), "netns")
	defer nsFile.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestIntegFrozenRenewer$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.ExtraFiles = []*os.File{nsFile}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	var mu sync.Mutex
	var renewals, begun []time.Time // renewals reported done, and begun
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			kind, v, _ := strings.Cut(sc.Text(), " ")
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				continue
			}
			mu.Lock()
			switch kind {
			case "renewed":
				renewals = append(renewals, time.Unix(0, n))
			case "renewing":
				begun = append(begun, time.Unix(0, n))
			}
			mu.Unlock()
		}
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(renewals) }
	for deadline := time.Now().Add(10 * time.Second); count() < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("renewer did not renew 3 times within 10 s")
		}
	}
	pg := startPinger(t, p.b, addrB, vip, 2*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	time.Sleep(600 * time.Millisecond)
	ps := pg.Stop()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-readDone
	mu.Lock()
	var last, latest time.Time // the last renewal reported done, the last one begun
	for _, r := range renewals {
		if r.Before(stopped) {
			last = r
		}
	}
	for _, r := range begun {
		if r.Before(stopped) {
			latest = r
		}
	}
	mu.Unlock()
	// The renewer may have been stopped after a renewal took effect and before it said so:
	// the lease then ends at that renewal's expiry, not at the last reported one's.
	if latest.Before(last) {
		latest = last
	}
	expiry, latestExpiry := last.Add(300*time.Millisecond), latest.Add(300*time.Millisecond)
	lastYes, firstNo := cutoff(ps)
	t.Logf("MEASURED: renewer frozen %s after its last reported renewal (%s after the last begun); last answered probe %+.1f ms, first unanswered %+.1f ms from that renewal's expiry",
		stopped.Sub(last).Round(time.Millisecond), stopped.Sub(latest).Round(time.Millisecond), ms(lastYes.Sub(expiry)), ms(firstNo.Sub(expiry)))
	if yes, no := answered(ps, time.Time{}, expiry.Add(-20*time.Millisecond)); no != 0 || yes == 0 {
		t.Errorf("renewed fence: %d of %d probes unanswered", no, yes+no)
	}
	if firstNo.IsZero() || firstNo.Before(expiry.Add(-20*time.Millisecond)) || firstNo.After(latestExpiry.Add(20*time.Millisecond)) {
		t.Errorf("traffic stopped %s from the last reported renewal's expiry, want within -20 ms .. +%s (the last renewal begun)",
			firstNo.Sub(expiry), latestExpiry.Sub(expiry)+20*time.Millisecond)
	}
}

// renewer is the helper process: the fence in the namespace on fd 3, renewed until killed.
func renewer() {
	f, err := New(Options{Interface: "va", VIPs: []netip.Prefix{netip.PrefixFrom(vip, 32)}, NetNS: netns.NsHandle(3)}, zap.NewNop())
	if err != nil {
		fmt.Fprintln(os.Stderr, "renewer:", err)
		os.Exit(2)
	}
	for {
		start := time.Now()
		// Announced before the batch too: a SIGSTOP between the batch and the "renewed" line
		// leaves a renewal that took effect unreported.
		fmt.Printf("renewing %d\n", start.UnixNano())
		if err := f.Open(300 * time.Millisecond); err != nil {
			fmt.Fprintln(os.Stderr, "renewer:", err)
			os.Exit(2)
		}
		fmt.Printf("renewed %d\n", start.UnixNano())
		time.Sleep(100 * time.Millisecond)
	}
}

// TestIntegRefusesUnleased: while the lease is out, a new TCP connection to the VIP is
// refused at once with a reset from the fence (a listener is there, so the reset is not the
// kernel's), other traffic is still dropped, and with the lease open the connection is
// accepted. A connection made under the lease that sends after the fence shut is reset at
// once, instead of retransmitting into the void.
func TestIntegRefusesUnleased(t *testing.T) {
	p := newPair(t)
	f := p.fence(t)
	testenv.HoldingListener(t, p.a, netip.AddrPortFrom(vip, 3306).String())
	dial := func() (time.Duration, error) {
		var took time.Duration
		err := netnsdo.Do(p.b, func() error {
			start := time.Now()
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(vip, 3306).String(), time.Second)
			took = time.Since(start)
			if err == nil {
				_ = c.Close()
			}
			return err
		})
		return took, err
	}
	pg := startPinger(t, p.b, addrB, vip, 5*time.Millisecond)
	for i := range 3 {
		took, err := dial()
		if !errors.Is(err, syscall.ECONNREFUSED) || took > 200*time.Millisecond {
			t.Fatalf("connection %d to the unleased VIP: %v after %s, want refused within 200 ms", i+1, err, took)
		}
		t.Logf("MEASURED: connection %d to the unleased VIP refused after %s", i+1, took)
	}
	if out := nft(t, p.a, "list", "chain", "netdev", TableName("va"), IngressChain); !strings.Contains(out, "packets 3 ") {
		t.Errorf("the refusal rule did not count 3 SYNs:\n%s", out)
	}
	ps := pg.Stop()
	if yes, no := answered(ps, time.Time{}, time.Now()); yes != 0 {
		t.Errorf("closed fence: %d of %d pings answered", yes, yes+no)
	}
	if err := f.Open(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if took, err := dial(); err != nil {
		t.Fatalf("connection to the leased VIP: %v after %s", err, took)
	}
	var conn net.Conn
	if err := netnsdo.Do(p.b, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", netip.AddrPortFrom(vip, 3306).String(), time.Second)
		return err
	}); err != nil {
		t.Fatalf("connection to the leased VIP: %v", err)
	}
	defer conn.Close()
	if err := f.Shut(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := conn.Write([]byte("SELECT 1")); err != nil {
		t.Fatalf("write: %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	_, err := conn.Read(make([]byte, 1))
	took := time.Since(start)
	if !errors.Is(err, syscall.ECONNRESET) || took > 100*time.Millisecond {
		t.Fatalf("a connection sending after the fence shut: %v after %s, want reset within 100 ms", err, took)
	}
	t.Logf("MEASURED: a connection sending after the fence shut was reset after %s", took)

	// A frame for another MAC (the peer's entry names another host now) that reaches the
	// hook is dropped, never reset: it may belong to a connection the new holder serves.
	if err := f.Shut(); err != nil {
		t.Fatal(err)
	}
	link, err := p.hb.LinkByName("vb")
	if err != nil {
		t.Fatal(err)
	}
	other := net.HardwareAddr{0x02, 0x00, 0xc6, 0x12, 0x01, 0x99}
	if err := p.hb.NeighSet(&netlink.Neigh{LinkIndex: link.Attrs().Index, State: netlink.NUD_PERMANENT, IP: vip.AsSlice(), HardwareAddr: other, Family: netlink.FAMILY_V4}); err != nil {
		t.Fatal(err)
	}
	err = netnsdo.Do(p.b, func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(vip, 3306).String(), 300*time.Millisecond)
		if err == nil {
			_ = c.Close()
		}
		return err
	})
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("a SYN to another host's MAC: %v, want no answer (timeout)", err)
	}
}
