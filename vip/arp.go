package vip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netns"
	"golang.org/x/net/bpf"

	"github.com/keepraft/keepraft/internal/netnsdo"
)

// garp sends ARP packets. The real one is [arpSocket]; unit tests record what is written.
type garp interface {
	WriteTo(p *arp.Packet, dst net.HardwareAddr) error
}

// arpConn is an ARP socket that can also receive, as the conflict probe needs.
type arpConn interface {
	garp
	// ReadARP returns the next ARP packet. It returns errNotARP for a frame that does not
	// hold a parsable ARP packet; callers skip those.
	ReadARP() (*arp.Packet, error)
	SetReadDeadline(t time.Time) error
	Close() error
}

// dialFunc opens an ARP socket on the interface with the given index. With recv false the
// socket drops everything it would receive (it only sends).
type dialFunc func(ifindex int, recv bool) (arpConn, error)

var _ arpConn = (*arpSocket)(nil)

// errNotARP marks a received frame that is not an ARP packet.
var errNotARP = errors.New("not an ARP packet")

// arpSocket is an AF_PACKET socket bound to EtherType ARP on one interface. It uses
// mdlayher/arp for the packet format but not arp.Client, because arp.Client refuses an
// interface without an IPv4 address, and a VIP interface may carry no other address.
type arpSocket struct {
	c   *packet.Conn
	buf []byte
}

// dialARP opens an ARP socket in namespace ns (current namespace when ns is not set).
func dialARP(ns netns.NsHandle, ifindex int, recv bool) (*arpSocket, error) {
	var cfg packet.Config
	if !recv {
		// Drop everything on receive, so that an unread send-only socket costs nothing.
		drop, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
		if err != nil {
			return nil, fmt.Errorf("assemble drop filter: %w", err)
		}
		cfg.Filter = drop
	}
	var c *packet.Conn
	err := inNetNS(ns, func() error {
		var err error
		c, err = packet.Listen(&net.Interface{Index: ifindex}, packet.Raw, int(ethernet.EtherTypeARP), &cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open ARP socket on ifindex %d: %w", ifindex, err)
	}
	return &arpSocket{c: c, buf: make([]byte, 1514)}, nil
}

// WriteTo sends p in an Ethernet frame to dst.
func (s *arpSocket) WriteTo(p *arp.Packet, dst net.HardwareAddr) error {
	pb, err := p.MarshalBinary()
	if err != nil {
		return err
	}
	f := &ethernet.Frame{
		Destination: dst,
		Source:      p.SenderHardwareAddr,
		EtherType:   ethernet.EtherTypeARP,
		Payload:     pb,
	}
	fb, err := f.MarshalBinary()
	if err != nil {
		return err
	}
	_, err = s.c.WriteTo(fb, &packet.Addr{HardwareAddr: dst})
	return err
}

// ReadARP reads one frame and parses it as ARP.
func (s *arpSocket) ReadARP() (*arp.Packet, error) {
	n, _, err := s.c.ReadFrom(s.buf)
	if err != nil {
		return nil, err
	}
	var f ethernet.Frame
	if err := f.UnmarshalBinary(s.buf[:n]); err != nil || f.EtherType != ethernet.EtherTypeARP {
		return nil, errNotARP
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		return nil, errNotARP
	}
	return &p, nil
}

// SetReadDeadline sets the deadline for ReadARP.
func (s *arpSocket) SetReadDeadline(t time.Time) error { return s.c.SetReadDeadline(t) }

// Close closes the socket.
func (s *arpSocket) Close() error { return s.c.Close() }

// inNetNS runs fn on a locked OS thread switched into ns, so that sockets fn opens belong
// to ns. Without a namespace (ns ≤ 0) fn runs directly. See [netnsdo.Do].
func inNetNS(ns netns.NsHandle, fn func() error) error {
	if ns <= 0 {
		return fn()
	}
	return netnsdo.Do(ns, fn)
}

// zeroMAC is the target hardware address of gratuitous ARP and of probes (RFC 5227).
var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// garpPacket builds a gratuitous ARP request: broadcast, sender IP = target IP = ip,
// sender MAC = mac, target MAC zero.
func garpPacket(mac net.HardwareAddr, ip netip.Addr) (*arp.Packet, error) {
	return arp.NewPacket(arp.OperationRequest, mac, ip, zeroMAC, ip)
}

// probePacket builds an RFC 5227 ARP probe: request, sender IP 0.0.0.0, target IP ip.
func probePacket(mac net.HardwareAddr, ip netip.Addr) (*arp.Packet, error) {
	return arp.NewPacket(arp.OperationRequest, mac, netip.IPv4Unspecified(), zeroMAC, ip)
}
