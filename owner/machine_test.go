package owner

import (
	"slices"
	"testing"

	"github.com/keepraft/keepraft/fsm"
)

// at returns cluster state s moved to owner/epoch/phase (a shortcut for step's table).
func at(s fsm.State, owner string, epoch uint64, phase fsm.Phase) fsm.State {
	s = s.Clone()
	s.Owner, s.Epoch, s.Phase = owner, epoch, phase
	return s
}

func TestStep(t *testing.T) {
	base := cluster(t)
	switchover := at(base, "db1", 4, fsm.PhaseActive)
	switchover.Switchover = &fsm.SwitchoverData{To: "db2"}
	maint := at(base, "db1", 4, fsm.PhaseActive)
	maint.Members["db1"].Maintenance = true
	ok := &promotion{Epoch: 4, OK: true}
	tests := []struct {
		name     string
		give     machine
		in       inputs
		want     machine
		wantActs []action
	}{
		{"restart replay: an old assignment naming us is ignored until caught up",
			machine{Standby, 0}, inputs{State: at(base, "db1", 3, fsm.PhaseAssigned), CaughtUp: false, HealthKnown: true, Healthy: true},
			machine{Standby, 0}, nil},
		{"caught up and assigned: promote",
			machine{Standby, 3}, inputs{State: at(base, "db1", 4, fsm.PhaseAssigned), CaughtUp: true, HealthKnown: true, Healthy: true},
			machine{Promoting, 4}, []action{actPromote}},
		{"assigned, health not known yet: wait",
			machine{Standby, 3}, inputs{State: at(base, "db1", 4, fsm.PhaseAssigned), CaughtUp: true},
			machine{Standby, 3}, nil},
		{"assigned while unhealthy: release at once",
			machine{Standby, 3}, inputs{State: at(base, "db1", 4, fsm.PhaseAssigned), CaughtUp: true, HealthKnown: true, Healthy: false},
			machine{Releasing, 4}, []action{actRelease}},
		{"restarted owner of an active epoch resumes",
			machine{Standby, 0}, inputs{State: at(base, "db1", 4, fsm.PhaseActive), CaughtUp: true, HealthKnown: true, Healthy: true},
			machine{Promoting, 4}, []action{actPromote}},
		{"revoked while in standby: acknowledge with a release",
			machine{Standby, 0}, inputs{State: at(base, "db1", 4, fsm.PhaseRevoked), CaughtUp: true, HealthKnown: true, Healthy: true},
			machine{Releasing, 4}, []action{actRelease}},
		{"another owner: stay in standby",
			machine{Standby, 3}, inputs{State: at(base, "db2", 4, fsm.PhaseActive), CaughtUp: true, HealthKnown: true, Healthy: true},
			machine{Standby, 3}, nil},
		{"own release committed: standby does nothing more",
			machine{Standby, 4}, inputs{State: at(base, "db1", 4, fsm.PhaseReleased), CaughtUp: true, HealthKnown: true, Healthy: true},
			machine{Standby, 4}, nil},
		{"promoting, epoch moved on: cancel and fence",
			machine{Promoting, 4}, inputs{State: at(base, "db2", 5, fsm.PhaseAssigned), CaughtUp: true, HealthKnown: true, Healthy: true},
			machine{Standby, 5}, []action{actCancel, actFence}},
		{"promoting, done",
			machine{Promoting, 4}, inputs{State: at(base, "db1", 4, fsm.PhaseAssigned), CaughtUp: true, HealthKnown: true, Healthy: true, Promotion: ok},
			machine{Serving, 4}, nil},
		{"promoting, result of an older epoch is ignored",
			machine{Promoting, 4}, inputs{State: at(base, "db1", 4, fsm.PhaseAssigned), CaughtUp: true, HealthKnown: true, Healthy: true, Promotion: &promotion{Epoch: 3, OK: true}},
			machine{Promoting, 4}, nil},
		{"promoting, failed step is retried",
			machine{Promoting, 4}, inputs{State: at(base, "db1", 4, fsm.PhaseAssigned), CaughtUp: true, HealthKnown: true, Healthy: true, Promotion: &promotion{Epoch: 4, Retry: true}},
			machine{Promoting, 4}, []action{actPromote}},
		{"promoting, held by on_catchup_timeout: stays closed",
			machine{Promoting, 4}, inputs{State: at(base, "db1", 4, fsm.PhaseAssigned), CaughtUp: true, HealthKnown: true, Healthy: true, Promotion: &promotion{Epoch: 4}},
			machine{Promoting, 4}, nil},
		{"promoting, not caught up: no release decided from a stale state",
			machine{Promoting, 4}, inputs{State: at(base, "db1", 4, fsm.PhaseRevoked), CaughtUp: false, HealthKnown: true, Healthy: true},
			machine{Promoting, 4}, nil},
		{"promoting, unhealthy: cancel and release",
			machine{Promoting, 4}, inputs{State: at(base, "db1", 4, fsm.PhaseAssigned), CaughtUp: true, HealthKnown: true, Healthy: false},
			machine{Releasing, 4}, []action{actCancel, actRelease}},
		{"deposed in one batch (revoked + e+1 assigned): fence",
			machine{Serving, 4}, inputs{State: at(base, "db2", 5, fsm.PhaseAssigned), CaughtUp: true, HealthKnown: true, Healthy: true},
			machine{Standby, 5}, []action{actFence}},
		{"deposed, seen while still catching up: fence anyway",
			machine{Serving, 4}, inputs{State: at(base, "db2", 5, fsm.PhaseActive), CaughtUp: false, HealthKnown: true, Healthy: true},
			machine{Standby, 5}, []action{actFence}},
		{"serving, revoked: release",
			machine{Serving, 4}, inputs{State: at(base, "db1", 4, fsm.PhaseRevoked), CaughtUp: true, HealthKnown: true, Healthy: true},
			machine{Releasing, 4}, []action{actRelease}},
		{"serving, switchover requested: release",
			machine{Serving, 4}, inputs{State: switchover, CaughtUp: true, HealthKnown: true, Healthy: true},
			machine{Releasing, 4}, []action{actRelease}},
		{"serving, maintenance: release",
			machine{Serving, 4}, inputs{State: maint, CaughtUp: true, HealthKnown: true, Healthy: true},
			machine{Releasing, 4}, []action{actRelease}},
		{"serving, mysqld down: release",
			machine{Serving, 4}, inputs{State: at(base, "db1", 4, fsm.PhaseActive), CaughtUp: true, HealthKnown: true, Healthy: false},
			machine{Releasing, 4}, []action{actRelease}},
		{"serving, VIP fence broken: release",
			machine{Serving, 4}, inputs{State: at(base, "db1", 4, fsm.PhaseActive), CaughtUp: true, HealthKnown: true, Healthy: true, FenceBroken: true},
			machine{Releasing, 4}, []action{actRelease}},
		{"serving, all well: stay",
			machine{Serving, 4}, inputs{State: at(base, "db1", 4, fsm.PhaseActive), CaughtUp: true, HealthKnown: true, Healthy: true},
			machine{Serving, 4}, nil},
		{"releasing, committed",
			machine{Releasing, 4}, inputs{State: at(base, "db1", 4, fsm.PhaseReleased), CaughtUp: true, HealthKnown: true, Healthy: false},
			machine{Standby, 4}, nil},
		{"releasing, a failed attempt is retried",
			machine{Releasing, 4}, inputs{State: at(base, "db1", 4, fsm.PhaseActive), CaughtUp: true, HealthKnown: true, Healthy: false, RetryRelease: true},
			machine{Releasing, 4}, []action{actRelease}},
		{"releasing, the epoch moved on without our release",
			machine{Releasing, 4}, inputs{State: at(base, "db2", 5, fsm.PhaseAssigned), CaughtUp: true},
			machine{Standby, 5}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Self = "db1"
			got, acts, _ := step(tt.give, tt.in)
			if got != tt.want || !slices.Equal(acts, tt.wantActs) {
				t.Fatalf("step(%s) = %s %v, want %s %v", tt.give, got, acts, tt.want, tt.wantActs)
			}
		})
	}
}
