package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// AddrEvent is one address notification for the tracked VIP in one host namespace.
type AddrEvent struct {
	// Host is the host whose namespace sent the notification.
	Host string
	// Added is true for RTM_NEWADDR (added or renewed), false for RTM_DELADDR.
	Added bool
	// At is when the tracker received it (wall clock plus Go's monotonic reading, one clock
	// for every namespace).
	At time.Time
	// LinkIndex is the interface index inside the namespace.
	LinkIndex int
	// Prefix is the address with its prefix length.
	Prefix netip.Prefix
	// ValidLft is the valid lifetime in seconds the kernel reported (0xffffffff = forever).
	ValidLft int
	// Seed marks state read with a dump when tracking started, not a notification.
	Seed bool
}

// Overlap is an interval during which two or more hosts held the VIP.
type Overlap struct {
	// Hosts are every host that held the VIP during the interval.
	Hosts []string
	// Start is when the second holder appeared; End when fewer than two remained (zero while
	// the overlap lasts).
	Start, End time.Time
}

// Duration is End-Start, or the time since Start while the overlap lasts.
func (o Overlap) Duration() time.Duration {
	if o.End.IsZero() {
		return time.Since(o.Start)
	}
	return o.End.Sub(o.Start)
}

// Tracker follows one address in every host namespace through netlink RTNLGRP_IPV4_IFADDR
// notifications (events, not polling) and keeps who holds it, the peak number of
// simultaneous holders, and every overlap. All events are stamped with one clock when
// received, so cross-namespace order is accurate to the scheduling delay of the reader
// goroutines (microseconds on an idle machine). Methods are safe for concurrent use.
type Tracker struct {
	vip   netip.Addr
	log   *zap.Logger
	start time.Time

	mu       sync.Mutex
	addrs    map[string]map[int]bool // host -> link indices with the vip
	fences   map[string]fenceState   // host -> its keepraftd VIP fence, as last read
	held     map[string]bool         // host -> holds: the address, and no closed fence
	since    map[string]time.Time    // host -> when it began holding
	noneAt   map[string]time.Time    // host -> when it stopped holding
	events   []AddrEvent
	max      int
	overlaps []Overlap
	inOver   bool
	changed  chan struct{}
	errs     []error
	closing  bool

	done chan struct{}
	wg   sync.WaitGroup
}

// TrackHolders starts a tracker for vip over every host of the lab. Start it before the
// action under test: the initial state comes from a dump taken right after subscribing.
func (l *Lab) TrackHolders(ctx context.Context, vip netip.Addr) (*Tracker, error) {
	t := &Tracker{
		vip:     vip,
		log:     l.log.Named("tracker"),
		start:   time.Now(),
		addrs:   map[string]map[int]bool{},
		fences:  map[string]fenceState{},
		held:    map[string]bool{},
		since:   map[string]time.Time{},
		noneAt:  map[string]time.Time{},
		changed: make(chan struct{}),
		done:    make(chan struct{}),
	}
	type sub struct {
		h  *Host
		ch chan netlink.AddrUpdate
	}
	var subs []sub
	for _, h := range l.Hosts() {
		if !h.ns.IsOpen() {
			return nil, errors.Join(fmt.Errorf("track %s: namespace %s is not open", vip, h.NS), t.Close())
		}
		ch := make(chan netlink.AddrUpdate, 1024)
		ns := h.ns
		name := h.Name
		err := netlink.AddrSubscribeWithOptions(ch, t.done, netlink.AddrSubscribeOptions{
			Namespace:         &ns,
			ReceiveBufferSize: 4 << 20,
			ErrorCallback: func(err error) {
				t.mu.Lock()
				defer t.mu.Unlock()
				if !t.closing {
					t.errs = append(t.errs, fmt.Errorf("address events from %s: %w", name, err))
				}
			},
		})
		if err != nil {
			return nil, errors.Join(fmt.Errorf("subscribe to addresses in %s: %w", h.NS, err), t.Close())
		}
		subs = append(subs, sub{h, ch})
		// Drain from now on so the library's reader never blocks; apply after seeding.
	}
	// Seed from a dump taken after subscribing, then apply notifications in order. A
	// notification already reflected in the dump is applied again, which is harmless.
	for _, s := range subs {
		if err := t.seed(s.h); err != nil {
			return nil, errors.Join(err, t.Close())
		}
		if err := t.watchFence(s.h); err != nil {
			return nil, errors.Join(err, t.Close())
		}
	}
	t.wg.Go(t.expireLoop)
	for _, s := range subs {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			for u := range s.ch {
				t.apply(s.h.Name, u, time.Now())
			}
			t.mu.Lock()
			if !t.closing {
				t.errs = append(t.errs, fmt.Errorf("address events from %s: subscription ended", s.h.Name))
			}
			t.mu.Unlock()
		}()
	}
	l.mu.Lock()
	l.trackers = append(l.trackers, t)
	l.mu.Unlock()
	return t, nil
}

// seed reads h's current IPv4 addresses and records whether it holds the vip.
func (t *Tracker) seed(h *Host) error {
	hh, err := netlink.NewHandleAt(h.ns)
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", h.NS, err)
	}
	defer hh.Close()
	addrs, err := hh.AddrList(nil, unix.AF_INET)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("list addresses in %s: %w", h.NS, err)
	}
	now := time.Now()
	for _, a := range addrs {
		t.apply(h.Name, netlink.AddrUpdate{LinkAddress: *a.IPNet, LinkIndex: a.LinkIndex, NewAddr: true, ValidLft: a.ValidLft}, now, true)
	}
	return nil
}

// apply folds one notification into the state.
func (t *Tracker) apply(host string, u netlink.AddrUpdate, at time.Time, seed ...bool) {
	ip, ok := netip.AddrFromSlice(u.LinkAddress.IP)
	if !ok || ip.Unmap() != t.vip {
		return
	}
	ones, _ := u.LinkAddress.Mask.Size()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events = append(t.events, AddrEvent{
		Host: host, Added: u.NewAddr, At: at, LinkIndex: u.LinkIndex,
		Prefix: netip.PrefixFrom(ip.Unmap(), ones), ValidLft: u.ValidLft, Seed: len(seed) > 0 && seed[0],
	})
	set := t.addrs[host]
	if set == nil {
		set = map[int]bool{}
		t.addrs[host] = set
	}
	if u.NewAddr {
		set[u.LinkIndex] = true
	} else {
		delete(set, u.LinkIndex)
	}
	t.recomputeLocked(at)
}

// recomputeLocked derives who holds the vip at `at` — the address is on one of the host's
// links and no keepraftd fence on the host drops its traffic — and records every change:
// since/noneAt, the peak, overlaps, the log line and the change broadcast.
func (t *Tracker) recomputeLocked(at time.Time) {
	changed := false
	for host, set := range t.addrs {
		h := len(set) > 0 && t.fences[host].passes(at)
		if h == t.held[host] {
			continue
		}
		changed = true
		t.held[host] = h
		if h {
			t.since[host] = at
		} else {
			t.noneAt[host] = at
		}
	}
	if !changed {
		return
	}
	holders := t.holdersLocked()
	n := len(holders)
	t.max = max(t.max, n)
	switch {
	case n >= 2 && !t.inOver:
		t.inOver = true
		t.overlaps = append(t.overlaps, Overlap{Hosts: holders, Start: at})
		t.log.Warn("vip overlap", zap.Stringer("vip", t.vip), zap.Strings("holders", holders))
	case n >= 2:
		o := &t.overlaps[len(t.overlaps)-1]
		for _, h := range holders {
			if !slices.Contains(o.Hosts, h) {
				o.Hosts = append(o.Hosts, h)
			}
		}
		slices.Sort(o.Hosts)
	case t.inOver:
		t.inOver = false
		t.overlaps[len(t.overlaps)-1].End = at
	}
	t.log.Debug("vip holders", zap.Stringer("vip", t.vip), zap.Strings("holders", holders))
	close(t.changed)
	t.changed = make(chan struct{})
}

func (t *Tracker) holdersLocked() []string {
	var hs []string
	for h, held := range t.held {
		if held {
			hs = append(hs, h)
		}
	}
	slices.Sort(hs)
	return hs
}

// Holders returns the hosts that hold the vip now, sorted.
func (t *Tracker) Holders() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.holdersLocked()
}

// MaxConcurrent is the largest number of hosts that held the vip at the same instant since
// the tracker started.
func (t *Tracker) MaxConcurrent() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.max
}

// Overlaps returns every interval with two or more holders (the last one has a zero End if it
// still lasts).
func (t *Tracker) Overlaps() []Overlap {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Overlap, len(t.overlaps))
	for i, o := range t.overlaps {
		o.Hosts = slices.Clone(o.Hosts)
		out[i] = o
	}
	return out
}

// Events returns every notification for the vip so far, in arrival order.
func (t *Tracker) Events() []AddrEvent {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.events)
}

// Err returns subscription errors seen so far (nil if none); after one the holder view may
// be incomplete.
func (t *Tracker) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return errors.Join(t.errs...)
}

// WaitHolder waits until host holds the vip and returns when it began holding it.
func (t *Tracker) WaitHolder(ctx context.Context, host string) (time.Time, error) {
	return t.wait(ctx, host, true)
}

// WaitNone waits until host does not hold the vip and returns when it stopped holding it
// (the tracker start time if it never held it).
func (t *Tracker) WaitNone(ctx context.Context, host string) (time.Time, error) {
	return t.wait(ctx, host, false)
}

func (t *Tracker) wait(ctx context.Context, host string, hold bool) (time.Time, error) {
	for {
		t.mu.Lock()
		holds := t.held[host]
		if holds == hold {
			at := t.since[host]
			if !hold {
				at = t.noneAt[host]
				if at.IsZero() {
					at = t.start
				}
			}
			t.mu.Unlock()
			return at, nil
		}
		ch := t.changed
		t.mu.Unlock()
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("wait for %s holds %s = %v (holders %v): %w", host, t.vip, hold, t.Holders(), ctx.Err())
		case <-ch:
		}
	}
}

// Close stops every subscription and waits for the readers. It returns subscription errors
// seen while tracking. Calling it again is harmless.
func (t *Tracker) Close() error {
	t.mu.Lock()
	if t.closing {
		t.mu.Unlock()
		return nil
	}
	t.closing = true
	t.mu.Unlock()
	close(t.done)
	t.wg.Wait()
	return t.Err()
}

// FormatEvents renders events for a failure message, one line per change of a host's
// holding: the renewals that follow an add (a new lifetime every fraction of a second) are
// counted on the add's line instead of listed.
func FormatEvents(evs []AddrEvent) string {
	var b strings.Builder
	held := map[string]bool{}
	var last *AddrEvent // the add whose renewals are being counted
	renewals := 0
	flush := func() {
		if last != nil && renewals > 0 {
			fmt.Fprintf(&b, " (renewed %d times)", renewals)
		}
		last, renewals = nil, 0
	}
	for i := range evs {
		e := &evs[i]
		if e.Added && held[e.Host] && last != nil && last.Host == e.Host {
			renewals++
			continue
		}
		flush()
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		what := "removed"
		if e.Added {
			what = "added"
			if held[e.Host] {
				what = "renewed"
			}
			last = e
		}
		if e.Seed {
			what += " (held when tracking began)"
		}
		fmt.Fprintf(&b, "  %s %s %s valid_lft=%d", e.At.Format("15:04:05.000"), e.Host, what, e.ValidLft)
		held[e.Host] = e.Added
	}
	flush()
	return b.String()
}
