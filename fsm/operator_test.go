package fsm

import (
	"errors"
	"strings"
	"testing"
)

// TestDecideOperatorVerbs: pause stops every decision the controller would take on its own
// but lets an operator's request run; an operator's failover revokes the owner and
// assigns its target first, forced, even after that target's promotion failed.
func TestDecideOperatorVerbs(t *testing.T) {
	both := map[string]bool{"db1": true, "db2": true}
	sick := map[string]bool{"db1": false, "db2": true}
	live := View{Self: "witness", Now: t0, Quorum: true, Nopreempt: true}
	expired := live
	expired.PromisesExpired = true
	fo := &FailoverData{To: "db2", Operator: "ops"}
	tests := []struct {
		name      string
		give      st
		paused    bool
		failover  *FailoverData
		view      View
		wantType  Type
		wantOwner string
		wantForce bool
	}{
		{"paused: unhealthy owner kept", st{phase: PhaseActive, owner: "db1", healthy: sick}, true, nil, live, "", "", false},
		{"running: unhealthy owner revoked", st{phase: PhaseActive, owner: "db1", healthy: sick}, false, nil, live, OwnerRevoked, "db1", false},
		{"paused: released owner not replaced", st{phase: PhaseReleased, owner: "db1", healthy: both}, true, nil, live, "", "", false},
		{"paused: a revoke from before the pause completes", st{phase: PhaseRevoked, owner: "db1", healthy: sick}, true, nil, expired, OwnerAssigned, "db2", false},
		{"paused: operator switchover runs", st{phase: PhaseReleased, owner: "db1", healthy: both, switchTo: &SwitchoverData{To: "db2"}}, true, nil, live, OwnerAssigned, "db2", false},
		{"failover revokes a healthy owner", st{phase: PhaseActive, owner: "db1", healthy: both}, false, fo, live, OwnerRevoked, "db1", false},
		{"failover revokes while paused", st{phase: PhaseActive, owner: "db1", healthy: both}, true, fo, live, OwnerRevoked, "db1", false},
		{"failover revokes a promoting owner", st{phase: PhaseAssigned, owner: "db1", healthy: both}, false, fo, live, OwnerRevoked, "db1", false},
		{"failover assigns its target, forced", st{phase: PhaseRevoked, owner: "db1", healthy: both}, false, fo, expired, OwnerAssigned, "db2", true},
		{"failover target first though its promotion failed", st{phase: PhaseRevoked, owner: "db2", healthy: both, failedEpoch: "db2"}, false, fo, expired, OwnerAssigned, "db2", true},
		{"failover waits for the lease", st{phase: PhaseRevoked, owner: "db1", healthy: both}, false, fo, live, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.give.state()
			s.Paused, s.Failover = tt.paused, tt.failover
			evs := Decide(s, tt.view)
			if tt.wantType == "" {
				if len(evs) != 0 {
					t.Fatalf("Decide = %s, want nothing", evs[0].Type)
				}
				return
			}
			if len(evs) != 1 || evs[0].Type != tt.wantType {
				t.Fatalf("Decide = %v, want one %s", evs, tt.wantType)
			}
			switch tt.wantType {
			case OwnerAssigned:
				var d AssignData
				if err := evs[0].Payload(&d); err != nil {
					t.Fatal(err)
				}
				if d.Owner != tt.wantOwner || d.Force != tt.wantForce {
					t.Fatalf("assigned %s force=%v (%s), want %s force=%v", d.Owner, d.Force, d.Reason, tt.wantOwner, tt.wantForce)
				}
				if tt.failover != nil && !strings.Contains(d.Reason, "operator failover to db2 by ops") {
					t.Fatalf("reason %q does not name the operator's failover", d.Reason)
				}
			case OwnerRevoked:
				var d RevokeData
				if err := evs[0].Payload(&d); err != nil {
					t.Fatal(err)
				}
				if d.Owner != tt.wantOwner {
					t.Fatalf("revoked %s, want %s", d.Owner, tt.wantOwner)
				}
			}
		})
	}
}

// TestApplyOperatorVerbs: the journal state of pause, failover and rejoin resume, and
// what makes each stale.
func TestApplyOperatorVerbs(t *testing.T) {
	s := st{phase: PhaseActive, owner: "db1", healthy: map[string]bool{"db1": true, "db2": true}, blocked: "db2"}.state()
	apply := func(t *testing.T, s State, typ Type, p any) (State, error) {
		t.Helper()
		ev, err := NewEvent(typ, "db1", t0, s.Epoch, "", p)
		if err != nil {
			t.Fatal(err)
		}
		ev.V = 3
		return s.Apply(s.Index+1, ev)
	}
	p, err := apply(t, s, PauseChanged, PauseData{Paused: true})
	if err != nil || !p.Paused || !p.PausedSince.Equal(t0) {
		t.Fatalf("pause: %+v, %v", p.Paused, err)
	}
	if _, err := apply(t, p, PauseChanged, PauseData{Paused: true}); !errors.Is(err, ErrStale) {
		t.Fatalf("pause twice: %v, want stale", err)
	}
	if r, err := apply(t, p, PauseChanged, PauseData{}); err != nil || r.Paused || !r.PausedSince.IsZero() {
		t.Fatalf("resume: %+v, %v", r.Paused, err)
	}
	if _, err := apply(t, s, FailoverRequested, FailoverData{To: "db1"}); !errors.Is(err, ErrStale) {
		t.Fatalf("failover to the serving owner: %v, want stale", err)
	}
	if _, err := apply(t, s, FailoverRequested, FailoverData{To: "witness"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("failover to the witness: %v, want invalid", err)
	}
	f, err := apply(t, s, FailoverRequested, FailoverData{To: "db2"})
	if err != nil || f.Failover == nil || f.Failover.To != "db2" {
		t.Fatalf("failover: %+v, %v", f.Failover, err)
	}
	f.Phase = PhaseRevoked
	ev, _ := NewEvent(OwnerAssigned, "witness", t0, f.Epoch, PhaseRevoked, AssignData{Owner: "db2", Force: true})
	a, err := f.Apply(f.Index+1, ev)
	if err != nil || a.Failover != nil || !a.Force || a.Owner != "db2" {
		t.Fatalf("assignment after the failover: failover=%+v force=%v owner=%s, %v", a.Failover, a.Force, a.Owner, err)
	}
	if _, err := apply(t, s, RejoinResumed, RejoinResumeData{Node: "db2", Accept: "1-1-5"}); !errors.Is(err, ErrStale) {
		t.Fatalf("accept of another extra set: %v, want stale", err)
	}
	r, err := apply(t, s, RejoinResumed, RejoinResumeData{Node: "db2", Accept: "1-1-4"})
	if err != nil || r.Members["db2"].RejoinAccept != "1-1-4" || r.Members["db2"].RejoinResumed != r.Index {
		t.Fatalf("rejoin resume: %+v, %v", r.Members["db2"], err)
	}
	if _, err := apply(t, r, RejoinResumed, RejoinResumeData{Node: "db1"}); !errors.Is(err, ErrStale) {
		t.Fatalf("resume of a rejoin that is not blocked: %v, want stale", err)
	}
}

// TestCheckOperatorVerbs: the API's checks before committing an operator verb.
func TestCheckOperatorVerbs(t *testing.T) {
	s := st{phase: PhaseActive, owner: "db1", healthy: map[string]bool{"db1": true, "db2": false}, blocked: "db2"}.state()
	if err := s.CheckPause(false); !errors.Is(err, ErrNoChange) {
		t.Fatalf("resume a running cluster: %v", err)
	}
	if err := s.CheckPause(true); err != nil {
		t.Fatalf("pause: %v", err)
	}
	for _, tt := range []struct {
		to   string
		want error
	}{{"db1", ErrNoChange}, {"witness", ErrNotDatabase}, {"db9", ErrUnknownMember}, {"db2", ErrNoCandidate}} {
		if _, err := s.CheckFailover(tt.to, nil); !errors.Is(err, tt.want) {
			t.Errorf("failover to %s: %v, want %v", tt.to, err, tt.want)
		}
	}
	ok := st{phase: PhaseActive, owner: "db1", healthy: map[string]bool{"db1": false, "db2": true}}.state()
	note, err := ok.CheckFailover("db2", nil)
	if err != nil || !strings.Contains(note, "may be lost") {
		t.Fatalf("failover to a healthy standby: %q, %v", note, err)
	}
	if _, err := ok.CheckFailover("db2", map[string]bool{"db2": true}); !errors.Is(err, ErrNoCandidate) {
		t.Fatalf("failover to an unreachable node: %v", err)
	}
	if err := s.CheckRejoinResume("db2", ""); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if err := s.CheckRejoinResume("db2", "1-1-9"); err == nil {
		t.Fatal("accepting another extra set passed")
	}
	if err := s.CheckRejoinResume("db1", ""); !errors.Is(err, ErrNoChange) {
		t.Fatalf("resume of a rejoin that is not blocked: %v", err)
	}
}
