package controller

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
)

// fakeNode is a leader whose state is a real fsm.State; Apply folds events into it.
type fakeNode struct {
	mu        sync.Mutex
	s         fsm.State
	watch     chan struct{}
	leader    bool
	barrierOK bool
	peers     map[string]api.Peer
	peersCh   chan struct{}
	self      api.NodeReport
	applied   []fsm.Type
	transfers []string
}

func newFakeNode() *fakeNode {
	return &fakeNode{s: fsm.NewState(), watch: make(chan struct{}), leader: true, barrierOK: true, peers: map[string]api.Peer{}, peersCh: make(chan struct{})}
}

func (n *fakeNode) PeersWatch() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.peersCh
}

// setPeers changes the reports under the lock and wakes the watchers, as a poll does.
func (n *fakeNode) setPeers(f func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	f()
	close(n.peersCh)
	n.peersCh = make(chan struct{})
}

func (n *fakeNode) State() fsm.State {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.s.Clone()
}

func (n *fakeNode) Watch() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.watch
}

func (n *fakeNode) Term() uint64 { return 7 }

func (n *fakeNode) Barrier(time.Duration) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.barrierOK {
		return context.DeadlineExceeded
	}
	return nil
}

func (n *fakeNode) IsLeader() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leader
}

func (n *fakeNode) Apply(ev fsm.Event, _ time.Duration) (api.ProposeResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.applied = append(n.applied, ev.Type)
	s, err := n.s.Apply(n.s.Index+1, ev)
	n.s = s
	close(n.watch)
	n.watch = make(chan struct{})
	resp := api.ProposeResponse{Index: s.Index, Result: fsm.ResultApplied}
	if err != nil {
		resp.Result, resp.Error = fsm.ResultStale, err.Error()
	}
	return resp, nil
}

func (n *fakeNode) TransferLeadership(id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.transfers = append(n.transfers, id)
	return nil
}

func (n *fakeNode) Peers() map[string]api.Peer {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string]api.Peer{}
	for k, v := range n.peers {
		out[k] = v
	}
	return out
}

func (n *fakeNode) Report() api.NodeReport {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.self
}

func (n *fakeNode) propose(t *testing.T, typ fsm.Type, by string, p any) {
	t.Helper()
	s := n.State()
	ev, err := fsm.NewEvent(typ, by, time.Now(), s.Epoch, s.Phase, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Apply(ev, time.Second); err != nil {
		t.Fatal(err)
	}
}

func waitState(t *testing.T, n *fakeNode, what string, cond func(fsm.State) bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if cond(n.State()) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	s := n.State()
	t.Fatalf("%s: state owner %q epoch %d phase %s; applied %v", what, s.Owner, s.Epoch, s.Phase, n.applied)
}

// TestLeaderLoop runs the controller on a fake leader: it bootstraps, assigns the best
// database node, revokes an owner that turns unhealthy, reassigns once its promises
// expired, and stops deciding when leadership is lost.
func TestLeaderLoop(t *testing.T) {
	n := newFakeNode()
	clk := time.Duration(0)
	var clkMu sync.Mutex
	now := func() time.Duration { clkMu.Lock(); defer clkMu.Unlock(); return clk }
	advance := func(d time.Duration) { clkMu.Lock(); clk += d; clkMu.Unlock() }
	advance(time.Hour)
	c := New(Config{Self: "witness", Members: members("db1", "db2", "witness"), Lease: 500 * time.Millisecond, CatchupTimeout: time.Second, KernelLease: time.Second, Nopreempt: true, Now: now}, n, zapNop())
	var decisions []fsm.Type
	var dmu sync.Mutex
	c.Decisions = func(t fsm.Type, _ string) { dmu.Lock(); decisions = append(decisions, t); dmu.Unlock() }
	n.self = api.NodeReport{Node: "witness", LastGrantAgeMS: -1, RenewAgeMS: -1, UptimeMS: 3600000}
	yes := true
	for _, id := range []string{"db1", "db2"} {
		n.peers[id] = api.Peer{OK: true, At: now(), Report: api.NodeReport{Node: id, Healthy: &yes, LastGrantAgeMS: -1, RenewAgeMS: -1, UptimeMS: 3600000}}
	}
	ctx, cancel := context.WithCancel(t.Context())
	leaderCh := make(chan bool, 2)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, leaderCh) }()
	leaderCh <- true

	waitState(t, n, "bootstrapped", func(s fsm.State) bool { return s.Bootstrapped })
	if c.ReadyTerm() != 7 {
		t.Fatalf("ReadyTerm = %d, want 7 after the barrier", c.ReadyTerm())
	}
	n.propose(t, fsm.MemberJoined, "db1", fsm.MemberData{Member: fsm.Member{ID: "db1", Role: fsm.RoleDatabase, Priority: 100}})
	n.propose(t, fsm.MemberJoined, "db2", fsm.MemberData{Member: fsm.Member{ID: "db2", Role: fsm.RoleDatabase, Priority: 90}})
	n.propose(t, fsm.MemberJoined, "witness", fsm.MemberData{Member: fsm.Member{ID: "witness", Role: fsm.RoleWitness}})
	n.propose(t, fsm.HealthChanged, "db1", fsm.HealthData{Node: "db1", Healthy: true})
	n.propose(t, fsm.HealthChanged, "db2", fsm.HealthData{Node: "db2", Healthy: true})
	waitState(t, n, "db1 assigned", func(s fsm.State) bool { return s.Owner == "db1" && s.Phase == fsm.PhaseAssigned })
	n.propose(t, fsm.OwnerPromoted, "db1", fsm.PromotedData{Owner: "db1", Reached: true})

	// db1 turns unhealthy and never releases: revoke, then wait out the promises.
	n.propose(t, fsm.HealthChanged, "db1", fsm.HealthData{Node: "db1", Healthy: false, Detail: "down"})
	waitState(t, n, "db1 revoked", func(s fsm.State) bool { return s.Phase == fsm.PhaseRevoked })
	time.Sleep(50 * time.Millisecond)
	if s := n.State(); s.Phase != fsm.PhaseRevoked {
		t.Fatalf("reassigned before the promises expired: phase %s", s.Phase)
	}
	// Every voter applied the revoke; their last grants to db1 are old.
	idx := n.State().Index
	n.setPeers(func() {
		n.self.Applied = idx
		for id, p := range n.peers {
			p.Report.Applied, p.At = idx, now()
			n.peers[id] = p
		}
	})
	advance(c.HandoverWait(n.State(), n.State().Owner) + time.Millisecond)
	n.setPeers(func() {
		for id, p := range n.peers {
			p.At = now()
			n.peers[id] = p
		}
	})
	waitState(t, n, "db2 assigned", func(s fsm.State) bool { return s.Owner == "db2" && s.Phase == fsm.PhaseAssigned && s.Epoch == 2 })

	leaderCh <- false
	time.Sleep(50 * time.Millisecond)
	before := len(n.applied)
	n.propose(t, fsm.PromotionFailed, "witness", fsm.PromotionFailedData{Owner: "db2"}) // would need a decision
	time.Sleep(100 * time.Millisecond)
	if len(n.applied) != before+1 {
		t.Fatalf("a follower decided: applied %v", n.applied[before:])
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	dmu.Lock()
	defer dmu.Unlock()
	if len(decisions) < 4 {
		t.Fatalf("decisions counted %v", decisions)
	}
}

func TestView(t *testing.T) {
	now := time.Hour
	yes := true
	tests := []struct {
		name          string
		phase         fsm.Phase
		inPhase       time.Duration
		renewAge      int64
		wantSilent    bool
		wantOverdue   bool
		wantUnreached bool
	}{
		{"fresh owner is not silent", fsm.PhaseActive, 100 * time.Millisecond, -1, false, false, false},
		{"renewals seen", fsm.PhaseActive, time.Minute, 100, false, false, false},
		{"no renewal within the lease", fsm.PhaseActive, time.Minute, 800, true, false, false},
		{"promotion overdue", fsm.PhaseAssigned, time.Minute, 100, false, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newFakeNode()
			n.self = api.NodeReport{Node: "witness", RenewAgeMS: tt.renewAge}
			n.peers["db2"] = api.Peer{OK: true, At: now, Report: api.NodeReport{Healthy: &yes, RenewAgeMS: tt.renewAge}}
			c := testController(n)
			s := fsm.State{Owner: "db1", Epoch: 2, Phase: tt.phase}
			v := c.View(s, now, tt.inPhase)
			if v.OwnerSilent != tt.wantSilent || v.PromotionOverdue != tt.wantOverdue || v.Unreachable["db1"] != true {
				t.Fatalf("view silent=%v overdue=%v unreachable=%v", v.OwnerSilent, v.PromotionOverdue, v.Unreachable)
			}
		})
	}
}

func TestTransferTarget(t *testing.T) {
	s := fsm.NewState()
	for id, role := range map[string]fsm.Role{"db1": fsm.RoleDatabase, "db2": fsm.RoleDatabase, "witness": fsm.RoleWitness} {
		s.Members[id] = &fsm.NodeState{Member: fsm.Member{ID: id, Role: role}}
	}
	s.Owner, s.Phase = "db1", fsm.PhaseActive
	const now = time.Hour
	tests := []struct {
		name      string
		self      string
		reachable []string
		stale     []string // answered, but more than two leases ago
		moves     bool
		want      string
	}{
		{"owner: prefers the standby", "db1", []string{"db2", "witness"}, nil, true, "db2"},
		{"owner: else the witness", "db1", []string{"witness"}, nil, true, "witness"},
		{"owner: nobody reachable", "db1", nil, nil, true, ""},
		{"witness: hands on to the standby", "witness", []string{"db1", "db2"}, nil, true, "db2"},
		{"witness: never to the owner", "witness", []string{"db1"}, nil, true, ""},
		{"standby: keeps it", "db2", []string{"db1", "witness"}, nil, false, ""},
		{"owner: not to a standby last heard two leases ago", "db1", []string{"witness"}, []string{"db2"}, true, "witness"},
		{"witness: not to a standby last heard two leases ago", "witness", []string{"db1"}, []string{"db2"}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newFakeNode()
			for _, id := range tt.reachable {
				n.peers[id] = api.Peer{OK: true, At: now}
			}
			for _, id := range tt.stale {
				n.peers[id] = api.Peer{OK: true, At: now - time.Second - time.Millisecond}
			}
			c := New(Config{Self: tt.self, Members: members("db1", "db2", "witness"), Lease: 500 * time.Millisecond, CatchupTimeout: 5 * time.Second, KernelLease: time.Second}, n, zapNop())
			if got := c.movesLeadership(s); got != tt.moves {
				t.Fatalf("movesLeadership = %v, want %v", got, tt.moves)
			}
			if !tt.moves {
				return
			}
			if got := c.transferTarget(s, c.reports(now)); got != tt.want {
				t.Fatalf("transferTarget = %q, want %q", got, tt.want)
			}
		})
	}
}
