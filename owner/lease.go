package owner

import (
	"context"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
)

// renewLoop sends Renew{epoch} to every peer each lease/3 while this node is promoting
// or serving the epoch the journal names it owner of. Every promise counts for the lease
// from the send time, whenever it arrives; the VIP is added, or its kernel lifetime
// renewed, only on a promise that completed a quorum within δ of sending (checked again
// right before the change). Answers are handled as they arrive, so a dead peer never
// delays a renewal.
//
// The ticker runs only while renewing: a node that is not the owner sleeps until the
// runtime enters Promoting or Serving (which kicks the loop, kickRenew) or the journal
// changes. While renewing, a journal change adds no round of its own.
func (o *Owner) renewLoop(ctx context.Context) error {
	every := o.cfg.Lease / 3
	t := time.NewTicker(every)
	defer t.Stop()
	ticking := true
	var rounds sync.WaitGroup
	defer rounds.Wait()
	watch := o.d.Node.Watch()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-o.renewKick:
		case <-idleWatch(watch, ticking):
		}
		watch = o.d.Node.Watch() // before the state is read, so no change goes unseen
		s := o.d.Node.State()
		o.mu.Lock()
		m := o.m
		if (m.Phase == Promoting || m.Phase == Serving) && m.Epoch == s.Epoch && (o.lease == nil || o.lease.Epoch != s.Epoch) {
			o.lease = fsm.NewOwnerLease(s.Epoch, o.cfg.Lease, o.cfg.Voters)
		}
		o.mu.Unlock()
		if !s.Holding(o.cfg.Node) || m.Epoch != s.Epoch || (m.Phase != Promoting && m.Phase != Serving) {
			if ticking {
				t.Stop()
				ticking = false
			}
			continue
		}
		if !ticking {
			t.Reset(every)
			ticking = true
		}
		sent := o.now()
		var once sync.Once
		for _, peer := range o.cfg.Peers {
			rounds.Go(func() {
				if o.renewOne(ctx, peer, s.Epoch, sent) {
					once.Do(func() { o.acquireOrRenew(ctx, sent) })
				}
			})
		}
	}
}

// idleWatch is the journal's watch channel while the renew loop is idle, else nil (never
// ready).
func idleWatch(watch <-chan struct{}, ticking bool) <-chan struct{} {
	if ticking {
		return nil
	}
	return watch
}

// renewOne sends one Renew and records the promise. It reports whether this answer
// completed a quorum within δ of sent while the lease is valid.
func (o *Owner) renewOne(ctx context.Context, peer string, epoch uint64, sent time.Duration) bool {
	rctx, cancel := context.WithTimeout(ctx, o.cfg.Lease/2)
	resp, err := o.d.Renewer.Renew(rctx, peer, api.RenewRequest{Owner: o.cfg.Node, Epoch: epoch})
	cancel()
	arrived := o.now()
	answer := "refused"
	switch {
	case err != nil:
		answer = "error"
	case resp.Promised && arrived-sent <= o.delta:
		answer = "promised"
	case resp.Promised:
		answer = "late"
	}
	o.metrics.renewals.WithLabelValues(peer, answer).Inc()
	o.noteAnswer(peer, answer, resp.Reason, err)
	if err != nil || !resp.Promised {
		return false
	}
	quorum, open, grew := o.grant(peer, epoch, sent, arrived, answer == "promised")
	if open {
		// Writes are open: the watchdog's deadline moves with the lease.
		if err := o.armWatchdog(); err != nil {
			o.log.Warn("renew the fence watchdog's deadline", zap.Error(err))
		}
	}
	if grew && open && !quorum {
		// A promise that extended the lease without completing a timely quorum (a late
		// answer, or the second one of a round) renews no valid_lft, but the fence follows
		// the lease itself: its opening is computed from the lease's expiry, not from now.
		o.renewFence(ctx)
	}
	return quorum
}

// noteAnswer logs a peer's renewal answer when its kind changes: a refusal with the
// peer's reason and a failed request with its error (once, not every round), and a
// peer that promises again after either. A lease that runs short is then explained in
// the owner's own log.
func (o *Owner) noteAnswer(peer, answer, reason string, err error) {
	kind := answer
	if answer == "late" {
		kind = "promised"
	}
	o.mu.Lock()
	prev, seen := o.answers[peer]
	o.answers[peer] = kind
	o.mu.Unlock()
	if kind == prev || (!seen && kind == "promised") {
		return
	}
	switch kind {
	case "promised":
		o.log.Info("peer promises the lease again", zap.String("peer", peer), zap.String("after", prev))
	case "refused":
		o.log.Warn("peer refused to renew the lease", zap.String("peer", peer), zap.String("reason", reason))
	default:
		o.log.Warn("lease renewal failed", zap.String("peer", peer), zap.Error(err))
	}
}

// renewFence opens the VIP fence for the rest of the lease while the VIP is held.
func (o *Owner) renewFence(ctx context.Context) {
	if o.d.Fence == nil {
		return
	}
	o.vipMu.Lock()
	o.mu.Lock()
	held := o.held
	o.mu.Unlock()
	if !held || !o.mayHold(o.d.Node.State()) {
		o.vipMu.Unlock()
		return
	}
	_, err := o.openFenceLocked()
	o.vipMu.Unlock()
	if err != nil {
		o.log.Error("open the VIP fence; dropping the VIP", zap.Error(err))
		_ = o.dropVIP(ctx, "VIP fence renewal failed")
	}
}

// openFenceLocked opens the fence until the lease's expiry less fenceGuard. It reports
// false without an error when too little lease is left to bother (the fence then closes
// on its own), and true when there is no fence. The caller holds vipMu.
func (o *Owner) openFenceLocked() (bool, error) {
	if o.d.Fence == nil {
		return true, nil
	}
	o.mu.Lock()
	until, left := time.Duration(0), time.Duration(-1)
	if o.lease != nil {
		until = o.lease.Expiry() - fenceGuard
		left = until - o.now()
	}
	o.mu.Unlock()
	if left < minFenceOpen {
		o.log.Debug("too little lease left to open the VIP fence", zap.Duration("left", left))
		return false, nil
	}
	// An absolute deadline: a freeze between here and the kernel's commit shortens the
	// opening instead of carrying it past the lease.
	return true, o.d.Fence.OpenUntilBoot(until)
}

// grant records peer's promise for the lease of epoch. It reports whether the promise
// completed a quorum within δ of sent (inDelta) while the lease is valid, whether the
// lease is valid with writes open, and whether the promise moved the lease's expiry.
func (o *Owner) grant(peer string, epoch uint64, sent, arrived time.Duration, inDelta bool) (quorum, open, grew bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.lease == nil || o.lease.Epoch != epoch {
		return false, false, false
	}
	wasValid := o.lease.Valid(arrived)
	before := o.lease.Expiry()
	o.lease.Granted(peer, sent)
	grew = o.lease.Expiry() > before
	valid := o.lease.Valid(o.now())
	o.metrics.leaseValid.Set(b2f(valid))
	if valid && !wasValid {
		wake(o.kick) // the conjunction may hold now: let enforce open writes at once
	}
	return inDelta && valid && o.lease.LastQuorum() == sent, valid && o.writesOpen, grew
}

// acquireOrRenew adds the VIP (or renews its kernel lifetime) if holding is allowed now.
// Before an acquisition it sends an ARP probe; an answer blocks the acquisition and is
// journaled. The conjunction and the δ bound are re-checked under vipMu right before
// the change.
func (o *Owner) acquireOrRenew(ctx context.Context, sent time.Duration) {
	if o.d.VIP == nil {
		return
	}
	s := o.d.Node.State()
	if !o.mayHold(s) {
		return
	}
	o.mu.Lock()
	held := o.held
	o.mu.Unlock()
	if !held && o.conflict(ctx, s.Epoch) {
		return
	}
	o.vipMu.Lock()
	if !o.mayHold(o.d.Node.State()) {
		o.vipMu.Unlock()
		return
	}
	if late := o.now() - sent; late > o.delta {
		o.vipMu.Unlock()
		o.log.Debug("renewal too late for the kernel lifetime", zap.Duration("since_request", late))
		return
	}
	// The fence opens for what remains of the lease (less a guard), before the address
	// is added or renewed: traffic stops when the lease ends even if this process never
	// runs again.
	if opened, err := o.openFenceLocked(); err != nil {
		o.vipMu.Unlock()
		o.log.Error("open the VIP fence; dropping the VIP", zap.Error(err))
		_ = o.dropVIP(ctx, "VIP fence renewal failed")
		return
	} else if !opened {
		o.vipMu.Unlock()
		return
	}
	sctx, cancel := context.WithTimeout(ctx, vipTimeout)
	res, err := o.d.VIP.Set(sctx, o.cfg.VIPs)
	cancel()
	if err != nil {
		o.vipMu.Unlock()
		o.log.Error("add VIP", zap.Error(err))
		return
	}
	o.mu.Lock()
	was := o.held
	o.held = true
	o.setHolding(true)
	o.mu.Unlock()
	o.vipMu.Unlock()
	o.metrics.holdingVIP.Set(1)
	if len(res.Added) > 0 || !was {
		o.log.Info("VIP acquired", zap.Uint64("epoch", s.Epoch), zap.Stringers("added", res.Added))
		o.notify(ctx, "master")
		o.poke()
	}
}

// preProbe is an ARP conflict probe started with a promotion: it runs while the
// promotion catches up and the lease is gathered, so the acquisition that follows need
// not wait for a probe of its own (60 ms).
type preProbe struct {
	epoch uint64
	done  chan struct{}
	// Set before done closes: taken is the probe's answer, at when it ended (lease
	// clock), ok whether it ran to the end (not cancelled with its promotion).
	taken, ok bool
	at        time.Duration
}

// startPreProbe starts the ARP conflict probe of epoch's acquisition, unless there is no
// VIP to probe.
func (o *Owner) startPreProbe(ctx context.Context, epoch uint64) {
	if o.d.VIP == nil || len(o.cfg.VIPs) == 0 {
		return
	}
	p := &preProbe{epoch: epoch, done: make(chan struct{})}
	o.mu.Lock()
	o.pre = p
	o.mu.Unlock()
	o.spawn(func() {
		defer close(p.done)
		p.taken = o.probeConflict(ctx, epoch)
		p.ok, p.at = ctx.Err() == nil, o.now()
	})
}

// conflict reports whether another host answers ARP for a VIP before an acquisition in
// epoch. The first acquisition after a promotion takes the probe the promotion started
// (waiting for it if it still runs) when it ended less than preProbeFresh ago; any
// other probes now.
func (o *Owner) conflict(ctx context.Context, epoch uint64) bool {
	o.mu.Lock()
	p := o.pre
	o.pre = nil
	o.mu.Unlock()
	if p != nil && p.epoch == epoch {
		select {
		case <-p.done:
			if p.ok && o.now()-p.at < preProbeFresh {
				return p.taken
			}
		case <-ctx.Done():
			return true
		}
	}
	return o.probeConflict(ctx, epoch)
}

// probeConflict probes every VIP with ARP before an acquisition. A host that answers blocks
// it: the answer is journaled (once per epoch, VIP and MAC) and logged.
func (o *Owner) probeConflict(ctx context.Context, epoch uint64) bool {
	taken := false
	for _, p := range o.cfg.VIPs {
		pctx, cancel := context.WithTimeout(ctx, conflictProbeTimeout)
		mac, answered, err := o.d.VIP.ProbeConflict(pctx, p.Addr())
		cancel()
		if err != nil {
			o.log.Warn("arp probe before acquiring", zap.String("vip", p.String()), zap.Error(err))
			continue
		}
		if !answered {
			continue
		}
		taken = true
		o.log.Warn("another host answers ARP for the VIP: not acquiring it", zap.String("vip", p.String()), zap.String("mac", mac.String()))
		key := p.String() + "|" + mac.String() + "|" + strconv.FormatUint(epoch, 10)
		o.mu.Lock()
		seen := o.conflicts[key]
		o.conflicts[key] = true
		o.mu.Unlock()
		if !seen {
			d := fsm.VIPConflictData{Node: o.cfg.Node, VIP: p.String(), MAC: mac.String()}
			o.spawn(func() { o.proposeNow(ctx, fsm.VIPConflictSeen, d) })
		}
	}
	return taken
}
