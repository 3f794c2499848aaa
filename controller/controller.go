// Package controller runs the failover policy on the Raft leader: it follows leadership,
// runs one leader loop per term (Barrier first), builds the [fsm.View] from the peers'
// reports and proposes what [fsm.Decide] returns. It reaches its node only through the
// [Node] interface it declares.
package controller

import (
	"context"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/internal/boottime"
)

// Timing constants of the controller, documented in the README.
const (
	// KernelSlack bounds how late the kernel removes an address after its valid_lft ends:
	// IPv4 lifetime checks run on whole-second ticks, so removal came up to 0.93 s late in
	// our measurements (valid_lft 2: gone 2.02–2.93 s after the last renewal).
	KernelSlack = 1100 * time.Millisecond
	// promotionMargin is added to failover.catchup_timeout before a promotion is overdue.
	promotionMargin = 3 * time.Second
	// settleTime bounds how long a new cluster waits for every database member's first
	// health report before it assigns the VIP to the best node it knows.
	settleTime = 5 * time.Second
	// barrierTimeout bounds the Barrier a new leader runs before deciding, and
	// barrierRetry spaces its retries.
	barrierTimeout = 2 * time.Second
	barrierRetry   = 100 * time.Millisecond
	// applyTimeout bounds one decision's commit.
	applyTimeout = 2 * time.Second
	// maxWait bounds the leader loop's sleep. It wakes on an applied change, on a new or
	// failed report of a peer, and at the next moment the view changes by time alone (a
	// report ageing out, a renewal or a promise expiring, a phase overdue): see nextWake.
	maxWait = time.Second
	// repeatAfter suppresses proposing the same decision twice within this time.
	repeatAfter = time.Second
	// transferEvery spaces attempts to move leadership off the owner.
	transferEvery = 5 * time.Second
)

// Node is what the controller needs from its node.
type Node interface {
	// State returns the applied state; Watch a channel closed at the next change.
	State() fsm.State
	Watch() <-chan struct{}
	// Term is the current raft term; Barrier waits until every earlier entry is applied.
	Term() uint64
	Barrier(timeout time.Duration) error
	// IsLeader reports raft leadership now; Apply commits ev as the leader.
	IsLeader() bool
	Apply(ev fsm.Event, timeout time.Duration) (api.ProposeResponse, error)
	// TransferLeadership hands raft leadership to the voter id.
	TransferLeadership(id string) error
	// Peers is the latest poll of every peer; Report is this node's own report;
	// PeersWatch a channel closed at the next change of Peers.
	Peers() map[string]api.Peer
	Report() api.NodeReport
	PeersWatch() <-chan struct{}
}

// Config is the controller's part of the node configuration.
type Config struct {
	Self string
	// Members are every voter (id, raft and API address), for the Bootstrapped event.
	Members        []fsm.Member
	Lease          time.Duration
	CatchupTimeout time.Duration
	KernelLease    time.Duration
	Nopreempt      bool
	Damping        time.Duration
	// Now reads the lease clock; nil means CLOCK_BOOTTIME.
	Now func() time.Duration
}

// Controller follows leadership and runs the leader loop.
type Controller struct {
	cfg   Config
	node  Node
	log   *zap.Logger
	now   func() time.Duration
	ready atomic.Uint64 // the term in which a Barrier last succeeded
	// Decisions counts proposals by type and outcome (may be nil).
	Decisions func(t fsm.Type, outcome string)
}

// New returns a controller for node.
func New(cfg Config, node Node, log *zap.Logger) *Controller {
	now := cfg.Now
	if now == nil {
		now = boottime.Now
	}
	return &Controller{cfg: cfg, node: node, log: log.Named("controller"), now: now}
}

// ReadyTerm returns the raft term in which this node, as leader, last completed a
// Barrier: from then on its applied state holds every committed entry.
func (c *Controller) ReadyTerm() uint64 { return c.ready.Load() }

// Run follows leadership changes on leaderCh (raft's NotifyCh, which unlike LeaderCh
// never drops a transition) and runs one leader loop per term of leadership.
func (c *Controller) Run(ctx context.Context, leaderCh <-chan bool) error {
	var stop, done chan struct{}
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
		case leader := <-leaderCh:
			if leader && stop == nil {
				stop, done = make(chan struct{}), make(chan struct{})
				c.log.Info("gained raft leadership; controller starts")
				go func(stop, done chan struct{}) {
					defer close(done)
					c.leaderLoop(ctx, stop)
				}(stop, done)
			} else if !leader && stop != nil {
				c.log.Info("lost raft leadership; controller stops")
				end()
			}
		}
	}
}

type decided struct {
	typ   fsm.Type
	epoch uint64
	phase fsm.Phase
	data  string
	at    time.Duration
}

// barrier blocks until a Barrier succeeds in this term; false when stopped.
func (c *Controller) barrier(ctx context.Context, stop <-chan struct{}) bool {
	for {
		term := c.node.Term()
		err := c.node.Barrier(barrierTimeout)
		if err == nil {
			c.ready.Store(term)
			return true
		}
		c.log.Warn("barrier before deciding", zap.Error(err))
		select {
		case <-stop:
			return false
		case <-ctx.Done():
			return false
		case <-time.After(barrierRetry):
		}
	}
}

func (c *Controller) leaderLoop(ctx context.Context, stop <-chan struct{}) {
	// Barrier first: decide only from a state that includes every entry committed by
	// earlier leaders.
	if !c.barrier(ctx, stop) {
		return
	}
	if !c.node.State().Bootstrapped {
		c.apply(fsm.Bootstrapped, fsm.BootstrappedData{Members: c.cfg.Members})
	}
	started := c.now()
	// When this leader first saw the current (epoch, phase): the base of its deadlines.
	var key struct {
		epoch uint64
		phase fsm.Phase
	}
	var since time.Duration
	var last decided
	var lastTransfer time.Duration
	timer := time.NewTimer(maxWait)
	defer timer.Stop()
	for {
		watch, peersWatch := c.node.Watch(), c.node.PeersWatch()
		s := c.node.State()
		now := c.now()
		if since == 0 || key.epoch != s.Epoch || key.phase != s.Phase {
			key.epoch, key.phase, since = s.Epoch, s.Phase, now
		}
		reps := c.reports(now)
		v := c.view(s, reps, now, now-since)
		if s.Phase == fsm.PhaseNone && now-started < settleTime {
			for _, m := range s.Members {
				// A member that has not announced its role yet may be a database node.
				if m.Role == "" || (m.Role == fsm.RoleDatabase && !m.HealthKnown) {
					v.Settling = true
				}
			}
		}
		for _, ev := range fsm.Decide(s, v) {
			// The same decision (an assignment to the same node, say) is not repeated within
			// repeatAfter; a different one (another assignee) goes out at once.
			if ev.Type == last.typ && ev.Epoch == last.epoch && ev.Phase == last.phase && string(ev.Data) == last.data && now-last.at < repeatAfter {
				continue
			}
			last = decided{ev.Type, ev.Epoch, ev.Phase, string(ev.Data), now}
			c.commit(ev)
		}
		// Keep leadership on the standby database node: off the owner, so that losing the
		// owner's host costs no election on top of the lease wait, and off the witness,
		// which is meant to cost least (the leader polls every peer, sends the heartbeats
		// and runs this loop).
		if c.movesLeadership(s) && (lastTransfer == 0 || now-lastTransfer > transferEvery) {
			lastTransfer = now
			if target := c.transferTarget(s, reps); target != "" {
				c.log.Info("moving raft leadership", zap.String("to", target), zap.String("owner", s.Owner))
				if err := c.node.TransferLeadership(target); err != nil {
					c.log.Warn("leadership transfer", zap.Error(err))
				}
			}
		}
		w := wakes{since: since, started: started, lastTransfer: lastTransfer}
		if last.typ != "" {
			w.repeat = last.at + repeatAfter
		}
		timer.Reset(c.nextWake(s, reps, now, w))
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-watch:
		case <-peersWatch:
		case <-timer.C:
		}
	}
}

func (c *Controller) apply(t fsm.Type, p any) {
	s := c.node.State()
	ev, err := fsm.NewEvent(t, c.cfg.Self, time.Now(), s.Epoch, s.Phase, p)
	if err != nil {
		c.log.Error("build event", zap.String("type", string(t)), zap.Error(err))
		return
	}
	c.commit(ev)
}

func (c *Controller) commit(ev fsm.Event) {
	resp, err := c.node.Apply(ev, applyTimeout)
	outcome := string(resp.Result)
	if err != nil {
		outcome = "error"
		c.log.Warn("propose decision", zap.String("type", string(ev.Type)), zap.Error(err))
	} else {
		c.log.Info("decided", zap.String("type", string(ev.Type)), zap.Uint64("epoch", ev.Epoch), zap.String("phase", string(ev.Phase)), zap.Uint64("index", resp.Index), zap.String("result", outcome), zap.String("data", string(ev.Data)))
	}
	if c.Decisions != nil {
		c.Decisions(ev.Type, outcome)
	}
}

// movesLeadership reports whether this leader should hand leadership on while the owner
// is active: it is the owner, or it is a witness (a database node takes it when one is
// reachable; see transferTarget).
func (c *Controller) movesLeadership(s fsm.State) bool {
	if s.Phase != fsm.PhaseActive {
		return false
	}
	if s.Owner == c.cfg.Self {
		return true
	}
	m, ok := s.Members[c.cfg.Self]
	return ok && m.Role == fsm.RoleWitness
}

// transferTarget names the voter to hand leadership to: a reachable database node other
// than the owner, else (from the owner only) a reachable witness; "" when there is none.
// Reachable is what the decisions use: a report in reps (answered, and under two leases
// old), so a peer that stopped answering a moment ago is not chosen on an old poll.
func (c *Controller) transferTarget(s fsm.State, reps map[string]report) string {
	fromOwner := s.Owner == c.cfg.Self
	witness := ""
	for _, id := range s.MemberIDs() {
		if _, ok := reps[id]; !ok || id == s.Owner || id == c.cfg.Self {
			continue
		}
		switch s.Members[id].Role {
		case fsm.RoleDatabase:
			return id
		case fsm.RoleWitness:
			if witness == "" && fromOwner {
				witness = id
			}
		}
	}
	return witness
}

// report is one voter's latest report with the boot-clock time it was taken.
type report struct {
	r  api.NodeReport
	at time.Duration
}

func (c *Controller) reports(now time.Duration) map[string]report {
	out := map[string]report{c.cfg.Self: {c.node.Report(), now}}
	for id, p := range c.node.Peers() {
		// A report older than two lease periods says nothing about now.
		if p.OK && now-p.At < 2*c.cfg.Lease {
			out[id] = report{p.Report, p.At}
		}
	}
	return out
}

// View builds what Decide needs beyond the journal, from the peers' reports; inPhase is
// how long this leader has seen the current (epoch, phase).
func (c *Controller) View(s fsm.State, now, inPhase time.Duration) fsm.View {
	return c.view(s, c.reports(now), now, inPhase)
}

func (c *Controller) view(s fsm.State, reps map[string]report, now, inPhase time.Duration) fsm.View {
	cfg := c.cfg
	lease := cfg.Lease
	v := fsm.View{Self: cfg.Self, Now: time.Now(), Quorum: c.node.IsLeader(), Nopreempt: cfg.Nopreempt, Damping: cfg.Damping}
	v.Unreachable = map[string]bool{}
	for _, m := range cfg.Members {
		if _, ok := reps[m.ID]; !ok {
			v.Unreachable[m.ID] = true
		}
	}
	switch s.Phase {
	case fsm.PhaseAssigned, fsm.PhaseActive:
		// A promotion waits up to catchup_timeout for the release's GTID set and again up
		// to catchup_timeout for the relay log.
		if s.Phase == fsm.PhaseAssigned && inPhase > 2*cfg.CatchupTimeout+promotionMargin {
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

// wakes are the leader loop's own times that nextWake needs besides the state and the
// reports (boot clock; zero for none).
type wakes struct {
	// since is when the loop first saw the current (epoch, phase); started is when
	// this term's loop started.
	since, started time.Duration
	// repeat is when the last decision may be proposed again; lastTransfer is the
	// last attempt to move leadership off the owner.
	repeat, lastTransfer time.Duration
}

// nextWake is how long the leader loop may sleep when neither the journal nor a report
// changes: until the first moment at which the view built from s and reps changes by
// time alone, or a decision the loop held back is due; at most maxWait, at least a
// millisecond. It mirrors what view, reports and Decide read from the clock: a report
// that ages out (unreachable), the end of a fresh owner's grace and of each voter's last
// renewal (silent), an overdue promotion, the end of each voter's promise and of its
// boot (promises expired), the settling time, a candidate's damping, a suppressed repeat
// and the next leadership transfer.
func (c *Controller) nextWake(s fsm.State, reps map[string]report, now time.Duration, w wakes) time.Duration {
	next := now + maxWait
	// at notes a moment when a condition flips; a millisecond later it has flipped
	// whether the condition compares with < or <=.
	at := func(t time.Duration) {
		if t += time.Millisecond; t > now && t < next {
			next = t
		}
	}
	lease := c.cfg.Lease
	for id, r := range reps {
		if id != c.cfg.Self {
			at(r.at + 2*lease)
		}
	}
	switch s.Phase {
	case fsm.PhaseAssigned, fsm.PhaseActive:
		if s.Phase == fsm.PhaseAssigned {
			at(w.since + 2*c.cfg.CatchupTimeout + promotionMargin)
		}
		at(w.since + 2*lease)
		for id, r := range reps {
			if id != s.Owner && r.r.RenewAgeMS >= 0 {
				at(r.at - time.Duration(r.r.RenewAgeMS)*time.Millisecond + lease)
			}
		}
		if c.movesLeadership(s) && w.lastTransfer != 0 {
			at(w.lastTransfer + transferEvery)
		}
	case fsm.PhaseRevoked:
		wait := c.HandoverWait(s, s.Owner)
		for id, r := range reps {
			if id == s.Owner {
				continue
			}
			if r.r.PromiseOwner == s.Owner && r.r.PromiseEpoch == s.Epoch && r.r.LastGrantAgeMS >= 0 {
				at(r.at - time.Duration(r.r.LastGrantAgeMS)*time.Millisecond + wait)
			}
			if up := time.Duration(r.r.UptimeMS) * time.Millisecond; up < wait {
				at(r.at - up + wait)
			}
		}
	case fsm.PhaseNone:
		at(w.started + settleTime)
	}
	if c.cfg.Damping > 0 {
		wall := time.Now()
		for _, m := range s.Members {
			if !m.HealthAt.IsZero() {
				if left := m.HealthAt.Add(c.cfg.Damping).Sub(wall); left > 0 {
					at(now + left)
				}
			}
		}
	}
	if w.repeat != 0 {
		at(w.repeat)
	}
	return max(next-now, time.Millisecond)
}

// HandoverWait is how long after the last promise to owner a new owner may be assigned
// without its release: the lease (plus a jiffy) when the journal says owner's VIPs are
// behind a kernel fence, otherwise also the kernel lifetime of its VIP.
func (c *Controller) HandoverWait(s fsm.State, owner string) time.Duration {
	if m := s.Members[owner]; m != nil && m.KernelFence {
		return fsm.FencedHandoverWait(c.cfg.Lease, fsm.DefaultRho)
	}
	return fsm.HandoverWait(c.cfg.Lease, fsm.DefaultRho, c.cfg.Lease/3, c.cfg.KernelLease, KernelSlack)
}

// promisesExpired reports whether a majority of voters other than the old owner have
// applied the revoke and their last promise to it, plus the kernel lifetime of its VIP,
// is over. A voter that restarted recently counts as having promised at its boot.
func (c *Controller) promisesExpired(s fsm.State, reps map[string]report, now time.Duration) bool {
	wait := c.HandoverWait(s, s.Owner)
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
	return ok >= len(c.cfg.Members)/2+1
}
