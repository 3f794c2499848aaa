package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/testenv"
)

// The checker's self-tests: every violation class is injected on purpose and must be
// reported. The journal, log and state rules are checked on synthetic input (no lab); the
// database and VIP rules in one shared lab.

// journalOf applies events in order with package fsm and returns the records a node would
// journal.
func journalOf(t *testing.T, evs ...fsm.Event) []fsm.Record {
	t.Helper()
	s := fsm.NewState()
	var recs []fsm.Record
	for i, ev := range evs {
		idx := uint64(i + 2)
		n, err := s.Apply(idx, ev)
		s = n
		r := fsm.Record{Index: idx, Term: 1, Event: ev, Result: fsm.ResultApplied}
		if err != nil {
			r.Result, r.Error = fsm.ResultStale, err.Error()
		}
		recs = append(recs, r)
	}
	return recs
}

func mustEvent(t *testing.T, typ fsm.Type, epoch uint64, phase fsm.Phase, p any) fsm.Event {
	t.Helper()
	ev, err := fsm.NewEvent(typ, "test", time.Now(), epoch, phase, p)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestChaosCheckerRules(t *testing.T) {
	members := fsm.BootstrappedData{Members: []fsm.Member{
		{ID: "db1", Role: fsm.RoleDatabase, Priority: 100}, {ID: "db2", Role: fsm.RoleDatabase, Priority: 90}, {ID: "witness", Role: fsm.RoleWitness},
	}}
	boot := mustEvent(t, fsm.Bootstrapped, 0, "", members)
	healthy := func(n string, h bool) fsm.Event {
		return mustEvent(t, fsm.HealthChanged, 0, "", fsm.HealthData{Node: n, Healthy: h, Detail: "test"})
	}
	assign := mustEvent(t, fsm.OwnerAssigned, 0, fsm.PhaseNone, fsm.AssignData{Owner: "db1", Reason: "test"})

	t.Run("assignment to an unhealthy node", func(t *testing.T) {
		recs := journalOf(t, boot, healthy("db1", false), healthy("db2", true), assign)
		if recs[3].Result != fsm.ResultApplied {
			t.Fatalf("setup: the assignment was not applied: %+v", recs[3])
		}
		probs := checkAssignments(recs)
		if len(probs) != 1 || !strings.Contains(probs[0], "OwnerAssigned db1") || !strings.Contains(probs[0], "healthy=false") {
			t.Fatalf("checkAssignments = %q, want one report of the assignment to unhealthy db1", probs)
		}
		if probs := checkAssignments(journalOf(t, boot, healthy("db1", true), assign)); len(probs) != 0 {
			t.Fatalf("a healthy assignment was reported: %q", probs)
		}
	})
	t.Run("assignment to a node in maintenance", func(t *testing.T) {
		maint := mustEvent(t, fsm.MaintenanceChanged, 0, "", fsm.MaintenanceData{Node: "db1", On: true})
		recs := journalOf(t, boot, healthy("db1", true), maint, assign)
		if recs[3].Result != fsm.ResultApplied {
			t.Skipf("fsm refuses to assign a node in maintenance (%s): nothing for the checker to see", recs[3].Error)
		}
		if probs := checkAssignments(recs); len(probs) != 1 || !strings.Contains(probs[0], "maintenance=true") {
			t.Fatalf("checkAssignments = %q, want the maintenance assignment", probs)
		}
	})
	t.Run("journal result that replay contradicts", func(t *testing.T) {
		recs := journalOf(t, boot, healthy("db1", true), assign)
		recs[2].Result = fsm.ResultStale
		if probs := checkAssignments(recs); len(probs) == 0 || !strings.Contains(probs[len(probs)-1], "replay") {
			t.Fatalf("checkAssignments = %q, want a replay mismatch", probs)
		}
	})
	t.Run("journals differ", func(t *testing.T) {
		a := journalOf(t, boot, healthy("db1", true), assign)
		b := journalOf(t, boot, healthy("db1", false), assign)
		js := map[string][]fsm.Record{"db1": a, "db2": a, "witness": b}
		if probs := compareJournals(js); len(probs) == 0 || !strings.Contains(probs[0], "index 3 differs") {
			t.Fatalf("compareJournals = %q, want index 3 reported", probs)
		}
		js["witness"] = a[:2]
		if probs := compareJournals(js); len(probs) == 0 || !strings.Contains(probs[0], "ends at index") {
			t.Fatalf("compareJournals = %q, want the shorter journal reported", probs)
		}
		js["witness"] = a
		if probs := compareJournals(js); len(probs) != 0 {
			t.Fatalf("equal journals reported: %q", probs)
		}
	})
	t.Run("panic and race in a daemon log", func(t *testing.T) {
		dir := t.TempDir()
		clean := filepath.Join(dir, "keepraftd-db1.log")
		bad := filepath.Join(dir, "keepraftd-db2.log")
		if err := os.WriteFile(clean, []byte(`{"level":"info","msg":"journal"}`+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bad, []byte("ok\npanic: runtime error: index out of range\n==================\nWARNING: DATA RACE\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if hits := scanLogs([]string{clean, bad}); len(hits) != 2 || !strings.Contains(hits[0], "keepraftd-db2.log:2") {
			t.Fatalf("scanLogs = %q, want the panic and the race of db2", hits)
		}
	})
	t.Run("writable server rule", func(t *testing.T) {
		for _, c := range []struct {
			owner string
			phase fsm.Phase
			want  bool
		}{
			{"db1", fsm.PhaseActive, true}, {"db1", fsm.PhaseAssigned, true}, {"db1", fsm.PhaseRevoked, true},
			{"db1", fsm.PhaseReleased, false}, {"db2", fsm.PhaseActive, false}, {"", fsm.PhaseNone, false},
		} {
			if got := stateAllows(api.Status{Owner: c.owner, Phase: c.phase}, "db1"); got != c.want {
				t.Errorf("db1 writable under owner %q phase %s: allowed=%v, want %v", c.owner, c.phase, got, c.want)
			}
		}
	})
	t.Run("loss notes cover acknowledged writes", func(t *testing.T) {
		lossy := mustEvent(t, fsm.OwnerAssigned, 0, fsm.PhaseNone, fsm.AssignData{Owner: "db1", Reason: "test", Loss: "loss unknown"})
		recs := journalOf(t, boot, healthy("db1", true), lossy)
		if ns := lossNotes(recs); len(ns) != 1 || !strings.Contains(ns[0].What, "loss unknown") {
			t.Fatalf("lossNotes = %+v, want the assignment's loss", ns)
		}
	})
}

// TestChaosCheckerSelfTest injects, in one lab with the workload running, each violation
// class the checker sees in the databases and the VIP, and asserts it is reported: a VIP
// added by hand on the second host, read_only=0 set by hand on the non-owner, a stopped
// replication channel with no journaled blocked rejoin, a row deleted on one server only,
// and an acknowledged id deleted from the owner.
func TestChaosCheckerSelfTest(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	owner := c.waitOwner(30 * time.Second)
	c.waitDBsHealthy(30 * time.Second)
	c.requireReplicationRuns(15 * time.Second)
	peer := other(owner)
	ch := newChaos(t, c, "async")
	ch.selfTest = true
	ch.startMonitors()
	ch.startWorkload()
	t.Cleanup(ch.stopAll) // also when the test fails early: no monitor outlives it
	ctx := context.Background()
	// exec runs a statement as the lab's root, again if the daemon's fence killed the
	// pooled connection under it (fencing kills root's connections too).
	exec := func(m *testenv.MariaDB, stmt string) {
		t.Helper()
		var err error
		for range 3 {
			if err = m.Exec(ctx, stmt); err == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("%s: %v", stmt, err)
	}
	waitClass := func(class string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for ch.classes()[class] == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the checker did not report %s within %s (reported: %v)", class, within, ch.classes())
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("reported as expected: %s", class)
	}
	waitFor(t, "acknowledged writes", 10*time.Second, func() (bool, string) {
		ch.mu.Lock()
		defer ch.mu.Unlock()
		return len(ch.acks) >= 20, fmt.Sprintf("%d acks", len(ch.acks))
	})

	// 1. The VIP added by hand on the non-owner's host, with its fence opened by hand too
	// (a fenced address serves nothing and is rightly not counted): two holders.
	h := c.lab.Host(peer)
	if out, err := h.Run(ctx, "nft", "add", "element", "netdev", testenv.FenceTablePrefix+"eth0", testenv.FenceLeaseSet, "{", c.vip, "timeout", "10s", "}"); err != nil {
		t.Fatalf("open the peer's fence by hand: %v: %s", err, out)
	}
	if _, err := h.Run(ctx, "ip", "addr", "add", c.vip+"/32", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	waitClass(vTwoHolders, 5*time.Second)
	_, _ = h.Run(ctx, "ip", "addr", "del", c.vip+"/32", "dev", "eth0") // the daemon may have removed it already

	// 2. read_only=0 by hand on the non-owner, repeated (the daemon fences it within about 100 ms).
	m := c.lab.MariaDB(peer)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && (ch.classes()[vTwoWriters] == 0 || ch.classes()[vWriterNotOwner] == 0) {
		exec(m, "SET GLOBAL read_only=0")
		time.Sleep(30 * time.Millisecond)
	}
	waitClass(vTwoWriters, time.Second)
	waitClass(vWriterNotOwner, time.Second)
	exec(m, "SET GLOBAL read_only=1")

	// 3. The non-owner's channel stopped by hand, no blocked rejoin journaled.
	exec(m, "STOP SLAVE")
	ch.checkReplication(2 * time.Second)
	waitClass(vReplStopped, 0)
	exec(m, "START SLAVE")

	// Stop the workload so the tables hold still, and let the peer catch up.
	ch.stopAll()
	ch.mu.Lock()
	acks := append([]ack(nil), ch.acks...)
	ch.mu.Unlock()
	c.requireReplicationRuns(15 * time.Second)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := waitCaughtUpBoth(wctx, c); err != nil {
		t.Fatal(err)
	}
	recs := c.journalNoFail()
	ch.checkTables(recs)
	ch.checkAcked(owner, acks, recs, false)
	if n := len(ch.classes()); n != 4 {
		t.Fatalf("a clean database was reported: %v", ch.classes())
	}

	// 4. One row deleted on the non-owner only.
	if err := m.ExecNoBinlog(ctx, fmt.Sprintf("DELETE FROM kr.writes WHERE origin = '%s' AND seq = %d", chaosOrigin, acks[len(acks)-1].ID)); err != nil {
		t.Fatal(err)
	}
	ch.checkTables(recs)
	waitClass(vTablesDiffer, 0)

	// 5. An acknowledged id deleted from the owner.
	if err := c.lab.MariaDB(owner).ExecNoBinlog(ctx, fmt.Sprintf("DELETE FROM kr.writes WHERE origin = '%s' AND seq = %d", chaosOrigin, acks[0].ID)); err != nil {
		t.Fatal(err)
	}
	ch.checkAcked(owner, acks, recs, false)
	waitClass(vAckLost, 0)

	want := []string{vTwoHolders, vTwoWriters, vWriterNotOwner, vReplStopped, vTablesDiffer, vAckLost}
	got := ch.classes()
	for _, w := range want {
		delete(got, w)
	}
	if len(got) > 0 {
		t.Fatalf("the checker also reported classes nobody injected: %v", got)
	}
}

// waitCaughtUpBoth waits until each server has applied the other's binlog.
func waitCaughtUpBoth(ctx context.Context, c *cluster) error {
	if err := testenv.WaitCaughtUp(ctx, c.lab.MariaDB("db1"), c.lab.MariaDB("db2")); err != nil {
		return err
	}
	return testenv.WaitCaughtUp(ctx, c.lab.MariaDB("db2"), c.lab.MariaDB("db1"))
}
