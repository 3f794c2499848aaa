package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// advertReader yields received adverts; *Conn is the real one. A packet that does not decode
// comes back as its Meta and an error wrapping a codec sentinel.
type advertReader interface {
	ReadAdvert(ctx context.Context) (*Packet, Meta, error)
}

var _ advertReader = (*Conn)(nil)

// DropReason names why the Listener dropped a packet.
type DropReason string

// Drop reasons, in the order the Listener checks them.
const (
	// DropShort: the packet ended early (ErrShort).
	DropShort DropReason = "short"
	// DropType: the message type is not advertisement (ErrType).
	DropType DropReason = "type"
	// DropChecksum: the checksum does not verify (ErrChecksum).
	DropChecksum DropReason = "checksum"
	// DropMalformed: VRID 0, advert interval 0 or an address family mismatch.
	DropMalformed DropReason = "malformed"
	// DropSelf: sent by one of the self addresses (ours or another keepraft node's).
	DropSelf DropReason = "self"
	// DropTTL: the IP TTL is not 255 (RFC 3768 §7.1).
	DropTTL DropReason = "ttl"
	// DropVersion: a version other than the configured one, or an unknown one.
	DropVersion DropReason = "version"
	// DropOtherVRID: another virtual router; the sender is still tracked in Routers.
	DropOtherVRID DropReason = "other_vrid"
	// DropAuth: v2 auth type or password differ from ours, or the auth type is invalid.
	DropAuth DropReason = "auth"
	// DropAdvertInt: v2 advert interval differs from ours (keepalived drops these too).
	DropAdvertInt DropReason = "advert_int"
	// DropAddrCount: the address count differs from ours, or from the packet length.
	DropAddrCount DropReason = "addr_count"
	// DropAddresses: the address list differs from ours.
	DropAddresses DropReason = "addresses"
)

// maxRouters bounds the router table; the longest-silent entry is evicted first.
const maxRouters = 256

// Router is a foreign VRRP router as last seen.
type Router struct {
	// VRID is the virtual router it speaks for.
	VRID uint8
	// Src is its IP source address.
	Src netip.Addr
	// Priority is its last advertised priority (0: it resigned).
	Priority uint8
	// Version is its VRRP version.
	Version int
	// AdvertInt is its advertised interval.
	AdvertInt time.Duration
	// Addresses are the addresses of its last advert.
	Addresses []netip.Addr
	// LastSeen is when its last advert arrived.
	LastSeen time.Time
	// Count is how many of its adverts arrived.
	Count uint64
}

// Stats are the Listener's packet counters.
type Stats struct {
	// Received counts packets read, valid or not.
	Received uint64
	// Accepted counts adverts for our VRID that passed every check.
	Accepted uint64
	// Dropped counts the other packets by reason.
	Dropped map[DropReason]uint64
}

// Listener validates every received advert against its Config, counts drops per reason,
// and tracks the routers it hears. It never stops on a bad packet; Run returns only on ctx
// end (nil) or a socket error.
type Listener struct {
	r         advertReader
	cfg       Config
	self      []netip.Addr
	onForeign func(Router)
	log       *zap.Logger

	mu       sync.Mutex
	stats    Stats
	routers  map[routerKey]*Router
	lastWarn map[DropReason]time.Time
	sinceLog map[DropReason]uint64
}

type routerKey struct {
	vrid uint8
	src  netip.Addr
}

// NewListener returns a Listener reading from r. self are the source addresses of keepraft's
// own nodes, whose adverts are counted as DropSelf and not tracked. onForeign, if not nil, is
// called from Run's goroutine (it must not block) when a router on our VRID passes every
// check and is new, changed priority, interval or addresses, or is heard again after more
// than its Master_Down_Interval of silence.
func NewListener(r advertReader, cfg Config, self []netip.Addr, onForeign func(Router), log *zap.Logger) *Listener {
	return &Listener{
		r:         r,
		cfg:       cfg,
		self:      slices.Clone(self),
		onForeign: onForeign,
		log:       log.Named("vrrp_listener").With(zap.Uint8("vrid", cfg.VRID), zap.String("interface", cfg.Interface)),
		stats:     Stats{Dropped: map[DropReason]uint64{}},
		routers:   map[routerKey]*Router{},
		lastWarn:  map[DropReason]time.Time{},
		sinceLog:  map[DropReason]uint64{},
	}
}

// Run reads and checks adverts until ctx is done (returns nil) or the reader fails.
func (l *Listener) Run(ctx context.Context) error {
	for {
		p, m, err := l.r.ReadAdvert(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			reason, ok := decodeReason(err)
			if !ok {
				return fmt.Errorf("vrrp listener on %s: %w", l.cfg.Interface, err)
			}
			l.drop(reason, m, nil, err)
			continue
		}
		if r, ok := l.check(p, m); ok {
			l.accept(p, m)
		} else {
			l.drop(r, m, p, nil)
		}
	}
}

func decodeReason(err error) (DropReason, bool) {
	for _, x := range []struct {
		err    error
		reason DropReason
	}{
		{ErrShort, DropShort}, {ErrVersion, DropVersion}, {ErrType, DropType}, {ErrChecksum, DropChecksum},
		{ErrAddrCount, DropAddrCount}, {ErrAuth, DropAuth}, {ErrVRID, DropMalformed},
		{ErrAdvertInt, DropMalformed}, {ErrFamily, DropMalformed},
	} {
		if errors.Is(err, x.err) {
			return x.reason, true
		}
	}
	return "", false
}

// check returns the reason to drop p, or ok. A router on another VRID is tracked here.
func (l *Listener) check(p *Packet, m Meta) (DropReason, bool) {
	switch {
	case slices.Contains(l.self, m.Src):
		return DropSelf, false
	case m.TTL != 255:
		return DropTTL, false
	case p.Version != l.cfg.Version:
		return DropVersion, false
	case p.VRID != l.cfg.VRID:
		l.track(p, m)
		return DropOtherVRID, false
	}
	want := l.cfg.Advert(l.cfg.Priority)
	switch {
	case p.Version == 2 && (p.AuthType != want.AuthType || p.AuthData != want.AuthData):
		return DropAuth, false
	case p.Version == 2 && p.AdvertInt != want.AdvertInt:
		return DropAdvertInt, false
	case len(p.Addresses) != len(want.Addresses):
		return DropAddrCount, false
	case !sameAddrs(p.Addresses, want.Addresses):
		return DropAddresses, false
	}
	return "", true
}

// track records p's sender and reports whether the daemon should hear about it.
func (l *Listener) track(p *Packet, m Meta) (Router, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := routerKey{vrid: p.VRID, src: m.Src}
	r, ok := l.routers[k]
	notable := !ok
	if !ok {
		if len(l.routers) >= maxRouters {
			l.evictLocked()
		}
		r = &Router{VRID: p.VRID, Src: m.Src}
		l.routers[k] = r
	} else {
		silent := m.At.Sub(r.LastSeen) > 4*r.AdvertInt
		notable = silent || r.Priority != p.Priority || r.AdvertInt != p.AdvertInt ||
			r.Version != p.Version || !slices.Equal(r.Addresses, p.Addresses)
	}
	r.Priority, r.Version, r.AdvertInt = p.Priority, p.Version, p.AdvertInt
	r.Addresses = slices.Clone(p.Addresses)
	r.LastSeen = m.At
	r.Count++
	c := *r
	c.Addresses = slices.Clone(r.Addresses)
	return c, notable
}

func (l *Listener) evictLocked() {
	var oldest routerKey
	first := true
	for k, r := range l.routers {
		if first || r.LastSeen.Before(l.routers[oldest].LastSeen) {
			oldest, first = k, false
		}
	}
	delete(l.routers, oldest)
}

func (l *Listener) accept(p *Packet, m Meta) {
	l.mu.Lock()
	l.stats.Received++
	l.stats.Accepted++
	l.mu.Unlock()
	r, notable := l.track(p, m)
	if !notable {
		return
	}
	l.log.Info("foreign router", zap.Stringer("src", m.Src), zap.Uint8("priority", p.Priority),
		zap.Int("version", p.Version), zap.Duration("advert_int", p.AdvertInt))
	if l.onForeign != nil {
		l.onForeign(r)
	}
}

// drop counts a dropped packet and logs it: every drop at Debug, and the reasons that point
// at a misconfiguration or an attack at Warn, at most once per 30 s per reason.
func (l *Listener) drop(reason DropReason, m Meta, p *Packet, err error) {
	now := time.Now()
	l.mu.Lock()
	l.stats.Received++
	l.stats.Dropped[reason]++
	l.sinceLog[reason]++
	last, seen := l.lastWarn[reason]
	warn := reason != DropSelf && reason != DropOtherVRID && (!seen || now.Sub(last) >= warnEvery)
	var n uint64
	if warn {
		l.lastWarn[reason] = now
		n = l.sinceLog[reason]
		l.sinceLog[reason] = 0
	}
	l.mu.Unlock()

	fields := []zap.Field{zap.String("reason", string(reason)), zap.Stringer("src", m.Src), zap.Int("ttl", m.TTL)}
	if p != nil {
		fields = append(fields, zap.Stringer("packet", p))
	}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	if warn {
		l.log.Warn("dropped VRRP packet", append(fields, zap.Uint64("dropped_since_last_warning", n))...)
		return
	}
	l.log.Debug("dropped VRRP packet", fields...)
}

// Stats returns a copy of the packet counters.
func (l *Listener) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.Dropped = make(map[DropReason]uint64, len(l.stats.Dropped))
	for k, v := range l.stats.Dropped {
		s.Dropped[k] = v
	}
	return s
}

// Routers returns the routers heard, on every VRID, ordered by VRID and source.
func (l *Listener) Routers() []Router {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Router, 0, len(l.routers))
	for _, r := range l.routers {
		c := *r
		c.Addresses = slices.Clone(r.Addresses)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Router) int {
		if a.VRID != b.VRID {
			return int(a.VRID) - int(b.VRID)
		}
		return a.Src.Compare(b.Src)
	})
	return out
}
