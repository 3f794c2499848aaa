package fsm

import (
	"encoding/json"
	"errors"
	"testing"
)

// TestApplyBadPayload checks that every known event type rejects a payload that does not
// decode as invalid, and that the rejected event leaves the state alone.
func TestApplyBadPayload(t *testing.T) {
	tests := []struct {
		give Type
	}{
		{Bootstrapped}, {MemberJoined}, {MemberRemoved}, {HealthChanged}, {MaintenanceChanged},
		{SwitchoverRequested}, {OwnerAssigned}, {OwnerPromoted}, {OwnerRevoked},
		{PromotionFailed}, {OwnerReleased}, {ForeignVRRPMasterSeen}, {SemiSyncChanged},
		{VIPConflictSeen}, {RejoinChecked},
	}
	for _, tt := range tests {
		t.Run(string(tt.give), func(t *testing.T) {
			s := st{phase: PhaseActive, owner: "db1", healthy: map[string]bool{"db1": true, "db2": true}}.state()
			ev := Event{V: Version, Type: tt.give, At: t0, By: "db1", Epoch: s.Epoch, Data: json.RawMessage(`[1]`)}
			got, err := s.Apply(7, ev)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Apply: err = %v, want ErrInvalid", err)
			}
			if got.SkippedCount != s.SkippedCount+1 || got.Phase != s.Phase || got.Epoch != s.Epoch {
				t.Fatalf("rejected event changed the state: %+v", got)
			}
		})
	}
}
