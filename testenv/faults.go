package testenv

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"time"

	"go.uber.org/zap"
)

// nftTable is the nftables table the lab installs inside host namespaces for partitions.
const nftTable = "keepraft_lab"

// CutLink sets the host's bridge-side veth end down: the host loses carrier and reaches no one.
func (l *Lab) CutLink(h *Host) error { return l.setPort(h, false) }

// RestoreLink sets the host's bridge-side veth end up again.
func (l *Lab) RestoreLink(h *Host) error { return l.setPort(h, true) }

func (l *Lab) setPort(h *Host, up bool) error {
	if l.brH == nil {
		return fmt.Errorf("set link of %s: lab has no bridge", h.Name)
	}
	port, err := l.brH.LinkByName(h.BridgePort)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", h.BridgePort, l.BridgeNS, err)
	}
	if up {
		err = l.brH.LinkSetUp(port)
	} else {
		err = l.brH.LinkSetDown(port)
	}
	if err != nil {
		return fmt.Errorf("set %s (%s) up=%v: %w", h.BridgePort, h.Name, up, err)
	}
	l.log.Info("link", zap.String("host", h.Name), zap.Bool("up", up))
	return nil
}

// Partition drops all IPv4 traffic between a and b, both directions, with nftables rules
// inside the two namespaces (input by source, output by destination). Other hosts, and ARP,
// are not affected. It is idempotent.
func (l *Lab) Partition(a, b *Host) error {
	return l.partition(a, b, true)
}

// Heal undoes [Lab.Partition] between a and b. It is idempotent.
func (l *Lab) Heal(a, b *Host) error {
	return l.partition(a, b, false)
}

// Isolate partitions h from every other host (its link stays up).
func (l *Lab) Isolate(h *Host) error {
	for _, o := range l.Hosts() {
		if o != h {
			if err := l.Partition(h, o); err != nil {
				return err
			}
		}
	}
	return nil
}

// HealAll removes every partition.
func (l *Lab) HealAll() error {
	hosts := l.Hosts()
	for i, a := range hosts {
		for _, b := range hosts[i+1:] {
			if err := l.Heal(a, b); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *Lab) partition(a, b *Host, block bool) error {
	if a == b {
		return fmt.Errorf("partition %s from itself", a.Name)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range [][2]*Host{{a, b}, {b, a}} {
		if err := l.block(p[0], p[1].Addr, block); err != nil {
			return err
		}
	}
	l.log.Info("partition", zap.String("a", a.Name), zap.String("b", b.Name), zap.Bool("blocked", block))
	return nil
}

// block adds or removes peer from h's blocked set; l.mu is held.
func (l *Lab) block(h *Host, peer netip.Addr, block bool) error {
	set, ok := l.fw[h.Name]
	if !ok {
		if !block {
			return nil
		}
		script := fmt.Sprintf(`table inet %[1]s {
	set blocked { type ipv4_addr; }
	chain input { type filter hook input priority -10; policy accept; ip saddr @blocked drop; }
	chain output { type filter hook output priority -10; policy accept; ip daddr @blocked drop; }
}
`, nftTable)
		if err := nftIn(h, script); err != nil {
			return err
		}
		set = map[netip.Addr]bool{}
		l.fw[h.Name] = set
	}
	if set[peer] == block {
		return nil
	}
	verb := "add"
	if !block {
		verb = "delete"
	}
	if err := nftIn(h, fmt.Sprintf("%s element inet %s blocked { %s }\n", verb, nftTable, peer)); err != nil {
		return err
	}
	set[peer] = block
	return nil
}

// nftIn feeds an nft script to `nft -f -` inside h's namespace.
func nftIn(h *Host, script string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", h.NS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %w: %s", h.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
