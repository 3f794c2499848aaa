package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
)

// Meta describes how a packet arrived.
type Meta struct {
	// Src is the IP source address.
	Src netip.Addr
	// Dst is the IP destination address (the group, or ours when unicast).
	Dst netip.Addr
	// TTL is the IP time to live; RFC 3768 requires 255.
	TTL int
	// At is when the packet was read.
	At time.Time
}

// Conn is a raw IPv4 protocol-112 socket bound to one interface. It has joined 224.0.0.18
// there, sends with TTL 255 and TOS 0xc0 (as keepalived does) from the interface's primary
// IPv4 address, and does not loop its own multicast back. One goroutine may read while
// others write.
type Conn struct {
	ifi *net.Interface
	raw *ipv4.RawConn

	mu  sync.Mutex
	src netip.Addr
	dst netip.Addr

	// rmu guards gen, which tells a late context.AfterFunc from an earlier ReadAdvert
	// not to touch the read deadline of a later one.
	rmu sync.Mutex
	gen uint64
	buf []byte
}

// Dial opens a Conn on ifi. The source address is the first IPv4 address on ifi at the time
// of the call (the primary one); see [Conn.SetSource]. It needs CAP_NET_RAW.
func Dial(ifi *net.Interface) (*Conn, error) {
	src, err := primaryIPv4(ifi)
	if err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptString(int(fd), syscall.SOL_SOCKET, syscall.SO_BINDTODEVICE, ifi.Name)
		}); err != nil {
			return err
		}
		if serr != nil {
			return os.NewSyscallError("setsockopt SO_BINDTODEVICE", serr)
		}
		return nil
	}}
	pc, err := lc.ListenPacket(context.Background(), fmt.Sprintf("ip4:%d", Protocol), "0.0.0.0")
	if err != nil {
		return nil, fmt.Errorf("open raw VRRP socket on %s: %w", ifi.Name, err)
	}
	raw, err := ipv4.NewRawConn(pc)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("raw VRRP socket on %s: %w", ifi.Name, err)
	}
	group := &net.IPAddr{IP: net.IP(IPv4Group.AsSlice())}
	steps := []struct {
		what string
		err  func() error
	}{
		{"join 224.0.0.18", func() error { return raw.JoinGroup(ifi, group) }},
		{"set multicast interface", func() error { return raw.SetMulticastInterface(ifi) }},
		{"disable multicast loopback", func() error { return raw.SetMulticastLoopback(false) }},
		{"enable control messages", func() error {
			return raw.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface, true)
		}},
	}
	for _, s := range steps {
		if err := s.err(); err != nil {
			raw.Close()
			return nil, fmt.Errorf("%s on %s: %w", s.what, ifi.Name, err)
		}
	}
	return &Conn{ifi: ifi, raw: raw, src: src, dst: IPv4Group, buf: make([]byte, 1500)}, nil
}

func primaryIPv4(ifi *net.Interface) (netip.Addr, error) {
	as, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("addresses of %s: %w", ifi.Name, err)
	}
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() {
				return ip.Unmap(), nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("no IPv4 address on %s", ifi.Name)
}

// SetSource sets the IPv4 source address of sent adverts (RFC 3768: the interface's primary
// address; a peer breaks priority ties by it).
func (c *Conn) SetSource(a netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.src = a.Unmap()
}

// Source returns the IPv4 source address of sent adverts.
func (c *Conn) Source() netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.src
}

// WriteAdvert sends p to 224.0.0.18 with TTL 255.
func (c *Conn) WriteAdvert(p *Packet) error {
	c.mu.Lock()
	src, dst := c.src, c.dst
	c.mu.Unlock()
	b, err := p.Marshal(src, dst)
	if err != nil {
		return err
	}
	h := &ipv4.Header{
		Version:  ipv4.Version,
		Len:      ipv4.HeaderLen,
		TOS:      0xc0,
		TotalLen: ipv4.HeaderLen + len(b),
		TTL:      255,
		Protocol: Protocol,
		Src:      net.IP(src.AsSlice()),
		Dst:      net.IP(dst.AsSlice()),
	}
	if err := c.raw.WriteTo(h, b, &ipv4.ControlMessage{IfIndex: c.ifi.Index}); err != nil {
		return fmt.Errorf("send VRRP advert on %s: %w", c.ifi.Name, err)
	}
	return nil
}

// ReadAdvert waits for the next VRRP packet on the interface and decodes it. When the packet
// does not decode it returns its Meta and an error wrapping one of the codec sentinels (see
// [Unmarshal]); other errors are socket errors. It returns ctx.Err() once ctx is done. It is
// not safe for concurrent use by several readers.
func (c *Conn) ReadAdvert(ctx context.Context) (*Packet, Meta, error) {
	c.rmu.Lock()
	c.gen++
	gen := c.gen
	c.raw.SetReadDeadline(time.Time{})
	c.rmu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		c.rmu.Lock()
		defer c.rmu.Unlock()
		if c.gen == gen {
			c.raw.SetReadDeadline(time.Unix(1, 0))
		}
	})
	defer func() {
		stop()
		c.rmu.Lock()
		c.gen++
		c.rmu.Unlock()
	}()
	for {
		h, payload, cm, err := c.raw.ReadFrom(c.buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil, Meta{}, ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return nil, Meta{}, fmt.Errorf("read VRRP on %s: %w", c.ifi.Name, err)
		}
		if cm != nil && cm.IfIndex != 0 && cm.IfIndex != c.ifi.Index {
			continue
		}
		m := Meta{TTL: h.TTL, At: time.Now()}
		m.Src, _ = netip.AddrFromSlice(h.Src.To4())
		m.Dst, _ = netip.AddrFromSlice(h.Dst.To4())
		if h.TotalLen >= h.Len && h.TotalLen-h.Len < len(payload) {
			payload = payload[:h.TotalLen-h.Len]
		}
		p, err := Unmarshal(payload, m.Src, m.Dst)
		if err != nil {
			return nil, m, fmt.Errorf("from %s: %w", m.Src, err)
		}
		return p, m, nil
	}
}

// Close closes the socket; a blocked ReadAdvert returns an error.
func (c *Conn) Close() error {
	return c.raw.Close()
}
