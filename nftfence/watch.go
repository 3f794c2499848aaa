package nftfence

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// watchReadBuffer is the receive buffer of Watch's event socket: a ruleset reload by
// another program can send thousands of events at once.
const watchReadBuffer = 1 << 20

// reopenPause is the pause before Watch reopens a failed event socket, so a socket that
// keeps failing does not spin.
const reopenPause = 100 * time.Millisecond

// Watch reports, by calling gone(reason), when the fence stops holding: its table, a set or
// a chain disappears or is altered (someone ran `nft flush ruleset`, e.g. Debian's
// nftables.service), or the table is made dormant. The fence then fails OPEN, so the
// caller must drop the VIPs at once (and install a new fence before taking them again).
//
// Watch listens to nftables netlink events (group NFNLGRP_NFTABLES) and re-reads the table
// on every event about it, on a lost-events overrun, and every Options.CheckInterval as a
// backstop (a netdev base chain can also vanish silently with its device on older
// kernels). gone is called once per loss, from Watch's goroutine; if the fence holds again
// later (a new [New] for the same interface), a further loss is reported again. A failed
// read of the ruleset is logged, not reported. Watch returns nil when ctx ends, or an
// error if it cannot open its sockets.
func (f *Fence) Watch(ctx context.Context, gone func(reason string)) error {
	f.mu.Lock()
	removed := f.removed
	f.mu.Unlock()
	if removed {
		return ErrRemoved
	}
	ev, stop, err := f.openEvents(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if stop() {
			_ = ev.Close()
		}
	}()
	// A connection of its own: Check's dumps must not interleave with Open's batches.
	reader, err := dial(f.opts)
	if err != nil {
		return err
	}
	defer func() { _ = reader.CloseLasting() }()

	w := watcher{f: f, reader: reader, gone: gone}
	w.check(ctx, "start")
	for {
		if err := ev.SetReadDeadline(time.Now().Add(f.opts.CheckInterval)); err != nil && ctx.Err() == nil {
			return fmt.Errorf("set deadline on nftables event socket: %w", err)
		}
		msgs, err := ev.Receive()
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			w.check(ctx, "periodic")
		case errors.Is(err, unix.ENOBUFS):
			w.check(ctx, "events lost")
		case err != nil:
			// The socket is broken: keep the backstop going on a fresh one.
			f.log.Warn("nftables event socket failed; reopening", zap.Error(err))
			w.check(ctx, "event socket error")
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(reopenPause):
			}
			if stop() {
				_ = ev.Close()
			}
			if ev, stop, err = f.openEvents(ctx); err != nil {
				stop = func() bool { return false }
				return err
			}
		default:
			f.eventReads.Add(1)
			if why, ok := concerns(msgs, f.obj.table.Name); ok {
				w.check(ctx, why)
			}
		}
	}
}

// openEvents opens a socket on the nftables event group in the fence's namespace; it is
// closed when ctx ends unless stop is called first (stop reports whether it was in time,
// and then the caller closes the socket).
func (f *Fence) openEvents(ctx context.Context) (*netlink.Conn, func() bool, error) {
	ev, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(f.opts.NetNS)})
	if err != nil {
		return nil, nil, fmt.Errorf("open nftables event socket: %w", err)
	}
	if err := ev.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		_ = ev.Close()
		return nil, nil, fmt.Errorf("join nftables event group: %w", err)
	}
	if err := ev.SetReadBuffer(watchReadBuffer); err != nil {
		f.log.Debug("set nftables event socket buffer", zap.Error(err))
	}
	// Only a saving: without the filter every renewal wakes the watcher for nothing.
	if prog, err := eventFilter(f.obj.table.Name); err != nil {
		f.log.Debug("build nftables event filter", zap.Error(err))
	} else if err := ev.SetBPF(prog); err != nil {
		f.log.Debug("attach nftables event filter", zap.Error(err))
	}
	// Closing the socket is what ends a blocked Receive when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = ev.Close() })
	return ev, stop, nil
}

// watcher is Watch's edge detector.
type watcher struct {
	f      *Fence
	reader *nftables.Conn
	gone   func(reason string)
	broken bool
}

// check reads the fence back and calls gone when it went from holding to broken.
func (w *watcher) check(ctx context.Context, trigger string) {
	if ctx.Err() != nil {
		return
	}
	err := check(w.reader, w.f.obj)
	switch {
	case err == nil:
		if w.broken {
			w.f.log.Info("VIP fence holds again", zap.String("trigger", trigger))
		}
		w.broken = false
	case errors.Is(err, ErrGone):
		if !w.broken {
			w.broken = true
			w.f.log.Error("VIP fence gone: traffic for the VIPs is no longer fenced", zap.String("trigger", trigger), zap.Error(err))
			w.gone(err.Error())
		}
	default:
		w.f.log.Warn("VIP fence check failed", zap.String("trigger", trigger), zap.Error(err))
	}
}

// concerns reports whether an nftables event batch may have changed the fence's table:
// any table, chain, set or rule event (not element events, which Open causes) of the
// netdev family naming table. It returns the first such event's type name.
func concerns(msgs []netlink.Message, table string) (string, bool) {
	for _, m := range msgs {
		if int(m.Header.Type>>8) != unix.NFNL_SUBSYS_NFTABLES {
			continue
		}
		typ := int(m.Header.Type & 0xff)
		name, ok := eventNames[typ]
		if !ok || len(m.Data) < 4 || m.Data[0] != unix.NFPROTO_NETDEV {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return name + " (undecodable)", true
		}
		for ad.Next() {
			// NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_SET_TABLE and NFTA_RULE_TABLE are all 1.
			if ad.Type() == unix.NFTA_TABLE_NAME && ad.String() == table {
				return name, true
			}
		}
		if ad.Err() != nil {
			return name + " (undecodable)", true
		}
	}
	return "", false
}

// eventNames are the event types that can break the fence.
var eventNames = map[int]string{
	unix.NFT_MSG_NEWTABLE: "newtable",
	unix.NFT_MSG_DELTABLE: "deltable",
	unix.NFT_MSG_NEWCHAIN: "newchain",
	unix.NFT_MSG_DELCHAIN: "delchain",
	unix.NFT_MSG_NEWRULE:  "newrule",
	unix.NFT_MSG_DELRULE:  "delrule",
	unix.NFT_MSG_NEWSET:   "newset",
	unix.NFT_MSG_DELSET:   "delset",
}
