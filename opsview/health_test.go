package opsview

import (
	"strings"
	"testing"
	"time"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
)

func healthyStatus() api.Status {
	f, tr := false, true
	return api.Status{Node: "witness", Leader: "witness", Owner: "db1", Epoch: 4, Phase: fsm.PhaseActive, Members: []api.MemberStatus{
		{ID: "db1", Role: fsm.RoleDatabase, Suffrage: "Voter", Reachable: true, ReadOnly: &f, Owner: true},
		{ID: "db2", Role: fsm.RoleDatabase, Suffrage: "Voter", Reachable: true, ReadOnly: &tr},
		{ID: "witness", Role: fsm.RoleWitness, Suffrage: "Voter", Reachable: true},
	}}
}

func TestAssess(t *testing.T) {
	f := false
	lost := time.Date(2026, 3, 1, 9, 59, 0, 0, time.UTC)
	promoted := &OwnerLocal{Node: "db1", Local: api.LocalStatus{Promoted: true, Holding: true}}
	tests := []struct {
		name   string
		mod    func(*api.Status)
		owner  *OwnerLocal
		code   int
		banner string
	}{
		{"healthy", func(*api.Status) {}, promoted, CodeHealthy, "HEALTHY: db1 serves (epoch 4); 3/3 voters reachable"},
		{"no writer since the loss", func(s *api.Status) {
			s.Phase, s.NoWriterSince, s.PhaseSince = fsm.PhaseReleased, lost, lost.Add(time.Second)
		}, nil, CodeCritical, "CRITICAL: NO WRITER since 2026-03-01T09:59:00.000Z"},
		{"no writer, phase time only", func(s *api.Status) { s.Phase, s.PhaseSince = fsm.PhaseAssigned, lost }, nil, CodeCritical, "NO WRITER since 2026-03-01T09:59:00.000Z"},
		{"owner not serving", func(*api.Status) {}, &OwnerLocal{Node: "db1"}, CodeCritical, "CRITICAL: NO WRITER"},
		{"non-owner writable", func(s *api.Status) { s.Members[1].ReadOnly = &f }, promoted, CodeCritical, "CRITICAL: NON-OWNER WRITABLE db2"},
		{"stale writable is not flagged", func(s *api.Status) {
			s.Members[1].ReadOnly, s.Members[1].Stale, s.Members[1].Reachable = &f, true, false
		}, promoted, CodeDegraded, "DEGRADED: VOTER UNREACHABLE db2"},
		{"released owner still writable", func(s *api.Status) { s.Phase = fsm.PhaseReleased }, nil, CodeCritical, "NON-OWNER WRITABLE db1"},
		{"voter unreachable", func(s *api.Status) { s.Members[2].Reachable = false }, promoted, CodeDegraded, "DEGRADED: VOTER UNREACHABLE witness"},
		{"nonvoter unreachable is fine", func(s *api.Status) { s.Members[2].Reachable, s.Members[2].Suffrage = false, "Nonvoter" }, promoted, CodeHealthy, "HEALTHY"},
		{"rejoin blocked", func(s *api.Status) { s.Members[1].RejoinBlocked = true }, promoted, CodeDegraded, "DEGRADED: REJOIN BLOCKED db2"},
		{"paused", func(s *api.Status) { s.Paused = true }, promoted, CodeDegraded, "DEGRADED: PAUSED"},
		{"no leader", func(s *api.Status) { s.Leader = "" }, promoted, CodeDegraded, "DEGRADED: NO LEADER"},
		{"owner API silent", func(*api.Status) {}, &OwnerLocal{Node: "db1", Err: "refused"}, CodeDegraded, "OWNER STATUS UNREADABLE db1"},
		{"critical wins", func(s *api.Status) {
			s.Phase = fsm.PhaseRevoked
			s.Members[2].Reachable = false
			s.Members[0].ReadOnly = nil
		}, nil, CodeCritical, "CRITICAL: NO WRITER; VOTER UNREACHABLE witness"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := healthyStatus()
			tt.mod(&st)
			h := Assess(st, tt.owner, time.UTC)
			if h.Code != tt.code {
				t.Errorf("code %d, want %d (%+v)", h.Code, tt.code, h.Conditions)
			}
			if b := h.Banner(st); !strings.Contains(b, tt.banner) {
				t.Errorf("banner %q, want %q", b, tt.banner)
			}
		})
	}
}
