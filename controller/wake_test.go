package controller

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/internal/boottime"
)

// TestNextWake: the leader loop sleeps until the first moment the view changes by time
// alone (plus a millisecond), and never longer than maxWait.
func TestNextWake(t *testing.T) {
	const (
		lease = 500 * time.Millisecond
		now   = time.Hour
		ms    = time.Millisecond
	)
	rep := func(at time.Duration, r api.NodeReport) report { return report{r: r, at: at} }
	selfRep := rep(now, api.NodeReport{Node: "witness", RenewAgeMS: -1, LastGrantAgeMS: -1, UptimeMS: 3600000})
	tests := []struct {
		name  string
		phase fsm.Phase
		reps  map[string]report
		w     wakes
		want  time.Duration
	}{
		{"nothing pending: maxWait", fsm.PhaseActive, map[string]report{"witness": selfRep},
			wakes{since: now - time.Minute}, maxWait},
		{"a peer's report ages out after two leases", fsm.PhaseActive, map[string]report{"witness": selfRep,
			"db2": rep(now-700*ms, api.NodeReport{RenewAgeMS: -1})}, wakes{since: now - time.Minute}, 301 * ms},
		{"the last renewal a voter saw ends", fsm.PhaseActive, map[string]report{"witness": selfRep,
			"db2": rep(now-100*ms, api.NodeReport{RenewAgeMS: 150})}, wakes{since: now - time.Minute}, 251 * ms},
		{"the owner's own report does not count as a renewal", fsm.PhaseActive, map[string]report{"witness": selfRep,
			"db1": rep(now-100*ms, api.NodeReport{RenewAgeMS: 150})}, wakes{since: now - time.Minute}, 901 * ms},
		{"a fresh owner's grace ends", fsm.PhaseActive, map[string]report{"witness": selfRep},
			wakes{since: now - 900*ms}, 101 * ms},
		{"a promotion becomes overdue", fsm.PhaseAssigned, map[string]report{"witness": selfRep},
			wakes{since: now - 2*5*time.Second - promotionMargin + 40*ms}, 41 * ms},
		{"a voter's promise to the revoked owner ends", fsm.PhaseRevoked, map[string]report{"witness": selfRep,
			"db2": rep(now, api.NodeReport{PromiseOwner: "db1", PromiseEpoch: 2, LastGrantAgeMS: 200, RenewAgeMS: -1, UptimeMS: 3600000})},
			wakes{since: now - time.Minute}, -200 * ms}, // negative: from the handover wait
		{"a voter that booted lately counts from its boot", fsm.PhaseRevoked, map[string]report{"witness": selfRep,
			"db2": rep(now, api.NodeReport{LastGrantAgeMS: -1, RenewAgeMS: -1, UptimeMS: 100})},
			wakes{since: now - time.Minute}, -100 * ms},
		{"settling ends", fsm.PhaseNone, map[string]report{"witness": selfRep},
			wakes{started: now - settleTime + 20*ms}, 21 * ms},
		{"a held-back decision is due again", fsm.PhaseActive, map[string]report{"witness": selfRep},
			wakes{since: now - time.Minute, repeat: now + 10*ms}, 11 * ms},
		{"the owner moves leadership away again", fsm.PhaseActive, map[string]report{"witness": selfRep},
			wakes{since: now - time.Minute, lastTransfer: now - transferEvery + 30*ms}, 31 * ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testController(newFakeNode())
			s := fsm.NewState()
			s.Owner, s.Epoch, s.Phase = "db1", 2, tt.phase
			s.Members["db1"] = &fsm.NodeState{Member: fsm.Member{ID: "db1", Role: fsm.RoleDatabase, KernelFence: true}}
			if tt.name == "the owner moves leadership away again" {
				s.Owner = "witness"
			}
			want := tt.want
			if want < 0 {
				want += c.HandoverWait(s, "db1") + ms
			}
			if got := c.nextWake(s, tt.reps, now, tt.w); got != want {
				t.Fatalf("nextWake = %v, want %v", got, want)
			}
		})
	}
}

// countingNode counts the leader loop's passes (each reads the state once).
type countingNode struct {
	*fakeNode
	mu     sync.Mutex
	passes int
}

func (n *countingNode) State() fsm.State {
	n.mu.Lock()
	n.passes++
	n.mu.Unlock()
	return n.fakeNode.State()
}

func (n *countingNode) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.passes
}

// TestLeaderLoopSleepsUntilDue: with an active owner and nothing changing, the leader
// loop does not run on a tick; it decides the revoke when the last renewal a voter saw
// ends, within a few milliseconds, woken by that deadline alone.
func TestLeaderLoopSleepsUntilDue(t *testing.T) {
	const lease = 450 * time.Millisecond
	n := &countingNode{fakeNode: newFakeNode()}
	c := New(Config{Self: "witness", Members: members("db1", "db2", "witness"), Lease: lease, CatchupTimeout: time.Second, KernelLease: time.Second, Nopreempt: true}, n, zapNop())
	yes := true
	n.self = api.NodeReport{Node: "witness", LastGrantAgeMS: -1, RenewAgeMS: -1, UptimeMS: 3600000}
	for _, id := range []string{"db1", "db2"} {
		n.peers[id] = api.Peer{OK: true, At: boottime.Now(), Report: api.NodeReport{Node: id, Healthy: &yes, LastGrantAgeMS: -1, RenewAgeMS: 0, UptimeMS: 3600000}}
	}
	for _, ev := range []struct {
		typ fsm.Type
		by  string
		p   any
	}{
		{fsm.Bootstrapped, "witness", fsm.BootstrappedData{Members: members("db1", "db2", "witness")}},
		{fsm.MemberJoined, "db1", fsm.MemberData{Member: fsm.Member{ID: "db1", Role: fsm.RoleDatabase, Priority: 100}}},
		{fsm.MemberJoined, "db2", fsm.MemberData{Member: fsm.Member{ID: "db2", Role: fsm.RoleDatabase, Priority: 90}}},
		{fsm.MemberJoined, "witness", fsm.MemberData{Member: fsm.Member{ID: "witness", Role: fsm.RoleWitness}}},
		{fsm.HealthChanged, "db1", fsm.HealthData{Node: "db1", Healthy: true}},
		{fsm.HealthChanged, "db2", fsm.HealthData{Node: "db2", Healthy: true}},
	} {
		n.propose(t, ev.typ, ev.by, ev.p)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	leaderCh := make(chan bool, 1)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, leaderCh) }()
	defer func() { cancel(); <-done }()
	leaderCh <- true
	waitState(t, n.fakeNode, "db1 assigned", func(s fsm.State) bool { return s.Owner == "db1" && s.Phase == fsm.PhaseAssigned })
	n.propose(t, fsm.OwnerPromoted, "db1", fsm.PromotedData{Owner: "db1", Reached: true})
	// Past a fresh owner's two leases of grace, db2 keeps seeing renewals (each report
	// wakes the loop, as a poll does); then they stop.
	var renewed time.Duration
	for range 8 {
		n.setPeers(func() {
			renewed = boottime.Now()
			for id, p := range n.peers {
				p.At = renewed
				n.peers[id] = p
			}
		})
		time.Sleep(lease / 3)
	}
	if s := n.State(); s.Phase != fsm.PhaseActive {
		t.Fatalf("phase %s while renewals are seen; applied %v", s.Phase, n.applied)
	}
	before := n.count()
	time.Sleep(lease / 2)
	if p := n.count() - before; p > 2 {
		t.Fatalf("%d passes of the leader loop in %v with nothing changing or due", p, lease/2)
	}
	waitState(t, n.fakeNode, "db1 revoked", func(s fsm.State) bool { return s.Phase == fsm.PhaseRevoked })
	if late := boottime.Now() - (renewed + lease); late < 0 || late > 150*time.Millisecond {
		t.Fatalf("revoked %v after the last renewal db2 saw ended, want within 150 ms; applied %v", late, n.applied)
	}
}
