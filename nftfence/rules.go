package nftfence

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Names of the nftables objects in the fence's table.
const (
	// TablePrefix starts the table name: the table for eth0 is netdev "keepraft_eth0".
	TablePrefix = "keepraft_"
	// LeaseSet is the timeout set that holds the VIPs whose traffic may pass.
	LeaseSet = "vip_lease"
	// ManagedSet is the constant set of every managed VIP.
	ManagedSet = "vip_managed"
	// IngressChain and EgressChain are the base chains on the VIP interface.
	IngressChain = "ingress"
	EgressChain  = "egress"
)

// MinLease is the shortest lease Open grants; a shorter one closes the fence. The kernel
// converts an element's millisecond timeout to jiffies rounding down, and an element whose
// timeout rounds to 0 jiffies would never expire on some kernels; 10 ms is at least one
// jiffy for every HZ ≥ 100.
const MinLease = 10 * time.Millisecond

// DefaultCheckInterval is Watch's periodic re-check when Options.CheckInterval is zero.
const DefaultCheckInterval = time.Second

// chainPriority runs the fence before the usual netdev chains (it only drops, so the order
// against other tables does not change what passes).
const chainPriority = -500

// Ethertypes and the ARP header prefix (ptype IPv4, hlen 6, plen 4) the rules match.
var (
	etherIPv4     = []byte{0x08, 0x00}
	etherARP      = []byte{0x08, 0x06}
	arpIPv4Header = []byte{0x08, 0x00, 0x06, 0x04}
)

// Offsets in the network header.
const (
	ipv4SrcOffset = 12
	ipv4DstOffset = 16
	arpPTypeOff   = 2  // ptype, hlen, plen: 4 bytes
	arpSPAOffset  = 14 // sender protocol address
	arpTPAOffset  = 24 // target protocol address
)

// Options configures a [Fence].
type Options struct {
	// Interface is the link that carries the VIPs (config vip.interface).
	Interface string
	// VIPs are the managed VIPs. Only the address of each prefix counts: 198.18.0.10/32
	// and 198.18.0.10/24 both fence 198.18.0.10. IPv4 only.
	VIPs []netip.Prefix
	// NetNS, when open (> 0), is the network namespace to work in; the Fence does not
	// close it. The zero value means the current namespace.
	NetNS netns.NsHandle
	// CheckInterval is how often Watch re-reads the table besides reacting to nftables
	// events (0 means DefaultCheckInterval).
	CheckInterval time.Duration
}

// validate checks o and returns the fenced addresses in order, without duplicates.
func (o Options) validate() ([]netip.Addr, error) {
	var errs []error
	switch {
	case o.Interface == "":
		errs = append(errs, errors.New("options.Interface: must be set"))
	case len(o.Interface) >= unix.IFNAMSIZ || strings.ContainsAny(o.Interface, "/ \x00"):
		errs = append(errs, fmt.Errorf("options.Interface %q: not a valid interface name", o.Interface))
	}
	if len(o.VIPs) == 0 {
		errs = append(errs, errors.New("options.VIPs: at least one VIP is required"))
	}
	seen := make(map[netip.Addr]bool, len(o.VIPs))
	var addrs []netip.Addr
	for i, p := range o.VIPs {
		a := p.Addr().Unmap()
		switch {
		case !p.IsValid():
			errs = append(errs, fmt.Errorf("options.VIPs[%d]: invalid prefix", i))
		case !a.Is4():
			errs = append(errs, fmt.Errorf("options.VIPs[%d] %s: only IPv4 is supported", i, p))
		case a.IsUnspecified():
			errs = append(errs, fmt.Errorf("options.VIPs[%d] %s: unspecified address", i, p))
		case seen[a]:
			// 198.18.0.10/32 and 198.18.0.10/24 are one address: fence it once.
		default:
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	if o.CheckInterval < 0 {
		errs = append(errs, fmt.Errorf("options.CheckInterval: must be ≥ 0, got %s", o.CheckInterval))
	}
	return addrs, errors.Join(errs...)
}

// TableName is the name of the fence's netdev table for an interface.
func TableName(ifname string) string { return TablePrefix + ifname }

// leaseMillis rounds a lease down to the kernel's millisecond granularity; a lease shorter
// than MinLease is 0 (closed).
func leaseMillis(d time.Duration) time.Duration {
	d = d.Truncate(time.Millisecond)
	if d < MinLease {
		return 0
	}
	return d
}

// egressSupported reports whether a kernel release string ("6.1.0-18-amd64") is at least
// 5.16, the first release with the netdev egress hook.
func egressSupported(release string) (bool, error) {
	major, rest, ok := strings.Cut(release, ".")
	if !ok {
		return false, fmt.Errorf("parse kernel release %q: no minor version", release)
	}
	minor := rest
	if i := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minor = rest[:i]
	}
	maj, err := strconv.Atoi(major)
	if err != nil {
		return false, fmt.Errorf("parse kernel release %q: %w", release, err)
	}
	mnr, err := strconv.Atoi(minor)
	if err != nil {
		return false, fmt.Errorf("parse kernel release %q: %w", release, err)
	}
	return maj > 5 || maj == 5 && mnr >= 16, nil
}

// objects are the fence's nftables objects for one interface and VIP list.
type objects struct {
	table   *nftables.Table
	lease   *nftables.Set
	managed *nftables.Set
	ingress *nftables.Chain
	egress  *nftables.Chain
}

// newObjects describes the table, sets and chains for ifname.
func newObjects(ifname string) objects {
	t := &nftables.Table{Name: TableName(ifname), Family: nftables.TableFamilyNetdev}
	prio := nftables.ChainPriority(chainPriority)
	accept := nftables.ChainPolicyAccept
	chain := func(name string, hook *nftables.ChainHook) *nftables.Chain {
		return &nftables.Chain{
			Name:     name,
			Table:    t,
			Type:     nftables.ChainTypeFilter,
			Hooknum:  hook,
			Priority: &prio,
			Policy:   &accept,
			Device:   ifname,
		}
	}
	return objects{
		table:   t,
		lease:   &nftables.Set{Table: t, Name: LeaseSet, KeyType: nftables.TypeIPAddr, HasTimeout: true},
		managed: &nftables.Set{Table: t, Name: ManagedSet, KeyType: nftables.TypeIPAddr, Constant: true},
		ingress: chain(IngressChain, nftables.ChainHookIngress),
		egress:  chain(EgressChain, nftables.ChainHookEgress),
	}
}

// rules builds the fence's rules, three per chain:
//
//	ingress: meta pkttype host meta protocol ip  ip daddr @vip_managed ip daddr != @vip_lease ip protocol tcp counter reject with tcp reset
//	         meta protocol ip  ip daddr != @vip_lease ip daddr @vip_managed counter drop
//	         meta protocol arp arp ptype/hlen/plen ip,6,4 arp tpa != @vip_lease arp tpa @vip_managed counter drop
//	egress:  meta protocol ip  ip saddr @vip_managed ip protocol tcp tcp flags & rst == rst accept
//	         meta protocol ip  ip saddr != @vip_lease ip saddr @vip_managed counter drop
//	         meta protocol arp arp ptype/hlen/plen ip,6,4 arp spa != @vip_lease arp spa @vip_managed counter drop
//
// The lease lookup comes first in the drops so a VIP in the lease set passes on the first
// lookup. An expired element stops matching at lookup time, whether or not garbage
// collection has removed it yet.
//
// The first rule of each chain answers, instead of dropping, TCP to a VIP this host does
// not hold, with a reset: a client whose ARP entry still names this host (the VIP just
// moved; the new holder's gratuitous ARP is on its way) learns at once that its connection
// is gone or refused and reconnects, instead of waiting out a retransmission timeout
// (200 ms at least) or its connect timeout on a segment that vanished. The kernel never
// answers a reset with a reset. The reset is built in the ingress hook and leaves through
// egress with the VIP as its source, so egress lets a reset from a VIP pass. A reset carries
// no data; nothing else from an unleased VIP leaves.
func (o objects) rules() []*nftables.Rule {
	return []*nftables.Rule{
		{Table: o.table, Chain: o.ingress, Exprs: o.refuseRule()},
		{Table: o.table, Chain: o.ingress, Exprs: o.ipv4Rule(ipv4DstOffset)},
		{Table: o.table, Chain: o.ingress, Exprs: o.arpRule(arpTPAOffset)},
		{Table: o.table, Chain: o.egress, Exprs: o.resetRule()},
		{Table: o.table, Chain: o.egress, Exprs: o.ipv4Rule(ipv4SrcOffset)},
		{Table: o.table, Chain: o.egress, Exprs: o.arpRule(arpSPAOffset)},
	}
}

// rulesPerChain is how many rules rules puts in each chain.
const rulesPerChain = 3

// TCP: the protocol number's offset in the IPv4 header, the flags byte's offset in the
// TCP header and the reset bit.
const (
	ipProtoOffset  = 9
	tcpFlagsOffset = 13
	tcpRST         = 0x04
)

// isTCP matches an IPv4 TCP packet.
func isTCP() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: ipProtoOffset, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}
}

// refuseRule answers TCP to a managed, unleased VIP with a reset, when the frame was sent
// to this host's MAC: a frame for another host's MAC that reaches the hook anyway (a
// promiscuous interface, a switch flooding an unknown unicast) may belong to a connection
// the VIP's new holder serves, which a reset from here would break.
func (o objects) refuseRule() []expr.Any {
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyPKTTYPE, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.PACKET_HOST}},
		&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: etherIPv4},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: ipv4DstOffset, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: o.managed.Name, SetID: o.managed.ID},
		&expr.Lookup{SourceRegister: 1, SetName: o.lease.Name, SetID: o.lease.ID, Invert: true},
	}
	e = append(e, isTCP()...)
	return append(e, &expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
}

// resetRule lets a TCP reset from a managed VIP leave (the refusals of refuseRule).
func (o objects) resetRule() []expr.Any {
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: etherIPv4},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: ipv4SrcOffset, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: o.managed.Name, SetID: o.managed.ID},
	}
	e = append(e, isTCP()...)
	e = append(e,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: tcpFlagsOffset, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{tcpRST}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{tcpRST}},
	)
	return append(e, &expr.Verdict{Kind: expr.VerdictAccept})
}

func (o objects) ipv4Rule(addrOffset uint32) []expr.Any {
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: etherIPv4},
	}
	return append(e, o.fenceAddr(addrOffset)...)
}

func (o objects) arpRule(addrOffset uint32) []expr.Any {
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: etherARP},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: arpPTypeOff, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: arpIPv4Header},
	}
	return append(e, o.fenceAddr(addrOffset)...)
}

// fenceAddr loads the IPv4 address at offset and drops the packet when it is managed and
// not leased.
func (o objects) fenceAddr(offset uint32) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: o.lease.Name, SetID: o.lease.ID, Invert: true},
		&expr.Lookup{SourceRegister: 1, SetName: o.managed.Name, SetID: o.managed.ID},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

// elements returns one set element per address, with timeout d (0: none).
func elements(addrs []netip.Addr, d time.Duration) []nftables.SetElement {
	out := make([]nftables.SetElement, len(addrs))
	for i, a := range addrs {
		b := a.As4()
		out[i] = nftables.SetElement{Key: b[:], Timeout: d}
	}
	return out
}
