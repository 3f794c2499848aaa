package probe_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap/zaptest"

	"github.com/keepraft/keepraft/probe"
	"github.com/keepraft/keepraft/testenv"
)

// rootDB is a pool for MariaDB's root account over the unix socket, separate from testenv's own.
func rootDB(t *testing.T, m *testenv.MariaDB) *sql.DB {
	t.Helper()
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "unix", m.Socket()
	cfg.Timeout = 2 * time.Second
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { db.Close() })
	return db
}

// An open root connection (root holds ALL PRIVILEGES, so READ ONLY ADMIN) is flagged by Check and
// killed by Fence even when the application accounts are configured without it; replication
// threads and the daemon's other connections survive.
func TestIntegFenceKillsReadOnlyAdmins(t *testing.T) {
	a, b := newPair(t)
	const f = probe.FlavorMariaDB
	db := daemonDB(t, a)
	daemonDB(t, b)
	appUsers := []string{testenv.AppUser}
	if err := probe.Promote(t.Context(), db, f); err != nil {
		t.Fatal(err)
	}
	h, err := probe.New(db, probe.Config{Flavor: f, Timeout: 2 * time.Second, AppUsers: appUsers}, zaptest.NewLogger(t)).Check(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(h.ReadOnlyAdminAccounts, "root@localhost") {
		t.Errorf("ReadOnlyAdminAccounts = %v, want root@localhost among them", h.ReadOnlyAdminAccounts)
	}
	if slices.ContainsFunc(h.ReadOnlyAdminAccounts, func(s string) bool {
		return strings.HasPrefix(s, probeUser+"@") || strings.HasPrefix(s, "mariadb.sys@")
	}) {
		t.Errorf("ReadOnlyAdminAccounts = %v lists the daemon's own or a system account", h.ReadOnlyAdminAccounts)
	}

	root, err := rootDB(t, a).Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, err := root.ExecContext(t.Context(), "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := root.ExecContext(t.Context(), "INSERT INTO kr.writes (origin) VALUES ('root open tx')"); err != nil {
		t.Fatal(err)
	}
	var rootID int64
	if err := root.QueryRowContext(t.Context(), "SELECT CONNECTION_ID()").Scan(&rootID); err != nil {
		t.Fatal(err)
	}
	own, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	if err := own.PingContext(t.Context()); err != nil {
		t.Fatal(err)
	}

	final, err := probe.Fence(ctxT(t, 5*time.Second), db, f, appUsers)
	if err != nil {
		t.Fatalf("Fence: %v", err)
	}
	if _, err := root.ExecContext(t.Context(), "COMMIT"); err == nil {
		t.Error("root's open transaction committed after Fence")
	}
	if n := mustQuery(t, a, fmt.Sprintf("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %d", rootID)); n != "0" {
		t.Errorf("root connection %d still open after Fence", rootID)
	}
	if n := mustQuery(t, a, "SELECT COUNT(*) FROM kr.writes WHERE origin = 'root open tx'"); n != "0" {
		t.Errorf("root's open transaction wrote %s rows", n)
	}
	if err := own.PingContext(t.Context()); err != nil {
		t.Errorf("the daemon's own other connection was killed: %v", err)
	}
	// Replication threads on a (its channel from b) and the dump thread serving b survive.
	if io, sqlRun, lastErr, err := testenv.ReplicationStatus(t.Context(), a); err != nil || !io || !sqlRun {
		t.Errorf("a's replication after Fence: io=%v sql=%v %q %v", io, sqlRun, lastErr, err)
	}
	if n := mustQuery(t, a, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'"); n != "1" {
		t.Errorf("%s binlog dump threads on a after Fence, want 1", n)
	}
	if io, sqlRun, lastErr, err := testenv.ReplicationStatus(t.Context(), b); err != nil || !io || !sqlRun {
		t.Errorf("b's replication from a after Fence: io=%v sql=%v %q %v", io, sqlRun, lastErr, err)
	}
	if have := mustQuery(t, a, "SELECT @@gtid_binlog_pos"); !sameGTID(t, final, have) {
		t.Errorf("gtid_binlog_pos %q moved from the fenced %q", have, final)
	}
}

func sameGTID(t *testing.T, x, y string) bool {
	t.Helper()
	gx, gy := mustGTID(t, probe.FlavorMariaDB, x), mustGTID(t, probe.FlavorMariaDB, y)
	return gx.Contains(gy) && gy.Contains(gx)
}

// A write check that read read_only=0 just before a Fence must not write after the GTID set that
// Fence returns. The hook runs a Fence between the write check's read of read_only and its upsert:
// Prober.Fence waits for the write check; a Fence from another session (a remote fence) runs at
// once, and the upsert then sees read_only=1 and inserts nothing.
func TestIntegFenceAfterWriteCheckRead(t *testing.T) {
	const f = probe.FlavorMariaDB
	tests := []struct {
		name          string
		fence         func(ctx context.Context, p *probe.Prober, db *sql.DB) (string, error)
		wantHeartbeat bool // the racing write check's heartbeat is in the final set
	}{
		{"Prober.Fence", func(ctx context.Context, p *probe.Prober, _ *sql.DB) (string, error) { return p.Fence(ctx) }, true},
		{"remote Fence", func(ctx context.Context, _ *probe.Prober, db *sql.DB) (string, error) {
			return probe.Fence(ctx, db, f, nil)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, m := newServer(t)
			db := daemonDB(t, m)
			if err := probe.Promote(t.Context(), db, f); err != nil {
				t.Fatal(err)
			}
			p := probe.New(db, probe.Config{Flavor: f, Timeout: 5 * time.Second, WriteCheck: true}, zaptest.NewLogger(t))
			type result struct {
				gtid string
				err  error
			}
			fenced := make(chan result, 1)
			var once sync.Once
			probe.SetBeforeUpsert(p, func() {
				once.Do(func() {
					go func() {
						g, err := tt.fence(ctxT(t, 10*time.Second), p, db)
						fenced <- result{g, err}
					}()
					// Let the fence finish if nothing holds it back.
					select {
					case r := <-fenced:
						fenced <- r
					case <-time.After(1500 * time.Millisecond):
					}
				})
			})
			before := mustQuery(t, m, "SELECT @@gtid_binlog_pos")
			if h, err := p.Check(t.Context()); err != nil {
				t.Fatalf("Check: %+v, %v", h, err)
			}
			r := <-fenced
			if r.err != nil {
				t.Fatalf("Fence: %v", r.err)
			}
			after := mustQuery(t, m, "SELECT @@gtid_binlog_pos")
			if !sameGTID(t, r.gtid, after) {
				t.Errorf("a write landed after the fence: final %q, server now %q", r.gtid, after)
			}
			if got := !sameGTID(t, before, after); got != tt.wantHeartbeat {
				t.Errorf("heartbeat written = %v (gtid %q then %q), want %v", got, before, after, tt.wantHeartbeat)
			}
			// Later checks of the fenced server write nothing.
			if _, err := p.Check(t.Context()); err != nil {
				t.Fatal(err)
			}
			if now := mustQuery(t, m, "SELECT @@gtid_binlog_pos"); !sameGTID(t, r.gtid, now) {
				t.Errorf("a check of the fenced server wrote: %q then %q", r.gtid, now)
			}
		})
	}
}

func TestIntegReadOnly(t *testing.T) {
	_, m := newServer(t)
	const f = probe.FlavorMariaDB
	db := daemonDB(t, m)
	steps := []struct {
		name string
		do   func() error
		want bool
	}{
		{"started read-only", func() error { return nil }, true},
		{"promoted", func() error { return probe.Promote(t.Context(), db, f) }, false},
		{"fenced", func() error { _, err := probe.Fence(ctxT(t, 5*time.Second), db, f, nil); return err }, true},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		got, err := probe.ReadOnly(t.Context(), db, f)
		if err != nil || got != s.want {
			t.Errorf("%s: ReadOnly = %v, %v; want %v", s.name, got, err, s.want)
		}
	}
	if _, err := probe.ReadOnly(t.Context(), db, probe.Flavor("oracle")); err == nil {
		t.Error("ReadOnly with an unknown flavor succeeded")
	}

	// Without a replica there is no relay log to wait for.
	c, err := probe.WaitRelayApplied(t.Context(), db, f, time.Second)
	if err != nil || !c.Reached || c.Received != "" || c.Applied != "" {
		t.Errorf("WaitRelayApplied without a replica = %+v, %v", c, err)
	}
}

func TestIntegWaitRelayApplied(t *testing.T) {
	a, b := newPair(t)
	const f = probe.FlavorMariaDB
	adb, bdb := daemonDB(t, a), daemonDB(t, b)
	if err := probe.Promote(t.Context(), adb, f); err != nil {
		t.Fatal(err)
	}
	bp := probe.New(bdb, probe.Config{Flavor: f, Timeout: 2 * time.Second}, zaptest.NewLogger(t))
	locker := account(t, b, "locker", []string{"GRANT SELECT, LOCK TABLES ON kr.* TO 'locker'@'%'"})
	seq := 0
	// write inserts n rows on a and waits until b's IO thread has received them.
	write := func(t *testing.T, n int) probe.GTIDSet {
		t.Helper()
		for range n {
			seq++
			if err := a.Exec(t.Context(), "INSERT INTO kr.writes (origin, seq) VALUES ('a', ?)", seq); err != nil {
				t.Fatal(err)
			}
		}
		want := mustGTID(t, f, mustQuery(t, a, "SELECT @@gtid_binlog_pos")).Domain(a.DomainID)
		deadline := time.Now().Add(10 * time.Second)
		for {
			h, err := bp.Check(t.Context())
			if err == nil && mustGTID(t, f, h.Replica.GTIDIOPos).Contains(want) {
				return want
			}
			if time.Now().After(deadline) {
				t.Fatalf("b's IO thread did not receive %q: %+v, %v", want, h.Replica, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// lock holds a read lock on kr.writes on b, which blocks the SQL thread, until the returned
	// function releases it.
	lock := func(t *testing.T) (unlock func()) {
		t.Helper()
		conn, err := locker.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ExecContext(t.Context(), "LOCK TABLES kr.writes READ"); err != nil {
			t.Fatal(err)
		}
		var once sync.Once
		unlock = func() {
			once.Do(func() {
				if _, err := conn.ExecContext(context.Background(), "UNLOCK TABLES"); err != nil {
					t.Error(err)
				}
				conn.Close()
			})
		}
		t.Cleanup(unlock)
		return unlock
	}
	rows := func(t *testing.T) string {
		return mustQuery(t, b, "SELECT COUNT(*) FROM kr.writes WHERE origin = 'a'")
	}
	exec := func(t *testing.T, m *testenv.MariaDB, q string) {
		t.Helper()
		if err := m.Exec(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("relay log applied", func(t *testing.T) {
		exec(t, b, "STOP SLAVE SQL_THREAD")
		sent := write(t, 30)
		if n := rows(t); n != "0" {
			t.Fatalf("b applied %s rows with its SQL thread stopped", n)
		}
		unlock := lock(t)
		exec(t, b, "START SLAVE SQL_THREAD")
		const hold = 500 * time.Millisecond
		time.AfterFunc(hold, unlock)
		c, err := probe.WaitRelayApplied(t.Context(), bdb, f, 10*time.Second)
		if err != nil || !c.Reached {
			t.Fatalf("WaitRelayApplied = %+v, %v", c, err)
		}
		received, applied := mustGTID(t, f, c.Received), mustGTID(t, f, c.Applied)
		if !received.Contains(sent) || !applied.Contains(received) {
			t.Errorf("sent %q, received %q, applied %q", sent, received, applied)
		}
		if c.Waited < hold-50*time.Millisecond {
			t.Errorf("waited %v, but the SQL thread was blocked for %v", c.Waited, hold)
		}
		if n := rows(t); n != "30" {
			t.Errorf("b has %s rows, want 30", n)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		unlock := lock(t)
		write(t, 1)
		const wait = time.Second
		c, err := probe.WaitRelayApplied(t.Context(), bdb, f, wait)
		if err != nil || c.Reached {
			t.Fatalf("WaitRelayApplied with the SQL thread blocked = %+v, %v", c, err)
		}
		if c.Waited < wait || c.Waited > wait+time.Second {
			t.Errorf("waited %v, want about %v", c.Waited, wait)
		}
		unlock()
		if c, err := probe.WaitRelayApplied(t.Context(), bdb, f, 10*time.Second); err != nil || !c.Reached {
			t.Fatalf("after unlocking: %+v, %v", c, err)
		}
	})

	t.Run("sql thread stopped", func(t *testing.T) {
		exec(t, b, "STOP SLAVE SQL_THREAD")
		write(t, 3)
		const wait = 5 * time.Second
		c, err := probe.WaitRelayApplied(t.Context(), bdb, f, wait)
		if !errors.Is(err, probe.ErrSQLThreadStopped) || c.Reached {
			t.Fatalf("WaitRelayApplied = %+v, %v; want Reached=false and ErrSQLThreadStopped", c, err)
		}
		if c.Waited > time.Second {
			t.Errorf("waited %v for a stopped SQL thread, want an immediate answer", c.Waited)
		}
		if c.Received == "" || mustGTID(t, f, c.Applied).Contains(mustGTID(t, f, c.Received)) {
			t.Errorf("received %q, applied %q: want something not applied", c.Received, c.Applied)
		}
		t.Logf("stopped: %v", err)
		exec(t, b, "START SLAVE SQL_THREAD")
		if c, err := probe.WaitRelayApplied(t.Context(), bdb, f, 10*time.Second); err != nil || !c.Reached {
			t.Fatalf("after START SLAVE SQL_THREAD: %+v, %v", c, err)
		}
	})

	t.Run("sql thread error", func(t *testing.T) {
		// A row that exists only on b makes the next replicated insert of that id fail there.
		if err := b.ExecNoBinlog(t.Context(), "INSERT INTO kr.writes (id, origin) VALUES (999999, 'b only')"); err != nil {
			t.Fatal(err)
		}
		exec(t, a, "INSERT INTO kr.writes (id, origin) VALUES (999999, 'a')")
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, sqlRun, lastErr, err := testenv.ReplicationStatus(t.Context(), b)
			if err == nil && !sqlRun && lastErr != "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("b's SQL thread did not stop on the duplicate key: sql=%v %q %v", sqlRun, lastErr, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		c, err := probe.WaitRelayApplied(t.Context(), bdb, f, 5*time.Second)
		if !errors.Is(err, probe.ErrSQLThreadStopped) || c.Reached || !strings.Contains(err.Error(), "Duplicate") {
			t.Fatalf("WaitRelayApplied = %+v, %v; want ErrSQLThreadStopped with the duplicate-key error", c, err)
		}
		if c.Waited > time.Second {
			t.Errorf("waited %v for a failed SQL thread", c.Waited)
		}
		t.Logf("failed: %v", err)
	})
}
