package vip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// fakeAddr is one address in fakeLinks.
type fakeAddr struct {
	p            netip.Prefix
	label        string
	valid, prefd int // 0 = forever
}

// fakeLinks is a stateful stand-in for the kernel's address table of one interface, in
// the spirit of tailscale's fakeOS: tests compare its String() dump, not calls.
type fakeLinks struct {
	mu    sync.Mutex
	name  string
	index int
	mac   net.HardwareAddr
	addrs []fakeAddr
	// failAdd makes AddrAdd and AddrReplace of these prefixes fail.
	failAdd map[netip.Prefix]error
}

var _ links = (*fakeLinks)(nil)

func newFakeLinks(name string, base ...string) *fakeLinks {
	f := &fakeLinks{
		name:  name,
		index: 7,
		mac:   net.HardwareAddr{0x02, 0, 0x5e, 0, 0, 0x07},
	}
	for _, s := range base {
		f.addrs = append(f.addrs, fakeAddr{p: netip.MustParsePrefix(s)})
	}
	return f
}

func (f *fakeLinks) LinkByName(name string) (netlink.Link, error) {
	if name != f.name {
		return nil, netlink.LinkNotFoundError{}
	}
	return &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: f.name, Index: f.index, HardwareAddr: f.mac}}, nil
}

func (f *fakeLinks) checkLink(link netlink.Link) error {
	if link.Attrs().Index != f.index {
		return unix.ENODEV
	}
	return nil
}

func (f *fakeLinks) AddrList(link netlink.Link, family int) ([]netlink.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkLink(link); err != nil {
		return nil, err
	}
	if family != netlink.FAMILY_V4 {
		return nil, fmt.Errorf("fake: family %d not supported", family)
	}
	var out []netlink.Addr
	for _, a := range f.addrs {
		out = append(out, netlink.Addr{
			IPNet:       &net.IPNet{IP: a.p.Addr().AsSlice(), Mask: net.CIDRMask(a.p.Bits(), 32)},
			Label:       a.label,
			ValidLft:    a.valid,
			PreferedLft: a.prefd,
		})
	}
	return out, nil
}

func toFake(addr *netlink.Addr) fakeAddr {
	p, ok := prefixOf(*addr)
	if !ok {
		panic(fmt.Sprintf("fake: bad address %v", addr))
	}
	return fakeAddr{p: p, label: addr.Label, valid: addr.ValidLft, prefd: addr.PreferedLft}
}

func (f *fakeLinks) find(p netip.Prefix) int {
	return slices.IndexFunc(f.addrs, func(a fakeAddr) bool { return a.p == p })
}

func (f *fakeLinks) AddrAdd(link netlink.Link, addr *netlink.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkLink(link); err != nil {
		return err
	}
	a := toFake(addr)
	if err := f.failAdd[a.p]; err != nil {
		return err
	}
	if f.find(a.p) >= 0 {
		return unix.EEXIST
	}
	f.addrs = append(f.addrs, a)
	return nil
}

func (f *fakeLinks) AddrReplace(link netlink.Link, addr *netlink.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkLink(link); err != nil {
		return err
	}
	a := toFake(addr)
	if err := f.failAdd[a.p]; err != nil {
		return err
	}
	if i := f.find(a.p); i >= 0 {
		// The kernel keeps the label of an existing address and only updates lifetimes.
		f.addrs[i].valid, f.addrs[i].prefd = a.valid, a.prefd
		return nil
	}
	f.addrs = append(f.addrs, a)
	return nil
}

func (f *fakeLinks) AddrDel(link netlink.Link, addr *netlink.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkLink(link); err != nil {
		return err
	}
	i := f.find(toFake(addr).p)
	if i < 0 {
		return unix.EADDRNOTAVAIL
	}
	f.addrs = slices.Delete(f.addrs, i, i+1)
	return nil
}

// handDelete removes p as `ip addr del` (or the kernel's expiry) would.
func (f *fakeLinks) handDelete(p netip.Prefix) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i := f.find(p); i >= 0 {
		f.addrs = slices.Delete(f.addrs, i, i+1)
	}
}

// handAdd adds p permanently as `ip addr add p dev eth0 label label` would.
func (f *fakeLinks) handAdd(p netip.Prefix, label string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.find(p) < 0 {
		f.addrs = append(f.addrs, fakeAddr{p: p, label: label})
	}
}

// String dumps the state as sorted `ip addr add` lines.
func (f *fakeLinks) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var lines []string
	for _, a := range f.addrs {
		s := fmt.Sprintf("ip addr add %s dev %s", a.p, f.name)
		if a.label != "" {
			s += " label " + a.label
		}
		if a.valid != 0 || a.prefd != 0 {
			s += fmt.Sprintf(" valid_lft %d preferred_lft %d", a.valid, a.prefd)
		}
		lines = append(lines, s)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// sentPacket is one packet written to a fakeConn.
type sentPacket struct {
	at  time.Time
	pkt *arp.Packet
	dst net.HardwareAddr
}

// fakeConn records written ARP packets and delivers scripted incoming packets, each at a
// fixed delay after the first write. Meant for synctest bubbles.
type fakeConn struct {
	mu       sync.Mutex
	sent     []sentPacket
	first    time.Time
	incoming []scripted
	deadline time.Time
	closed   bool
	failSend error
}

type scripted struct {
	after time.Duration
	pkt   *arp.Packet
}

var _ arpConn = (*fakeConn)(nil)

func (c *fakeConn) WriteTo(p *arp.Packet, dst net.HardwareAddr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	if c.failSend != nil {
		return c.failSend
	}
	if c.first.IsZero() {
		c.first = time.Now()
	}
	c.sent = append(c.sent, sentPacket{at: time.Now(), pkt: p, dst: dst})
	return nil
}

func (c *fakeConn) ReadARP() (*arp.Packet, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, net.ErrClosed
	}
	deadline := c.deadline
	var next *scripted
	if len(c.incoming) > 0 && !c.first.IsZero() {
		next = &c.incoming[0]
	}
	var due time.Time
	if next != nil {
		due = c.first.Add(next.after)
	}
	c.mu.Unlock()

	if next != nil && (deadline.IsZero() || !due.After(deadline)) {
		time.Sleep(time.Until(due))
		c.mu.Lock()
		c.incoming = c.incoming[1:]
		c.mu.Unlock()
		return next.pkt, nil
	}
	if deadline.IsZero() {
		panic("fake: read without deadline and nothing scripted would block forever")
	}
	time.Sleep(time.Until(deadline))
	return nil, os.ErrDeadlineExceeded
}

func (c *fakeConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return nil
}

func (c *fakeConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *fakeConn) packets() []sentPacket {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sent)
}

// fakeDialer hands out fakeConns and remembers them.
type fakeDialer struct {
	mu    sync.Mutex
	conns []*fakeConn
	// next, when set, is returned by the next dial.
	next *fakeConn
	err  error
}

func (d *fakeDialer) dial(ifindex int, recv bool) (arpConn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return nil, d.err
	}
	c := d.next
	d.next = nil
	if c == nil {
		c = &fakeConn{}
	}
	d.conns = append(d.conns, c)
	return c, nil
}

// sent returns every packet written on any conn, in order of the conns.
func (d *fakeDialer) sent() []sentPacket {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []sentPacket
	for _, c := range d.conns {
		out = append(out, c.packets()...)
	}
	return out
}

// errFake is an injected failure.
var errFake = errors.New("injected failure")
