package opsview

import (
	"strings"
	"testing"

	"github.com/keepraft/keepraft/fsm"
)

func TestHistory(t *testing.T) {
	got := History(fullStory().recs, nil)
	type want struct {
		from, to, kind string
		epoch          uint64
		trigger        fsm.Type
		durMS          int64
		reason, catch  string
		loss, failed   string
	}
	wants := []want{
		{"", "db1", KindInitial, 1, fsm.OwnerAssigned, 50, "initial assignment", "no catch-up target", "", ""},
		{"db1", "db2", KindFailover, 2, fsm.HealthChanged, 142, "db1 unhealthy: connection refused", "catch-up 7 ms, nothing missing", "old owner db1 was not fenced", ""},
		{"db2", "db1", KindSwitchover, 3, fsm.SwitchoverRequested, 142, "switchover to db1 requested by alice from 10.0.0.9:5555", "catch-up 0 ms, nothing missing", "", ""},
		{"db1", "db2", KindMaintenance, 5, fsm.MaintenanceChanged, 5500, "maintenance on db1 by bob", "catch-up NOT reached after 400 ms, missing 0-1-58..60", "policy promote", "db2: promotion did not finish"},
	}
	if len(got) != len(wants) {
		t.Fatalf("History gave %d changes, want %d: %+v", len(got), len(wants), got)
	}
	for i, w := range wants {
		c := got[i]
		if c.From != w.from || c.To != w.to || c.Kind != w.kind || c.Epoch != w.epoch || c.Trigger != w.trigger {
			t.Errorf("change %d: %s %s epoch %d trigger %s; want %s→%s %s epoch %d trigger %s", i, c.Move(), c.Kind, c.Epoch, c.Trigger, w.from, w.to, w.kind, w.epoch, w.trigger)
		}
		if c.DurationMS == nil || *c.DurationMS != w.durMS {
			t.Errorf("change %d: duration %v, want %d ms", i, c.DurationMS, w.durMS)
		}
		if c.Reason != w.reason {
			t.Errorf("change %d: reason %q, want %q", i, c.Reason, w.reason)
		}
		if c.CatchUp.String() != w.catch {
			t.Errorf("change %d: catch-up %q, want %q", i, c.CatchUp, w.catch)
		}
		if (w.loss == "") != (c.Loss == "") || !strings.Contains(c.Loss, w.loss) {
			t.Errorf("change %d: loss %q, want %q", i, c.Loss, w.loss)
		}
		if failed := strings.Join(c.FailedPromotions, "|"); (w.failed == "") != (failed == "") || !strings.Contains(failed, w.failed) {
			t.Errorf("change %d: failed promotions %q, want %q", i, failed, w.failed)
		}
	}
	if s := got[2].Summary(); s != "db2 → db1 in 142 ms (catch-up 0 ms, nothing missing)" {
		t.Errorf("summary = %q", s)
	}
}

func TestHistoryEdges(t *testing.T) {
	t.Run("an owner's health that recovers before any handover starts nothing", func(t *testing.T) {
		s := &story{}
		s.add(0, fsm.OwnerAssigned, "w", 0, fsm.AssignData{Owner: "db1", Reason: "initial assignment"})
		s.add(10, fsm.OwnerPromoted, "db1", 1, fsm.PromotedData{Owner: "db1", Reached: true})
		s.add(100, fsm.HealthChanged, "db1", 1, fsm.HealthData{Node: "db1", Healthy: false})
		s.add(200, fsm.HealthChanged, "db1", 1, fsm.HealthData{Node: "db1", Healthy: true})
		s.add(5000, fsm.OwnerRevoked, "w", 1, fsm.RevokeData{Owner: "db1", Reason: "owner db1 unreachable: no lease renewal seen by any reachable voter"})
		s.add(6000, fsm.OwnerAssigned, "w", 1, fsm.AssignData{Owner: "db2", Reason: "db1 revoked and its lease expired", Loss: `loss unknown after "0-1-5": db1 never released epoch 1`})
		s.add(6100, fsm.OwnerPromoted, "db2", 2, fsm.PromotedData{Owner: "db2", Reached: true})
		got := History(s.recs, nil)
		if len(got) != 2 {
			t.Fatalf("changes: %+v", got)
		}
		c := got[1]
		if c.Trigger != fsm.OwnerRevoked || *c.DurationMS != 1100 || c.Kind != KindFailover || !strings.Contains(c.Reason, "unreachable") || !strings.Contains(c.Loss, "loss unknown") {
			t.Fatalf("change = %+v, want the revoke as trigger (1100 ms), failover, unreachable, loss unknown", c)
		}
	})
	t.Run("a journal that starts mid-change", func(t *testing.T) {
		s := &story{}
		s.add(0, fsm.OwnerPromoted, "db2", 7, fsm.PromotedData{Owner: "db2", Reached: true, PrevOwner: "db1"})
		got := History(s.recs, nil)
		if len(got) != 1 || got[0].Kind != KindUnknown || got[0].DurationMS != nil || got[0].From != "db1" || got[0].Took() != "?" {
			t.Fatalf("changes: %+v, want one unknown change from db1 with no duration", got)
		}
	})
	t.Run("a stopping owner taken back", func(t *testing.T) {
		s := &story{}
		s.add(0, fsm.OwnerReleased, "db1", 3, fsm.ReleaseData{Owner: "db1", Reason: "keepraftd stopping, no successor"})
		s.add(30, fsm.OwnerAssigned, "w", 3, fsm.AssignData{Owner: "db1", Reason: "db1 released: keepraftd stopping, no successor"})
		s.add(90, fsm.OwnerPromoted, "db1", 4, fsm.PromotedData{Owner: "db1", Reached: true})
		got := History(s.recs, nil)
		if len(got) != 1 || got[0].Kind != KindStop || got[0].Trigger != fsm.OwnerReleased || *got[0].DurationMS != 90 {
			t.Fatalf("changes: %+v, want one stop change triggered by the release", got)
		}
	})
	t.Run("a stale promotion is not a change", func(t *testing.T) {
		s := &story{}
		s.addResult(0, fsm.OwnerPromoted, "db1", 1, fsm.PromotedData{Owner: "db1", Reached: true}, fsm.ResultStale)
		if got := History(s.recs, nil); len(got) != 0 {
			t.Fatalf("changes: %+v, want none", got)
		}
	})
}

// TestHistoryOperatorFailover: a failover an operator ordered after the owner released
// (a paused cluster) is the operator's change, timed from the release.
func TestHistoryOperatorFailover(t *testing.T) {
	s := &story{}
	s.add(0, fsm.OwnerAssigned, "witness", 0, fsm.AssignData{Owner: "db1", Reason: "initial assignment"})
	s.add(10, fsm.OwnerPromoted, "db1", 1, fsm.PromotedData{Owner: "db1", Reached: true})
	s.add(1000, fsm.OwnerReleased, "db1", 1, fsm.ReleaseData{Owner: "db1", Reason: "mysqld failed"})
	s.add(6000, fsm.FailoverRequested, "witness", 1, fsm.FailoverData{To: "db2", Operator: "ops"})
	s.add(6100, fsm.OwnerAssigned, "witness", 1, fsm.AssignData{Owner: "db2", Reason: "operator failover to db2 by ops", Force: true})
	s.add(6300, fsm.OwnerPromoted, "db2", 2, fsm.PromotedData{Owner: "db2", Reached: true})
	got := History(s.recs, nil)
	if len(got) != 2 {
		t.Fatalf("History gave %d changes, want 2: %+v", len(got), got)
	}
	c := got[1]
	if c.Kind != KindOperator || c.From != "db1" || c.To != "db2" || !strings.Contains(c.Reason, "then operator failover to db2 by ops") || c.DurationMS == nil || *c.DurationMS != 5300 {
		t.Fatalf("change = %+v, want an operator failover db1 → db2 timed from the release", c)
	}
}
