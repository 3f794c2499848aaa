package probe_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap/zaptest"

	"github.com/keepraft/keepraft/probe"
	"github.com/keepraft/keepraft/testenv"
)

// The daemon account these tests create with exactly probe.Grants (not testenv's own daemon
// account, whose grants are broader).
const probeUser, probePass = "kprobe", "kprobe-pass"

// newServer starts one MariaDB on 127.0.0.1 (read_only=ON from my.cnf, no replication).
func newServer(t *testing.T) (*testenv.Lab, *testenv.MariaDB) {
	t.Helper()
	return newServerOf(t, probe.FlavorMariaDB)
}

// newServerOf starts one server of flavor f on 127.0.0.1 (read_only=ON, on MySQL also
// super_read_only=ON, from my.cnf; no replication). MySQL needs the lab's sid root: without
// it the test fails.
func newServerOf(t *testing.T, f probe.Flavor) (*testenv.Lab, *testenv.MariaDB) {
	t.Helper()
	if f == probe.FlavorMySQL {
		testenv.RequireMySQL(t)
	} else {
		testenv.Require(t)
	}
	lab := testenv.NewT(t, testenv.Options{NoNetwork: true})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	m, err := lab.StartMariaDB(ctx, nil, testenv.MariaDBOptions{Flavor: f})
	if err != nil {
		t.Fatalf("start %s: %v", f, err)
	}
	return lab, m
}

// newPair starts two MariaDB servers in GTID dual-master replication.
func newPair(t *testing.T) (*testenv.MariaDB, *testenv.MariaDB) {
	t.Helper()
	return newPairOf(t, probe.FlavorMariaDB)
}

// newPairOf starts two servers of flavor f in GTID dual-master replication.
func newPairOf(t *testing.T, f probe.Flavor) (*testenv.MariaDB, *testenv.MariaDB) {
	t.Helper()
	lab, a := newServerOf(t, f)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	b, err := lab.StartMariaDB(ctx, nil, testenv.MariaDBOptions{Flavor: f})
	if err != nil {
		t.Fatalf("start second %s: %v", f, err)
	}
	if err := lab.SetupDualMaster(ctx, a, b); err != nil {
		t.Fatalf("dual master: %v", err)
	}
	return a, b
}

// account creates user (unlogged, so it does not replicate) with the given GRANT statements and
// returns a pool for it built from probe.DSN.
func account(t *testing.T, m *testenv.MariaDB, user string, grants []string) *sql.DB {
	t.Helper()
	stmts := append([]string{fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", user, probePass)}, grants...)
	if err := m.ExecNoBinlog(t.Context(), stmts...); err != nil {
		t.Fatalf("create account %s: %v", user, err)
	}
	db, err := sql.Open("mysql", probe.DSN(m.Addr.Addr().String(), int(m.Addr.Port()), user, probePass, time.Second))
	if err != nil {
		t.Fatalf("open %s: %v", user, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// daemonDB is a pool for an account with exactly probe.Grants of m's flavor.
func daemonDB(t *testing.T, m *testenv.MariaDB) *sql.DB {
	t.Helper()
	return account(t, m, probeUser, probe.Grants(m.Flavor, probeUser, "%"))
}

// appDB is a pool for testenv's application account (no READ ONLY ADMIN).
func appDB(t *testing.T, m *testenv.MariaDB) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", m.DSN(testenv.AppUser, testenv.AppPass, testenv.AppSchema))
	if err != nil {
		t.Fatalf("open app: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func errNumber(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

func mustQuery(t *testing.T, m *testenv.MariaDB, q string) string {
	t.Helper()
	v, err := m.QueryString(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// mustGTID parses a GTID set or fails the test.
func mustGTID(t *testing.T, f probe.Flavor, s string) probe.GTIDSet {
	t.Helper()
	g, err := probe.ParseGTIDSet(f, s)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestIntegCheckHealthy(t *testing.T) {
	_, m := newServer(t)
	db := daemonDB(t, m)
	p := probe.New(db, probe.Config{Flavor: probe.FlavorMariaDB, Timeout: 2 * time.Second, WriteCheck: true,
		AppUsers: []string{testenv.AppUser, testenv.ReplUser}}, zaptest.NewLogger(t))

	h, err := p.Check(t.Context())
	if err != nil || !h.Up {
		t.Fatalf("Check = %+v, %v", h, err)
	}
	if !h.ReadOnly || h.ServerID != m.ServerID || h.DomainID != m.DomainID {
		t.Errorf("read_only=%v server_id=%d domain=%d, want true %d %d", h.ReadOnly, h.ServerID, h.DomainID, m.ServerID, m.DomainID)
	}
	if h.Replica.Configured || h.Replica.LagSeconds != -1 {
		t.Errorf("replica %+v on a server without a channel", h.Replica)
	}
	if h.SemiSync != "OFF" {
		t.Errorf("SemiSync = %q, want OFF (built in, disabled)", h.SemiSync)
	}
	// root and testenv's daemon account hold READ ONLY ADMIN; app and repl do not.
	if !slices.Contains(h.ReadOnlyAdminAccounts, "root@localhost") || !slices.Contains(h.ReadOnlyAdminAccounts, testenv.DaemonUser+"@%") ||
		slices.ContainsFunc(h.ReadOnlyAdminAccounts, func(s string) bool {
			return strings.HasPrefix(s, testenv.AppUser+"@") || strings.HasPrefix(s, testenv.ReplUser+"@")
		}) {
		t.Errorf("ReadOnlyAdminAccounts = %v, want root and %s but not app or repl", h.ReadOnlyAdminAccounts, testenv.DaemonUser)
	}
	if h.CheckedAt.IsZero() {
		t.Error("CheckedAt not set")
	}
	// The write check is skipped while read-only: the heartbeat table stays empty.
	if n := mustQuery(t, m, "SELECT COUNT(*) FROM keepraft.heartbeat"); n != "0" {
		t.Fatalf("heartbeat rows on a read-only server: %s", n)
	}

	if err := probe.Promote(t.Context(), db, probe.FlavorMariaDB); err != nil {
		t.Fatal(err)
	}
	h, err = p.Check(t.Context())
	if err != nil || h.ReadOnly {
		t.Fatalf("after Promote: %+v, %v", h, err)
	}
	if n := mustQuery(t, m, fmt.Sprintf("SELECT COUNT(*) FROM keepraft.heartbeat WHERE server_id = %d", m.ServerID)); n != "1" {
		t.Fatalf("heartbeat rows after a writable check: %s", n)
	}
	// Check reads the GTID before it writes, so the next check sees the write.
	g, err := probe.ParseGTIDSet(probe.FlavorMariaDB, h.GTIDExecuted)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := p.Check(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	g2 := mustGTID(t, probe.FlavorMariaDB, h2.GTIDExecuted)
	if !g2.Contains(g) || g.Contains(g2) {
		t.Errorf("the write check did not advance the GTID: %q then %q", g, g2)
	}
	if g2.Domain(m.DomainID).IsEmpty() {
		t.Errorf("GTIDExecuted %q has no entry in the server's domain %d after the write check", g2, m.DomainID)
	}
}

func TestIntegCheckScript(t *testing.T) {
	_, m := newServer(t)
	db := daemonDB(t, m)
	tests := []struct {
		name   string
		give   string
		wantUp bool
	}{
		{"exit 0", "exit 0", true},
		{"exit 3", "echo broken >&2; exit 3", false},
		{"hangs past the timeout", "sleep 30", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := probe.New(db, probe.Config{Flavor: probe.FlavorMariaDB, Timeout: time.Second, CheckScript: tt.give}, zaptest.NewLogger(t))
			start := time.Now()
			h, err := p.Check(t.Context())
			if h.Up != tt.wantUp || (err == nil) != tt.wantUp {
				t.Fatalf("Check = %+v, %v; want Up=%v", h, err, tt.wantUp)
			}
			if !tt.wantUp && !strings.Contains(h.Err, "check script") {
				t.Errorf("Err %q does not name the script", h.Err)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("Check took %v with a 1 s timeout", took)
			}
		})
	}
}

func TestIntegCheckDownBounded(t *testing.T) {
	tests := []struct {
		name  string
		fault func(*testenv.MariaDB) error
	}{
		{"killed", func(m *testenv.MariaDB) error { return m.Kill() }},
		// SIGSTOP: connections stay open and nothing answers, so only the timeout ends Check.
		{"frozen", func(m *testenv.MariaDB) error { return m.Proc.Freeze() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, m := newServer(t)
			db := daemonDB(t, m)
			const timeout = 500 * time.Millisecond
			p := probe.New(db, probe.Config{Flavor: probe.FlavorMariaDB, Timeout: timeout}, zaptest.NewLogger(t))
			if h, err := p.Check(t.Context()); err != nil {
				t.Fatalf("healthy Check = %+v, %v", h, err)
			}
			if err := tt.fault(m); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = m.Proc.Thaw() }) // so the lab can stop it
			for i := range 3 {
				start := time.Now()
				h, err := p.Check(t.Context())
				took := time.Since(start)
				if h.Up || err == nil || h.Err == "" {
					t.Fatalf("check %d after the fault: %+v, %v", i, h, err)
				}
				if took > timeout+300*time.Millisecond {
					t.Errorf("check %d took %v, timeout %v", i, took, timeout)
				}
				t.Logf("check %d: down after %v: %s", i, took, h.Err)
			}
		})
	}
}

func TestIntegReadOnlyAdminAccounts(t *testing.T) {
	_, m := newServer(t)
	db := daemonDB(t, m)
	if err := m.ExecNoBinlog(t.Context(),
		"CREATE USER allp@'%' IDENTIFIED BY 'x'", "GRANT ALL PRIVILEGES ON *.* TO allp@'%'",
		"CREATE USER roa@'10.%' IDENTIFIED BY 'x'", "GRANT READ_ONLY ADMIN ON *.* TO roa@'10.%'",
		"CREATE USER sup@'%' IDENTIFIED BY 'x'", "GRANT SUPER ON *.* TO sup@'%'",
		"CREATE ROLE inner_role", "GRANT READ_ONLY ADMIN ON *.* TO inner_role",
		"CREATE ROLE outer_role", "GRANT inner_role TO outer_role",
		"CREATE USER viarole@'%' IDENTIFIED BY 'x'", "GRANT outer_role TO viarole@'%'",
	); err != nil {
		t.Fatal(err)
	}
	// The list does not depend on the configured application accounts: every account but the
	// prober's own and the system accounts that can write under read_only is listed, root and
	// testenv's own daemon account "keepraft" (not this prober's) included. sup is not: SUPER no
	// longer implies READ ONLY ADMIN in 10.11.
	want := []string{"allp@%", testenv.DaemonUser + "@%", "roa@10.%", "viarole@%"}
	tests := []struct {
		name     string
		appUsers []string
	}{
		{"every non-system account", nil},
		{"named app accounts", []string{"app", "allp"}},
		{"user@host form", []string{"roa@10.%", "sup"}},
		{"no holder among them", []string{"app", "sup"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := probe.New(db, probe.Config{Flavor: probe.FlavorMariaDB, Timeout: 2 * time.Second, AppUsers: tt.appUsers}, zaptest.NewLogger(t))
			h, err := p.Check(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			// mariadb-install-db creates root for localhost, 127.0.0.1, ::1 and the host name.
			others := slices.DeleteFunc(slices.Clone(h.ReadOnlyAdminAccounts), func(s string) bool { return strings.HasPrefix(s, "root@") })
			if !slices.Equal(others, want) || !slices.Contains(h.ReadOnlyAdminAccounts, "root@localhost") {
				t.Errorf("ReadOnlyAdminAccounts = %v, want root@localhost and %v", h.ReadOnlyAdminAccounts, want)
			}
		})
	}

	// Why it matters: with read_only=ON an ALL PRIVILEGES account still writes, SUPER alone
	// does not (MariaDB 10.11).
	for _, c := range []struct {
		user    string
		wantErr uint16
	}{{"allp", 0}, {"sup", 1290}} {
		udb, err := sql.Open("mysql", probe.DSN("127.0.0.1", int(m.Addr.Port()), c.user, "x", time.Second))
		if err != nil {
			t.Fatal(err)
		}
		_, err = udb.ExecContext(t.Context(), "INSERT INTO kr.writes (origin) VALUES ('"+c.user+"')")
		udb.Close()
		if errNumber(err) != c.wantErr {
			t.Errorf("%s writing with read_only=ON: %v, want error number %d", c.user, err, c.wantErr)
		}
	}
}

func TestIntegFence(t *testing.T) {
	_, m := newServer(t)
	db := daemonDB(t, m)
	app := appDB(t, m)
	if err := probe.Promote(t.Context(), db, probe.FlavorMariaDB); err != nil {
		t.Fatal(err)
	}
	// An idle application connection and one with an open, uncommitted transaction.
	idle, err := app.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := idle.ExecContext(t.Context(), "INSERT INTO kr.writes (origin) VALUES ('idle')"); err != nil {
		t.Fatal(err)
	}
	tx, err := app.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(t.Context(), "INSERT INTO kr.writes (origin) VALUES ('open tx')"); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	final, err := probe.Fence(ctxT(t, 5*time.Second), db, probe.FlavorMariaDB, nil)
	if err != nil {
		t.Fatalf("Fence: %v", err)
	}
	t.Logf("fenced in %v, final gtid %q", time.Since(start), final)
	if got := mustQuery(t, m, "SELECT @@read_only"); got != "1" {
		t.Fatalf("read_only = %s after Fence", got)
	}
	// Both application connections are gone.
	if n := mustQuery(t, m, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'"); n != "0" {
		t.Errorf("%s application connections left after Fence", n)
	}
	if _, err := idle.ExecContext(t.Context(), "SELECT 1"); err == nil {
		t.Error("the idle application connection still works after Fence")
	}
	if err := tx.Commit(); err == nil {
		t.Error("the open transaction committed after Fence")
	}
	// A new application connection cannot write: 1290 (read_only).
	_, err = app.ExecContext(t.Context(), "INSERT INTO kr.writes (origin) VALUES ('after fence')")
	if errNumber(err) != 1290 {
		t.Errorf("write after Fence: %v, want error 1290", err)
	}
	if n := mustQuery(t, m, "SELECT COUNT(*) FROM kr.writes WHERE origin IN ('open tx', 'after fence')"); n != "0" {
		t.Errorf("%s rows written after the fence", n)
	}
	// The final GTID is final: it matches the server after the failed writes, and a second
	// Fence (idempotent) returns it again.
	have := mustQuery(t, m, "SELECT @@gtid_binlog_pos")
	if fg, hg := mustGTID(t, probe.FlavorMariaDB, final), mustGTID(t, probe.FlavorMariaDB, have); !fg.Contains(hg) || !hg.Contains(fg) {
		t.Errorf("gtid_binlog_pos %q moved from the fenced %q", have, final)
	}
	again, err := probe.Fence(ctxT(t, 5*time.Second), db, probe.FlavorMariaDB, nil)
	if err != nil || again != final {
		t.Errorf("second Fence = %q, %v; want %q", again, err, final)
	}
}

// An application account with an open transaction when read_only is set (without the kill)
// fails at COMMIT with 1290: the fact that makes the GTID read after fencing final.
func TestIntegReadOnlyFailsOpenCommit(t *testing.T) {
	_, m := newServer(t)
	db := daemonDB(t, m)
	app := appDB(t, m)
	if err := probe.Promote(t.Context(), db, probe.FlavorMariaDB); err != nil {
		t.Fatal(err)
	}
	tx, err := app.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(t.Context(), "INSERT INTO kr.writes (origin) VALUES ('open tx')"); err != nil {
		t.Fatal(err)
	}
	if err := m.Exec(t.Context(), "SET GLOBAL read_only = 1"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); errNumber(err) != 1290 {
		t.Errorf("COMMIT after read_only=1: %v, want error 1290", err)
	}
}

func TestIntegWaitCatchUp(t *testing.T) {
	a, b := newPair(t)
	adb, bdb := daemonDB(t, a), daemonDB(t, b)
	const f = probe.FlavorMariaDB
	write := func(n int) {
		t.Helper()
		for i := range n {
			if err := a.Exec(t.Context(), "INSERT INTO kr.writes (origin, seq) VALUES ('a', ?)", i); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := probe.Promote(t.Context(), adb, f); err != nil {
		t.Fatal(err)
	}
	write(20)
	target, err := probe.Fence(ctxT(t, 5*time.Second), adb, f, nil)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("reached", func(t *testing.T) {
		c, err := probe.WaitCatchUp(t.Context(), bdb, f, target, a.DomainID, 5*time.Second)
		if err != nil || !c.Reached || c.Missing != "" {
			t.Fatalf("WaitCatchUp = %+v, %v", c, err)
		}
		want := mustGTID(t, f, target).Domain(a.DomainID)
		if c.Target != want.String() {
			t.Errorf("Target = %q, want %q (only the old owner's domain)", c.Target, want)
		}
		if !mustGTID(t, f, c.Applied).Contains(want) {
			t.Errorf("Applied %q lacks %q", c.Applied, want)
		}
		if n := mustQuery(t, b, "SELECT COUNT(*) FROM kr.writes WHERE origin = 'a'"); n != "20" {
			t.Errorf("replica has %s rows, want 20", n)
		}
		// The check on a replica shows the channel.
		h, err := probe.New(bdb, probe.Config{Flavor: f, Timeout: 2 * time.Second}, zaptest.NewLogger(t)).Check(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		r := h.Replica
		if !r.Configured || !r.IORunning || !r.SQLRunning || r.MasterHost != "127.0.0.1" || r.LagSeconds < 0 || r.LastError != "" {
			t.Errorf("replica status %+v", r)
		}
	})

	t.Run("sql thread stopped", func(t *testing.T) {
		if err := b.Exec(t.Context(), "STOP SLAVE SQL_THREAD"); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := b.Exec(context.Background(), "START SLAVE SQL_THREAD"); err != nil {
				t.Error(err)
			}
		}()
		if err := probe.Promote(t.Context(), adb, f); err != nil {
			t.Fatal(err)
		}
		write(3)
		target, err := probe.Fence(ctxT(t, 5*time.Second), adb, f, nil)
		if err != nil {
			t.Fatal(err)
		}
		c, err := probe.WaitCatchUp(t.Context(), bdb, f, target, a.DomainID, 5*time.Second)
		if err != nil || c.Reached || c.Reason != "sql thread not running" || c.Missing == "" {
			t.Fatalf("WaitCatchUp = %+v, %v", c, err)
		}
		if c.Waited > time.Second {
			t.Errorf("waited %v with the SQL thread stopped, want an immediate answer", c.Waited)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		// Let b apply what the previous step wrote, then stop the IO thread only: with the
		// SQL thread running, the next target never arrives.
		prev, err := probe.Fence(ctxT(t, 5*time.Second), adb, f, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := probe.WaitCatchUp(t.Context(), bdb, f, prev, a.DomainID, 10*time.Second); err != nil || !c.Reached {
			t.Fatalf("catch up before the timeout case: %+v, %v", c, err)
		}
		if err := b.Exec(t.Context(), "STOP SLAVE IO_THREAD"); err != nil {
			t.Fatal(err)
		}
		if err := probe.Promote(t.Context(), adb, f); err != nil {
			t.Fatal(err)
		}
		write(2)
		target, err := probe.Fence(ctxT(t, 5*time.Second), adb, f, nil)
		if err != nil {
			t.Fatal(err)
		}
		const wait = time.Second
		c, err := probe.WaitCatchUp(t.Context(), bdb, f, target, a.DomainID, wait)
		if err != nil || c.Reached || c.Reason != "timeout" || c.Missing == "" {
			t.Fatalf("WaitCatchUp = %+v, %v", c, err)
		}
		if c.Waited < wait || c.Waited > wait+time.Second {
			t.Errorf("waited %v, want about %v", c.Waited, wait)
		}
		// Those writes are what a rejoining a would bring back.
		extra := probe.ExtraTransactions(mustGTID(t, f, target), mustGTID(t, f, c.Applied), a.DomainID)
		if extra.IsEmpty() || extra.String() != c.Missing {
			t.Errorf("ExtraTransactions = %q, Missing = %q", extra, c.Missing)
		}
		if n := probe.CountMissing(mustGTID(t, f, c.Applied), mustGTID(t, f, target).Domain(a.DomainID)); n != 2 {
			t.Errorf("CountMissing = %d, want 2", n)
		}
		// Once the channel runs again, the same wait succeeds.
		if err := probe.StartReplication(t.Context(), bdb); err != nil {
			t.Fatal(err)
		}
		c, err = probe.WaitCatchUp(t.Context(), bdb, f, target, a.DomainID, 10*time.Second)
		if err != nil || !c.Reached {
			t.Fatalf("after StartReplication: %+v, %v", c, err)
		}
	})

	t.Run("stop and start replication", func(t *testing.T) {
		if err := probe.StopReplication(t.Context(), bdb); err != nil {
			t.Fatal(err)
		}
		if err := probe.StopReplication(t.Context(), bdb); err != nil {
			t.Errorf("second StopReplication: %v", err)
		}
		io, sqlRun, _, err := testenv.ReplicationStatus(t.Context(), b)
		if err != nil || io || sqlRun {
			t.Fatalf("after StopReplication io=%v sql=%v err=%v", io, sqlRun, err)
		}
		if err := probe.StartReplication(t.Context(), bdb); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			io, sqlRun, _, err = testenv.ReplicationStatus(t.Context(), b)
			if err == nil && io && sqlRun {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after StartReplication io=%v sql=%v err=%v", io, sqlRun, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// grantDrop is one case of the least-privilege tests: without drop, op fails.
type grantDrop struct {
	drop    string // privilege, or "PRIV ON object"
	op      string
	wantErr []uint16 // access errors: 1227 privilege, 1142 table, 1044 database, 1095 thread owner
	wantIs  error
}

// TestIntegGrantsLeastPrivilege runs every daemon operation with exactly probe.Grants, then
// removes one privilege at a time and shows that some operation then fails.
func TestIntegGrantsLeastPrivilege(t *testing.T) {
	testGrantsLeastPrivilege(t, probe.FlavorMariaDB, []grantDrop{
		{drop: "PROCESS", op: "fence", wantIs: probe.ErrNoProcessPriv},
		{drop: "CONNECTION ADMIN", op: "fence", wantErr: []uint16{1095}},
		{drop: "READ_ONLY ADMIN", op: "promote", wantErr: []uint16{1227}},
		{drop: "READ_ONLY ADMIN", op: "fence", wantErr: []uint16{1227}},
		{drop: "SLAVE MONITOR", op: "check", wantErr: []uint16{1227}},
		{drop: "SLAVE MONITOR", op: "relay wait", wantErr: []uint16{1227}},
		{drop: "SELECT ON mysql.global_priv", op: "fence", wantErr: []uint16{1142}},
		{drop: "REPLICATION SLAVE ADMIN", op: "stop replication", wantErr: []uint16{1227}},
		{drop: "REPLICATION MASTER ADMIN", op: "semi-sync", wantErr: []uint16{1227}},
		{drop: "SELECT ON mysql.global_priv", op: "check", wantErr: []uint16{1142}},
		{drop: "SELECT ON mysql.roles_mapping", op: "check", wantErr: []uint16{1142}},
		{drop: "INSERT ON keepraft.*", op: "write check", wantErr: []uint16{1142}},
		{drop: "UPDATE ON keepraft.*", op: "write check", wantErr: []uint16{1142}},
		{drop: "SELECT ON keepraft.*", op: "write check", wantErr: []uint16{1143}},
		{drop: "CREATE ON keepraft.*", op: "ensure heartbeat", wantErr: []uint16{1044, 1142}},
	})
}

// testGrantsLeastPrivilege is the least-privilege test on flavor f: every operation works with
// probe.Grants(f), and each case's operation fails without its privilege.
func testGrantsLeastPrivilege(t *testing.T, f probe.Flavor, tests []grantDrop) {
	a, b := newPairOf(t, f)
	grants := probe.Grants(f, probeUser, "%")
	for _, g := range grants {
		t.Log(g)
	}
	bdb := account(t, b, probeUser, grants)
	adb := account(t, a, probeUser, grants)
	log := zaptest.NewLogger(t)

	// The full set: every operation works.
	if err := probe.Promote(t.Context(), adb, f); err != nil {
		t.Fatalf("Promote: %v", err)
	}
	if h, err := probe.New(adb, probe.Config{Flavor: f, Timeout: 2 * time.Second, WriteCheck: true}, log).Check(t.Context()); err != nil {
		t.Fatalf("Check with write check: %+v, %v", h, err)
	}
	if err := probe.EnsureHeartbeat(t.Context(), adb); err != nil {
		t.Fatalf("EnsureHeartbeat: %v", err)
	}
	final, err := probe.Fence(ctxT(t, 5*time.Second), adb, f, nil)
	if err != nil {
		t.Fatalf("Fence: %v", err)
	}
	if c, err := probe.WaitCatchUp(t.Context(), bdb, f, final, a.DomainID, 5*time.Second); err != nil || !c.Reached {
		t.Fatalf("WaitCatchUp: %+v, %v", c, err)
	}
	if c, err := probe.WaitRelayApplied(t.Context(), bdb, f, 5*time.Second); err != nil || !c.Reached {
		t.Fatalf("WaitRelayApplied: %+v, %v", c, err)
	}
	if ro, err := probe.ReadOnly(t.Context(), adb, f); err != nil || !ro {
		t.Fatalf("ReadOnly of the fenced server: %v, %v", ro, err)
	}
	if _, err := probe.New(adb, probe.Config{Flavor: f, Timeout: 2 * time.Second, WriteCheck: true}, log).Fence(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("Prober.Fence: %v", err)
	}
	for _, on := range []bool{true, false} {
		if changed, err := probe.SetSemiSyncMaster(t.Context(), adb, on); err != nil || !changed {
			t.Fatalf("SetSemiSyncMaster(%v): changed=%v, %v", on, changed, err)
		}
	}
	if err := probe.StopReplication(t.Context(), bdb); err != nil {
		t.Fatalf("StopReplication: %v", err)
	}
	if err := probe.StartReplication(t.Context(), bdb); err != nil {
		t.Fatalf("StartReplication: %v", err)
	}
	if h, err := probe.New(bdb, probe.Config{Flavor: f, Timeout: 2 * time.Second}, log).Check(t.Context()); err != nil || !h.Replica.Configured {
		t.Fatalf("Check on the replica: %+v, %v", h, err)
	}

	// One privilege less: the named operation fails with an access error.
	op := map[string]func(db *sql.DB) error{
		"check": func(db *sql.DB) error {
			_, err := probe.New(db, probe.Config{Flavor: f, Timeout: 2 * time.Second}, log).Check(t.Context())
			return err
		},
		"write check": func(db *sql.DB) error {
			_, err := probe.New(db, probe.Config{Flavor: f, Timeout: 2 * time.Second, WriteCheck: true}, log).Check(t.Context())
			return err
		},
		"ensure heartbeat": func(db *sql.DB) error { return probe.EnsureHeartbeat(t.Context(), db) },
		"fence": func(db *sql.DB) error {
			_, err := probe.Fence(ctxT(t, 5*time.Second), db, f, nil)
			return err
		},
		"promote": func(db *sql.DB) error { return probe.Promote(t.Context(), db, f) },
		"relay wait": func(db *sql.DB) error {
			_, err := probe.WaitRelayApplied(t.Context(), db, f, time.Second)
			return err
		},
		"stop replication": func(db *sql.DB) error { return probe.StopReplication(t.Context(), db) },
		"semi-sync": func(db *sql.DB) error {
			_, err := probe.SetSemiSyncMaster(t.Context(), db, true)
			if err == nil {
				_, err = probe.SetSemiSyncMaster(t.Context(), db, false)
			}
			return err
		},
	}
	app := appDB(t, b)
	for i, tt := range tests {
		t.Run(tt.drop+" "+tt.op, func(t *testing.T) {
			// Back to a writable b with one live application connection (for the kill).
			open := []string{"SET GLOBAL read_only = 0"}
			if f == probe.FlavorMySQL {
				open = []string{"SET GLOBAL super_read_only = 0", "SET GLOBAL read_only = 0"}
			}
			for _, s := range open {
				if err := b.Exec(t.Context(), s); err != nil {
					t.Fatal(err)
				}
			}
			conn, err := app.Conn(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := conn.PingContext(t.Context()); err != nil {
				t.Fatal(err)
			}
			reduced := withoutPriv(t, grants, tt.drop)
			db := account(t, b, fmt.Sprintf("kless%d", i), rename(reduced, probeUser, fmt.Sprintf("kless%d", i)))
			err = op[tt.op](db)
			if err == nil {
				t.Fatalf("%s without %s succeeded", tt.op, tt.drop)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v, want %v", err, tt.wantIs)
			}
			if tt.wantErr != nil && !slices.Contains(tt.wantErr, errNumber(err)) {
				t.Errorf("error %v (number %d), want one of %v", err, errNumber(err), tt.wantErr)
			}
			t.Logf("without %s: %v", tt.drop, err)
		})
	}
}

// withoutPriv removes one privilege from the GRANT statements. drop is "PRIV" (from ON *.*) or
// "PRIV ON object"; a statement left with no privilege is dropped.
func withoutPriv(t *testing.T, grants []string, drop string) []string {
	t.Helper()
	priv, obj, found := strings.Cut(drop, " ON ")
	if !found {
		obj = "*.*"
	}
	var out []string
	removed := false
	for _, g := range grants {
		body := strings.TrimPrefix(g, "GRANT ")
		privs, rest, _ := strings.Cut(body, " ON ")
		o, _, _ := strings.Cut(rest, " TO ")
		list := strings.Split(privs, ", ")
		if o == obj && slices.Contains(list, priv) {
			list = slices.DeleteFunc(list, func(p string) bool { return p == priv })
			removed = true
		}
		if len(list) > 0 {
			out = append(out, "GRANT "+strings.Join(list, ", ")+" ON "+rest)
		}
	}
	if !removed {
		t.Fatalf("%q is not in %q", drop, grants)
	}
	return out
}

func rename(grants []string, from, to string) []string {
	out := make([]string, len(grants))
	for i, g := range grants {
		out[i] = strings.Replace(g, "'"+from+"'@", "'"+to+"'@", 1)
	}
	return out
}

// A running application write would hold off the global read lock that read_only needs: Fence
// kills the application connections first, so it neither waits for the lock nor lets the write
// commit. (Before, it set read_only first and waited out lock_wait_timeout; under load the
// daemon's own deadline often expired first and the fence failed.)
func TestIntegFenceBlockedByRunningWrite(t *testing.T) {
	_, m := newServer(t)
	db := daemonDB(t, m)
	app := appDB(t, m)
	if err := probe.Promote(t.Context(), db, probe.FlavorMariaDB); err != nil {
		t.Fatal(err)
	}
	slow := make(chan error, 1)
	go func() {
		_, err := app.ExecContext(t.Context(), "INSERT INTO kr.writes (origin) SELECT IF(SLEEP(20) = 0, 'slow', 'x')")
		slow <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for mustQuery(t, m, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app' AND INFO LIKE 'INSERT%'") != "1" {
		if time.Now().After(deadline) {
			t.Fatal("the slow insert did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	final, err := probe.Fence(ctxT(t, 10*time.Second), db, probe.FlavorMariaDB, nil)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Fence: %v", err)
	}
	t.Logf("fenced in %v (lock wait %v), final gtid %q", took, probe.FenceLockWait, final)
	if took >= probe.FenceLockWait {
		t.Errorf("Fence took %v, want less than the lock wait %v: the write's connection is killed first", took, probe.FenceLockWait)
	}
	select {
	case err := <-slow:
		if err == nil {
			t.Error("the slow insert succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the slow insert still runs after Fence")
	}
	if n := mustQuery(t, m, "SELECT COUNT(*) FROM kr.writes WHERE origin = 'slow'"); n != "0" {
		t.Errorf("the slow insert wrote %s rows", n)
	}
	if got := mustQuery(t, m, "SELECT @@read_only"); got != "1" {
		t.Errorf("read_only = %s after Fence", got)
	}
}

// TestIntegCheckRereadsOnRoleChange: the part of a check read every 500 ms (replica and
// semi-sync status) is read again at once when read_only changed since: a server that
// was just promoted with semi-sync switched on reports ON on its first writable check,
// not the OFF it had as a standby.
func TestIntegCheckRereadsOnRoleChange(t *testing.T) {
	_, m := newServer(t)
	db := daemonDB(t, m)
	p := probe.New(db, probe.Config{Flavor: probe.FlavorMariaDB, Timeout: 2 * time.Second}, zaptest.NewLogger(t))
	if h, err := p.Check(t.Context()); err != nil || !h.ReadOnly || h.SemiSync != "OFF" {
		t.Fatalf("standby check = read_only %v semi-sync %q, %v; want true, OFF", h.ReadOnly, h.SemiSync, err)
	}
	if _, err := probe.SetSemiSyncMaster(t.Context(), db, true); err != nil {
		t.Fatal(err)
	}
	if err := probe.Promote(t.Context(), db, probe.FlavorMariaDB); err != nil {
		t.Fatal(err)
	}
	if h, err := p.Check(t.Context()); err != nil || h.ReadOnly || h.SemiSync != "ON" {
		t.Fatalf("first check after the promotion = read_only %v semi-sync %q, %v; want false, ON", h.ReadOnly, h.SemiSync, err)
	}
}
