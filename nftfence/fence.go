// Package nftfence is a millisecond kernel lease for the VIPs: an nftables netdev table on
// the VIP interface drops IPv4 packets to (ingress) and from (egress) a managed VIP, and ARP
// packets whose target (ingress) or sender (egress) protocol address is a managed VIP,
// unless the VIP is in the timeout set vip_lease.
//
// The owner renews the lease with [Fence.Open] on every quorum renewal. The set's elements
// carry the lease as their kernel timeout; an expired element stops matching at lookup, so
// when the renewer stops (process frozen, killed, host stalls in user space) traffic for
// the VIP stops within one jiffy of the element's timeout, whatever the address's
// valid_lft says.
//
// The fence fails open when its table is removed (`nft flush ruleset`, e.g. Debian's
// nftables.service reload): [Fence.Watch] reports that so the caller drops the VIP.
//
// Requirements: Linux ≥ 5.16 with CONFIG_NETFILTER_EGRESS (netdev egress hook), nf_tables
// with the netdev family, CAP_NET_ADMIN in the namespace.
//
// Order of operations for the owner:
//   - start: New (closed), then Watch. A VIP already on the interface is fenced from New
//     on, until the owner renews it with Open.
//   - acquire: fence closed → probe for conflicts → add the address → Open → gratuitous
//     ARP. A GARP sent while the fence is closed is dropped at egress, and the packet
//     socket reports ENOBUFS.
//   - renew: Open(remaining lease) on every quorum renewal; OpenUntil with the promise
//     deadline avoids computing the remainder by hand.
//   - release: Shut → delete the address.
//   - stop: cancel Watch, Shut, delete the address, Remove.
//
// While the fence is closed, incoming ARP whose target is a VIP is dropped before
// ETH_P_ARP packet sockets see it: a conflict probe (sender 0.0.0.0, target VIP) or a
// gratuitous ARP from another holder is invisible to a conflict check run then; replies
// to our own probes (target 0.0.0.0) still arrive.
//
// One Fence per interface: the table is named after the interface, and New or Remove of a
// second Fence replaces or deletes the first one's table.
package nftfence

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/keepraft/keepraft/internal/boottime"
	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

var (
	// ErrNoEgress is returned by [New] when the kernel has no netdev egress hook: Linux
	// before 5.16, or built without CONFIG_NETFILTER_EGRESS. The fence cannot stop the
	// VIP's outgoing traffic and gratuitous ARPs there, so it refuses to half-work.
	ErrNoEgress = errors.New("nftables netdev egress hook unavailable: the VIP fence needs Linux ≥ 5.16 with CONFIG_NETFILTER_EGRESS")

	// ErrGone is returned by [Fence.Open], [Fence.Shut] and [Fence.Check] when the table,
	// a set or a chain of the fence is missing or altered (someone flushed the ruleset):
	// the fence no longer holds and traffic for the VIPs passes. Drop the VIPs, then
	// install a new fence with [New].
	ErrGone = errors.New("VIP fence table gone")

	// ErrRemoved is returned by every method after [Fence.Remove] or [Fence.Close].
	ErrRemoved = errors.New("VIP fence closed")

	// ErrSlow is returned by [Fence.Open] when it could not apply the remaining lease
	// within its own deadline (the process was stalled repeatedly while renewing); the
	// fence has been shut.
	ErrSlow = errors.New("VIP fence renewal stalled")
)

// OpenSlack is how long an Open batch may take before Open corrects the timeout it just set
// (which counted from the kernel's receipt, not from the call): a stall between computing
// the timeout and sending the batch would otherwise extend the lease by the stall. A batch
// takes well under 1 ms on an idle host and 10–20 ms on a loaded 2-core one (1 ms, then
// 10 ms, made loaded owners drop their VIP after three "slow" batches in a row). The
// caller's guard must cover it: keepraft's owner opens the fence 60 ms short of its lease.
const OpenSlack = 50 * time.Millisecond

// openAttempts bounds Open's corrections.
const openAttempts = 3

// Fence is the nftables fence of one interface. Its methods are safe for concurrent use
// and serialised.
type Fence struct {
	opts  Options
	addrs []netip.Addr
	obj   objects
	log   *zap.Logger
	now   func() time.Time

	// apply replaces the lease set's elements by addrs with timeout d, or flushes it when
	// d is 0, in one batch. Unit tests replace it.
	apply func(d time.Duration) error

	mu      sync.Mutex
	conn    *nftables.Conn
	removed bool

	// eventReads counts the event datagrams Watch received (past its socket filter).
	eventReads atomic.Int64
}

// New installs (or replaces, in one transaction) the table with its chains and an empty
// lease set: the fence is closed. The interface must exist. It fails with [ErrNoEgress]
// when the kernel has no netdev egress hook.
func New(opts Options, log *zap.Logger) (*Fence, error) {
	addrs, err := opts.validate()
	if err != nil {
		return nil, fmt.Errorf("nftfence options: %w", err)
	}
	if opts.CheckInterval == 0 {
		opts.CheckInterval = DefaultCheckInterval
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return nil, fmt.Errorf("uname: %w", err)
	}
	release := unix.ByteSliceToString(uts.Release[:])
	if ok, err := egressSupported(release); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("kernel %s: %w", release, ErrNoEgress)
	}
	if err := checkLink(opts); err != nil {
		return nil, err
	}
	conn, err := dial(opts)
	if err != nil {
		return nil, err
	}
	f := &Fence{
		opts:  opts,
		addrs: addrs,
		obj:   newObjects(opts.Interface),
		log:   log.Named("nftfence").With(zap.String("interface", opts.Interface), zap.String("table", TableName(opts.Interface))),
		now:   time.Now,
		conn:  conn,
	}
	f.apply = f.replaceElements
	if err := f.install(); err != nil {
		_ = conn.CloseLasting()
		return nil, err
	}
	f.log.Info("VIP fence installed, closed", zap.Stringers("vips", addrs), zap.String("kernel", release))
	return f, nil
}

// dial opens a lasting nftables netlink connection in opts.NetNS.
func dial(opts Options) (*nftables.Conn, error) {
	copts := []nftables.ConnOption{nftables.AsLasting()}
	if opts.NetNS > 0 {
		copts = append(copts, nftables.WithNetNSFd(int(opts.NetNS)))
	}
	c, err := nftables.New(copts...)
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink socket: %w", err)
	}
	return c, nil
}

// checkLink fails unless opts.Interface exists: on kernels before 6.x a netdev chain on a
// missing device fails with a bare ENOENT, and later ones accept it and fence nothing.
func checkLink(opts Options) error {
	var h *netlink.Handle
	var err error
	if opts.NetNS > 0 {
		h, err = netlink.NewHandleAt(opts.NetNS)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return fmt.Errorf("open netlink handle: %w", err)
	}
	defer h.Close()
	if _, err := h.LinkByName(opts.Interface); err != nil {
		return fmt.Errorf("find interface %s: %w", opts.Interface, err)
	}
	return nil
}

// install replaces the table in one batch: add (so the delete cannot fail), delete, add
// table, sets, chains and rules.
func (f *Fence) install() error {
	c, o := f.conn, f.obj
	c.AddTable(o.table)
	c.DelTable(o.table)
	c.AddTable(o.table)
	if err := c.AddSet(o.lease, nil); err != nil {
		return fmt.Errorf("add set %s to table %s: %w", o.lease.Name, o.table.Name, err)
	}
	if err := c.AddSet(o.managed, elements(f.addrs, 0)); err != nil {
		return fmt.Errorf("add set %s to table %s: %w", o.managed.Name, o.table.Name, err)
	}
	c.AddChain(o.ingress)
	c.AddChain(o.egress)
	for _, r := range o.rules() {
		c.AddRule(r)
	}
	if err := c.Flush(); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("install table netdev %s (chains on %s): %w: %w", o.table.Name, f.opts.Interface, ErrNoEgress, err)
		}
		return fmt.Errorf("install table netdev %s (chains on %s): %w", o.table.Name, f.opts.Interface, err)
	}
	return nil
}

// Open lets traffic for the VIPs through until `until` from the call: it replaces every
// element of the lease set with one whose timeout is what remains of until, in one batch
// (flush set + add elements: on kernel 6.1 re-adding an existing element does not refresh
// its timeout). until is rounded down to the kernel's millisecond granularity; a lease
// shorter than [MinLease] closes the fence.
//
// The kernel counts the timeout from when it applies the batch. When the batch took longer
// than 50 ms after the call (the process was stalled before sending it), Open sets the
// timeout again to what remains, so a stall does not extend the lease by more than one
// batch; after 3 slow attempts, or when the lease ran out meanwhile, it shuts the fence and
// returns [ErrSlow]. An error that wraps [ErrGone] means the set is missing.
func (f *Fence) Open(until time.Duration) error {
	return f.OpenUntil(f.now().Add(until))
}

// OpenUntilBoot is [Fence.OpenUntil] with the deadline on CLOCK_BOOTTIME (the clock the
// owner's leases run on). The two clocks are read together inside the call, so a caller
// frozen before it cannot lengthen the lease.
func (f *Fence) OpenUntilBoot(deadline time.Duration) error {
	return f.OpenUntil(f.now().Add(deadline - boottime.Now()))
}

// OpenUntil is [Fence.Open] with an absolute deadline (monotonic clock): the lease ends at
// deadline.
func (f *Fence) OpenUntil(deadline time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removed {
		return ErrRemoved
	}
	for attempt := 1; ; attempt++ {
		start := f.now()
		d := leaseMillis(deadline.Sub(start))
		if d == 0 {
			f.log.Debug("VIP fence lease too short, closing", zap.Duration("remaining", deadline.Sub(start)))
			if err := f.apply(0); err != nil {
				return err
			}
			if attempt > 1 {
				return fmt.Errorf("open set %s: the lease ran out while renewing: %w", f.obj.lease.Name, ErrSlow)
			}
			return nil
		}
		if err := f.apply(d); err != nil {
			return err
		}
		took := f.now().Sub(start)
		if took <= OpenSlack {
			f.log.Debug("VIP fence open", zap.Duration("lease", d))
			return nil
		}
		f.log.Warn("VIP fence renewal was slow; correcting the lease", zap.Duration("took", took), zap.Duration("lease", d), zap.Int("attempt", attempt))
		if attempt == openAttempts {
			if err := f.apply(0); err != nil {
				return fmt.Errorf("shut set %s after %d slow renewals: %w", f.obj.lease.Name, attempt, err)
			}
			return fmt.Errorf("open set %s: %d attempts took longer than %s each: %w", f.obj.lease.Name, attempt, OpenSlack, ErrSlow)
		}
	}
}

// Reinstall puts the table back (closed), in one transaction, after someone removed or
// altered it (Watch reported the loss). Open it again only after the VIPs were dropped
// and a fresh quorum renewed the lease.
func (f *Fence) Reinstall() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removed {
		return ErrRemoved
	}
	if err := f.install(); err != nil {
		f.redial()
		return err
	}
	f.log.Info("VIP fence reinstalled, closed")
	return nil
}

// Shut closes the fence (flushes the lease set): traffic for the VIPs is dropped at once.
func (f *Fence) Shut() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removed {
		return ErrRemoved
	}
	if err := f.apply(0); err != nil {
		return err
	}
	f.log.Debug("VIP fence shut")
	return nil
}

// replaceElements flushes the lease set and, when d > 0, adds every VIP with timeout d, in
// one batch. f.mu must be held.
func (f *Fence) replaceElements(d time.Duration) error {
	s := f.obj.lease
	f.conn.FlushSet(s)
	if d > 0 {
		if err := f.conn.SetAddElements(s, elements(f.addrs, d)); err != nil {
			return fmt.Errorf("add elements %v to set %s: %w", f.addrs, s.Name, err)
		}
	}
	if err := f.conn.Flush(); err != nil {
		f.redial()
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("replace elements of set %s in table netdev %s: %w: %w", s.Name, f.obj.table.Name, ErrGone, err)
		}
		return fmt.Errorf("replace elements of set %s in table netdev %s: %w", s.Name, f.obj.table.Name, err)
	}
	return nil
}

// redial replaces the lasting connection after a failed batch, so a stray reply cannot
// be read as the answer to the next one. f.mu must be held.
func (f *Fence) redial() {
	c, err := dial(f.opts)
	if err != nil {
		f.log.Warn("reopen nftables socket failed; keeping the old one", zap.Error(err))
		return
	}
	_ = f.conn.CloseLasting()
	f.conn = c
}

// Remove deletes the table (at daemon stop, after the VIP addresses are gone) and releases
// the netlink socket. A table already gone is not an error.
func (f *Fence) Remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removed {
		return ErrRemoved
	}
	f.removed = true
	defer func() { _ = f.conn.CloseLasting() }()
	f.conn.DelTable(f.obj.table)
	if err := f.conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete table netdev %s: %w", f.obj.table.Name, err)
	}
	f.log.Info("VIP fence removed")
	return nil
}

// Close releases the netlink socket and leaves the table as it is (call Shut first to
// leave it closed).
func (f *Fence) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removed {
		return ErrRemoved
	}
	f.removed = true
	return f.conn.CloseLasting()
}

// Check reads the table back and returns an error wrapping [ErrGone] naming what is wrong
// when the fence no longer holds: the table, a set or a chain missing, the table dormant,
// a chain's hook or rules changed. Other errors mean it could not read the ruleset.
func (f *Fence) Check() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removed {
		return ErrRemoved
	}
	return check(f.conn, f.obj)
}

// check reads the fence's objects through c.
func check(c *nftables.Conn, o objects) error {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyNetdev)
	if err != nil {
		return fmt.Errorf("list netdev tables: %w", err)
	}
	i := slices.IndexFunc(tables, func(t *nftables.Table) bool { return t.Name == o.table.Name })
	if i < 0 {
		return fmt.Errorf("table netdev %s: %w: table missing", o.table.Name, ErrGone)
	}
	if dormant(tables[i].Flags) {
		return fmt.Errorf("table netdev %s: %w: table dormant", o.table.Name, ErrGone)
	}
	sets, err := c.GetSets(o.table)
	if err != nil {
		return fmt.Errorf("list sets of table netdev %s: %w", o.table.Name, err)
	}
	for _, want := range []*nftables.Set{o.lease, o.managed} {
		if !slices.ContainsFunc(sets, func(s *nftables.Set) bool { return s.Name == want.Name }) {
			return fmt.Errorf("table netdev %s: %w: set %s missing", o.table.Name, ErrGone, want.Name)
		}
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyNetdev)
	if err != nil {
		return fmt.Errorf("list netdev chains: %w", err)
	}
	for _, want := range []*nftables.Chain{o.ingress, o.egress} {
		i := slices.IndexFunc(chains, func(ch *nftables.Chain) bool {
			return ch.Table.Name == o.table.Name && ch.Name == want.Name
		})
		if i < 0 {
			return fmt.Errorf("table netdev %s: %w: chain %s missing", o.table.Name, ErrGone, want.Name)
		}
		if got := chains[i]; got.Hooknum == nil || *got.Hooknum != *want.Hooknum {
			return fmt.Errorf("table netdev %s: %w: chain %s is not a base chain on its hook", o.table.Name, ErrGone, want.Name)
		}
		rules, err := c.GetRules(o.table, want)
		if err != nil {
			return fmt.Errorf("list rules of chain %s in table netdev %s: %w", want.Name, o.table.Name, err)
		}
		if len(rules) != rulesPerChain {
			return fmt.Errorf("table netdev %s: %w: chain %s has %d rules, want %d", o.table.Name, ErrGone, want.Name, len(rules), rulesPerChain)
		}
	}
	return nil
}

// dormant reports the dormant flag in a table's flags as google/nftables v0.3.0 decodes
// them: in host byte order although the kernel sends big-endian. Both orders are checked,
// so a fixed decoder still works (no other flag uses bit 0 or bit 24).
func dormant(flags uint32) bool {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], flags)
	return flags&unix.NFT_TABLE_F_DORMANT != 0 || binary.BigEndian.Uint32(b[:])&unix.NFT_TABLE_F_DORMANT != 0
}
