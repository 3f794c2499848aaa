package owner

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/probe"
)

// rejoinState is the serving owner's view of its previous owner's return.
type rejoinState struct {
	done bool // the channel from the former owner runs again
	// resumed is the last operator resume (RejoinResumed's log index) acted on.
	resumed uint64
	extra   string        // extra transactions last journaled ("" when none)
	at      time.Duration // last check (lease clock)
	note    string        // shown in the status
}

// checkRejoin runs on the serving owner while the epoch is active. A former owner may
// come back with transactions it binlogged but never shipped; restarting replication
// from it would apply them over newer rows. So: the former owner must be fenced
// (read_only=1) first; then its own-domain GTIDs are compared with ours; with nothing
// extra the channel restarts and the comparison is repeated once more, and any write
// that landed meanwhile stops the channel again. Extra transactions are journaled
// (RejoinChecked blocked) and the channel stays stopped until an operator decides; a
// blocked rejoin is re-checked every rejoinBlockedEvery and clears itself once nothing
// is extra any more.
func (o *Owner) checkRejoin(ctx context.Context, s fsm.State) {
	prev := s.PrevOwner
	if s.Phase != fsm.PhaseActive || prev == "" || prev == o.cfg.Node {
		return
	}
	now := o.now()
	o.mu.Lock()
	r := o.rejoin
	mine := o.health.GTIDExecuted
	o.mu.Unlock()
	wait := rejoinEvery
	if r.extra != "" {
		wait = rejoinBlockedEvery
	}
	var accept string
	resume := false
	if m := s.Members[prev]; m != nil {
		accept = m.RejoinAccept
		resume = m.RejoinResumed > r.resumed
		if resume {
			// An operator resumed the blocked rejoin: check again now, and journal the
			// verdict even if the extra set did not change.
			wait, r.extra = 0, ""
			o.setRejoin(func(r *rejoinState) { r.resumed, r.extra, r.done = m.RejoinResumed, "", false })
		}
	}
	if (r.done && !resume) || mine == "" || (r.at != 0 && now-r.at < wait) {
		return
	}
	o.setRejoin(func(r *rejoinState) { r.at = now })
	peer, ok := o.d.Node.Peers()[prev]
	if !ok || !peer.OK || peer.Report.Healthy == nil || !*peer.Report.Healthy {
		return
	}
	theirs, err := o.fencedGTID(ctx, prev, peer.Report.GTID, peer.Report.ReadOnly)
	if err != nil {
		o.setRejoin(func(r *rejoinState) { r.note = " (channel from " + prev + " held: " + err.Error() + ")" })
		o.log.Warn("rejoin: former owner not fenced; its channel stays stopped", zap.String("node", prev), zap.Error(err))
		return
	}
	extra, err := o.extra(theirs, mine, peer.Report.Domain)
	if err != nil {
		o.log.Warn("rejoin check", zap.Error(err))
		return
	}
	d := fsm.RejoinData{Node: prev}
	switch {
	case !extra.IsEmpty() && accept != "" && accept == extra.String():
		o.log.Warn("former owner's extra transactions accepted by an operator: they flow in", zap.String("node", prev), zap.String("extra", accept))
		d.Detail = "extra transactions " + accept + " accepted by an operator"
	case !extra.IsEmpty():
		o.blockRejoin(ctx, prev, extra.String(), r.extra, "")
		return
	}
	if err := o.startReplication(ctx); err != nil {
		o.log.Warn("restart replication from the former owner", zap.Error(err))
		return
	}
	o.markReplStopped(false)
	// Re-check: a write that reached the former owner after the comparison (an account
	// that bypasses read_only) must not flow in unnoticed. This is a read only: fencing
	// again now would kill our own replication connection while it starts.
	after, err := o.executed(ctx, prev, peer.Report.GTID)
	if err == nil {
		var grown probe.GTIDSet
		grown, err = o.extra(after, theirs, peer.Report.Domain)
		if err == nil && !grown.IsEmpty() {
			if serr := o.stopReplication(ctx); serr != nil {
				o.log.Error("stop replication after writes on the fenced former owner", zap.Error(serr))
			}
			o.blockRejoin(ctx, prev, grown.String(), r.extra, "written on the fenced former owner during the rejoin")
			return
		}
	}
	if err != nil {
		d.Detail = "re-check after restart failed: " + err.Error()
	}
	o.setRejoin(func(r *rejoinState) { *r = rejoinState{done: true, at: now} })
	o.log.Info("former owner rejoined with nothing extra; replication from it restarted", zap.String("node", prev))
	o.spawn(func() { o.proposeNow(ctx, fsm.RejoinChecked, d) })
}

// fencedGTID makes sure the former owner is read-only and returns its GTID set. With
// remote access it fences it (idempotent) and reads the set after the fence; without,
// it trusts the peer's own report and requires read_only=1 there.
func (o *Owner) fencedGTID(ctx context.Context, prev, reported string, readOnly *bool) (string, error) {
	if o.d.Remote == nil {
		if readOnly == nil || !*readOnly {
			return "", errors.New("former owner is not reported read-only")
		}
		return reported, nil
	}
	fctx, cancel := context.WithTimeout(ctx, fenceTimeout)
	defer cancel()
	g, err := o.d.Remote.Fence(fctx, prev)
	if err != nil {
		return "", err
	}
	return g, nil
}

// executed reads the former owner's GTID set without changing anything (its own report
// when there is no remote access).
func (o *Owner) executed(ctx context.Context, prev, reported string) (string, error) {
	if o.d.Remote == nil {
		return reported, nil
	}
	rctx, cancel := context.WithTimeout(ctx, fenceTimeout)
	defer cancel()
	return o.d.Remote.Executed(rctx, prev)
}

// extra returns the transactions of domain in theirs that ours lacks.
func (o *Owner) extra(theirs, ours string, domain uint32) (probe.GTIDSet, error) {
	f := o.cfg.Flavor
	t, err1 := probe.ParseGTIDSet(f, theirs)
	u, err2 := probe.ParseGTIDSet(f, ours)
	if err := errors.Join(err1, err2); err != nil {
		return probe.GTIDSet{}, err
	}
	return u.Missing(t.Domain(domain)), nil
}

// blockRejoin journals extra transactions once per distinct set.
func (o *Owner) blockRejoin(ctx context.Context, prev, extra, last, detail string) {
	o.log.Warn("former owner has transactions we never received; its channel stays stopped", zap.String("node", prev), zap.String("extra", extra))
	o.setRejoin(func(r *rejoinState) {
		r.extra, r.done = extra, false
		r.note = " (channel from " + prev + " held: extra " + extra + ")"
	})
	if extra == last {
		return
	}
	d := fsm.RejoinData{Node: prev, Blocked: true, Extra: extra, Detail: detail}
	o.spawn(func() { o.proposeNow(ctx, fsm.RejoinChecked, d) })
}

func (o *Owner) setRejoin(f func(*rejoinState)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f(&o.rejoin)
}
