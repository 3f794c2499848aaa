package node

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/config"
)

// pollEveryMax caps the fast poll period (which is otherwise lease/4).
const pollEveryMax = 100 * time.Millisecond

// poller reads every peer's /v1/node report. The controller decides from these reports,
// followers learn the leader's applied index from them, and status shows each member's
// last contact. A poll carries this node's own report (POST /v1/node), which the peer
// records as its poll of this node: whichever side is due first serves both, and the
// other finds a fresh report and skips its poll.
//
// The pace follows what the reports are for. While the cluster is busy (the state is
// not a steady active owner, or the journal changed within the last two lease periods:
// kick) every peer is polled every `every` (lease/4, at most 100 ms). In the steady state
// the raft leader, whose controller decides from the reports, polls every peer every
// lease/2 (`idle`), well under the two lease periods after which it counts a peer as
// unreachable. A follower lets the leader's polls serve it: a database node, which acts
// on ownership only while the leader's applied index is at most one lease old, polls
// the leader itself only when no report of it came within 0.6 lease (a leader's poll
// missed), and a witness, which only needs to have learned the leader's index once,
// within a lease. Followers poll each other every lease (for the status only). The
// owner's renewals (every lease/3) carry its report and its voters', so nobody polls
// it and it polls nobody. The timing a decision needs is carried inside the report (ages
// of renewals and promises are measured against the report's own time), so a slower
// poll never makes one unsafe; a journal change polls every peer at once, and a node
// that becomes the leader polls every peer at once.
type poller struct {
	self   string
	peers  []config.Peer
	client *api.Client
	log    *zap.Logger
	every  time.Duration
	// idle is the leader's steady pace for every peer (lease/2), followIdle a
	// follower's for the other followers (lease).
	idle, followIdle time.Duration
	// leaderIdle is a follower's steady pace for the leader: 0.6 lease on a database
	// node (its view of the leader must stay under one lease old; the leader's own polls
	// come every lease/2), a lease on a witness.
	leaderIdle time.Duration
	// busyWindow is how long after a kick every peer is polled fast.
	busyWindow time.Duration
	now        func() time.Duration
	// leader names the raft leader ("" when unknown), steady says whether the applied
	// state is a steady active owner; both nil poll every peer every `every`.
	leader func() string
	steady func() bool
	// report is this node's own report, sent with each poll (nil: a plain GET).
	report func() api.NodeReport
	kicks  chan struct{}
	// leaderMoved wakes the loop when raft observes a new leader, so the new leader is
	// polled at once (it is where a follower learns the applied index from).
	leaderMoved chan struct{}

	mu    sync.Mutex
	views map[string]api.Peer
	// changed is closed (and replaced) at every change of views.
	changed chan struct{}
	// maxLeader is the highest LeaderApplied any peer reported since start.
	maxLeader uint64
	// busyUntil is the boot-clock time until which every peer is polled fast.
	busyUntil time.Duration
	// leftAt is when each peer marked left said goodbye (boot clock).
	leftAt map[string]time.Duration
	// plain holds the peers that answered an exchange with 405 (an older version), with
	// when (boot clock): they are polled with a plain GET until a report shows the peer
	// started after that (an upgrade restarts it), when the exchange is tried again.
	plain map[string]time.Duration

	// timerWakes counts the loop's wakes by its own timer (each a wakeup of the process
	// when nothing else woke it), for tests.
	timerWakes atomic.Int64
}

func newPoller(cfg *config.Config, client *api.Client, now func() time.Duration, log *zap.Logger) *poller {
	return &poller{self: cfg.Node.ID, peers: cfg.Cluster.Peers, client: client, log: log.Named("poller"),
		every: min(cfg.Failover.Lease/4, pollEveryMax), idle: cfg.Failover.Lease / 2, followIdle: cfg.Failover.Lease, leaderIdle: leaderIdle(cfg),
		busyWindow: 2 * cfg.Failover.Lease, now: now, views: map[string]api.Peer{}, leftAt: map[string]time.Duration{}, plain: map[string]time.Duration{},
		kicks: make(chan struct{}, 1), leaderMoved: make(chan struct{}, 1), changed: make(chan struct{})}
}

// watch returns a channel closed at the next change of any peer's view.
func (p *poller) watch() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

// changedLocked wakes the watchers of the views; p.mu is held.
func (p *poller) changedLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// leaderChanged wakes the loop to poll a new raft leader now.
func (p *poller) leaderChanged() {
	select {
	case p.leaderMoved <- struct{}{}:
	default:
	}
}

// leaderIdle is a follower's steady pace for the raft leader (see poller).
func leaderIdle(cfg *config.Config) time.Duration {
	if cfg.IsDatabase() {
		return cfg.Failover.Lease * 3 / 5
	}
	return cfg.Failover.Lease
}

// kick polls every peer at once and keeps the fast pace for the busy window.
func (p *poller) kick() {
	p.mu.Lock()
	p.busyUntil = p.now() + p.busyWindow
	p.mu.Unlock()
	select {
	case p.kicks <- struct{}{}:
	default:
	}
}

// period is how long until peer id is polled again.
func (p *poller) period(id, leader string, steady bool) time.Duration {
	switch {
	case !steady:
		return p.every
	case leader == p.self:
		return p.idle
	case id == leader:
		return p.leaderIdle
	}
	return p.followIdle
}

// isSteady reports whether the non-leader peers may be polled at the idle pace.
func (p *poller) isSteady(leader string) bool {
	if p.steady == nil || !p.steady() || (leader == "" && p.leader != nil) {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.now() >= p.busyUntil
}

// Run polls each peer when it is due, each on its own: a peer that does not answer
// (its poll waits out its timeout) delays no other peer's poll.
func (p *poller) Run(ctx context.Context) error {
	due := map[string]time.Duration{}
	inflight := map[string]bool{}
	// kicked marks the peers whose next poll must be a real one, started after a kick.
	kicked := map[string]bool{}
	done := make(chan string, len(p.peers))
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	lastLeader := ""
	for {
		// Before anything is read, so no report recorded from here on goes unseen.
		views := p.watch()
		leader := ""
		if p.leader != nil {
			leader = p.leader()
		}
		steady := p.isSteady(leader)
		now := p.now()
		for _, peer := range p.peers {
			if peer.ID == p.self || inflight[peer.ID] {
				continue
			}
			// A new leader is polled at once: its report, not one from before it led,
			// carries the applied index a follower needs.
			newLeader := peer.ID == leader && leader != lastLeader
			if d, ok := due[peer.ID]; ok && d > now && !newLeader {
				continue
			}
			period := p.period(peer.ID, leader, steady)
			// A report a renewal carried in meanwhile stands in for this poll (not after
			// a kick, which wants every report from after the change).
			if at, ok := p.fresh(peer.ID, period); ok && !kicked[peer.ID] && !newLeader {
				due[peer.ID] = at + period
				continue
			}
			// The poll right after a kick may reach a peer that has not applied the change
			// yet (the leader applies first): the next one follows after every/4.
			if kicked[peer.ID] {
				period = min(period, p.every/4)
			}
			due[peer.ID], inflight[peer.ID] = now+period, true
			delete(kicked, peer.ID)
			wg.Go(func() {
				p.pollOne(ctx, peer)
				done <- peer.ID
			})
		}
		lastLeader = leader
		wait := p.idle
		now = p.now()
		for id, d := range due {
			if !inflight[id] {
				wait = min(wait, max(d-now, 0))
			}
		}
		// Without a known leader, look for one every `every`; a change of a known leader
		// wakes the loop (leaderChanged).
		if leader == "" && p.leader != nil {
			wait = min(wait, p.every)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			p.timerWakes.Add(1)
		case id := <-done:
			delete(inflight, id)
		case <-views:
			// A report came in (a renewal carries them six times a second): a peer whose
			// check is pending now counts from it, so in the steady state the timer is
			// pushed back by each report and the loop never wakes on its own to find a
			// fresh one. A peer without a fresh report keeps its due time.
			for id, d := range due {
				if inflight[id] || kicked[id] {
					continue
				}
				period := p.period(id, leader, steady)
				if at, ok := p.fresh(id, period); ok && at+period > d {
					due[id] = at + period
				}
			}
		case <-p.leaderMoved:
			// A node that became the leader decides from every report: poll them now.
			if p.leader != nil && p.leader() == p.self {
				clear(due)
			}
		case <-p.kicks:
			clear(due)
			for _, peer := range p.peers {
				kicked[peer.ID] = true
			}
		}
	}
}

func (p *poller) pollOne(ctx context.Context, peer config.Peer) {
	start := p.now()
	r, err := p.fetch(ctx, peer)
	if err == nil {
		p.record(peer.ID, r)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	v := p.views[peer.ID]
	if v.OK && (v.At >= start || p.now()-v.At < p.every) {
		// A report recorded while this poll was under way (a renewal or the peer's own
		// poll carried it) is newer than the failure: the peer reached us after the poll
		// began. One recorded within the fast poll period outweighs a single failure
		// too; the view ages out by itself if nothing follows.
		return
	}
	if v.OK {
		p.log.Info("peer unreachable", zap.String("peer", peer.ID), zap.Error(err))
	}
	v.OK, v.Err = false, err.Error()
	p.views[peer.ID] = v
	p.changedLocked()
}

// fetch reads peer's report; with this node's own report in the request (an exchange)
// unless the peer does not serve that.
func (p *poller) fetch(ctx context.Context, peer config.Peer) (api.NodeReport, error) {
	p.mu.Lock()
	_, plain := p.plain[peer.ID]
	p.mu.Unlock()
	if p.report == nil || plain {
		return p.client.Node(ctx, peer.APIAddr, p.every*2)
	}
	r, err := p.client.ExchangeNode(ctx, peer.APIAddr, p.report(), p.every*2)
	if api.IsMethodNotAllowed(err) {
		p.log.Info("peer does not take reports with a poll (an older version); polling it with GET", zap.String("peer", peer.ID))
		p.mu.Lock()
		p.plain[peer.ID] = p.now()
		p.mu.Unlock()
		return p.client.Node(ctx, peer.APIAddr, p.every*2)
	}
	return r, err
}

// record stores peer id's report, taken now: from a poll, carried by a peer's poll of
// this node (an exchange), or carried by a lease renewal (the owner's in its request, a
// voter's in its answer).
func (p *poller) record(id string, r api.NodeReport) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v := p.views[id]
	if !v.OK && v.At != 0 {
		p.log.Info("peer reachable again", zap.String("peer", id))
	}
	p.maxLeader = max(p.maxLeader, r.LeaderApplied)
	now := p.now()
	// A peer that said goodbye stays left while it reports stopping, and also for a
	// report it sent before its goodbye that arrives after it (a renewal's answer in
	// flight): only a peer that started after its goodbye is back.
	started := now - time.Duration(r.UptimeMS)*time.Millisecond
	left := v.Left && (r.Stopping || started < p.leftAt[id])
	if !left {
		delete(p.leftAt, id)
	}
	if at, ok := p.plain[id]; ok && r.UptimeMS > 0 && started > at {
		p.log.Info("peer restarted since it refused reports with polls; trying them again", zap.String("peer", id))
		delete(p.plain, id)
	}
	p.views[id] = api.Peer{Report: r, At: now, OK: true, Left: left}
	p.changedLocked()
}

// fresh reports whether peer id's view was recorded less than period ago, and when.
func (p *poller) fresh(id string, period time.Duration) (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.views[id]
	return v.At, ok && v.OK && p.now()-v.At < period
}

// learned returns the highest applied index a leader reported since start (0: none).
func (p *poller) learned() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.maxLeader
}

// markLeft records that peer said goodbye (a graceful stop).
func (p *poller) markLeft(peer string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v := p.views[peer]
	v.Left = true
	p.views[peer] = v
	p.leftAt[peer] = p.now()
	p.changedLocked()
}

// snapshot returns a copy of every peer's latest view.
func (p *poller) snapshot() map[string]api.Peer {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.views)
}
