package fsm

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// st builds a state from a compact description, for policy tables.
type st struct {
	phase       Phase
	owner       string
	healthy     map[string]bool
	maint       []string
	switchTo    *SwitchoverData
	release     *Release
	failedEpoch string
	// failedAt is the epoch of failedEpoch's failed promotion; 0 means the state's epoch.
	failedAt uint64
	blocked  string
	// epoch overrides the state's epoch (default 1 when there is an owner, else 0).
	epoch uint64
	// target is the catch-up target of the current assignment.
	target string
}

func (d st) state() State {
	s := NewState()
	s.Bootstrapped = true
	for _, m := range members() {
		s.Members[m.ID] = &NodeState{Member: m}
	}
	for id, ok := range d.healthy {
		s.Members[id].Healthy, s.Members[id].HealthKnown = ok, true
		s.Members[id].Detail = map[bool]string{true: "ok", false: "connection refused"}[ok]
	}
	for _, id := range d.maint {
		s.Members[id].Maintenance = true
	}
	if d.blocked != "" {
		s.Members[d.blocked].RejoinBlocked, s.Members[d.blocked].RejoinExtra = true, "1-1-4"
	}
	s.Phase, s.Owner, s.Switchover, s.LastRelease, s.Target = PhaseNone, d.owner, d.switchTo, d.release, d.target
	if d.phase != "" {
		s.Phase = d.phase
	}
	if s.Owner != "" {
		s.Epoch = 1
	}
	if d.epoch != 0 {
		s.Epoch = d.epoch
	}
	if d.failedEpoch != "" {
		s.Members[d.failedEpoch].FailedEpoch = s.Epoch
		if d.failedAt != 0 {
			s.Members[d.failedEpoch].FailedEpoch = d.failedAt
		}
	}
	return s
}

func TestDecide(t *testing.T) {
	both := map[string]bool{"db1": true, "db2": true}
	live := View{Self: "witness", Now: t0, Quorum: true, Nopreempt: true}
	with := func(f func(*View)) View { v := live; f(&v); return v }
	tests := []struct {
		name      string
		give      st
		view      View
		wantType  Type
		wantOwner string
	}{
		{"initial goes to highest priority", st{healthy: both}, live, OwnerAssigned, "db1"},
		{"settling waits for every member's health", st{healthy: map[string]bool{"db2": true}}, with(func(v *View) { v.Settling = true }), "", ""},
		{"after settling the known healthy node wins", st{healthy: map[string]bool{"db2": true}}, live, OwnerAssigned, "db2"},
		{"no quorum no decision", st{healthy: both}, with(func(v *View) { v.Quorum = false }), "", ""},
		{"unknown health no owner", st{}, live, "", ""},
		{"only healthy node wins", st{healthy: map[string]bool{"db1": false, "db2": true}}, live, OwnerAssigned, "db2"},
		{"maintenance excluded", st{healthy: both, maint: []string{"db1"}}, live, OwnerAssigned, "db2"},
		{"blocked rejoin excluded", st{healthy: both, blocked: "db1"}, live, OwnerAssigned, "db2"},
		{"blocked rejoin alone waits", st{healthy: map[string]bool{"db1": true, "db2": false}, blocked: "db1"}, live, "", ""},
		{"failed promotion ranks last", st{phase: PhaseReleased, owner: "db1", healthy: both, failedEpoch: "db1", release: &Release{Epoch: 1, Owner: "db1", Fenced: true}}, live, OwnerAssigned, "db2"},
		{"failed promotion alone is last resort", st{phase: PhaseReleased, owner: "db1", epoch: 3, healthy: map[string]bool{"db1": true, "db2": false}, failedEpoch: "db1", release: &Release{Epoch: 3, Owner: "db1", Fenced: true}}, live, OwnerAssigned, "db1"},
		{"failed promotion of an older epoch no longer counts", st{phase: PhaseReleased, owner: "db2", epoch: 3, healthy: both, failedEpoch: "db1", failedAt: 2, release: &Release{Epoch: 3, Owner: "db2", Fenced: true}}, live, OwnerAssigned, "db1"},
		{"failed revoked owner waits for its release", st{phase: PhaseRevoked, owner: "db1", epoch: 3, healthy: map[string]bool{"db1": true, "db2": false}, failedEpoch: "db1"}, with(func(v *View) { v.PromisesExpired = true }), "", ""},
		{"nobody healthy nobody assigned", st{healthy: map[string]bool{"db1": false, "db2": false}}, live, "", ""},
		{"healthy owner kept (nopreempt)", st{phase: PhaseActive, owner: "db2", healthy: both}, live, "", ""},
		{"preempt asks switchover to higher priority", st{phase: PhaseActive, owner: "db2", healthy: both}, with(func(v *View) { v.Nopreempt = false }), SwitchoverRequested, ""},
		{"unhealthy owner revoked", st{phase: PhaseActive, owner: "db1", healthy: map[string]bool{"db1": false, "db2": true}}, live, OwnerRevoked, ""},
		{"silent owner revoked", st{phase: PhaseActive, owner: "db1", healthy: both}, with(func(v *View) { v.OwnerSilent = true }), OwnerRevoked, ""},
		{"revoked owner is not reassigned", st{phase: PhaseRevoked, owner: "db1", healthy: both}, with(func(v *View) { v.PromisesExpired = true }), OwnerAssigned, "db2"},
		{"revoked owner alone waits", st{phase: PhaseRevoked, owner: "db1", healthy: map[string]bool{"db1": true, "db2": false}}, with(func(v *View) { v.PromisesExpired = true }), "", ""},
		{"unreachable node is no candidate", st{healthy: both}, with(func(v *View) { v.Unreachable = map[string]bool{"db1": true} }), OwnerAssigned, "db2"},
		{"revoked waits for promises", st{phase: PhaseRevoked, owner: "db1", healthy: both}, live, "", ""},
		{"revoked then assigned after expiry", st{phase: PhaseRevoked, owner: "db1", healthy: map[string]bool{"db1": false, "db2": true}}, with(func(v *View) { v.PromisesExpired = true }), OwnerAssigned, "db2"},
		{"released assigned at once", st{phase: PhaseReleased, owner: "db1", healthy: map[string]bool{"db1": false, "db2": true}, release: &Release{Epoch: 1, Owner: "db1", GTID: "1-11-9", Fenced: true}}, live, OwnerAssigned, "db2"},
		{"switchover to target", st{phase: PhaseReleased, owner: "db1", healthy: both, switchTo: &SwitchoverData{To: "db2"}, release: &Release{Epoch: 1, Owner: "db1"}}, live, OwnerAssigned, "db2"},
		{"switchover target unhealthy falls back to the released owner", st{phase: PhaseReleased, owner: "db1", healthy: map[string]bool{"db1": true, "db2": false}, switchTo: &SwitchoverData{To: "db2"}, release: &Release{Epoch: 1, Owner: "db1", Fenced: true}}, live, OwnerAssigned, "db1"},
		{"switchover target in maintenance falls back to the released owner", st{phase: PhaseReleased, owner: "db1", healthy: both, maint: []string{"db2"}, switchTo: &SwitchoverData{To: "db2"}, release: &Release{Epoch: 1, Owner: "db1", Fenced: true}}, live, OwnerAssigned, "db1"},
		{"switchover to anyone with the peer down falls back to the released owner", st{phase: PhaseReleased, owner: "db1", healthy: map[string]bool{"db1": true, "db2": false}, switchTo: &SwitchoverData{}, release: &Release{Epoch: 1, Owner: "db1", Fenced: true}}, live, OwnerAssigned, "db1"},
		{"switchover to anyone prefers the other node", st{phase: PhaseReleased, owner: "db1", healthy: both, switchTo: &SwitchoverData{}, release: &Release{Epoch: 1, Owner: "db1", Fenced: true}}, live, OwnerAssigned, "db2"},
		{"switched-away owner in maintenance takes ownership back when its target failed", st{phase: PhaseReleased, owner: "db1", healthy: map[string]bool{"db1": true, "db2": false}, maint: []string{"db1"}, switchTo: &SwitchoverData{To: "db2"}, release: &Release{Epoch: 1, Owner: "db1", Fenced: true}}, live, OwnerAssigned, "db1"},
		{"owner in maintenance stays out while another node can serve", st{phase: PhaseReleased, owner: "db1", healthy: both, maint: []string{"db1"}, release: &Release{Epoch: 1, Owner: "db1", Fenced: true}}, live, OwnerAssigned, "db2"},
		{"maintenance on both: the released owner takes ownership back", st{phase: PhaseReleased, owner: "db1", healthy: both, maint: []string{"db1", "db2"}, release: &Release{Epoch: 1, Owner: "db1", Fenced: true}}, live, OwnerAssigned, "db1"},
		{"unhealthy released owner in maintenance stays out", st{phase: PhaseReleased, owner: "db1", healthy: map[string]bool{"db1": false, "db2": false}, maint: []string{"db1"}, release: &Release{Epoch: 1, Owner: "db1", Fenced: true}}, live, "", ""},
		{"a node in maintenance that did not release stays out", st{phase: PhaseReleased, owner: "db1", healthy: map[string]bool{"db1": false, "db2": true}, maint: []string{"db2"}, release: &Release{Epoch: 1, Owner: "db1", Fenced: true}}, live, "", ""},
		{"switching-away owner not reassigned before its release", st{phase: PhaseRevoked, owner: "db1", healthy: map[string]bool{"db1": true, "db2": false}, switchTo: &SwitchoverData{To: "db2"}}, with(func(v *View) { v.PromisesExpired = true }), "", ""},
		{"promotion overdue fails", st{phase: PhaseAssigned, owner: "db2", healthy: both}, with(func(v *View) { v.PromotionOverdue = true }), PromotionFailed, ""},
		{"witness never owner", st{healthy: map[string]bool{"db1": false, "db2": false, "witness": true}}, live, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs := Decide(tt.give.state(), tt.view)
			if tt.wantType == "" {
				if len(evs) != 0 {
					t.Fatalf("decided %s, want nothing", evs[0].Type)
				}
				return
			}
			if len(evs) != 1 || evs[0].Type != tt.wantType {
				t.Fatalf("decided %v, want one %s", evs, tt.wantType)
			}
			s := tt.give.state()
			if evs[0].Epoch != s.Epoch || evs[0].Phase != s.Phase {
				t.Fatalf("event decided from %d/%s, state is %d/%s", evs[0].Epoch, evs[0].Phase, s.Epoch, s.Phase)
			}
			if tt.wantOwner != "" {
				var d AssignData
				if err := evs[0].Payload(&d); err != nil {
					t.Fatal(err)
				}
				if d.Owner != tt.wantOwner {
					t.Fatalf("assigned %s, want %s (candidates %+v)", d.Owner, tt.wantOwner, d.Candidates)
				}
				if _, err := s.Apply(9, evs[0]); err != nil {
					t.Fatalf("decided event does not apply: %v", err)
				}
			}
		})
	}
}

func TestDecideCatchupTargetAndLoss(t *testing.T) {
	fenced := st{phase: PhaseReleased, owner: "db1", healthy: map[string]bool{"db1": false, "db2": true}, release: &Release{Epoch: 1, Owner: "db1", GTID: "1-11-9", Domain: 1, Fenced: true}}
	revoked := st{phase: PhaseRevoked, owner: "db1", healthy: map[string]bool{"db2": true}}
	tests := []struct {
		name       string
		give       st
		wantTarget string
		wantLoss   bool
	}{
		{"release carries target", fenced, "1-11-9", false},
		{"no release means loss unknown", revoked, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs := Decide(tt.give.state(), View{Self: "w", Now: t0, Quorum: true, PromisesExpired: true})
			if len(evs) != 1 {
				t.Fatalf("got %d events", len(evs))
			}
			var d AssignData
			if err := evs[0].Payload(&d); err != nil {
				t.Fatal(err)
			}
			if d.CatchupTarget != tt.wantTarget || (d.Loss != "") != tt.wantLoss {
				t.Fatalf("target %q loss %q", d.CatchupTarget, d.Loss)
			}
		})
	}
}

func TestDampingDelaysButNeverBlocks(t *testing.T) {
	s := st{healthy: map[string]bool{"db1": true, "db2": true}}.state()
	s.Members["db1"].HealthAt = t0.Add(-time.Second) // just recovered
	s.Members["db2"].HealthAt = t0.Add(-time.Hour)
	v := View{Self: "w", Now: t0, Quorum: true, Damping: time.Minute}
	if c := Candidates(s, v); c[0].Node != "db2" {
		t.Fatalf("flapping db1 ranked first: %+v", c)
	}
	s.Members["db2"].Healthy = false
	if c := Candidates(s, v); c[0].Node != "db1" || !c[0].Eligible {
		t.Fatalf("damping blocked the only healthy node: %+v", c)
	}
}

func TestOwnerLease(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name   string
		voters int
		grants map[string]time.Duration
		now    time.Duration
		want   bool
	}{
		{"no promise", 3, nil, 10 * ms, false},
		{"one peer is a majority of three", 3, map[string]time.Duration{"db2": 100 * ms}, 500 * ms, true},
		{"expired", 3, map[string]time.Duration{"db2": 100 * ms}, 600 * ms, false},
		{"newest counts", 3, map[string]time.Duration{"db2": 100 * ms, "witness": 300 * ms}, 700 * ms, true},
		{"five voters need two peers", 5, map[string]time.Duration{"a": 100 * ms}, 200 * ms, false},
		{"five voters second-newest bounds", 5, map[string]time.Duration{"a": 100 * ms, "b": 400 * ms}, 601 * ms, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewOwnerLease(1, 500*ms, tt.voters)
			for p, at := range tt.grants {
				l.Granted(p, at)
			}
			if got := l.Valid(tt.now); got != tt.want {
				t.Fatalf("Valid(%v) = %v, want %v (expiry %v)", tt.now, got, tt.want, l.Expiry())
			}
		})
	}
}

func TestPromiseGrant(t *testing.T) {
	active := st{phase: PhaseActive, owner: "db1"}.state()
	revoked := st{phase: PhaseRevoked, owner: "db1"}.state()
	tests := []struct {
		name  string
		state State
		owner string
		epoch uint64
		want  bool
	}{
		{"owner at epoch", active, "db1", 1, true},
		{"wrong owner", active, "db2", 1, false},
		{"old epoch", active, "db1", 0, false},
		{"revoked", revoked, "db1", 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := Promise{}.Grant(tt.state, tt.owner, tt.epoch, time.Second, 500*time.Millisecond, 0.01)
			if ok != tt.want {
				t.Fatalf("granted %v, want %v", ok, tt.want)
			}
			if ok && p.Until != time.Second+505*time.Millisecond {
				t.Fatalf("until %v", p.Until)
			}
		})
	}
	if w := HandoverWait(500*time.Millisecond, 0.01, 100*time.Millisecond, time.Second, 200*time.Millisecond); w != 1300*time.Millisecond {
		t.Fatalf("HandoverWait = %v", w)
	}
}

// TestFailedPromotionScopedToEpoch replays item 8: db1's promotion at epoch 3 fails while
// db2 is down. The failure must not fence db1 for good: once it released, db1 is assigned
// again at epoch 4 with the catch-up target it had not reached yet.
func TestFailedPromotionScopedToEpoch(t *testing.T) {
	s := st{phase: PhaseAssigned, owner: "db1", epoch: 3, target: "1-12-50", healthy: map[string]bool{"db1": true, "db2": false}}.state()
	s.TargetDomain = 1
	live := View{Self: "witness", Now: t0, Quorum: true}
	step := func(ev Event) {
		t.Helper()
		var err error
		if s, err = s.Apply(s.Index+1, ev); err != nil {
			t.Fatalf("apply %s: %v", ev.Type, err)
		}
	}
	step(mustEvent(t, PromotionFailed, "witness", 3, PhaseAssigned, PromotionFailedData{Owner: "db1", Reason: "overdue"}))
	step(mustEvent(t, OwnerReleased, "db1", 3, "", ReleaseData{Owner: "db1", Reason: "ownership revoked", GTID: "1-11-40", Fenced: true}))
	evs := Decide(s, live)
	if len(evs) != 1 || evs[0].Type != OwnerAssigned {
		t.Fatalf("decided %v, want OwnerAssigned", evs)
	}
	var d AssignData
	if err := evs[0].Payload(&d); err != nil {
		t.Fatal(err)
	}
	if d.Owner != "db1" || d.CatchupTarget != "1-12-50" || d.CatchupDomain != 1 {
		t.Fatalf("assigned %s target %q/%d, want db1 with target 1-12-50/1", d.Owner, d.CatchupTarget, d.CatchupDomain)
	}
	if want := "failed promotion in epoch 3; last resort"; d.Candidates[0].Why != want {
		t.Fatalf("why %q, want %q", d.Candidates[0].Why, want)
	}
	step(evs[0])
	if s.Epoch != 4 || s.Owner != "db1" || s.Phase != PhaseAssigned || s.Target != "1-12-50" {
		t.Fatalf("state epoch %d owner %s phase %s target %q", s.Epoch, s.Owner, s.Phase, s.Target)
	}
	// At epoch 4 the mark of epoch 3 no longer ranks db1 last.
	s.Members["db2"].Healthy = true
	if c := Candidates(s, live); c[0].Node != "db1" || c[0].Why != "" {
		t.Fatalf("candidates at epoch 4: %+v", c)
	}
}

// TestCandidatesRanking pins the order with a third database node: the switchover target
// first while eligible, then other eligible nodes, then the switched-away owner, then a
// node whose promotion failed in the current epoch; ineligible nodes last.
func TestCandidatesRanking(t *testing.T) {
	three := func(d st, f func(*State)) State {
		s := d.state()
		s.Members["db3"] = &NodeState{Member: Member{ID: "db3", Role: RoleDatabase, Priority: 80}, Healthy: true, HealthKnown: true}
		if f != nil {
			f(&s)
		}
		return s
	}
	all := map[string]bool{"db1": true, "db2": true}
	rel := &Release{Epoch: 1, Owner: "db1", Fenced: true}
	tests := []struct {
		name string
		give State
		view View
		want []string // node:eligible:why
	}{
		{"target first", three(st{phase: PhaseReleased, owner: "db1", healthy: all, release: rel, switchTo: &SwitchoverData{To: "db3"}}, nil), View{},
			[]string{"db3:true:", "db2:true:not the switchover target; fallback", "db1:true:switching away; last resort"}},
		{"target unhealthy falls back to the other node", three(st{phase: PhaseReleased, owner: "db1", healthy: all, release: rel, switchTo: &SwitchoverData{To: "db2"}}, func(s *State) { s.Members["db2"].Healthy, s.Members["db2"].Detail = false, "connection refused" }), View{},
			[]string{"db3:true:not the switchover target; fallback", "db1:true:switching away; last resort", "db2:false:unhealthy: connection refused"}},
		{"revoked with target unreachable falls back to the other node", three(st{phase: PhaseRevoked, owner: "db1", healthy: all, switchTo: &SwitchoverData{To: "db2"}}, nil), View{Unreachable: map[string]bool{"db2": true}},
			[]string{"db3:true:not the switchover target; fallback", "db1:false:ownership revoked", "db2:false:unreachable from the controller"}},
		{"failed promotion after switched-away owner", three(st{phase: PhaseReleased, owner: "db1", healthy: all, release: rel, switchTo: &SwitchoverData{}}, func(s *State) {
			s.Members["db3"].FailedEpoch = 1
			s.Members["db2"].Maintenance = true
		}), View{},
			[]string{"db1:true:switching away; last resort", "db3:true:failed promotion in epoch 1; last resort", "db2:false:maintenance"}},
		{"no switchover: the node that just released ranks last", three(st{phase: PhaseReleased, owner: "db1", healthy: all, release: rel}, nil), View{},
			[]string{"db2:true:", "db3:true:", "db1:true:released this epoch; last resort"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, c := range Candidates(tt.give, tt.view) {
				got = append(got, fmt.Sprintf("%s:%t:%s", c.Node, c.Eligible, c.Why))
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("candidates\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestReleasedOwnerIsLastResort(t *testing.T) {
	s := NewState()
	s.Bootstrapped = true
	for id, prio := range map[string]int{"db1": 100, "db2": 90} {
		s.Members[id] = &NodeState{Member: Member{ID: id, Role: RoleDatabase, Priority: prio}, Healthy: true, HealthKnown: true}
	}
	s.Owner, s.Epoch, s.Phase = "db1", 1, PhaseReleased
	s.LastRelease = &Release{Epoch: 1, Owner: "db1", Reason: "local mysqld unhealthy"}
	tests := []struct {
		name  string
		db2OK bool
		want  string
	}{
		{"another healthy node takes over", true, "db2"},
		{"alone, the releasing node is taken back", false, "db1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := s.Clone()
			c.Members["db2"].Healthy = tt.db2OK
			evs := Decide(c, View{Self: "witness", Quorum: true})
			if len(evs) != 1 || evs[0].Type != OwnerAssigned {
				t.Fatalf("Decide = %v, want one OwnerAssigned", evs)
			}
			var d AssignData
			if err := evs[0].Payload(&d); err != nil || d.Owner != tt.want {
				t.Fatalf("assigned %q (%v), want %q", d.Owner, err, tt.want)
			}
		})
	}
}

// TestAssignmentStaleWhenAssigneeTurnedUnhealthy: the controller decided from a state where
// db1 was healthy; db1's HealthChanged(unhealthy) committed first. A version-2 assignment is
// then stale; a version-1 one (a cluster with an older voter) applies as before.
func TestAssignmentStaleWhenAssigneeTurnedUnhealthy(t *testing.T) {
	base := NewState()
	base.Bootstrapped = true
	for id, prio := range map[string]int{"db1": 100, "db2": 90} {
		base.Members[id] = &NodeState{Member: Member{ID: id, Role: RoleDatabase, Priority: prio, Versions: Versions}, Healthy: true, HealthKnown: true}
	}
	base.Members["witness"] = &NodeState{Member: Member{ID: "witness", Role: RoleWitness, Versions: Versions}}
	tests := []struct {
		name      string
		oldVoter  bool
		wantV     int
		wantStale bool
	}{
		{"every voter knows v2", false, 2, true},
		{"an older voter: v1, old semantics", true, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base.Clone()
			if tt.oldVoter {
				s.Members["witness"].Versions = []int{1}
			}
			evs := Decide(s, View{Self: "witness", Quorum: true})
			if len(evs) != 1 || evs[0].Type != OwnerAssigned || evs[0].V != tt.wantV {
				t.Fatalf("Decide = %+v, want one OwnerAssigned v%d", evs, tt.wantV)
			}
			health, err := NewEvent(HealthChanged, "db1", time.Now(), s.Epoch, s.Phase, HealthData{Node: "db1", Healthy: false, Detail: "mysqld process exited"})
			if err != nil {
				t.Fatal(err)
			}
			s, err = s.Apply(10, health)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Apply(11, evs[0])
			if got := errors.Is(err, ErrStale); got != tt.wantStale {
				t.Fatalf("apply assignment: %v, want stale %v", err, tt.wantStale)
			}
		})
	}
}
