package owner

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/probe"
)

func TestBinlogLoss(t *testing.T) {
	cases := []struct {
		name      string
		flavor    probe.Flavor
		journaled string
		now       string
		want      string
	}{
		{"same", probe.FlavorMariaDB, "1-1-50,2-2-7", "1-1-50,2-2-7", ""},
		{"grown", probe.FlavorMariaDB, "1-1-50,2-2-7", "1-1-61,2-2-9", ""},
		{"new domain", probe.FlavorMariaDB, "1-1-50", "1-1-50,2-2-3", ""},
		{"own domain cut", probe.FlavorMariaDB, "1-1-501,2-2-2172", "1-1-463,2-2-2172", "1-1-501"},
		{"domain gone", probe.FlavorMariaDB, "1-1-50,2-2-7", "1-1-50", "2-2-7"},
		{"nothing journaled", probe.FlavorMariaDB, "", "1-1-5", ""},
		{"unreadable", probe.FlavorMariaDB, "garbage", "1-1-5", ""},
		{"mysql grown", probe.FlavorMySQL, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-20", "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-25", ""},
		{"mysql reset", probe.FlavorMySQL, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-20", "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-12", "3e11fa47-71ca-11e1-9e33-c80aa9429562:13-20"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := &Owner{cfg: Config{Flavor: c.flavor}}
			if got := o.binlogLoss(c.journaled, c.now); got != c.want {
				t.Errorf("binlogLoss(%q, %q) = %q, want %q", c.journaled, c.now, got, c.want)
			}
		})
	}
}

// TestBinlogLossMakesNodeUnfit: db1's server comes back with fewer transactions than the
// journal recorded for it (a binlog cut after a full disk and a crash: the CI chaos run
// where db1 wrote 1-1-464..501, restarted at 1-1-463, was promoted and wrote new
// transactions under the same GTIDs, so the servers diverged). The probe loop journals it
// unhealthy with the lost set and keeps the recorded set in the state; maintenance makes
// the current set the baseline, and the node is healthy again.
func TestBinlogLossMakesNodeUnfit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		r.node.apply(t, ev(t, r.node.State(), fsm.HealthChanged, "db1", fsm.HealthData{Node: "db1", Healthy: true, GTID: "1-1-501,2-2-9"}))
		r.db.mu.Lock()
		r.db.gtid = "1-1-463,2-2-9"
		r.db.mu.Unlock()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- r.o.probeLoop(ctx) }()

		waitState(t, r, "unhealthy with the lost set", func(m *fsm.NodeState) bool { return m.HealthKnown && !m.Healthy })
		m := r.node.State().Members["db1"]
		if !strings.Contains(m.Detail, "binlog lost transactions 1-1-501") || m.GTID != "1-1-501,2-2-9" {
			t.Fatalf("db1 detail %q gtid %q: want the loss named and the journaled set kept", m.Detail, m.GTID)
		}
		// Stays unfit, journaled once for one lost set.
		time.Sleep(3 * time.Second)
		var lost []fsm.HealthData
		for _, e := range r.node.proposedOf(fsm.HealthChanged) {
			var d fsm.HealthData
			if err := e.Payload(&d); err != nil {
				t.Fatal(err)
			}
			if d.Lost != "" {
				lost = append(lost, d)
			}
		}
		if m := r.node.State().Members["db1"]; m.Healthy || len(lost) != 1 || lost[0].Lost != "1-1-501" || lost[0].GTID != "" {
			t.Fatalf("healthy=%v, journaled losses %+v: want one, Lost 1-1-501, no GTID", m.Healthy, lost)
		}

		// An operator repairs it in maintenance: its set becomes the baseline.
		r.node.apply(t, ev(t, r.node.State(), fsm.MaintenanceChanged, "witness", fsm.MaintenanceData{Node: "db1", On: true}))
		waitState(t, r, "healthy with the new baseline", func(m *fsm.NodeState) bool { return m.Healthy && m.GTID == "1-1-463,2-2-9" })
		r.node.apply(t, ev(t, r.node.State(), fsm.MaintenanceChanged, "witness", fsm.MaintenanceData{Node: "db1", On: false}))
		time.Sleep(2 * time.Second)
		if m := r.node.State().Members["db1"]; !m.Healthy {
			t.Fatalf("db1 unhealthy after maintenance off: %q", m.Detail)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestBinlogLossWithoutHealthChange: the server restarts within fall×interval, so no health
// change journals the set it had; the runtime's own last reading is the baseline.
func TestBinlogLossWithoutHealthChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		r.db.mu.Lock()
		r.db.gtid = "1-1-501,2-2-9"
		r.db.mu.Unlock()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- r.o.probeLoop(ctx) }()
		time.Sleep(time.Second)
		if m := r.node.State().Members["db1"]; !m.Healthy || m.GTID != "1-1-10" {
			t.Fatalf("want db1 healthy with the set of its last health change: healthy=%v gtid %q", m.Healthy, m.GTID)
		}
		r.db.mu.Lock()
		r.db.gtid = "1-1-463,2-2-9"
		r.db.mu.Unlock()
		waitState(t, r, "unhealthy", func(m *fsm.NodeState) bool { return !m.Healthy })
		if m := r.node.State().Members["db1"]; !strings.Contains(m.Detail, "binlog lost transactions 1-1-501") {
			t.Fatalf("db1 detail %q: want the loss named", m.Detail)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// waitState waits (in the synctest bubble) until db1's state satisfies ok.
func waitState(t *testing.T, r *rig, what string, ok func(*fsm.NodeState) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(r.node.State().Members["db1"]) {
		if time.Now().After(deadline) {
			m := r.node.State().Members["db1"]
			t.Fatalf("db1 not %s: healthy=%v detail %q gtid %q; trace:\n%s", what, m.Healthy, m.Detail, m.GTID, r.tr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// proposedOf returns the events of type typ proposed so far.
func (n *fakeNode) proposedOf(typ fsm.Type) []fsm.Event {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []fsm.Event
	for _, e := range n.proposed {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}
