package fsm

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
)

// TestHandlersCoverTypes: Apply has a handler for every type in Types and for no other.
func TestHandlersCoverTypes(t *testing.T) {
	for _, typ := range Types {
		if handlers[typ] == nil {
			t.Errorf("no handler for %s", typ)
		}
	}
	for typ := range handlers {
		if !slices.Contains(Types, typ) {
			t.Errorf("handler for %s, which Types does not list", typ)
		}
	}
}

// TestApplyRejects: an event Apply cannot apply is counted as skipped, with the error that
// says why, and leaves the state alone: an unknown type, a newer schema version (even of a
// known type with a bad payload: the version is checked first), and, for every type in
// Types, a payload that does not decode.
func TestApplyRejects(t *testing.T) {
	bad := json.RawMessage(`[1]`)
	type test struct {
		name    string
		give    Event
		wantErr error
	}
	tests := []test{
		{"unknown type", Event{V: 1, Type: "FromTheFuture"}, ErrUnknownType},
		{"newer version", Event{V: Version + 1, Type: HealthChanged, Data: bad}, ErrUnknownType},
	}
	for _, typ := range Types {
		tests = append(tests, test{"bad payload " + string(typ), Event{V: Version, Type: typ, Data: bad}, ErrInvalid})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := st{phase: PhaseActive, owner: "db1", healthy: map[string]bool{"db1": true, "db2": true}}.state()
			ev := tt.give
			ev.At, ev.By, ev.Epoch = t0, "db1", s.Epoch
			got, err := s.Apply(7, ev)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Apply: err = %v, want %v", err, tt.wantErr)
			}
			if got.Index != 7 || got.SkippedCount != s.SkippedCount+1 || got.StaleCount != s.StaleCount {
				t.Errorf("Apply: index %d, skipped %d, stale %d; want 7, %d, %d", got.Index, got.SkippedCount, got.StaleCount, s.SkippedCount+1, s.StaleCount)
			}
			if got.Phase != s.Phase || got.Epoch != s.Epoch || got.Owner != s.Owner || len(got.Members) != len(s.Members) {
				t.Errorf("rejected event changed the state: %+v", got)
			}
		})
	}
}
