package vip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// resetFunc aborts the TCP connections whose local address is addr and returns how many it
// aborted. The real one is [resetTCP]; unit tests record the calls.
type resetFunc func(addr netip.Addr) (int, error)

// TCP states (include/net/tcp_states.h) in which an aborted socket sends a reset.
const (
	tcpEstablished = 1
	tcpSynRecv     = 3
	tcpFinWait1    = 4
	tcpFinWait2    = 5
	tcpCloseWait   = 8
)

// resetTCP aborts, in ns (0: the current namespace), every TCP connection whose local
// address is addr, with SOCK_DESTROY (the kernel needs CONFIG_INET_DIAG_DESTROY): the
// kernel sends the peer a reset, and the process that owns the socket gets ECONNABORTED
// on its next use. Both IPv4 sockets and IPv6 sockets with the IPv4-mapped address (a
// server listening on "::") count. Listening sockets are left alone. A released VIP's
// connections can no longer reach their clients (the address is gone, the fence drops
// what they send), so a client waiting for an answer would wait out its own timeout; the
// reset tells it at once.
func resetTCP(ns netns.NsHandle, addr netip.Addr) (int, error) {
	n := 0
	err := inNetNS(ns, func() error {
		var errs []error
		for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
			socks, err := netlink.SocketDiagTCP(family)
			if err != nil {
				errs = append(errs, fmt.Errorf("list TCP sockets (family %d): %w", family, err))
				continue
			}
			for _, s := range socks {
				src, ok := netip.AddrFromSlice(s.ID.Source)
				if !ok || src.Unmap() != addr {
					continue
				}
				switch s.State {
				case tcpEstablished, tcpSynRecv, tcpFinWait1, tcpFinWait2, tcpCloseWait:
				default:
					continue
				}
				if err := destroySocket(s); err != nil {
					errs = append(errs, fmt.Errorf("abort %s:%d -> %s:%d: %w", s.ID.Source, s.ID.SourcePort, s.ID.Destination, s.ID.DestinationPort, err))
					continue
				}
				n++
			}
		}
		return errors.Join(errs...)
	})
	return n, err
}

// destroySocket sends SOCK_DESTROY for one socket of a SOCK_DIAG dump, naming it by
// family, addresses, ports and cookie (netlink.SocketDestroy handles AF_INET only).
func destroySocket(s *netlink.Socket) error {
	// struct inet_diag_req_v2: family, protocol, ext, pad, states, then inet_diag_sockid:
	// sport, dport (big-endian), src[4], dst[4] (big-endian words), if, cookie[2].
	b := make([]byte, 56)
	b[0], b[1] = s.Family, unix.IPPROTO_TCP
	binary.BigEndian.PutUint16(b[8:], s.ID.SourcePort)
	binary.BigEndian.PutUint16(b[10:], s.ID.DestinationPort)
	put := func(at int, ip net.IP) {
		if s.Family == unix.AF_INET {
			copy(b[at:at+4], ip.To4())
		} else {
			copy(b[at:at+16], ip.To16())
		}
	}
	put(12, s.ID.Source)
	put(28, s.ID.Destination)
	binary.NativeEndian.PutUint32(b[44:], s.ID.Interface)
	binary.NativeEndian.PutUint32(b[48:], s.ID.Cookie[0])
	binary.NativeEndian.PutUint32(b[52:], s.ID.Cookie[1])
	req := nl.NewNetlinkRequest(nl.SOCK_DESTROY, unix.NLM_F_ACK)
	req.AddRawData(b)
	_, err := req.Execute(unix.NETLINK_INET_DIAG, 0)
	return err
}
