package fsm

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckSwitchover(t *testing.T) {
	both := map[string]bool{"db1": true, "db2": true}
	active := st{phase: PhaseActive, owner: "db1", healthy: both}
	down := st{phase: PhaseActive, owner: "db1", healthy: map[string]bool{"db1": true, "db2": false}}
	tests := []struct {
		name        string
		give        st
		to          string
		unreachable map[string]bool
		want        string
		wantErr     error
		wantMsg     string
	}{
		{"to the other node", active, "db2", nil, "db2", nil, ""},
		{"to anyone picks the other node", active, "", nil, "db2", nil, ""},
		{"no owner yet", st{healthy: both}, "db2", nil, "", ErrNoOwner, "phase none"},
		{"owner still promoting", st{phase: PhaseAssigned, owner: "db1", healthy: both}, "", nil, "", ErrNoOwner, "phase assigned"},
		{"released owner", st{phase: PhaseReleased, owner: "db1", healthy: both}, "", nil, "", ErrNoOwner, ""},
		{"unknown target", active, "db9", nil, "", ErrUnknownMember, "switchover to db9"},
		{"witness target", active, "witness", nil, "", ErrNotDatabase, "witness never owns the VIP"},
		{"owner itself", active, "db1", nil, "", ErrNoChange, "db1: no change: it already owns the VIP"},
		{"target unhealthy", down, "db2", nil, "", ErrNoCandidate, "switchover from db1: no eligible successor: db2 unhealthy: connection refused"},
		{"anyone with the peer unhealthy", down, "", nil, "", ErrNoCandidate, "no eligible successor: db2 unhealthy: connection refused"},
		{"target in maintenance", st{phase: PhaseActive, owner: "db1", healthy: both, maint: []string{"db2"}}, "db2", nil, "", ErrNoCandidate, "db2 maintenance"},
		{"target rejoin blocked", st{phase: PhaseActive, owner: "db1", healthy: both, blocked: "db2"}, "db2", nil, "", ErrNoCandidate, "db2 rejoin blocked: extra transactions 1-1-4"},
		{"target health unknown", st{phase: PhaseActive, owner: "db1", healthy: map[string]bool{"db1": true}}, "", nil, "", ErrNoCandidate, "db2 health unknown"},
		{"target unreachable", active, "db2", map[string]bool{"db2": true}, "", ErrNoCandidate, "db2 unreachable from the controller"},
		{"owner in maintenance may still hand over", st{phase: PhaseActive, owner: "db1", healthy: both, maint: []string{"db1"}}, "", nil, "db2", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.give.state()
			before := s.Clone()
			got, err := s.CheckSwitchover(tt.to, tt.unreachable)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("CheckSwitchover(%q) err = %v, want %v", tt.to, err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("CheckSwitchover(%q) err = %q, want it to contain %q", tt.to, err, tt.wantMsg)
			}
			if got != tt.want {
				t.Fatalf("CheckSwitchover(%q) = %q, want %q", tt.to, got, tt.want)
			}
			if s.Phase != before.Phase || s.Switchover != nil {
				t.Fatalf("CheckSwitchover changed the state: phase %s switchover %+v", s.Phase, s.Switchover)
			}
			if err == nil {
				// What the check promises is what the controller does after the release.
				assertAssigned(t, s, SwitchoverRequested, SwitchoverData{To: tt.to}, tt.unreachable, got)
			}
		})
	}
}

func TestCheckMaintenance(t *testing.T) {
	both := map[string]bool{"db1": true, "db2": true}
	down := map[string]bool{"db1": true, "db2": false}
	tests := []struct {
		name        string
		give        st
		node        string
		on          bool
		unreachable map[string]bool
		wantErr     error
		wantMsg     string
	}{
		{"owner with a healthy peer", st{phase: PhaseActive, owner: "db1", healthy: both}, "db1", true, nil, nil, ""},
		{"owner with the peer unhealthy", st{phase: PhaseActive, owner: "db1", healthy: down}, "db1", true, nil, ErrNoCandidate, "maintenance of owner db1: no eligible successor: db2 unhealthy: connection refused"},
		{"owner with the peer in maintenance", st{phase: PhaseActive, owner: "db1", healthy: both, maint: []string{"db2"}}, "db1", true, nil, ErrNoCandidate, "db2 maintenance"},
		{"owner with the peer unreachable", st{phase: PhaseActive, owner: "db1", healthy: both}, "db1", true, map[string]bool{"db2": true}, ErrNoCandidate, "db2 unreachable"},
		{"promoting owner with the peer unhealthy", st{phase: PhaseAssigned, owner: "db1", healthy: down}, "db1", true, nil, ErrNoCandidate, "db2 unhealthy"},
		{"non-owner", st{phase: PhaseActive, owner: "db1", healthy: both}, "db2", true, nil, nil, ""},
		{"non-owner while the owner is alone", st{phase: PhaseActive, owner: "db1", healthy: down}, "db2", true, nil, nil, ""},
		{"released owner is no longer holding", st{phase: PhaseReleased, owner: "db1", healthy: down}, "db1", true, nil, nil, ""},
		{"off for the owner", st{phase: PhaseActive, owner: "db1", healthy: down, maint: []string{"db1"}}, "db1", false, nil, nil, ""},
		{"off for both", st{phase: PhaseReleased, owner: "db1", healthy: both, maint: []string{"db1", "db2"}}, "db2", false, nil, nil, ""},
		{"already on", st{phase: PhaseActive, owner: "db1", healthy: both, maint: []string{"db2"}}, "db2", true, nil, ErrNoChange, "maintenance of db2: no change: already on"},
		{"already off", st{phase: PhaseActive, owner: "db1", healthy: both}, "db2", false, nil, ErrNoChange, "already off"},
		{"witness", st{phase: PhaseActive, owner: "db1", healthy: both}, "witness", true, nil, ErrNotDatabase, "maintenance of witness: not a database node: a witness never owns the VIP"},
		{"unknown node", st{phase: PhaseActive, owner: "db1", healthy: both}, "db9", true, nil, ErrUnknownMember, "db9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.give.state()
			err := s.CheckMaintenance(tt.node, tt.on, tt.unreachable)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("CheckMaintenance(%s, %t) err = %v, want %v", tt.node, tt.on, err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("CheckMaintenance(%s, %t) err = %q, want it to contain %q", tt.node, tt.on, err, tt.wantMsg)
			}
			if m := s.Members[tt.node]; m != nil && m.Maintenance != tt.give.state().Members[tt.node].Maintenance {
				t.Fatal("CheckMaintenance changed the state")
			}
			if err == nil && tt.on && s.Holding(tt.node) {
				assertAssigned(t, s, MaintenanceChanged, MaintenanceData{Node: tt.node, On: true}, tt.unreachable, "")
			}
		})
	}
}

// assertAssigned applies the request event typ/p to s, lets the owner release, and checks
// that Decide then assigns a node other than the owner (want, when set).
func assertAssigned(t *testing.T, s State, typ Type, p any, unreachable map[string]bool, want string) {
	t.Helper()
	owner := s.Owner
	s, err := s.Apply(s.Index+1, mustEvent(t, typ, "db1", s.Epoch, s.Phase, p))
	if err != nil {
		t.Fatalf("apply %s: %v", typ, err)
	}
	s, err = s.Apply(s.Index+1, mustEvent(t, OwnerReleased, owner, s.Epoch, "", ReleaseData{Owner: owner, Fenced: true}))
	if err != nil {
		t.Fatalf("apply release: %v", err)
	}
	evs := Decide(s, View{Self: "witness", Now: t0, Quorum: true, Nopreempt: true, Unreachable: unreachable})
	if len(evs) != 1 || evs[0].Type != OwnerAssigned {
		t.Fatalf("after the release decided %v, want OwnerAssigned", evs)
	}
	var d AssignData
	if err := evs[0].Payload(&d); err != nil {
		t.Fatal(err)
	}
	if d.Owner == owner || (want != "" && d.Owner != want) {
		t.Fatalf("after the release %s was assigned, want %q (not %s)", d.Owner, want, owner)
	}
}
