package main

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
)

// Timing constants of the handover, documented in the README.
const (
	// kernelSlack bounds how late the kernel removes an address after its valid_lft ends:
	// IPv4 lifetime checks run on whole-second ticks, so removal came up to 0.93 s late in
	// our measurements (valid_lft 2: gone 2.02–2.93 s after the last renewal).
	kernelSlack = 1100 * time.Millisecond
	// promotionMargin is added to failover.catchup_timeout before a promotion is overdue.
	promotionMargin = 3 * time.Second
	// settleTime bounds how long a new cluster waits for every database member's first
	// health report before it assigns the VIP to the best node it knows.
	settleTime = 5 * time.Second
)

// controller runs the failover policy on the Raft leader: it follows leadership through
// raft's NotifyCh (which, unlike LeaderCh, never drops a transition) and runs one
// leaderLoop per term of leadership.
type controller struct{ d *daemon }

func (c *controller) Run(ctx context.Context) error {
	var stop chan struct{}
	var done chan struct{}
	end := func() {
		if stop != nil {
			close(stop)
			<-done
			stop, done = nil, nil
		}
	}
	defer end()
	for {
		select {
		case <-ctx.Done():
			return nil
		case leader := <-c.d.node.notify:
			if leader && stop == nil {
				stop, done = make(chan struct{}), make(chan struct{})
				c.d.log.Info("gained raft leadership; controller starts")
				go func(stop, done chan struct{}) {
					defer close(done)
					c.leaderLoop(ctx, stop)
				}(stop, done)
			} else if !leader && stop != nil {
				c.d.log.Info("lost raft leadership; controller stops")
				end()
			}
		}
	}
}

type decided struct {
	typ   fsm.Type
	epoch uint64
	phase fsm.Phase
	at    time.Time
}

func (c *controller) leaderLoop(ctx context.Context, stop <-chan struct{}) {
	d := c.d
	log := d.log.Named("controller")
	// Barrier first: decide only from a state that includes every entry committed by
	// earlier leaders.
	for {
		if err := d.node.raft.Barrier(2 * time.Second).Error(); err == nil {
			break
		} else {
			log.Warn("barrier before deciding", zap.Error(err))
		}
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	if !d.node.fsm.State().Bootstrapped {
		var ms []fsm.Member
		for _, p := range d.cfg.Cluster.Peers {
			ms = append(ms, fsm.Member{ID: p.ID, RaftAddr: p.RaftAddr, APIAddr: p.APIAddr})
		}
		if ev, err := d.node.event(fsm.Bootstrapped, fsm.BootstrappedData{Members: ms}); err == nil {
			if _, err := d.node.applyLocal(ev, 2*time.Second); err != nil {
				log.Warn("propose Bootstrapped", zap.Error(err))
			}
		}
	}

	started := bootNow()
	// When this leader first saw the current (epoch, phase): the base of its deadlines.
	var phaseKey struct {
		epoch uint64
		phase fsm.Phase
	}
	var phaseSeen time.Duration
	var last decided
	var lastTransfer time.Time
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		s := d.node.fsm.State()
		now := bootNow()
		if phaseSeen == 0 || phaseKey.epoch != s.Epoch || phaseKey.phase != s.Phase {
			phaseKey.epoch, phaseKey.phase, phaseSeen = s.Epoch, s.Phase, now
		}
		v := c.view(s, now, now-phaseSeen)
		if s.Phase == fsm.PhaseNone && now-started < settleTime {
			for _, m := range s.Members {
				// A member that has not announced its role yet may be a database node.
				if m.Role == "" || (m.Role == fsm.RoleDatabase && !m.HealthKnown) {
					v.Settling = true
				}
			}
		}
		for _, ev := range fsm.Decide(s, v) {
			if ev.Type == last.typ && ev.Epoch == last.epoch && ev.Phase == last.phase && time.Since(last.at) < time.Second {
				continue
			}
			last = decided{ev.Type, ev.Epoch, ev.Phase, time.Now()}
			resp, err := d.node.applyLocal(ev, 2*time.Second)
			outcome := string(resp.Result)
			if err != nil {
				outcome = "error"
				log.Warn("propose decision", zap.String("type", string(ev.Type)), zap.Error(err))
			} else {
				log.Info("decided", zap.String("type", string(ev.Type)), zap.Uint64("epoch", ev.Epoch), zap.String("phase", string(ev.Phase)), zap.Uint64("index", resp.Index), zap.String("result", outcome), zap.String("data", string(ev.Data)))
			}
			d.metrics.proposals.WithLabelValues(string(ev.Type), outcome).Inc()
		}
		// Keep leadership off the owner, so that losing the owner's host costs no
		// election on top of the lease wait.
		if s.Owner == d.cfg.Node.ID && s.Phase == fsm.PhaseActive && time.Since(lastTransfer) > 5*time.Second {
			lastTransfer = time.Now()
			if target := c.transferTarget(s); target != "" {
				log.Info("moving raft leadership off the VIP owner", zap.String("to", target))
				if err := d.node.raft.LeadershipTransferToServer(raft.ServerID(target), raft.ServerAddress(c.raftAddr(target))).Error(); err != nil {
					log.Warn("leadership transfer", zap.Error(err))
				}
			}
		}
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-d.node.fsm.Watch():
		case <-tick.C:
		}
	}
}

func (c *controller) raftAddr(id string) string {
	for _, p := range c.d.cfg.Cluster.Peers {
		if p.ID == id {
			return p.RaftAddr
		}
	}
	return ""
}

// transferTarget prefers a reachable witness, then any reachable non-owner voter.
func (c *controller) transferTarget(s fsm.State) string {
	views := c.d.poll.snapshot()
	best := ""
	for _, id := range s.MemberIDs() {
		v, ok := views[id]
		if id == s.Owner || !ok || !v.ok {
			continue
		}
		if s.Members[id].Role == fsm.RoleWitness {
			return id
		}
		if best == "" {
			best = id
		}
	}
	return best
}

// report is one voter's latest report with the boot-clock time it was taken.
type report struct {
	r  api.NodeReport
	at time.Duration
}

func (c *controller) reports(now time.Duration) map[string]report {
	out := map[string]report{c.d.cfg.Node.ID: {c.d.report(), now}}
	for id, v := range c.d.poll.snapshot() {
		// A report older than two lease periods says nothing about now.
		if v.ok && now-v.at < 2*c.d.cfg.Failover.Lease {
			out[id] = report{v.report, v.at}
		}
	}
	return out
}

func (c *controller) view(s fsm.State, now, inPhase time.Duration) fsm.View {
	cfg := c.d.cfg
	lease := cfg.Failover.Lease
	v := fsm.View{Self: cfg.Node.ID, Now: time.Now(), Quorum: c.d.node.isLeader(), Nopreempt: cfg.Failover.Nopreempt, Damping: cfg.Failover.Damping}
	reps := c.reports(now)
	v.Unreachable = map[string]bool{}
	for _, p := range cfg.Cluster.Peers {
		if _, ok := reps[p.ID]; !ok {
			v.Unreachable[p.ID] = true
		}
	}
	switch s.Phase {
	case fsm.PhaseAssigned, fsm.PhaseActive:
		if s.Phase == fsm.PhaseAssigned && inPhase > cfg.Failover.CatchupTimeout+promotionMargin {
			v.PromotionOverdue = true
		}
		// Silent: no reachable voter other than the owner heard a Renew within the lease.
		// Give a fresh owner (or a fresh leader) two lease periods to be heard.
		if inPhase > 2*lease {
			v.OwnerSilent = true
			for id, r := range reps {
				if id == s.Owner {
					continue
				}
				if r.r.RenewAgeMS >= 0 && time.Duration(r.r.RenewAgeMS)*time.Millisecond+(now-r.at) < lease {
					v.OwnerSilent = false
				}
			}
		}
	case fsm.PhaseRevoked:
		v.PromisesExpired = c.promisesExpired(s, reps, now)
	}
	return v
}

// promisesExpired reports whether a majority of voters other than the old owner have
// applied the revoke and their last promise to it, plus the kernel lifetime of its VIP,
// is over. A voter that restarted recently counts as having promised at its boot.
func (c *controller) promisesExpired(s fsm.State, reps map[string]report, now time.Duration) bool {
	cfg := c.d.cfg
	wait := fsm.HandoverWait(cfg.Failover.Lease, fsm.DefaultRho, renewDelta(cfg.Failover.Lease), cfg.VIP.KernelLease, kernelSlack)
	ok := 0
	for id, r := range reps {
		if id == s.Owner || r.r.Applied < s.PhaseIndex {
			continue
		}
		last := time.Duration(-1)
		if r.r.PromiseOwner == s.Owner && r.r.PromiseEpoch == s.Epoch && r.r.LastGrantAgeMS >= 0 {
			last = r.at - time.Duration(r.r.LastGrantAgeMS)*time.Millisecond
		}
		if up := time.Duration(r.r.UptimeMS) * time.Millisecond; up < wait {
			last = max(last, r.at-up)
		}
		if last < 0 || now >= last+wait {
			ok++
		}
	}
	return ok >= len(cfg.Cluster.Peers)/2+1
}

// renewDelta is δ: the owner renews every lease/3 and accepts a promise as fresh for the
// kernel lifetime only if it arrived within δ of the request.
func renewDelta(lease time.Duration) time.Duration { return lease / 3 }
