package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/probe"
	"github.com/keepraft/keepraft/testenv"
)

// keepraftdBin and raftctlBin are built once by TestMain when integration tests run.
var keepraftdBin, raftctlBin string

func TestMain(m *testing.M) {
	// The driver logs a line for every pooled connection a fence killed (the checks' own
	// connections are root's, which a fence kills); the checks report what matters.
	_ = mysql.SetLogger(log.New(io.Discard, "", 0))
	code := func() int {
		if os.Getenv(testenv.IntegEnv) != "" {
			dir, err := os.MkdirTemp("", "keepraft-e2e-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			keepraftdBin = filepath.Join(dir, "keepraftd")
			// Built as `make package` builds it (static, no symbol table), so the lab and
			// the bench run what a user installs; the race detector needs cgo.
			args := []string{"build", "-o", keepraftdBin, "-trimpath", "-ldflags=-s -w"}
			env := append(os.Environ(), "CGO_ENABLED=0")
			if os.Getenv("KEEPRAFT_E2E_RACE") != "" {
				args, env = []string{"build", "-o", keepraftdBin, "-race"}, os.Environ() // the daemons run with the race detector
			}
			build := exec.Command("go", append(args, "../cmd/keepraftd")...)
			build.Env = env
			if out, err := build.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build keepraftd: %v\n%s", err, out)
				return 1
			}
			raftctlBin = filepath.Join(dir, "raftctl")
			if out, err := exec.Command("go", "build", "-o", raftctlBin, "../cmd/raftctl").CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build raftctl: %v\n%s", err, out)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// failT is the test a cluster's checks fail, remembering the first failure: a failed lab
// test prints pages of evidence, and a summary of CI output keeps only a few lines of it.
type failT struct {
	*testing.T
	mu    sync.Mutex
	first string
}

func (f *failT) note(msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.first == "" {
		f.first = msg
	}
}

func (f *failT) Fatalf(format string, args ...any) {
	f.Helper()
	f.note(fmt.Sprintf(format, args...))
	f.T.Fatalf(format, args...)
}

func (f *failT) Fatal(args ...any) {
	f.Helper()
	f.note(fmt.Sprint(args...))
	f.T.Fatal(args...)
}

func (f *failT) Errorf(format string, args ...any) {
	f.Helper()
	f.note(fmt.Sprintf(format, args...))
	f.T.Errorf(format, args...)
}

// summary is the first failure's first lines, at most about 1 KiB.
func (f *failT) summary() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	lines := strings.SplitN(f.first, "\n", 4)
	s := strings.Join(lines[:min(len(lines), 3)], "\n")
	if len(s) > 1024 {
		s = s[:1024] + " …"
	}
	return s
}

// cluster is a lab with MariaDB dual masters and three keepraftd nodes.
type cluster struct {
	t       *failT
	lab     *testenv.Lab
	nodes   map[string]testenv.KeepraftdNode
	procs   map[string]*testenv.Proc
	tracker *testenv.Tracker
	http    *http.Client
	tls     bool // the API is HTTPS with the lab's raftctl certificate
	dialer  string
	vip     string
}

var dialerSeq atomic.Int64

type clusterOpts struct {
	vrrp  bool
	extra string
	// plaintext runs the control plane without cluster.tls (TLS is on by default).
	plaintext bool
	// kernelLease sets vip.kernel_lease.
	kernelLease time.Duration
	// semiSync sets mysql.semi_sync: keepraft keeps the semi-sync master side on the
	// owner only.
	semiSync bool
	// flavor of the database servers: testenv.FlavorMariaDB ("" too) or testenv.FlavorMySQL
	// (mysqld 9.x from the lab's Debian sid root; keepraftd gets mysql.flavor: mysql).
	flavor probe.Flavor
	// logLevel overrides the lab's debug logging (the idle bench measures the default, info).
	logLevel string
	// cpuProfileDir, when set, has every keepraftd write a Go CPU profile NAME.prof there.
	cpuProfileDir string
}

// requireFlavor is testenv.Require, and for MySQL testenv.RequireMySQL (which fails, not
// skips, when the MySQL root cannot be built under KEEPRAFT_INTEG=1).
func requireFlavor(t *testing.T, f probe.Flavor) {
	t.Helper()
	if f == testenv.FlavorMySQL {
		testenv.RequireMySQL(t)
		return
	}
	testenv.Require(t)
}

func newCluster(t *testing.T, o clusterOpts) *cluster {
	t.Helper()
	requireFlavor(t, o.flavor)
	lab := testenv.NewT(t, testenv.Options{MariaDB: true, Flavor: o.flavor})
	c := &cluster{t: &failT{T: t}, lab: lab, nodes: map[string]testenv.KeepraftdNode{}, procs: map[string]*testenv.Proc{}, vip: lab.VIP.Addr().String()}
	client := lab.Host("client")
	c.dialer = fmt.Sprintf("lab%d", dialerSeq.Add(1))
	registerDialer(c)
	level := o.logLevel
	if level == "" {
		level = "debug"
	}
	extra := "log: {level: " + level + "}\n" + o.extra
	nodes, err := lab.WriteKeepraftdConfigs(testenv.KeepraftdOptions{VRRP: o.vrrp, Extra: extra, Plaintext: o.plaintext, KernelLease: o.kernelLease, SemiSync: o.semiSync})
	if err != nil {
		t.Fatal(err)
	}
	tlsConf, err := lab.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	if o.cpuProfileDir != "" {
		for i := range nodes {
			nodes[i].Args = []string{"--cpuprofile", filepath.Join(o.cpuProfileDir, nodes[i].Name+".prof")}
		}
	}
	c.tls = tlsConf != nil
	c.http = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: client.DialContext, DisableKeepAlives: true, TLSClientConfig: tlsConf}}
	c.trackAndStart(nodes)
	t.Cleanup(func() {
		for name, p := range c.procs {
			if log := p.Tail(100000); strings.Contains(log, "DATA RACE") {
				t.Errorf("keepraftd %s reported a data race:\n%s", name, log)
			}
		}
		if !t.Failed() {
			return
		}
		// Straight to stderr, so it comes out now, ahead of the test's buffered log.
		if first := c.t.summary(); first != "" {
			fmt.Fprintf(os.Stderr, "=== %s failed: %s\n", t.Name(), first)
		}
		t.Logf("VIP events:\n%s", testenv.FormatEvents(c.tracker.Events()))
		for name, p := range c.procs {
			t.Logf("--- keepraftd %s (last lines)\n%s", name, p.Tail(60))
		}
	})
	return c
}

// trackAndStart starts the event tracker of the VIP's holders and every node's keepraftd.
func (c *cluster) trackAndStart(nodes []testenv.KeepraftdNode) {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c.t.Cleanup(cancel)
	var err error
	if c.tracker, err = c.lab.TrackHolders(ctx, c.lab.VIP.Addr()); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = c.tracker.Close() })
	for _, n := range nodes {
		c.nodes[n.Name] = n
		c.start(n.Name)
	}
}

// registerDialer lets go-sql-driver connect from the client host's namespace.
func registerDialer(c *cluster) {
	client := c.lab.Host("client")
	mysql.RegisterDialContext(c.dialer, func(ctx context.Context, addr string) (net.Conn, error) {
		return client.DialContext(ctx, "tcp", addr)
	})
}

func (c *cluster) start(name string) {
	c.t.Helper()
	p, err := c.lab.StartKeepraftd(context.Background(), keepraftdBin, c.nodes[name])
	if err != nil {
		c.t.Fatal(err)
	}
	c.procs[name] = p
}

// api returns the one API client, dialing from the client host, with the lab's token.
func (c *cluster) api() *api.Client {
	tok, err := os.ReadFile(filepath.Join(c.lab.Dir, "keepraft", "token"))
	if err != nil {
		c.t.Fatalf("read the lab token: %v", err)
	}
	if c.tls {
		return api.NewTLSClient(strings.TrimSpace(string(tok)), c.http)
	}
	return api.NewClient(strings.TrimSpace(string(tok)), c.http)
}

// status asks node (any node when "") for /v1/status through the client host.
func (c *cluster) status(node string) (api.Status, error) {
	names := []string{node}
	if node == "" {
		names = []string{"witness", "db1", "db2"}
	}
	var err error
	for _, n := range names {
		var st api.Status
		if st, err = c.api().Status(context.Background(), c.nodes[n].APIAddr.String(), 0); err == nil {
			return st, nil
		}
	}
	return api.Status{}, err
}

func (c *cluster) journal(node string) []fsm.Record {
	c.t.Helper()
	for _, n := range []string{node, "witness", "db1", "db2"} {
		jr, err := c.api().Journal(context.Background(), c.nodes[n].APIAddr.String(), 0, 0, 0)
		if err == nil {
			return jr.Records
		}
	}
	c.t.Fatal("no node answered /v1/journal")
	return nil
}

// post sends an operator request (body is JSON) to the first node that answers.
func (c *cluster) post(path, body string) error {
	var err error
	for _, n := range []string{"witness", "db1", "db2"} {
		err = c.api().Do(context.Background(), http.MethodPost, c.nodes[n].APIAddr.String(), path, json.RawMessage(body), nil, 0)
		if err == nil || api.StatusCode(err) != 0 {
			return err
		}
	}
	return fmt.Errorf("POST %s: no node answered: %w", path, err)
}

// waitFor is testenv.WaitFor, the one polling wait of the tests.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	testenv.WaitFor(t, what, timeout, cond)
}

// waitOwner waits until the journal names an active owner and that host, alone, holds
// the VIP.
func (c *cluster) waitOwner(timeout time.Duration) string {
	c.t.Helper()
	var owner string
	waitFor(c.t, "an active owner holding the VIP", timeout, func() (bool, string) {
		st, err := c.status("")
		if err != nil {
			return false, err.Error()
		}
		h := c.tracker.Holders()
		owner = st.Owner
		return st.Phase == fsm.PhaseActive && slices.Equal(h, []string{st.Owner}), fmt.Sprintf("owner %q phase %s holders %v", st.Owner, st.Phase, h)
	})
	return owner
}

// waitStandbyLeads waits until the witness sees the database node other than owner lead
// Raft and returns it. The owner hands leadership to the standby once it serves, so right
// after waitOwner the leader may still be the owner or, mid-transfer, unknown.
func (c *cluster) waitStandbyLeads(owner string, timeout time.Duration) string {
	c.t.Helper()
	standby := other(owner)
	waitFor(c.t, "leadership on the standby "+standby, timeout, func() (bool, string) {
		st, err := c.status("witness")
		if err != nil {
			return false, err.Error()
		}
		return st.Leader == standby, fmt.Sprintf("leader %q", st.Leader)
	})
	return standby
}

// flavor is the flavor of the lab's servers ("mariadb" or "mysql").
func (c *cluster) flavor() probe.Flavor {
	if m := c.lab.MariaDB("db1"); m != nil {
		return m.Flavor
	}
	return testenv.FlavorMariaDB
}

func other(db string) string {
	if db == "db1" {
		return "db2"
	}
	return "db1"
}

// hostOfServerID maps the lab's server_id to the host name (db1=1, db2=2).
func hostOfServerID(id int) string { return fmt.Sprintf("db%d", id) }

// ask opens a fresh connection through the VIP from the client host and returns which
// server answered.
func (c *cluster) ask(ctx context.Context, timeout time.Duration) (string, error) {
	dsn := fmt.Sprintf("%s:%s@%s(%s:3306)/%s?timeout=%s&readTimeout=%s&writeTimeout=%s", testenv.AppUser, testenv.AppPass, c.dialer, c.vip, testenv.AppSchema, timeout, timeout, timeout)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return "", err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var id int
	if err := db.QueryRowContext(ctx, "SELECT @@server_id").Scan(&id); err != nil {
		return "", err
	}
	return hostOfServerID(id), nil
}

// firstAnswerFrom polls through the VIP every 10 ms until want answers and returns when.
func (c *cluster) firstAnswerFrom(want string, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		got, err := c.ask(context.Background(), 100*time.Millisecond)
		if err == nil && got == want {
			return time.Now(), nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("no answer from %s through the VIP within %s", want, timeout)
}

func (c *cluster) assertNeverTwoHolders() {
	c.t.Helper()
	if n := c.tracker.MaxConcurrent(); n > 1 {
		c.t.Fatalf("the VIP had %d holders at once: %+v\nevents:\n%s", n, c.tracker.Overlaps(), testenv.FormatEvents(c.tracker.Events()))
	}
	if err := c.tracker.Err(); err != nil {
		c.t.Fatalf("tracker lost events: %v", err)
	}
}

func types(recs []fsm.Record, since uint64) []string {
	var out []string
	for _, r := range recs {
		if r.Index > since && r.Result == fsm.ResultApplied {
			out = append(out, string(r.Event.Type))
		}
	}
	return out
}

// containsInOrder reports whether want appears in got as a subsequence.
func containsInOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// TestFailTSummary: the summary is the first failure only, cut to three lines and 1 KiB.
func TestFailTSummary(t *testing.T) {
	tests := []struct {
		name string
		give []string
		want string
	}{
		{"none", nil, ""},
		{"the first of two", []string{"requireOneWriter: 2 writable servers", "later"}, "requireOneWriter: 2 writable servers"},
		{"three lines of evidence", []string{"a\nb\nc\nd\ne"}, "a\nb\nc"},
		{"long", []string{strings.Repeat("x", 2000)}, strings.Repeat("x", 1024) + " …"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &failT{T: t}
			for _, m := range tt.give {
				f.note(m)
			}
			if got := f.summary(); got != tt.want {
				t.Errorf("summary() = %q, want %q", got, tt.want)
			}
		})
	}
}
