package testenv

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/keepraft/keepraft/internal/netnsdo"
)

// Run runs argv inside the host's namespace (ip netns exec) and returns its combined output.
// A non-zero exit returns an error that includes the output.
func (h *Host) Run(ctx context.Context, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("run in %s: empty argv", h.Name)
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS}, argv...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("run %q in %s: %w: %s", strings.Join(argv, " "), h.Name, err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// InNS runs f on an OS thread switched into the host's namespace. Sockets that f creates
// belong to that namespace and stay there. f must not start goroutines that create sockets
// and must not block long. If the thread cannot be switched back it is discarded.
func (h *Host) InNS(f func() error) error {
	if !h.ns.IsOpen() {
		return fmt.Errorf("netns %s: not open", h.NS)
	}
	return netnsdo.Do(h.ns, f)
}

// DialContext dials addr (an IP literal with port) from a socket created in the host's
// namespace. It works with mysql.RegisterDialContext and http.Transport.DialContext.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if _, err := netip.ParseAddrPort(addr); err != nil {
		return nil, fmt.Errorf("dial %s from %s: want an IP literal with port: %w", addr, h.Name, err)
	}
	var c net.Conn
	err := h.InNS(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		if c != nil {
			c.Close()
		}
		return nil, fmt.Errorf("dial %s %s from %s: %w", network, addr, h.Name, err)
	}
	return c, nil
}

// Listen opens a listener in the host's namespace (addr an IP literal with port, or ":port").
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := h.InNS(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen %s %s in %s: %w", network, addr, h.Name, err)
	}
	return ln, nil
}

// Ping sends one ICMP echo request from the host's namespace to dst and waits for the reply
// until ctx ends (or 1 s when ctx has no deadline).
func (h *Host) Ping(ctx context.Context, dst netip.Addr) error {
	var pc *icmp.PacketConn
	if err := h.InNS(func() error {
		var err error
		pc, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return fmt.Errorf("ping %s from %s: %w", dst, h.Name, err)
	}
	defer pc.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Second)
	}
	_ = pc.SetDeadline(deadline)
	id := os.Getpid() & 0xffff
	seq := int(time.Now().UnixNano() & 0x7fff)
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("keepraft-lab")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return fmt.Errorf("ping %s from %s: %w", dst, h.Name, err)
	}
	if _, err := pc.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return fmt.Errorf("ping %s from %s: %w", dst, h.Name, err)
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("ping %s from %s: %w", dst, h.Name, err)
		}
		if ip, ok := from.(*net.IPAddr); !ok || !ip.IP.Equal(dst.AsSlice()) {
			continue
		}
		rm, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || rm.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		if e, ok := rm.Body.(*icmp.Echo); ok && e.ID == id && e.Seq == seq {
			return nil
		}
	}
}

// registerDialer registers a go-sql-driver network named "keepraft-lab-<ns>" that dials from
// the host's namespace.
func registerDialer(h *Host) {
	mysql.RegisterDialContext(h.dialNet, func(ctx context.Context, addr string) (net.Conn, error) {
		return h.DialContext(ctx, "tcp", addr)
	})
}

// unregisterDialer makes the host's registered dialer fail (go-sql-driver has no removal).
func unregisterDialer(h *Host) {
	name := h.NS
	mysql.RegisterDialContext(h.dialNet, func(ctx context.Context, addr string) (net.Conn, error) {
		return nil, fmt.Errorf("dial %s: lab namespace %s is gone", addr, name)
	})
}

// DialNet is the go-sql-driver network name that dials from this host's namespace, for DSNs
// such as "user:pass@keepraft-lab-kr1a2b-client(198.18.0.100:3306)/kr".
func (h *Host) DialNet() string { return h.dialNet }
