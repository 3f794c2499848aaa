package fsm

import (
	"testing"
	"time"
)

// st builds a state from a compact description, for policy tables.
type st struct {
	phase       Phase
	owner       string
	healthy     map[string]bool
	maint       string
	switchTo    *SwitchoverData
	release     *Release
	failedEpoch string
	blocked     string
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
	if d.maint != "" {
		s.Members[d.maint].Maintenance = true
	}
	if d.failedEpoch != "" {
		s.Members[d.failedEpoch].FailedEpoch = 1
	}
	if d.blocked != "" {
		s.Members[d.blocked].RejoinBlocked, s.Members[d.blocked].RejoinExtra = true, "1-1-4"
	}
	s.Phase, s.Owner, s.Switchover, s.LastRelease = PhaseNone, d.owner, d.switchTo, d.release
	if d.phase != "" {
		s.Phase = d.phase
	}
	if s.Owner != "" {
		s.Epoch = 1
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
		{"maintenance excluded", st{healthy: both, maint: "db1"}, live, OwnerAssigned, "db2"},
		{"blocked rejoin excluded", st{healthy: both, blocked: "db1"}, live, OwnerAssigned, "db2"},
		{"blocked rejoin alone waits", st{healthy: map[string]bool{"db1": true, "db2": false}, blocked: "db1"}, live, "", ""},
		{"failed promotion excluded", st{healthy: both, failedEpoch: "db1"}, live, OwnerAssigned, "db2"},
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
		{"switchover target unhealthy waits", st{phase: PhaseReleased, owner: "db1", healthy: map[string]bool{"db1": true, "db2": false}, switchTo: &SwitchoverData{To: "db2"}}, live, "", ""},
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
