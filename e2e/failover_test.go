package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/probe"
	"github.com/keepraft/keepraft/testenv"
)

func TestMysqldKilledMovesVIP(t *testing.T) { testMysqldKilledMovesVIP(t, testenv.FlavorMariaDB) }

// TestMySQLMysqldKilledMovesVIP is TestMysqldKilledMovesVIP on MySQL: failover after
// SIGKILL, then the clean rejoin of the old owner.
func TestMySQLMysqldKilledMovesVIP(t *testing.T) { testMysqldKilledMovesVIP(t, testenv.FlavorMySQL) }

func testMysqldKilledMovesVIP(t *testing.T, f probe.Flavor) {
	c := newCluster(t, clusterOpts{flavor: f})
	owner := c.waitOwner(30 * time.Second)
	if got, err := c.ask(context.Background(), time.Second); err != nil || got != owner {
		t.Fatalf("client through the VIP reached %q (%v), want the owner %s", got, err, owner)
	}
	before := c.journal("witness")
	last := before[len(before)-1].Index

	kill := time.Now()
	if err := c.lab.MariaDB(owner).Kill(); err != nil {
		t.Fatal(err)
	}
	at, err := c.firstAnswerFrom(other(owner), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s mysqld on %s killed; first client answer from %s after %s", c.flavor(), owner, other(owner), at.Sub(kill))
	c.waitOwner(5 * time.Second)
	// Second opinion: the peer's remote probe sees the old owner's host up, mysqld down.
	waitFor(t, "peer view of the dead mysqld", 5*time.Second, func() (bool, string) {
		st, err := c.status("witness")
		if err != nil {
			return false, err.Error()
		}
		for _, m := range st.Members {
			if m.ID == owner {
				return m.Reachable && strings.Contains(m.PeerView, other(owner)+": down"), fmt.Sprintf("%+v", m)
			}
		}
		return false, "no member"
	})

	// The owner learns of the death from the process (pidfd) and releases at once, so its
	// HealthChanged and OwnerReleased race: either may commit first.
	got := types(c.journal("witness"), last)
	want := []string{"OwnerReleased", "OwnerAssigned", "OwnerPromoted"}
	if !containsInOrder(got, want) || !slices.Contains(got, "HealthChanged") {
		t.Fatalf("journal after the kill: %v, want HealthChanged and, in order, %v", got, want)
	}
	for _, r := range c.journal("witness") {
		if r.Index > last && r.Event.Type == fsm.OwnerAssigned && r.Result == fsm.ResultApplied {
			var d fsm.AssignData
			if err := r.Event.Payload(&d); err != nil || d.Owner != other(owner) || !strings.Contains(d.Reason, "released") || len(d.Candidates) != 2 {
				t.Fatalf("OwnerAssigned payload %+v (%v)", d, err)
			}
		}
	}
	c.assertNeverTwoHolders()

	// The old owner comes back: nopreempt keeps the VIP where it is.
	if err := c.lab.MariaDB(owner).Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "old owner healthy again", 20*time.Second, func() (bool, string) {
		st, err := c.status("witness")
		if err != nil {
			return false, err.Error()
		}
		for _, m := range st.Members {
			if m.ID == owner && m.Healthy != nil && *m.Healthy {
				return true, ""
			}
		}
		return false, "not yet"
	})
	time.Sleep(2 * time.Second)
	if h := c.tracker.Holders(); !slices.Equal(h, []string{other(owner)}) {
		t.Fatalf("after the old owner recovered the VIP is on %v, want %s (nopreempt)", h, other(owner))
	}
	// The rejoin check found nothing extra on the old owner and restarted the new
	// owner's channel from it: replication runs both ways again.
	waitFor(t, "rejoin checked and replication both ways", 20*time.Second, func() (bool, string) {
		var d fsm.RejoinData
		for _, r := range c.journal("witness") {
			if r.Event.Type == fsm.RejoinChecked && r.Result == fsm.ResultApplied {
				_ = r.Event.Payload(&d)
			}
		}
		io1, sql1, _, err1 := testenv.ReplicationStatus(context.Background(), c.lab.MariaDB("db1"))
		io2, sql2, _, err2 := testenv.ReplicationStatus(context.Background(), c.lab.MariaDB("db2"))
		ok := d.Node == owner && !d.Blocked && io1 && sql1 && io2 && sql2 && err1 == nil && err2 == nil
		return ok, fmt.Sprintf("rejoin %+v, db1 io=%v sql=%v, db2 io=%v sql=%v", d, io1, sql1, io2, sql2)
	})
	c.assertNeverTwoHolders()
	// The database agrees: only the new owner is writable.
	if w := c.requireOneWriter(); w != other(owner) {
		t.Fatalf("the writable owner is %s, want %s", w, other(owner))
	}
}

// TestRejoinWithExtraTransactionsIsBlocked: the owner commits writes its peer never
// receives, then its mysqld dies. The peer is promoted after catchup_timeout with the loss
// journaled; when the old owner returns with those extra transactions, its channel into the
// new owner stays stopped and the journal says why.
func TestRejoinWithExtraTransactionsIsBlocked(t *testing.T) {
	testRejoinWithExtraTransactionsIsBlocked(t, testenv.FlavorMariaDB)
}

// TestMySQLRejoinWithExtraTransactionsIsBlocked is TestRejoinWithExtraTransactionsIsBlocked
// on MySQL (GTID sets with server UUIDs instead of domains).
func TestMySQLRejoinWithExtraTransactionsIsBlocked(t *testing.T) {
	testRejoinWithExtraTransactionsIsBlocked(t, testenv.FlavorMySQL)
}

func testRejoinWithExtraTransactionsIsBlocked(t *testing.T, f probe.Flavor) {
	c := newCluster(t, clusterOpts{flavor: f})
	owner := c.waitOwner(30 * time.Second)
	peer := other(owner)
	ctx := context.Background()
	if err := c.lab.MariaDB(peer).StopReplicaIO(ctx); err != nil {
		t.Fatal(err)
	}
	dsn := fmt.Sprintf("%s:%s@%s(%s:3306)/%s?timeout=1s", testenv.AppUser, testenv.AppPass, c.dialer, c.vip, testenv.AppSchema)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range 3 {
		if _, err := db.ExecContext(ctx, "INSERT INTO writes (origin, seq) VALUES ('unshipped', ?)", i); err != nil {
			t.Fatal(err)
		}
	}
	// Let the owner's probe report the GTID that includes the unshipped writes.
	time.Sleep(500 * time.Millisecond)
	if err := c.lab.MariaDB(owner).Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.firstAnswerFrom(peer, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	var promoted fsm.PromotedData
	waitFor(t, "the new owner's OwnerPromoted", 10*time.Second, func() (bool, string) {
		for _, r := range c.journal("witness") {
			if r.Event.Type == fsm.OwnerPromoted && r.Result == fsm.ResultApplied {
				_ = r.Event.Payload(&promoted)
			}
		}
		return promoted.Owner == peer, fmt.Sprintf("%+v", promoted)
	})
	if promoted.Reached || promoted.Missing == "" {
		t.Fatalf("OwnerPromoted should record the missed catch-up: %+v", promoted)
	}
	if err := c.lab.MariaDB(owner).Start(ctx); err != nil {
		t.Fatal(err)
	}
	var d fsm.RejoinData
	waitFor(t, "a blocked rejoin in the journal", 30*time.Second, func() (bool, string) {
		for _, r := range c.journal("witness") {
			if r.Event.Type == fsm.RejoinChecked && r.Result == fsm.ResultApplied {
				_ = r.Event.Payload(&d)
			}
		}
		return d.Node == owner && d.Blocked && d.Extra != "", fmt.Sprintf("%+v", d)
	})
	time.Sleep(time.Second)
	io, _, _, err := testenv.ReplicationStatus(ctx, c.lab.MariaDB(peer))
	if err != nil || io {
		t.Fatalf("the new owner's channel from %s runs again (io=%v, %v)", owner, io, err)
	}
	n, err := c.lab.MariaDB(peer).QueryString(ctx, "SELECT COUNT(*) FROM kr.writes WHERE origin='unshipped'")
	if err != nil || n != "0" {
		t.Fatalf("unshipped rows reached the new owner: %s (%v)", n, err)
	}
	t.Logf("rejoin blocked with extra transactions %s; missed catch-up %+v", d.Extra, promoted)

	// The operator's way out: status says REJOIN BLOCKED (exit 1); a resume that accepts
	// another set is refused; accepting the journaled set lets the rows flow in.
	c.expect(1, []string{"REJOIN BLOCKED"}, "status")
	notExtra := "9-9-9"
	if f == testenv.FlavorMySQL {
		notExtra = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1"
	}
	c.expect(1, []string{"is not its extra set"}, "rejoin", owner, "resume", "--accept", notExtra)
	c.expect(0, []string{"accepted"}, "rejoin", owner, "resume", "--accept", d.Extra)
	waitFor(t, "the accepted rows on the new owner", 20*time.Second, func() (bool, string) {
		n, err := c.lab.MariaDB(peer).QueryString(ctx, "SELECT COUNT(*) FROM kr.writes WHERE origin='unshipped'")
		return err == nil && n == "3", fmt.Sprintf("%s rows (%v)", n, err)
	})
	waitFor(t, "status healthy again (exit 0)", 20*time.Second, func() (bool, string) {
		out, code := c.raftctl("status")
		return code == 0, out
	})
}

func TestOwnerLinkCut(t *testing.T) { testOwnerLinkCut(t, testenv.FlavorMariaDB) }

// TestMySQLOwnerLinkCut is TestOwnerLinkCut on MySQL.
func TestMySQLOwnerLinkCut(t *testing.T) { testOwnerLinkCut(t, testenv.FlavorMySQL) }

func testOwnerLinkCut(t *testing.T, f probe.Flavor) {
	c := newCluster(t, clusterOpts{flavor: f})
	owner := c.waitOwner(30 * time.Second)
	cut := time.Now()
	if err := c.lab.CutLink(c.lab.Host(owner)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dropped, err := c.tracker.WaitNone(ctx, owner)
	if err != nil {
		t.Fatalf("the cut-off owner kept the VIP: %v", err)
	}
	took, err := c.tracker.WaitHolder(ctx, other(owner))
	if err != nil {
		t.Fatal(err)
	}
	ans, err := c.firstAnswerFrom(other(owner), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: link of %s cut: it dropped the VIP after %s; %s added it after %s; first client answer after %s",
		c.flavor(), owner, dropped.Sub(cut), other(owner), took.Sub(cut), ans.Sub(cut))
	if !dropped.Before(took) {
		t.Fatalf("new owner added the VIP at %s, before the old one dropped it at %s", took, dropped)
	}
	// Healing the link must not bring the VIP back to the old owner.
	if err := c.lab.RestoreLink(c.lab.Host(owner)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if h := c.tracker.Holders(); !slices.Equal(h, []string{other(owner)}) {
		t.Fatalf("after the link healed the VIP is on %v", h)
	}
	got := types(c.journal("witness"), 0)
	if !containsInOrder(got, []string{"OwnerAssigned", "OwnerRevoked", "OwnerAssigned"}) {
		t.Fatalf("journal %v lacks the revoke and reassignment", got)
	}
	c.assertNeverTwoHolders()
	// The database agrees: the healed former owner is read-only, only the new owner writes.
	if w := c.requireOneWriter(); w != other(owner) {
		t.Fatalf("the writable owner is %s, want %s", w, other(owner))
	}
}

func TestFrozenDaemonLosesVIPToKernelLifetime(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	owner := c.waitOwner(30 * time.Second)
	frozen := time.Now()
	if err := c.procs[owner].Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.procs[owner].Thaw() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gone, err := c.tracker.WaitNone(ctx, owner)
	if err != nil {
		t.Fatalf("frozen owner's VIP never expired: %v", err)
	}
	took, err := c.tracker.WaitHolder(ctx, other(owner))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("keepraftd on %s frozen: kernel removed its VIP after %s; %s added it after %s", owner, gone.Sub(frozen), other(owner), took.Sub(frozen))
	if !gone.Before(took) {
		t.Fatalf("VIP added on %s at %s before the kernel removed it from %s at %s", other(owner), took, owner, gone)
	}
	// Thawed, the old owner sees it lost ownership and stays without the VIP.
	if err := c.procs[owner].Thaw(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if h := c.tracker.Holders(); !slices.Equal(h, []string{other(owner)}) {
		t.Fatalf("after thawing the VIP is on %v", h)
	}
	c.assertNeverTwoHolders()
}

// stays asserts that the VIP stays on owner, alone, for d.
func (c *cluster) stays(owner string, d time.Duration) {
	c.t.Helper()
	from := time.Now()
	deadline := from.Add(d)
	for time.Now().Before(deadline) {
		if h := c.tracker.Holders(); !slices.Equal(h, []string{owner}) {
			c.t.Fatalf("VIP holders %v, want only %s", h, owner)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var moves int
	for _, e := range c.tracker.Events() {
		if e.Host != owner && e.At.After(from) {
			moves++
		}
	}
	if moves > 0 {
		c.t.Fatalf("another host touched the VIP:\n%s", testenv.FormatEvents(c.tracker.Events()))
	}
}

func TestLeaderAndWitnessLossKeepVIP(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	owner := c.waitOwner(30 * time.Second)
	// Leadership is moved off the owner and off the witness, onto the other database node.
	leader := c.waitStandbyLeads(owner, 15*time.Second)
	if err := c.procs[leader].Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed the raft leader %s; owner is %s", leader, owner)
	c.stays(owner, 5*time.Second)
	// Bring the killed database node back and let it catch up (it promises only what
	// its applied state names), then lose the witness too.
	c.start(leader)
	waitFor(t, leader+" caught up", 20*time.Second, func() (bool, string) {
		a, err1 := c.status(leader)
		w, err2 := c.status("witness")
		if err1 != nil || err2 != nil {
			return false, fmt.Sprint(err1, err2)
		}
		return a.Owner == owner && a.Applied >= w.CommitIndex, fmt.Sprintf("applied %d, commit %d", a.Applied, w.CommitIndex)
	})
	time.Sleep(time.Second)
	if err := c.procs["witness"].Kill(); err != nil {
		t.Fatal(err)
	}
	c.stays(owner, 5*time.Second)
	c.assertNeverTwoHolders()
}

func TestDatabasePartitionKeepsOneHolder(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	owner := c.waitOwner(30 * time.Second)
	if err := c.lab.Partition(c.lab.Host("db1"), c.lab.Host("db2")); err != nil {
		t.Fatal(err)
	}
	// keepalived's split-brain case: here exactly one host holds the VIP throughout, even
	// though each database node's remote probe now sees the other's MySQL as down.
	c.stays(owner, 8*time.Second)
	st, err := c.status("witness")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Members {
		if m.ID == owner && !strings.Contains(m.PeerView, other(owner)+": down") {
			t.Fatalf("during the partition %s's peer view is %q, want %s's probe down", owner, m.PeerView, other(owner))
		}
	}
	if err := c.lab.Heal(c.lab.Host("db1"), c.lab.Host("db2")); err != nil {
		t.Fatal(err)
	}
	c.stays(owner, 2*time.Second)
	c.assertNeverTwoHolders()
}

func TestSwitchoverUnderLoadLosesNoWrite(t *testing.T) {
	testSwitchoverUnderLoadLosesNoWrite(t, testenv.FlavorMariaDB)
}

// TestMySQLSwitchoverUnderLoadLosesNoWrite is TestSwitchoverUnderLoadLosesNoWrite on MySQL.
func TestMySQLSwitchoverUnderLoadLosesNoWrite(t *testing.T) {
	testSwitchoverUnderLoadLosesNoWrite(t, testenv.FlavorMySQL)
}

func testSwitchoverUnderLoadLosesNoWrite(t *testing.T, f probe.Flavor) {
	c := newCluster(t, clusterOpts{flavor: f})
	owner := c.waitOwner(30 * time.Second)
	target := other(owner)

	// A steady writer through the VIP; every acknowledged insert is remembered.
	var mu sync.Mutex
	var acked []int64
	var failed int
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		dsn := fmt.Sprintf("%s:%s@%s(%s:3306)/%s?timeout=200ms&readTimeout=500ms&writeTimeout=500ms", testenv.AppUser, testenv.AppPass, c.dialer, c.vip, testenv.AppSchema)
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			return
		}
		defer db.Close()
		db.SetConnMaxLifetime(time.Second)
		for seq := int64(1); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			res, err := db.ExecContext(ctx, "INSERT INTO writes (origin, seq) VALUES ('switchover-test', ?)", seq)
			cancel()
			mu.Lock()
			if err == nil {
				if n, _ := res.RowsAffected(); n == 1 {
					acked = append(acked, seq)
				}
			} else {
				failed++
			}
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(time.Second)
	if err := c.post("/v1/switchover", fmt.Sprintf(`{"to":%q}`, target)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := c.tracker.WaitHolder(ctx, target); err != nil {
		t.Fatal(err)
	}
	if _, err := c.firstAnswerFrom(target, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	close(stop)
	<-done

	// Every acknowledged write must be on the new owner.
	m := c.lab.MariaDB(target)
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 50 {
		t.Fatalf("only %d writes acknowledged", len(acked))
	}
	n, err := m.QueryString(context.Background(), "SELECT COUNT(DISTINCT seq) FROM kr.writes WHERE origin='switchover-test' AND seq <= ?", acked[len(acked)-1])
	if err != nil {
		t.Fatal(err)
	}
	var rows int
	fmt.Sscan(n, &rows)
	missing := 0
	for _, s := range acked {
		got, err := m.QueryString(context.Background(), "SELECT COUNT(*) FROM kr.writes WHERE origin='switchover-test' AND seq = ?", s)
		if err != nil || got != "1" {
			missing++
		}
	}
	t.Logf("%s switchover %s → %s under load: %d writes acknowledged, %d failed during the move, %d missing on the new owner", c.flavor(), owner, target, len(acked), failed, missing)
	if missing > 0 {
		t.Fatalf("%d acknowledged writes are missing on the new owner", missing)
	}
	rel := false
	for _, r := range c.journal("witness") {
		if r.Event.Type == fsm.OwnerReleased && r.Result == fsm.ResultApplied {
			var d fsm.ReleaseData
			_ = r.Event.Payload(&d)
			rel = d.Fenced && strings.Contains(d.Reason, "switchover")
		}
	}
	if !rel {
		t.Fatal("no fenced switchover release in the journal")
	}
	c.assertNeverTwoHolders()
	if w := c.requireOneWriter(); w != target {
		t.Fatalf("the writable owner is %s, want the switchover target %s", w, target)
	}
}

func TestGracefulStopOfOwnerHandsOver(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	owner := c.waitOwner(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := c.procs[owner].Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := c.tracker.WaitHolder(ctx, other(owner)); err != nil {
		t.Fatalf("no handover after the owner stopped: %v", err)
	}
	c.assertNeverTwoHolders()
	if w := c.requireOneWriter(); w != other(owner) {
		t.Fatalf("the writable owner is %s, want %s", w, other(owner))
	}
}
