package e2e

import (
	"context"
	"testing"
	"time"
)

// TestFrozenOwnerFencedByWatchdog: the owner's keepraftd is frozen (SIGSTOP of its whole
// process group) and its host cut off. Its own runtime cannot fence its server and the new
// owner cannot reach it: only the fence watchdog can. Its server must turn read-only
// within the lease (500 ms in the lab) of the freeze, plus scheduling slack, and not stay
// writable until the daemon runs again. After the thaw and heal, exactly one server is
// writable and replication runs both ways.
func TestFrozenOwnerFencedByWatchdog(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	owner := c.waitOwner(30 * time.Second)
	waitFor(t, "the owner's server writable", 10*time.Second, func() (bool, string) {
		ro := c.readOnly(owner)
		return ro == "0", "read_only=" + ro
	})
	p := c.procs[owner]
	host := c.lab.Host(owner)
	frozen := time.Now()
	if err := p.Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Thaw() })
	if err := c.lab.CutLink(host); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.lab.RestoreLink(host) })

	const bound = time.Second // lease 500 ms + slack
	var fencedAfter time.Duration
	waitFor(t, "the frozen owner's server read-only", 5*time.Second, func() (bool, string) {
		ro := c.readOnly(owner)
		fencedAfter = time.Since(frozen)
		return ro == "1", "read_only=" + ro
	})
	t.Logf("frozen owner %s's server read-only %s after the freeze", owner, fencedAfter.Round(time.Millisecond))
	if fencedAfter > bound {
		t.Errorf("frozen owner's server writable for %s, want at most %s", fencedAfter.Round(time.Millisecond), bound)
	}
	next := other(owner)
	waitFor(t, "the other node serving", 30*time.Second, func() (bool, string) {
		st, err := c.status(next)
		if err != nil {
			return false, err.Error()
		}
		ro := c.readOnly(next)
		return st.Owner == next && ro == "0", "owner=" + st.Owner + " read_only(" + next + ")=" + ro
	})
	if ro := c.readOnly(owner); ro != "1" {
		t.Errorf("frozen owner's server read_only=%s while %s serves", ro, next)
	}

	if err := c.lab.RestoreLink(host); err != nil {
		t.Fatal(err)
	}
	if err := p.Thaw(); err != nil {
		t.Fatal(err)
	}
	if w := c.requireOneWriter(); w != next {
		t.Errorf("after the thaw the writer is %s, want %s (no preemption)", w, next)
	}
	c.requireReplicationRuns(30 * time.Second)
}

// TestFrozenOwnerMysqldNeverThawsWritable: the owner's mysqld is frozen (SIGSTOP) with
// read_only=0. It cannot be fenced, and continued later it would accept writes beside the
// new owner; keepraft kills it before releasing, so after the thaw no second server is
// ever writable, and restarted it comes back read-only. The chaos run (seed 4243) saw both
// servers with read_only=0 25 ms after such a thaw before the kill.
func TestFrozenOwnerMysqldNeverThawsWritable(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	owner := c.waitOwner(30 * time.Second)
	peer := other(owner)
	m := c.lab.MariaDB(owner)
	if err := m.Proc.Freeze(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.tracker.WaitHolder(ctx, peer); err != nil {
		t.Fatalf("no failover from the frozen owner: %v", err)
	}
	_ = m.Proc.Thaw() // a no-op when keepraft killed it
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		qctx, qcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		ro, err := m.QueryString(qctx, "SELECT @@global.read_only")
		qcancel()
		if err == nil && ro == "0" {
			t.Fatalf("%s's mysqld is writable again after the thaw, beside the new owner %s", owner, peer)
		}
	}
	if m.Proc.Alive() {
		t.Fatalf("%s's frozen mysqld was not killed", owner)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ro, err := m.QueryString(context.Background(), "SELECT @@global.read_only"); err != nil || ro != "1" {
		t.Fatalf("restarted %s: read_only=%q (%v), want 1", owner, ro, err)
	}
	c.assertNeverTwoHolders()
}
