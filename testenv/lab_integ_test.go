package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap/zaptest"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// pingAll checks that every host reaches every other host.
func pingAll(t *testing.T, l *Lab) {
	t.Helper()
	for _, a := range l.Hosts() {
		for _, b := range l.Hosts() {
			if a == b {
				continue
			}
			if err := a.Ping(ctxT(t, 2*time.Second), b.Addr); err != nil {
				t.Errorf("ping %s -> %s: %v", a.Name, b.Name, err)
			}
		}
	}
}

func TestLabPingAll(t *testing.T) {
	Require(t)
	l := NewT(t, Options{})
	if got := len(l.Hosts()); got != 4 {
		t.Fatalf("hosts: got %d, want 4", got)
	}
	want := map[string]string{"db1": "198.18.0.11", "db2": "198.18.0.12", "witness": "198.18.0.13", "client": "198.18.0.20"}
	for name, addr := range want {
		h := l.Host(name)
		if h == nil || h.Addr.String() != addr {
			t.Fatalf("host %s: got %+v, want addr %s", name, h, addr)
		}
		out, err := h.Run(ctxT(t, 5*time.Second), "ip", "-4", "-o", "addr", "show", "dev", "eth0")
		if err != nil || !strings.Contains(string(out), addr+"/24") {
			t.Fatalf("%s eth0: %v %s", name, err, out)
		}
	}
	pingAll(t, l)
	// Nothing of ours lives in the root namespace.
	out, err := exec.Command("ip", "-o", "link").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range l.Hosts() {
		if strings.Contains(string(out), " "+l.Prefix) || strings.Contains(string(out), " "+h.BridgePort+"@") {
			t.Errorf("root namespace has a lab link: %s", out)
		}
	}
}

func TestCloseLeavesNothing(t *testing.T) {
	Require(t)
	ctx := ctxT(t, time.Minute)
	l, err := New(ctx, zaptest.NewLogger(t), Options{Dir: t.TempDir(), Hosts: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	var procs []*Proc
	for _, h := range l.Hosts() {
		p, err := l.Spawn(h, "sleep-"+h.Name, []string{"sleep", "600"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	// Two that ignore SIGTERM (the second was once waited for forever: the bound fired only
	// for the first), one of them frozen, and a forked child left behind in a namespace.
	stubborn, err := l.Spawn(l.Host("a"), "stubborn", []string{"sh", "-c", "trap '' TERM; sleep 600 & wait"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stubborn2, err := l.Spawn(l.Host("b"), "stubborn2", []string{"sh", "-c", "trap '' TERM; sleep 600 & wait"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	procs = append(procs, stubborn, stubborn2)
	time.Sleep(100 * time.Millisecond) // let sh install the trap (bounded: Close kills anyway)
	if err := stubborn.Freeze(); err != nil {
		t.Fatal(err)
	}
	l.stopTimeout = time.Second
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("close: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return within 30 s with two processes ignoring SIGTERM")
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), l.Prefix) {
		t.Errorf("namespaces left: %s", out)
	}
	for _, p := range procs {
		if !p.Exited() {
			t.Errorf("%s (pid %d) still running", p.Name, p.PID)
		}
		if pidAlive(p.PID, p.StartTime) {
			t.Errorf("%s (pid %d) alive in /proc", p.Name, p.PID)
		}
	}
	if _, err := os.Stat(filepath.Join(RegistryDir, l.Prefix+".json")); !os.IsNotExist(err) {
		t.Errorf("registry entry left: %v", err)
	}
}

func TestStaleLabCleanedFromState(t *testing.T) {
	Require(t)
	ctx := ctxT(t, time.Minute)
	l, err := New(ctx, zaptest.NewLogger(t), Options{Dir: t.TempDir(), Hosts: []string{"a"}, Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.Spawn(l.Host("a"), "sleep", []string{"sleep", "600"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Forget the Lab as a crashed process would, then tear it down from its state file.
	a, err := Attach(zaptest.NewLogger(t), filepath.Join(l.Dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("close attached: %v", err)
	}
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Errorf("sleep (pid %d) survived", p.PID)
	}
	if _, err := os.Stat("/run/netns/" + l.Prefix + "-a"); !os.IsNotExist(err) {
		t.Errorf("namespace left: %v", err)
	}
	_ = l.Close()
}

func TestPartitionAndHeal(t *testing.T) {
	Require(t)
	l := NewT(t, Options{Hosts: []string{"a", "b", "c"}})
	a, b, c := l.Host("a"), l.Host("b"), l.Host("c")
	reach := func(x, y *Host) bool { return x.Ping(ctxT(t, 500*time.Millisecond), y.Addr) == nil }
	if err := l.Partition(a, b); err != nil {
		t.Fatal(err)
	}
	if reach(a, b) || reach(b, a) {
		t.Errorf("a and b still reach each other after Partition")
	}
	if !reach(a, c) || !reach(c, a) || !reach(b, c) || !reach(c, b) {
		t.Errorf("partition of a-b cut traffic to c")
	}
	if err := l.Partition(a, b); err != nil {
		t.Fatalf("second Partition: %v", err)
	}
	if err := l.Heal(a, b); err != nil {
		t.Fatal(err)
	}
	if !reach(a, b) || !reach(b, a) {
		t.Errorf("a and b do not reach each other after Heal")
	}
}

func TestCutLinkAndRestore(t *testing.T) {
	Require(t)
	l := NewT(t, Options{Hosts: []string{"a", "b"}})
	a, b := l.Host("a"), l.Host("b")
	if err := l.CutLink(a); err != nil {
		t.Fatal(err)
	}
	if a.Ping(ctxT(t, 500*time.Millisecond), b.Addr) == nil {
		t.Errorf("a reaches b with its link cut")
	}
	out, err := a.Run(ctxT(t, 5*time.Second), "ip", "link", "show", "eth0")
	if err != nil || !strings.Contains(string(out), "NO-CARRIER") {
		t.Errorf("eth0 in a has carrier after CutLink: %v %s", err, out)
	}
	if err := l.RestoreLink(a); err != nil {
		t.Fatal(err)
	}
	// Carrier comes back asynchronously; poll within a bound.
	deadline := time.Now().Add(5 * time.Second)
	for a.Ping(ctxT(t, 300*time.Millisecond), b.Addr) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("a does not reach b after RestoreLink")
		}
	}
}

func TestMariaDBDualMaster(t *testing.T) {
	Require(t)
	start := time.Now()
	l := NewT(t, Options{Hosts: []string{"db1", "db2", "client"}, MariaDB: true})
	t.Logf("lab with two MariaDB servers in dual master up in %s", time.Since(start))
	ctx := ctxT(t, time.Minute)
	db1, db2 := l.MariaDB("db1"), l.MariaDB("db2")
	if db1 == nil || db2 == nil {
		t.Fatal("MariaDB db1/db2 missing")
	}
	if db1.ServerID != 1 || db2.ServerID != 2 || db1.DomainID != 1 || db2.DomainID != 2 {
		t.Errorf("ids: db1 %d/%d db2 %d/%d", db1.ServerID, db1.DomainID, db2.ServerID, db2.DomainID)
	}
	for _, m := range []*MariaDB{db1, db2} {
		io, sqlRun, lastErr, err := ReplicationStatus(ctx, m)
		if err != nil || !io || !sqlRun || lastErr != "" {
			t.Fatalf("%s replication: io=%v sql=%v err=%q %v", m.Name, io, sqlRun, lastErr, err)
		}
		ro, err := m.QueryString(ctx, "SELECT @@read_only")
		if err != nil || ro != "1" {
			t.Errorf("%s read_only = %q, %v; want 1", m.Name, ro, err)
		}
	}
	// A row written on each appears on the other, through the app account over TCP from the
	// client namespace (after opening the server as promotion would).
	client := l.Host("client")
	for i, p := range [][2]*MariaDB{{db1, db2}, {db2, db1}} {
		src, dst := p[0], p[1]
		if err := src.Exec(ctx, "SET GLOBAL read_only = 0"); err != nil {
			t.Fatal(err)
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
		if err := src.Exec(ctx, "SET GLOBAL read_only = 1"); err != nil {
			t.Fatal(err)
		}
		if err := WaitCaughtUp(ctx, src, dst); err != nil {
			t.Fatal(err)
		}
		n, err := dst.QueryString(ctx, "SELECT COUNT(*) FROM kr.writes WHERE origin = ?", origin)
		if err != nil || n != "1" {
			t.Errorf("row %s from %s on %s: count %q, %v", origin, src.Name, dst.Name, n, err)
		}
	}
	// The app account cannot write while read_only is on.
	db, err := sql.Open("mysql", db1.DSN(AppUser, AppPass, AppSchema))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "INSERT INTO writes (origin) VALUES ('ro')"); err == nil {
		t.Errorf("app wrote to a read_only server")
	}
	// The daemon account connects from its own host.
	kdb, err := sql.Open("mysql", db2.DSN(DaemonUser, DaemonPass, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer kdb.Close()
	if err := kdb.PingContext(ctx); err != nil {
		t.Errorf("keepraft account on db2: %v", err)
	}
	// Kill and restart db1: it comes back read-only with replication running.
	if err := db1.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := db1.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db2.Exec(ctx, "INSERT INTO kr.lab_check (origin) VALUES ('after-restart')"); err != nil {
		t.Fatal(err)
	}
	if err := WaitCaughtUp(ctx, db2, db1); err != nil {
		t.Fatal(err)
	}
	if ro, _ := db1.QueryString(ctx, "SELECT @@read_only"); ro != "1" {
		t.Errorf("db1 after restart: read_only %q", ro)
	}
}

func TestMariaDBWithoutNamespaces(t *testing.T) {
	Require(t)
	l := NewT(t, Options{NoNetwork: true})
	ctx := ctxT(t, time.Minute)
	m, err := l.StartMariaDB(ctx, nil, MariaDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Addr.Addr().IsLoopback() {
		t.Errorf("addr %s, want loopback", m.Addr)
	}
	db, err := sql.Open("mysql", m.DSN(DaemonUser, DaemonPass, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.QueryString(ctxT(t, time.Second), "SELECT 1"); err == nil {
		t.Errorf("query after Stop succeeded")
	}
	_ = netip.Addr{}
}

// TestCrashedOwnerIsCleaned runs a child test process that builds a lab and spawns a
// process, SIGKILLs the child (as a go test timeout would), and checks that the spawned
// process died with it and that CleanStale removes the namespaces and the registry entry.
func TestCrashedOwnerIsCleaned(t *testing.T) {
	Require(t)
	if os.Getenv("KEEPRAFT_CRASH_HELPER") != "" {
		return
	}
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "KEEPRAFT_CRASH_HELPER="+ready)
	out, err := os.Create(filepath.Join(t.TempDir(), "helper.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var info []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		if info, err = os.ReadFile(ready); err == nil && len(info) > 0 {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("helper did not get ready:\n%s", tailFile(out.Name(), 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
	var prefix string
	var pid int
	var start uint64
	if _, err := fmt.Sscan(string(info), &prefix, &pid, &start); err != nil {
		t.Fatalf("helper info %q: %v", info, err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline = time.Now().Add(5 * time.Second)
	for pidAlive(pid, start) {
		if time.Now().After(deadline) {
			t.Fatalf("spawned pid %d outlived its killed owner", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat("/run/netns/" + prefix + "-a"); err != nil {
		t.Fatalf("expected the crashed lab's namespace to remain before cleaning: %v", err)
	}
	cleaned, err := CleanStale(ctxT(t, 30*time.Second), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(cleaned, prefix) {
		t.Errorf("CleanStale() = %v, want it to contain %s", cleaned, prefix)
	}
	for _, ns := range []string{prefix + "-a", prefix + "-br"} {
		if _, err := os.Stat("/run/netns/" + ns); !os.IsNotExist(err) {
			t.Errorf("namespace %s left: %v", ns, err)
		}
	}
	if _, err := os.Stat(filepath.Join(RegistryDir, prefix+".json")); !os.IsNotExist(err) {
		t.Errorf("registry entry left: %v", err)
	}
}

// TestCrashHelper is the child of TestCrashedOwnerIsCleaned; it does nothing otherwise.
func TestCrashHelper(t *testing.T) {
	ready := os.Getenv("KEEPRAFT_CRASH_HELPER")
	if ready == "" {
		t.Skip("helper process for TestCrashedOwnerIsCleaned")
	}
	l, err := New(ctxT(t, 30*time.Second), zaptest.NewLogger(t), Options{Hosts: []string{"a"}, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.Spawn(l.Host("a"), "sleep", []string{"sleep", "600"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ready, fmt.Appendf(nil, "%s %d %d", l.Prefix, p.PID, p.StartTime), 0o644); err != nil {
		t.Fatal(err)
	}
	<-p.Done() // killed with the process; bounded by the parent's SIGKILL
}
