package testenv

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap/zaptest"

	"github.com/keepraft/keepraft/probe"
)

// TestMySQLDualMaster is TestMariaDBDualMaster on MySQL: two mysqld from the sid root in
// their hosts' namespaces, GTID auto-positioning both ways, super_read_only at start, the
// accounts with caching_sha2_password reachable over TCP from another namespace, and a
// restart after SIGKILL.
func TestMySQLDualMaster(t *testing.T) {
	RequireMySQL(t)
	start := time.Now()
	l := NewT(t, Options{Hosts: []string{"db1", "db2", "client"}, MariaDB: true, Flavor: FlavorMySQL})
	t.Logf("lab with two MySQL servers in dual master up in %s", time.Since(start))
	ctx := ctxT(t, 2*time.Minute)
	db1, db2 := l.MariaDB("db1"), l.MariaDB("db2")
	if db1 == nil || db2 == nil {
		t.Fatal("MySQL db1/db2 missing")
	}
	if !db1.IsMySQL() || db1.ServerID != 1 || db2.ServerID != 2 {
		t.Errorf("db1 flavor %s ids db1 %d db2 %d", db1.Flavor, db1.ServerID, db2.ServerID)
	}
	for _, m := range []*MariaDB{db1, db2} {
		v, err := m.QueryString(ctx, "SELECT CONCAT(VERSION(), ' ', @@gtid_mode, ' ', @@enforce_gtid_consistency, ' ', @@log_replica_updates, ' ', @@read_only, @@super_read_only, ' ', @@auto_increment_increment, '/', @@auto_increment_offset)")
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(" ON ON 1 11 2/%d", m.ServerID)
		if !strings.HasSuffix(v, want) || strings.Contains(v, "MariaDB") {
			t.Errorf("%s: %q, want a MySQL version and %q", m.Name, v, want)
		}
		t.Logf("%s: %s", m.Name, v)
		io, sqlRun, lastErr, err := ReplicationStatus(ctx, m)
		if err != nil || !io || !sqlRun || lastErr != "" {
			t.Fatalf("%s replication: io=%v sql=%v err=%q %v", m.Name, io, sqlRun, lastErr, err)
		}
		auto, err := m.QueryString(ctx, "SELECT AUTO_POSITION FROM performance_schema.replication_connection_configuration")
		if err == nil && auto != "1" {
			t.Errorf("%s: AUTO_POSITION %q", m.Name, auto)
		}
		plugin, err := m.QueryString(ctx, "SELECT plugin FROM mysql.user WHERE user = ?", ReplUser)
		if err != nil || plugin != "caching_sha2_password" {
			t.Errorf("%s: %s uses %q (%v), want caching_sha2_password", m.Name, ReplUser, plugin, err)
		}
	}
	// A row written by the app account on each (after opening it as a promotion would)
	// appears on the other.
	client := l.Host("client")
	for i, p := range [][2]*MariaDB{{db1, db2}, {db2, db1}} {
		src, dst := p[0], p[1]
		dbs, err := sql.Open("mysql", src.DSN(DaemonUser, DaemonPass, ""))
		if err != nil {
			t.Fatal(err)
		}
		if err := probe.Promote(ctx, dbs, probe.FlavorMySQL); err != nil {
			t.Fatalf("promote %s with the daemon account: %v", src.Name, err)
		}
		cfg := mysql.NewConfig()
		cfg.User, cfg.Passwd, cfg.DBName, cfg.Net, cfg.Addr = AppUser, AppPass, AppSchema, client.DialNet(), src.Addr.String()
		db, err := sql.Open("mysql", cfg.FormatDSN())
		if err != nil {
			t.Fatal(err)
		}
		origin := fmt.Sprintf("test-%d", i)
		if _, err := db.ExecContext(ctx, "INSERT INTO writes (origin, seq) VALUES (?, ?)", origin, i); err != nil {
			t.Fatalf("insert on %s as app from client: %v", src.Name, err)
		}
		db.Close()
		if _, err := probe.Fence(ctx, dbs, probe.FlavorMySQL, []string{AppUser}); err != nil {
			t.Fatalf("fence %s with the daemon account: %v", src.Name, err)
		}
		dbs.Close()
		if err := WaitCaughtUp(ctx, src, dst); err != nil {
			t.Fatal(err)
		}
		n, err := dst.QueryString(ctx, "SELECT COUNT(*) FROM kr.writes WHERE origin = ?", origin)
		if err != nil || n != "1" {
			t.Errorf("row %s from %s on %s: count %q, %v", origin, src.Name, dst.Name, n, err)
		}
	}
	// The app account cannot write while fenced.
	db, err := sql.Open("mysql", db1.DSN(AppUser, AppPass, AppSchema))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "INSERT INTO writes (origin) VALUES ('ro')"); err == nil {
		t.Errorf("app wrote to a super_read_only server")
	}
	// Root cannot either (super_read_only), but ExecAdmin can, and restores the fence.
	if err := db1.Exec(ctx, "INSERT INTO kr.lab_check (origin) VALUES ('root')"); err == nil {
		t.Errorf("root wrote to a super_read_only server")
	}
	if err := db1.ExecAdmin(ctx, "INSERT INTO kr.lab_check (origin) VALUES ('admin')"); err != nil {
		t.Fatal(err)
	}
	if v, _ := db1.QueryString(ctx, "SELECT @@super_read_only"); v != "1" {
		t.Errorf("super_read_only after ExecAdmin: %q", v)
	}
	if err := db1.StopReplicaIO(ctx); err != nil {
		t.Fatal(err)
	}
	if io, sqlRun, _, _ := ReplicationStatus(ctx, db1); io || !sqlRun {
		t.Errorf("after StopReplicaIO: io=%v sql=%v, want false/true", io, sqlRun)
	}
	if err := db1.StartReplica(ctx); err != nil {
		t.Fatal(err)
	}
	// Kill and restart db1: it comes back fenced with replication running.
	pid := db1.Proc.PID
	if err := db1.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Errorf("mysqld pid %d still exists after Kill", pid)
	}
	if err := db1.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db2.ExecAdmin(ctx, "INSERT INTO kr.lab_check (origin) VALUES ('after-restart')"); err != nil {
		t.Fatal(err)
	}
	if err := WaitCaughtUp(ctx, db2, db1); err != nil {
		t.Fatal(err)
	}
	if ro, _ := db1.QueryString(ctx, "SELECT @@super_read_only"); ro != "1" {
		t.Errorf("db1 after restart: super_read_only %q", ro)
	}
	g, err := db1.GTIDState(ctx)
	if err != nil || !strings.HasPrefix(g, "executed=") {
		t.Errorf("GTIDState %q, %v", g, err)
	}
}

// TestMySQLWithoutNamespacesCleansUp starts a MySQL server on 127.0.0.1, checks that the
// daemon's pid-file view works from the host (probe.ServerPID: same paths inside and out),
// and that Close leaves no process, no mount and no mirror directory in the root.
func TestMySQLWithoutNamespacesCleansUp(t *testing.T) {
	RequireMySQL(t)
	l, err := New(ctxT(t, time.Minute), zaptest.NewLogger(t), Options{NoNetwork: true, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = l.Close()
		}
	})
	ctx := ctxT(t, 2*time.Minute)
	m, err := l.StartMariaDB(ctx, nil, MariaDBOptions{Flavor: FlavorMySQL})
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", m.DSN(DaemonUser, DaemonPass, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pid, err := probe.ServerPID(ctx, db)
	if err != nil || pid != m.Proc.PID {
		t.Errorf("probe.ServerPID = %d, %v; want the lab's pid %d", pid, err, m.Proc.PID)
	}
	mountsBefore, _ := os.ReadFile(fmt.Sprintf("/proc/%d/mounts", pid))
	// /proc/PID/mounts shows mount points relative to the process's root (the chroot).
	if !strings.Contains(string(mountsBefore), " "+m.Dir+" ") {
		t.Errorf("mysqld's mount namespace lacks the bind mount of %s", m.Dir)
	}
	if self, _ := os.ReadFile("/proc/self/mounts"); strings.Contains(string(self), MySQLRootDir) {
		t.Errorf("a mount under %s is visible outside mysqld's namespace", MySQLRootDir)
	}
	closed = true
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Errorf("mysqld pid %d still exists after Close", pid)
	}
	top := strings.SplitN(strings.TrimPrefix(m.Dir, "/"), "/", 3)
	if len(top) >= 2 {
		if _, err := os.Stat(filepath.Join(MySQLRootDir, top[0], top[1])); !os.IsNotExist(err) {
			t.Errorf("mirror dir %s left in the root: %v", filepath.Join(MySQLRootDir, top[0], top[1]), err)
		}
	}
}
