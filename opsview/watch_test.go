package opsview

import (
	"strings"
	"testing"

	"github.com/keepraft/keepraft/fsm"
)

// run feeds recs to w and returns the first done outcome and how many records it took.
func run(w *Watch, recs []fsm.Record) (Outcome, int) {
	for i, r := range recs {
		if o := w.Add(r); o.Done {
			return o, i + 1
		}
	}
	return Outcome{}, len(recs)
}

func TestSwitchoverWatch(t *testing.T) {
	recs := fullStory().recs
	tests := []struct {
		name    string
		index   uint64
		to      string
		owner   string
		recs    []fsm.Record
		msg     string
		errPart string
		pending string
	}{
		{"promoted", 11, "db1", "db2", recs, "db2 → db1 in 142 ms (catch-up 0 ms, nothing missing)", "", ""},
		{"any target", 11, "", "db2", recs[10:], "db2 → db1 in 142 ms", "", ""},
		{"ended elsewhere", 11, "db9", "db2", recs, "db2 → db1", "not db9", ""},
		{"waiting for the assignment", 11, "db1", "db2", recs[:12], "", "", "assign a new owner"},
		{"waiting for the promotion", 11, "db1", "db2", recs[:13], "", "", "db1's promotion in epoch 3"},
		{"request went stale", 16, "", "db1", recs, "", "was stale", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewSwitchoverWatch(tt.index, tt.to, tt.owner, nil)
			o, _ := run(w, tt.recs)
			if tt.pending != "" {
				if o.Done || !strings.Contains(w.Pending(), tt.pending) {
					t.Fatalf("done %v pending %q, want still waiting for %q", o.Done, w.Pending(), tt.pending)
				}
				return
			}
			if !o.Done {
				t.Fatalf("not done; pending %q", w.Pending())
			}
			if !strings.Contains(o.Message, tt.msg) {
				t.Errorf("message %q, want %q", o.Message, tt.msg)
			}
			if (tt.errPart == "") != (o.Err == nil) || (o.Err != nil && !strings.Contains(o.Err.Error(), tt.errPart)) {
				t.Errorf("err %v, want %q", o.Err, tt.errPart)
			}
		})
	}
	t.Run("promotion failed", func(t *testing.T) {
		// the maintenance story has a PromotionFailed of db2 in epoch 4
		w := NewSwitchoverWatch(15, "", "db1", nil)
		o, _ := run(w, recs)
		if !o.Done || o.Err == nil || !strings.Contains(o.Err.Error(), "promotion of db2 failed in epoch 4") {
			t.Fatalf("outcome %+v, want the failed promotion", o)
		}
	})
}

func TestMaintenanceWatch(t *testing.T) {
	recs := fullStory().recs
	t.Run("owner hands over", func(t *testing.T) {
		w := NewMaintenanceWatch(15, "db1", true, true, nil)
		o, n := run(w, recs[:18])
		if o.Done || n != 18 || !strings.Contains(w.Pending(), "db2's promotion") {
			t.Fatalf("done early (%+v) or pending %q", o, w.Pending())
		}
		o, _ = run(w, recs[18:])
		if !o.Done || o.Err == nil || !strings.Contains(o.Err.Error(), "promotion of db2 failed") {
			t.Fatalf("outcome %+v, want the failed promotion", o)
		}
	})
	t.Run("not the owner: applied is enough", func(t *testing.T) {
		w := NewMaintenanceWatch(15, "db1", true, false, nil)
		o, n := run(w, recs)
		if !o.Done || o.Err != nil || n != 15 || !strings.Contains(o.Message, "maintenance on for db1 applied") {
			t.Fatalf("outcome %+v after %d records", o, n)
		}
	})
	t.Run("handover completes", func(t *testing.T) {
		s := &story{}
		s.add(0, fsm.MaintenanceChanged, "w", 3, fsm.MaintenanceData{Node: "db1", On: true})
		s.add(10, fsm.OwnerReleased, "db1", 3, fsm.ReleaseData{Owner: "db1", Reason: "maintenance"})
		s.add(20, fsm.OwnerAssigned, "w", 3, fsm.AssignData{Owner: "db2", Reason: "db1 released: maintenance"})
		s.add(90, fsm.OwnerPromoted, "db2", 4, fsm.PromotedData{Owner: "db2", Reached: true, Target: "0-1-3"})
		w := NewMaintenanceWatch(1, "db1", true, true, nil)
		o, _ := run(w, s.recs)
		if !o.Done || o.Err != nil || o.Message != "db1 → db2 in 90 ms (catch-up 0 ms, nothing missing)" {
			t.Fatalf("outcome %+v", o)
		}
	})
}
