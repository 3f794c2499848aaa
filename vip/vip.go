package vip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Defaults for the zero values of [Options] fields.
const (
	// DefaultGARPRepeat is the number of gratuitous ARPs sent per acquisition.
	DefaultGARPRepeat = 3
	// DefaultGARPInterval is the pause between two gratuitous ARPs of one burst.
	DefaultGARPInterval = 20 * time.Millisecond
)

// Probe timing (RFC 5227 style, shortened for a failover: a check, not a proof).
const (
	probeCount    = 2
	probeInterval = 5 * time.Millisecond
	probeListen   = 20 * time.Millisecond
)

var (
	// ErrUnmanaged is returned by [Manager.Set], [Manager.Announce] and
	// [Manager.ProbeConflict] for a prefix or address that is not in [Options].Managed.
	ErrUnmanaged = errors.New("not a managed VIP")

	// ErrNotHeld is returned by [Manager.Announce] when the prefix is not on the
	// interface: announcing an address this host does not answer for would steal its
	// traffic into a black hole.
	ErrNotHeld = errors.New("VIP not held")

	// ErrClosed is returned by every method after [Manager.Close].
	ErrClosed = errors.New("vip manager closed")
)

// Options configures a [Manager].
type Options struct {
	// Interface is the name of the link that carries the VIPs.
	Interface string
	// Managed lists every VIP this node may ever hold (config vip.addresses), each as the
	// address with its prefix length (e.g. 198.18.0.10/32). Set never touches other
	// addresses. Prefixes are compared exactly: 198.18.0.10/24 is not 198.18.0.10/32.
	Managed []netip.Prefix
	// Label is an optional ifa label such as "eth0:vip". The kernel requires it to start
	// with the interface name. A renew keeps the label an existing address has.
	Label string
	// KernelLease is the kernel lifetime (valid_lft and preferred_lft) of every added or
	// renewed VIP, rounded up to whole seconds with a minimum of 1 s. Zero makes the
	// addresses permanent.
	KernelLease time.Duration
	// GARPRepeat is the number of gratuitous ARPs per acquisition (0 means
	// DefaultGARPRepeat).
	GARPRepeat int
	// GARPInterval is the pause between them (0 means DefaultGARPInterval).
	GARPInterval time.Duration
	// NetNS, when set (> 0), is the network namespace to work in; the Manager does not
	// close it. The zero value and netns.None() mean the current namespace.
	NetNS netns.NsHandle
}

// validate checks opts and returns a copy with defaults filled in. The errors name the field.
func (o Options) validate() (Options, error) {
	var errs []error
	if o.Interface == "" {
		errs = append(errs, errors.New("options.Interface: must be set"))
	}
	seen := make(map[netip.Prefix]bool, len(o.Managed))
	managed := make([]netip.Prefix, 0, len(o.Managed))
	for i, p := range o.Managed {
		p = unmapPrefix(p)
		switch {
		case !p.IsValid():
			errs = append(errs, fmt.Errorf("options.Managed[%d]: invalid prefix", i))
		case !p.Addr().Is4():
			errs = append(errs, fmt.Errorf("options.Managed[%d] %s: only IPv4 is supported", i, p))
		case seen[p]:
			errs = append(errs, fmt.Errorf("options.Managed[%d] %s: duplicate", i, p))
		default:
			seen[p] = true
			managed = append(managed, p)
		}
	}
	o.Managed = managed
	if o.Label != "" && (!strings.HasPrefix(o.Label, o.Interface) || len(o.Label) > unix.IFNAMSIZ-1) {
		errs = append(errs, fmt.Errorf("options.Label %q: must start with the interface name %q and be at most %d bytes", o.Label, o.Interface, unix.IFNAMSIZ-1))
	}
	if o.KernelLease < 0 {
		errs = append(errs, fmt.Errorf("KernelLease: must be ≥ 0, got %s", o.KernelLease))
	}
	if o.GARPRepeat < 0 {
		errs = append(errs, fmt.Errorf("GARPRepeat: must be ≥ 0, got %d", o.GARPRepeat))
	}
	if o.GARPRepeat == 0 {
		o.GARPRepeat = DefaultGARPRepeat
	}
	if o.GARPInterval < 0 {
		errs = append(errs, fmt.Errorf("GARPInterval: must be ≥ 0, got %s", o.GARPInterval))
	}
	if o.GARPInterval == 0 {
		o.GARPInterval = DefaultGARPInterval
	}
	return o, errors.Join(errs...)
}

// leaseSeconds converts a kernel lease to whole seconds: rounded up, at least 1, 0 for
// permanent, capped below the kernel's "forever" (0xFFFFFFFF).
func leaseSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	s := (d + time.Second - 1) / time.Second
	if s > math.MaxUint32-1 {
		s = math.MaxUint32 - 1
	}
	return int(s)
}

// Result reports what one [Manager.Set] did. Each list is in [Options].Managed order.
type Result struct {
	// Added lists the prefixes that were not on the interface and were added (the
	// acquisitions, each announced with gratuitous ARP).
	Added []netip.Prefix
	// Renewed lists the desired prefixes that were present and got a fresh lifetime.
	Renewed []netip.Prefix
	// Removed lists the managed prefixes that were present, not desired, and deleted.
	Removed []netip.Prefix
}

// Manager adds, renews, removes and announces the managed VIPs on one interface. Its
// methods are safe for concurrent use; Set and Announce are serialised.
type Manager struct {
	opts  Options
	lease int // kernel lifetime in seconds, 0 = permanent
	log   *zap.Logger
	links links
	dial  dialFunc
	reset resetFunc
	close func() error // releases what New opened besides the ARP socket

	mu      sync.Mutex
	closed  bool
	sender  arpConn // send-only ARP socket, opened on first use
	senderI int     // ifindex sender is bound to
}

// New validates opts, opens a netlink handle (in opts.NetNS when set) and checks that the
// interface exists. The ARP socket is opened when the first announcement needs it.
func New(opts Options, log *zap.Logger) (*Manager, error) {
	opts, err := opts.validate()
	if err != nil {
		return nil, fmt.Errorf("vip options: %w", err)
	}
	var h *netlink.Handle
	if opts.NetNS > 0 {
		h, err = netlink.NewHandleAt(opts.NetNS)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("open netlink handle: %w", err)
	}
	log = log.Named("vip").With(zap.String("interface", opts.Interface))
	ns := opts.NetNS
	dial := func(ifindex int, recv bool) (arpConn, error) { return dialARP(ns, ifindex, recv) }
	m := newManager(opts, log, &nlLinks{h: h, log: log}, dial)
	m.reset = func(a netip.Addr) (int, error) { return resetTCP(ns, a) }
	m.close = func() error { h.Close(); return nil }
	if _, err := m.links.LinkByName(opts.Interface); err != nil {
		h.Close()
		return nil, fmt.Errorf("find interface %s: %w", opts.Interface, err)
	}
	return m, nil
}

// newManager builds a Manager on given parts; opts must be validated.
func newManager(opts Options, log *zap.Logger, l links, dial dialFunc) *Manager {
	return &Manager{
		opts:  opts,
		lease: leaseSeconds(opts.KernelLease),
		log:   log,
		links: l,
		dial:  dial,
		reset: func(netip.Addr) (int, error) { return 0, nil },
		close: func() error { return nil },
	}
}

// Set makes the managed VIPs on the interface equal to desired. It is idempotent and is
// also the renew: every desired prefix is added, or replaced with a fresh kernel lifetime
// if present; every managed prefix that is present and not desired is deleted; every
// prefix that was not present before (an acquisition, also one that someone deleted by
// hand or the kernel expired) is announced with GARPRepeat gratuitous ARPs. A prefix it
// deletes has its TCP connections reset first (see [resetTCP]). Addresses outside
// [Options].Managed are never touched.
//
// A desired prefix outside Managed fails the whole call with [ErrUnmanaged] before any
// change. Otherwise Set attempts every step and returns what it did together with the
// errors of the failed steps joined; an address whose announcement failed is still listed
// in Added. The caller must check that it may hold the VIPs right before calling Set.
func (m *Manager) Set(ctx context.Context, desired []netip.Prefix) (Result, error) {
	want, err := m.checkManaged(desired)
	if err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Result{}, ErrClosed
	}
	link, err := m.links.LinkByName(m.opts.Interface)
	if err != nil {
		return Result{}, fmt.Errorf("find interface %s: %w", m.opts.Interface, err)
	}

	var res Result
	var errs []error
	for _, p := range m.opts.Managed {
		if !want[p] {
			continue
		}
		added, err := m.addOrRenew(link, p)
		switch {
		case err != nil:
			errs = append(errs, err)
		case added:
			res.Added = append(res.Added, p)
			m.log.Info("vip acquired", zap.Stringer("vip", p), zap.Int("valid_lft", m.lease))
		default:
			res.Renewed = append(res.Renewed, p)
			m.log.Debug("vip renewed", zap.Stringer("vip", p), zap.Int("valid_lft", m.lease))
		}
	}

	// Only managed prefixes are ever removed: when every one is wanted there is nothing
	// to remove, and the renewal skips the address dump.
	var have []netip.Prefix
	if len(want) < len(m.opts.Managed) {
		if have, err = m.held(link); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range have {
		if want[p] {
			continue
		}
		// Before the delete: the kernel sends a reset only from an address it still has.
		m.resetConns(p.Addr())
		err := m.links.AddrDel(link, m.nlAddr(p))
		switch {
		case errors.Is(err, unix.EADDRNOTAVAIL):
			// Gone between the list and the delete (expired or deleted by someone else).
		case err != nil:
			errs = append(errs, fmt.Errorf("delete %s from %s: %w", p, m.opts.Interface, err))
		default:
			res.Removed = append(res.Removed, p)
			m.log.Info("vip released", zap.Stringer("vip", p))
		}
	}

	if len(res.Added) > 0 {
		if err := m.announce(ctx, link, res.Added); err != nil {
			errs = append(errs, err)
		}
	}
	return res, errors.Join(errs...)
}

// resetConns aborts the TCP connections of a VIP that left the interface, so their clients
// get a reset at once instead of waiting for answers that cannot come (see [resetTCP]). A
// failure is logged only: the release stands either way.
func (m *Manager) resetConns(a netip.Addr) {
	n, err := m.reset(a)
	if err != nil {
		m.log.Warn("reset the TCP connections of the released VIP", zap.Stringer("vip", a), zap.Int("reset", n), zap.Error(err))
		return
	}
	if n > 0 {
		m.log.Info("reset the TCP connections of the released VIP", zap.Stringer("vip", a), zap.Int("reset", n))
	}
}

// addOrRenew adds p exclusively; if it exists it replaces it to renew the lifetime. The
// exclusive add lets the kernel say whether this is an acquisition.
func (m *Manager) addOrRenew(link netlink.Link, p netip.Prefix) (added bool, err error) {
	err = m.links.AddrAdd(link, m.nlAddr(p))
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, unix.EEXIST) {
		return false, fmt.Errorf("add %s to %s: %w", p, m.opts.Interface, err)
	}
	if err := m.links.AddrReplace(link, m.nlAddr(p)); err != nil {
		return false, fmt.Errorf("renew %s on %s: %w", p, m.opts.Interface, err)
	}
	return false, nil
}

// nlAddr is the netlink form of p with the configured label and lifetime.
func (m *Manager) nlAddr(p netip.Prefix) *netlink.Addr {
	return &netlink.Addr{
		IPNet:       &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)},
		Label:       m.opts.Label,
		ValidLft:    m.lease,
		PreferedLft: m.lease,
	}
}

// checkManaged returns desired as a set, or ErrUnmanaged naming the first prefix outside
// Managed.
func (m *Manager) checkManaged(desired []netip.Prefix) (map[netip.Prefix]bool, error) {
	want := make(map[netip.Prefix]bool, len(desired))
	for _, p := range desired {
		p = unmapPrefix(p)
		if !slices.Contains(m.opts.Managed, p) {
			return nil, fmt.Errorf("%s: %w (managed: %v)", p, ErrUnmanaged, m.opts.Managed)
		}
		want[p] = true
	}
	return want, nil
}

// Held returns the managed prefixes present on the interface now, in Managed order.
func (m *Manager) Held(ctx context.Context) ([]netip.Prefix, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	link, err := m.links.LinkByName(m.opts.Interface)
	if err != nil {
		return nil, fmt.Errorf("find interface %s: %w", m.opts.Interface, err)
	}
	return m.held(link)
}

// held lists the managed prefixes on link.
func (m *Manager) held(link netlink.Link) ([]netip.Prefix, error) {
	addrs, err := m.links.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", m.opts.Interface, err)
	}
	present := make(map[netip.Prefix]bool, len(addrs))
	for _, a := range addrs {
		if p, ok := prefixOf(a); ok {
			present[p] = true
		}
	}
	var out []netip.Prefix
	for _, p := range m.opts.Managed {
		if present[p] {
			out = append(out, p)
		}
	}
	return out, nil
}

// Announce sends a burst of GARPRepeat gratuitous ARPs for p, which must be managed and
// present on the interface ([ErrUnmanaged], [ErrNotHeld] otherwise).
func (m *Manager) Announce(ctx context.Context, p netip.Prefix) error {
	p = unmapPrefix(p)
	if !slices.Contains(m.opts.Managed, p) {
		return fmt.Errorf("announce %s: %w", p, ErrUnmanaged)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	link, err := m.links.LinkByName(m.opts.Interface)
	if err != nil {
		return fmt.Errorf("find interface %s: %w", m.opts.Interface, err)
	}
	have, err := m.held(link)
	if err != nil {
		return err
	}
	if !slices.Contains(have, p) {
		return fmt.Errorf("announce %s on %s: %w", p, m.opts.Interface, ErrNotHeld)
	}
	return m.announce(ctx, link, []netip.Prefix{p})
}

// announce sends GARPRepeat rounds of one gratuitous ARP per prefix, GARPInterval apart.
// m.mu must be held.
func (m *Manager) announce(ctx context.Context, link netlink.Link, ps []netip.Prefix) error {
	mac := link.Attrs().HardwareAddr
	pkts := make([]*arp.Packet, len(ps))
	for i, p := range ps {
		pkt, err := garpPacket(mac, p.Addr())
		if err != nil {
			return fmt.Errorf("build gratuitous ARP for %s on %s (mac %q): %w", p, m.opts.Interface, mac, err)
		}
		pkts[i] = pkt
	}
	conn, err := m.senderFor(link.Attrs().Index)
	if err != nil {
		return err
	}
	sent := 0
	for round := 0; round < m.opts.GARPRepeat; round++ {
		if round > 0 {
			if err := sleepCtx(ctx, m.opts.GARPInterval); err != nil {
				return fmt.Errorf("announce %v on %s after %d of %d rounds: %w", ps, m.opts.Interface, round, m.opts.GARPRepeat, err)
			}
		}
		for i, pkt := range pkts {
			if err := conn.WriteTo(pkt, ethernet.Broadcast); err != nil {
				m.dropSender()
				return fmt.Errorf("send gratuitous ARP for %s on %s: %w", ps[i], m.opts.Interface, err)
			}
			sent++
		}
	}
	m.log.Info("gratuitous ARP sent", zap.Stringers("vips", ps), zap.Int("packets", sent), zap.Stringer("mac", mac))
	return nil
}

// senderFor returns the send-only ARP socket bound to ifindex, (re)opening it when the
// interface was recreated. m.mu must be held.
func (m *Manager) senderFor(ifindex int) (garp, error) {
	if m.sender != nil && m.senderI == ifindex {
		return m.sender, nil
	}
	m.dropSender()
	c, err := m.dial(ifindex, false)
	if err != nil {
		return nil, err
	}
	m.sender, m.senderI = c, ifindex
	return c, nil
}

// dropSender closes the cached ARP socket. m.mu must be held.
func (m *Manager) dropSender() {
	if m.sender != nil {
		_ = m.sender.Close()
		m.sender = nil
	}
}

// ProbeConflict checks, before acquiring addr, whether another host uses it: RFC 5227
// style, it sends 2 ARP probes 5 ms apart (sender IP 0.0.0.0) and listens until 20 ms
// after the last one (an answer on a LAN takes well under a millisecond; the probe sits
// on the path of every acquisition). It returns the MAC of the first other host that answered for addr,
// claimed it, or probed for it at the same time. It is a check, not a proof: a silent,
// slow or partitioned holder goes unnoticed. addr must be managed ([ErrUnmanaged]).
// ProbeConflict does not block Set or Announce while it listens.
func (m *Manager) ProbeConflict(ctx context.Context, addr netip.Addr) (net.HardwareAddr, bool, error) {
	addr = addr.Unmap()
	if !slices.ContainsFunc(m.opts.Managed, func(p netip.Prefix) bool { return p.Addr() == addr }) {
		return nil, false, fmt.Errorf("probe %s: %w", addr, ErrUnmanaged)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, false, ErrClosed
	}
	link, err := m.links.LinkByName(m.opts.Interface)
	m.mu.Unlock()
	if err != nil {
		return nil, false, fmt.Errorf("find interface %s: %w", m.opts.Interface, err)
	}
	mac := link.Attrs().HardwareAddr
	pkt, err := probePacket(mac, addr)
	if err != nil {
		return nil, false, fmt.Errorf("build ARP probe for %s on %s (mac %q): %w", addr, m.opts.Interface, mac, err)
	}
	conn, err := m.dial(link.Attrs().Index, true)
	if err != nil {
		return nil, false, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()

	start := time.Now()
	for i := 0; i < probeCount; i++ {
		if err := conn.WriteTo(pkt, ethernet.Broadcast); err != nil {
			return nil, false, fmt.Errorf("send ARP probe for %s on %s: %w", addr, m.opts.Interface, err)
		}
		until := start.Add(time.Duration(i+1) * probeInterval)
		if i == probeCount-1 {
			until = start.Add(time.Duration(i)*probeInterval + probeListen)
		}
		other, err := listenConflict(ctx, conn, mac, addr, until)
		if err != nil {
			return nil, false, fmt.Errorf("probe %s on %s: %w", addr, m.opts.Interface, err)
		}
		if other != nil {
			m.log.Info("ARP probe answered", zap.Stringer("vip", addr), zap.Stringer("mac", other))
			return other, true, nil
		}
	}
	m.log.Debug("ARP probe unanswered", zap.Stringer("vip", addr))
	return nil, false, nil
}

// listenConflict reads ARP packets until the deadline and returns the sender MAC of the
// first packet from another host that claims addr (sender IP = addr) or probes for it
// (sender IP 0.0.0.0, target IP = addr).
func listenConflict(ctx context.Context, conn arpConn, own net.HardwareAddr, addr netip.Addr, until time.Time) (net.HardwareAddr, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !time.Now().Before(until) {
			return nil, nil
		}
		if err := conn.SetReadDeadline(until); err != nil {
			return nil, err
		}
		// A cancelled ctx may have set a deadline in the past just before ours; recheck.
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p, err := conn.ReadARP()
		if errors.Is(err, errNotARP) {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue // loop checks ctx and the deadline
		}
		if err != nil {
			return nil, err
		}
		if bytes.Equal(p.SenderHardwareAddr, own) {
			continue
		}
		claims := p.SenderIP == addr
		probes := p.Operation == arp.OperationRequest && p.SenderIP.IsUnspecified() && p.TargetIP == addr
		if claims || probes {
			return slices.Clone(p.SenderHardwareAddr), nil
		}
	}
}

// Close releases the ARP socket and the netlink handle. Later calls return [ErrClosed].
// Close does not remove any address: a stopping daemon calls Set(ctx, nil) first if it
// means to give the VIPs up, otherwise the kernel lifetime removes them.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	m.dropSender()
	return m.close()
}

// prefixOf converts a netlink address to a prefix that keeps the host address.
func prefixOf(a netlink.Addr) (netip.Prefix, bool) {
	if a.IPNet == nil {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := a.Mask.Size()
	ip = ip.Unmap()
	if !ip.Is4() || (bits != 32 && bits != 128) {
		return netip.Prefix{}, false
	}
	if bits == 128 {
		ones -= 96
	}
	return netip.PrefixFrom(ip, ones), true
}

// unmapPrefix turns an IPv4-mapped IPv6 prefix into its IPv4 form.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
