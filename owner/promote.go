package owner

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/probe"
)

// startPromotion runs the promotion of epoch on a goroutine Run waits for; its result
// comes back to the state machine through o.promo.
func (o *Owner) startPromotion(ctx context.Context, epoch uint64, s fsm.State) {
	o.cancelPromotion()
	pctx, cancel := context.WithCancel(ctx)
	o.mu.Lock()
	o.promoCancel = cancel
	o.promo = nil
	o.mu.Unlock()
	// Ask for the lease now, not at the renew loop's next tick (up to lease/3 away): it is
	// gathered while the promotion catches up, so writes open as soon as it is done.
	o.kickRenew()
	// Not under pctx: the probe outlives a promotion that ends before it does.
	o.startPreProbe(ctx, epoch)
	o.spawn(func() {
		defer cancel()
		res, data := o.promote(pctx, epoch, s)
		if pctx.Err() != nil {
			return
		}
		o.mu.Lock()
		if o.m.Epoch == epoch {
			o.promo = &res
			if res.OK {
				o.promoted = data
				o.prevFenced = data.PrevFence == "fenced" || strings.HasPrefix(data.PrevFence, "already read-only")
			}
		}
		o.mu.Unlock()
		o.poke()
	})
}

func (o *Owner) cancelPromotion() {
	o.mu.Lock()
	cancel := o.promoCancel
	o.promoCancel = nil
	o.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// promote prepares this node to open writes for epoch. A new owner (phase assigned)
// catches up to the release's GTID set, fences the previous owner's server when it can
// reach it, applies everything its channel received, and stops replication from the
// previous owner, re-checking ownership right before. An owner resuming an active epoch
// (its daemon restarted) has nothing to prepare. Writes open later, in enforce, when
// the lease is valid.
func (o *Owner) promote(ctx context.Context, epoch uint64, s fsm.State) (promotion, fsm.PromotedData) {
	cfg := o.cfg
	res := promotion{Epoch: epoch}
	data := fsm.PromotedData{Owner: cfg.Node, Policy: cfg.OnCatchupTimeout, Reached: true}
	if s.Phase == fsm.PhaseActive {
		res.OK = true
		return res, data
	}
	cu := probe.CatchUp{Reached: true, Reason: "no catch-up target"}
	if s.Target != "" {
		var err error
		cu, err = o.d.MySQL.WaitCatchUp(ctx, s.Target, s.TargetDomain, cfg.CatchupTimeout)
		if err != nil {
			o.log.Warn("catch-up", zap.Error(err))
			cu.Reason = err.Error()
		}
	}
	data.Reached, data.Target, data.Applied, data.Missing = cu.Reached, cu.Target, cu.Applied, cu.Missing
	data.WaitedMS, data.LossNotes = cu.Waited.Milliseconds(), cu.Reason
	o.log.Info("catch-up finished", zap.Bool("reached", cu.Reached), zap.String("target", cu.Target), zap.String("missing", cu.Missing), zap.Duration("waited", cu.Waited))

	prev := s.PrevOwner
	handover := prev != "" && prev != cfg.Node
	relayOK := true
	if handover {
		data.PrevOwner = prev
		data.PrevFence = o.fencePrevious(ctx, prev)
		rc, err := o.d.MySQL.WaitRelayApplied(ctx, cfg.CatchupTimeout)
		if err != nil {
			o.log.Warn("apply the relay log before stopping replication", zap.Error(err))
		}
		relayOK = rc.Reached
		data.Received, data.RelayAppliedSet, data.RelayApplied, data.RelayWaitedMS = rc.Received, rc.Applied, &relayOK, rc.Waited.Milliseconds()
		o.log.Info("relay log applied", zap.Bool("reached", rc.Reached), zap.String("received", rc.Received), zap.String("applied", rc.Applied), zap.Duration("waited", rc.Waited))
	}
	if ctx.Err() != nil {
		return res, data
	}
	if (!cu.Reached || !relayOK) && cfg.OnCatchupTimeout == "hold" {
		if !s.Force {
			o.log.Warn("catch-up incomplete and on_catchup_timeout is hold: not opening writes")
			return res, data // held: the controller declares PromotionFailed past its deadline
		}
		o.log.Warn("catch-up incomplete; opening writes anyway: an operator's failover accepted the loss")
		data.Policy = "forced by an operator's failover"
	}
	if handover {
		// Transactions the old owner binlogged but never shipped must not arrive later
		// and overwrite newer rows; the rejoin check restarts the channel once the old
		// owner is fenced and has nothing extra.
		if !o.stillOwner(epoch) {
			// Moved on (the machine leaves Promoting when the journal names another epoch
			// or owner) or only not caught up for a moment (a poll of the leader too old,
			// a new leader not polled yet): either way try again, or the runtime would stay
			// promoting without a writer until the epoch changed.
			o.log.Info("not the caught-up owner right before STOP REPLICA; replication left running, promotion retried", zap.Uint64("epoch", epoch))
			res.Retry = waitUntil(ctx, retryEvery)
			return res, data
		}
		// Recorded before the stop, like a write-ahead log: a daemon killed right after
		// STOP REPLICA must still know after its restart that it stopped the channel.
		// A failed or cancelled STOP REPLICA may still have stopped the channel (the
		// server finishes a statement whose client went away), so the record stays; a
		// standby that later sees the channel running clears it (resumeReplication).
		o.markReplStopped(true)
		err := o.d.MySQL.StopReplication(ctx)
		o.mu.Lock()
		o.replStopTried = time.Now()
		o.mu.Unlock()
		if err != nil {
			o.log.Warn("stop replication from the previous owner", zap.String("previous", prev), zap.Error(err))
			res.Retry = waitUntil(ctx, retryEvery)
			return res, data
		}
	}
	res.OK = true
	return res, data
}

// fencePrevious fences the previous owner's server remotely, as orchestrator and MHA do,
// and says what happened for the journal. A server that cannot be reached is not
// writable from here either, and its own daemon fences it when it comes back; but a
// server that answers with read_only=0 and cannot be fenced (a full disk blocks SET
// GLOBAL read_only) would make two writable servers, so the promotion waits, retrying
// every fenceRetry, until it is fenced, read-only or gone. The controller declares the
// promotion failed if that lasts past its deadline.
func (o *Owner) fencePrevious(ctx context.Context, prev string) string {
	if o.d.Remote == nil {
		return "not attempted: no remote access (mysql.dsn is set)"
	}
	for first := true; ; first = false {
		fctx, cancel := context.WithTimeout(ctx, fenceTimeout)
		_, err := o.d.Remote.Fence(fctx, prev)
		cancel()
		if err == nil {
			o.log.Info("previous owner's server fenced", zap.String("previous", prev))
			return "fenced"
		}
		if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "dial" {
			// Not even a connection: reading read_only would only wait out another
			// connect timeout (host loss). Its own daemon fences it when it returns.
			o.log.Warn("previous owner's server unreachable; its own daemon fences it when it returns", zap.String("previous", prev), zap.Error(err))
			return "failed: " + err.Error()
		}
		rctx, rcancel := context.WithTimeout(ctx, fenceTimeout)
		ro, rerr := o.d.Remote.ReadOnly(rctx, prev)
		rcancel()
		switch {
		case rerr != nil:
			o.log.Warn("previous owner's server unreachable; its own daemon fences it when it returns", zap.String("previous", prev), zap.Error(err))
			return "failed: " + err.Error()
		case ro:
			return "already read-only (fence: " + err.Error() + ")"
		}
		if first {
			o.log.Error("previous owner's server is writable and cannot be fenced: not opening writes until it is", zap.String("previous", prev), zap.Error(err))
		}
		if !waitUntil(ctx, fenceRetry) {
			return "failed: " + err.Error()
		}
	}
}

// announce proposes OwnerPromoted once writes are open and the VIP is held, and again
// every retryEvery until the journal shows the epoch active: a lost proposal must not
// end in PromotionFailed for a serving owner.
func (o *Owner) announce(ctx context.Context, s fsm.State) {
	o.mu.Lock()
	due := s.Phase == fsm.PhaseAssigned && o.m.Epoch == s.Epoch && o.writesOpen && (o.held || o.d.VIP == nil) &&
		!o.announceBusy && (o.announcedAt == 0 || o.now()-o.announcedAt >= retryEvery)
	if !due {
		o.mu.Unlock()
		return
	}
	o.announceBusy, o.announcedAt = true, o.now()
	data := o.promoted
	o.mu.Unlock()
	data.Owner = o.cfg.Node
	ev, err := o.event(fsm.OwnerPromoted, s.Epoch, fsm.PhaseAssigned, data)
	if err != nil {
		o.log.Error("build OwnerPromoted", zap.Error(err))
		return
	}
	o.spawn(func() {
		defer func() {
			o.mu.Lock()
			o.announceBusy = false
			o.mu.Unlock()
		}()
		if _, err := o.propose(ctx, ev); err == nil {
			o.log.Info("promotion journaled", zap.Uint64("epoch", s.Epoch))
		}
	})
}

// waitUntil is a bounded wait used where a retry needs a pause.
func waitUntil(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
