package probe_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/keepraft/keepraft/probe"
	"github.com/keepraft/keepraft/testenv"
)

// The MySQL flavor against a real MySQL (9.x from the lab's Debian sid root): 8.4/9.x syntax
// (SHOW REPLICA STATUS, START/STOP REPLICA, WAIT_FOR_EXECUTED_GTID_SET, super_read_only,
// rpl_semi_sync_source_enabled) and caching_sha2_password accounts over TCP.

// TestMySQLIntegGrantsLeastPrivilege: every daemon operation works with exactly
// probe.Grants(FlavorMySQL), and each privilege is needed by some operation.
func TestMySQLIntegGrantsLeastPrivilege(t *testing.T) {
	testGrantsLeastPrivilege(t, probe.FlavorMySQL, []grantDrop{
		{drop: "PROCESS", op: "fence", wantIs: probe.ErrNoProcessPriv},
		{drop: "CONNECTION_ADMIN", op: "fence", wantIs: probe.ErrNoConnectionAdmin},
		{drop: "SYSTEM_VARIABLES_ADMIN", op: "promote", wantErr: []uint16{1227}},
		{drop: "SYSTEM_VARIABLES_ADMIN", op: "fence", wantErr: []uint16{1227}},
		{drop: "SYSTEM_VARIABLES_ADMIN", op: "semi-sync", wantErr: []uint16{1227}},
		{drop: "REPLICATION CLIENT", op: "check", wantErr: []uint16{1227}},
		{drop: "REPLICATION CLIENT", op: "relay wait", wantErr: []uint16{1227}},
		{drop: "REPLICATION_SLAVE_ADMIN", op: "stop replication", wantErr: []uint16{1227}},
		{drop: "INSERT ON keepraft.*", op: "write check", wantErr: []uint16{1142}},
		{drop: "UPDATE ON keepraft.*", op: "write check", wantErr: []uint16{1142}},
		{drop: "CREATE ON keepraft.*", op: "ensure heartbeat", wantErr: []uint16{1044, 1142}},
	})
}

// TestMySQLIntegCheckFenceCatchUp: Check reads MySQL's variables and SHOW REPLICA STATUS,
// Fence sets super_read_only (root cannot write either) and kills the app's connections, and
// the peer catches up with WAIT_FOR_EXECUTED_GTID_SET.
func TestMySQLIntegCheckFenceCatchUp(t *testing.T) {
	a, b := newPairOf(t, probe.FlavorMySQL)
	const f = probe.FlavorMySQL
	adb, bdb := daemonDB(t, a), daemonDB(t, b)
	log := zaptest.NewLogger(t)
	h, err := probe.New(bdb, probe.Config{Flavor: f, Timeout: 2 * time.Second, WriteCheck: true}, log).Check(t.Context())
	if err != nil {
		t.Fatalf("Check: %+v, %v", h, err)
	}
	if !h.ReadOnly || h.ServerID != b.ServerID || !h.Replica.Configured || !h.Replica.IORunning || !h.Replica.SQLRunning ||
		h.Replica.MasterHost != a.Addr.Addr().String() || h.GTIDExecuted == "" || h.SemiSync != "OFF" {
		t.Errorf("Check of the replica: %+v", h)
	}
	if err := probe.Promote(t.Context(), adb, f); err != nil {
		t.Fatal(err)
	}
	app := appDB(t, a)
	for i := range 20 {
		if _, err := app.ExecContext(t.Context(), "INSERT INTO writes (origin, seq) VALUES ('mysql', ?)", i); err != nil {
			t.Fatalf("app insert %d: %v", i, err)
		}
	}
	conn, err := app.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// An open root session (root holds SYSTEM_USER, which the daemon cannot kill without):
	// Fence must not fail on it, and super_read_only stops root's writes anyway.
	rootConn, err := rootDB(t, a).Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer rootConn.Close()
	if err := rootConn.PingContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	final, err := probe.Fence(ctxT(t, 5*time.Second), adb, f, []string{testenv.AppUser, "root"})
	if err != nil {
		t.Fatalf("Fence: %v", err)
	}
	if err := conn.PingContext(t.Context()); err == nil {
		t.Error("the app's connection survived the fence")
	}
	if _, err := rootConn.ExecContext(t.Context(), "INSERT INTO kr.lab_check (origin) VALUES ('root session after fence')"); errNumber(err) != 1290 {
		t.Errorf("write of the open root session after Fence: %v, want error 1290", err)
	}
	if sro := mustQuery(t, a, "SELECT @@GLOBAL.super_read_only"); sro != "1" {
		t.Errorf("super_read_only after Fence = %s", sro)
	}
	if err := a.Exec(t.Context(), "INSERT INTO kr.lab_check (origin) VALUES ('root after fence')"); errNumber(err) != 1290 {
		t.Errorf("root write after Fence: %v, want error 1290", err)
	}
	c, err := probe.WaitCatchUp(t.Context(), bdb, f, final, 0, 10*time.Second)
	if err != nil || !c.Reached {
		t.Fatalf("WaitCatchUp(%s): %+v, %v", final, c, err)
	}
	if n := mustQuery(t, b, "SELECT COUNT(*) FROM kr.writes WHERE origin = 'mysql'"); n != "20" {
		t.Errorf("rows on the peer after the catch-up: %s, want 20", n)
	}
	// A target the peer lacks while its SQL thread is stopped: not reached, no wait.
	if err := probe.StopReplication(t.Context(), bdb); err != nil {
		t.Fatal(err)
	}
	extra := mustGTID(t, f, final).Union(mustGTID(t, f, "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5"))
	c, err = probe.WaitCatchUp(t.Context(), bdb, f, extra.String(), 0, 5*time.Second)
	if err != nil || c.Reached || c.Reason != "sql thread not running" || c.Waited > 2*time.Second {
		t.Errorf("WaitCatchUp with the SQL thread stopped: %+v, %v", c, err)
	}
	if err := probe.StartReplication(t.Context(), bdb); err != nil {
		t.Fatal(err)
	}
	c, err = probe.WaitCatchUp(t.Context(), bdb, f, extra.String(), 0, time.Second)
	if err != nil || c.Reached || c.Reason != "timeout" || c.Missing != "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5" {
		t.Errorf("WaitCatchUp of a set nobody has: %+v, %v", c, err)
	}
	if r, err := probe.WaitRelayApplied(t.Context(), bdb, f, 5*time.Second); err != nil || !r.Reached {
		t.Errorf("WaitRelayApplied: %+v, %v", r, err)
	}
	if pid, err := probe.ServerPID(t.Context(), adb); err != nil || pid != a.Proc.PID {
		t.Errorf("ServerPID = %d, %v; want %d", pid, err, a.Proc.PID)
	}
}

// TestMySQLIntegFenceAfterWriteCheckRead: a remote Fence between the write check's read of
// super_read_only and its upsert. The daemon's account does not bypass super_read_only on
// MySQL, so the upsert is refused (1290): the check must count that as a fenced server, not
// as a failed check, and nothing is written after the fence's GTID set.
func TestMySQLIntegFenceAfterWriteCheckRead(t *testing.T) {
	const f = probe.FlavorMySQL
	_, m := newServerOf(t, f)
	db := daemonDB(t, m)
	if err := probe.Promote(t.Context(), db, f); err != nil {
		t.Fatal(err)
	}
	p := probe.New(db, probe.Config{Flavor: f, Timeout: 5 * time.Second, WriteCheck: true}, zaptest.NewLogger(t))
	var once sync.Once
	var final string
	var ferr error
	probe.SetBeforeUpsert(p, func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			final, ferr = probe.Fence(ctx, db, f, nil)
		})
	})
	if h, err := p.Check(t.Context()); err != nil {
		t.Fatalf("Check racing a remote fence: %+v, %v", h, err)
	}
	if ferr != nil {
		t.Fatalf("Fence: %v", ferr)
	}
	if now := mustQuery(t, m, "SELECT @@GLOBAL.gtid_executed"); !mustGTID(t, f, final).Contains(mustGTID(t, f, now)) {
		t.Errorf("a write landed after the fence: final %q, server now %q", final, now)
	}
}

// TestMySQLIntegSemiSyncSwitch: SetSemiSyncMaster switches rpl_semi_sync_source_enabled
// (the semisync_source plugin) and Check reports Rpl_semi_sync_source_status.
func TestMySQLIntegSemiSyncSwitch(t *testing.T) {
	const f = probe.FlavorMySQL
	_, m := newServerOf(t, f)
	db := daemonDB(t, m)
	for _, on := range []bool{true, false} {
		changed, err := probe.SetSemiSyncMaster(t.Context(), db, on)
		if err != nil || !changed {
			t.Fatalf("SetSemiSyncMaster(%v): %v, %v", on, changed, err)
		}
		want := map[bool]string{true: "1", false: "0"}[on]
		if v := mustQuery(t, m, "SELECT @@GLOBAL.rpl_semi_sync_source_enabled"); v != want {
			t.Errorf("rpl_semi_sync_source_enabled = %s after SetSemiSyncMaster(%v)", v, on)
		}
		h, err := probe.New(db, probe.Config{Flavor: f, Timeout: 2 * time.Second}, zaptest.NewLogger(t)).Check(t.Context())
		wantStatus := map[bool]string{true: "ON", false: "OFF"}[on]
		if err != nil || h.SemiSync != wantStatus {
			t.Errorf("Check after SetSemiSyncMaster(%v): semi-sync %q, %v; want %s", on, h.SemiSync, err, wantStatus)
		}
	}
}
