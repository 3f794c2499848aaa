package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap/zaptest"

	"github.com/keepraft/keepraft/config"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/probe"
	"github.com/keepraft/keepraft/vip"
)

// world is the shared truth of the in-process cluster's fakes: which nodes hold the VIP
// and which servers are writable, with a record of any instant two did at once.
type world struct {
	mu         sync.Mutex
	vip        map[string]bool
	writable   map[string]bool
	up         map[string]bool
	violations []string
}

func (w *world) set(m map[string]bool, id string, v bool, what string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m[id] = v
	n := 0
	for _, b := range m {
		if b {
			n++
		}
	}
	if n > 1 {
		w.violations = append(w.violations, fmt.Sprintf("%s on %d nodes: %v", what, n, m))
	}
}

func (w *world) holders(m map[string]bool) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for id, b := range m {
		if b {
			out = append(out, id)
		}
	}
	return out
}

// worldMySQL is one node's fake server.
type worldMySQL struct {
	w  *world
	id string
}

func (m worldMySQL) isUp() bool {
	m.w.mu.Lock()
	defer m.w.mu.Unlock()
	return m.w.up[m.id]
}

func (m worldMySQL) Check(context.Context) (probe.Health, error) {
	if !m.isUp() {
		return probe.Health{Err: "connection refused"}, errors.New("connection refused")
	}
	m.w.mu.Lock()
	ro := !m.w.writable[m.id]
	m.w.mu.Unlock()
	return probe.Health{Up: true, ReadOnly: ro, GTIDExecuted: "0-1-1", CheckedAt: time.Now()}, nil
}

func (m worldMySQL) Fence(context.Context) (string, error) {
	if !m.isUp() {
		return "", errors.New("connection refused")
	}
	m.w.set(m.w.writable, m.id, false, "read_only=0")
	return "0-1-1", nil
}

func (m worldMySQL) Promote(context.Context) error {
	if !m.isUp() {
		return errors.New("connection refused")
	}
	m.w.set(m.w.writable, m.id, true, "read_only=0")
	return nil
}

func (m worldMySQL) Process() int { return probe.ProcessUnknown }

func (m worldMySQL) WaitExit(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

func (m worldMySQL) SemiSyncMaster(context.Context, bool) (bool, error) { return false, nil }
func (m worldMySQL) KillStopped() (bool, error)                         { return false, nil }
func (m worldMySQL) StopReplication(context.Context) error              { return nil }
func (m worldMySQL) StartReplication(context.Context) error             { return nil }
func (m worldMySQL) WaitCatchUp(_ context.Context, target string, _ uint32, _ time.Duration) (probe.CatchUp, error) {
	return probe.CatchUp{Reached: true, Target: target}, nil
}
func (m worldMySQL) WaitRelayApplied(context.Context, time.Duration) (probe.RelayCatchUp, error) {
	return probe.RelayCatchUp{Reached: true}, nil
}

// worldVIP is one node's fake interface.
type worldVIP struct {
	w  *world
	id string
}

func (v worldVIP) Set(_ context.Context, desired []netip.Prefix) (vip.Result, error) {
	v.w.mu.Lock()
	had := v.w.vip[v.id]
	v.w.mu.Unlock()
	v.w.set(v.w.vip, v.id, len(desired) > 0, "VIP")
	var r vip.Result
	switch {
	case len(desired) > 0 && !had:
		r.Added = desired
	case len(desired) > 0:
		r.Renewed = desired
	case had:
		r.Removed = []netip.Prefix{netip.MustParsePrefix("198.18.0.100/32")}
	}
	return r, nil
}

func (v worldVIP) Held(context.Context) ([]netip.Prefix, error) {
	v.w.mu.Lock()
	defer v.w.mu.Unlock()
	if v.w.vip[v.id] {
		return []netip.Prefix{netip.MustParsePrefix("198.18.0.100/32")}, nil
	}
	return nil, nil
}

func (v worldVIP) ProbeConflict(context.Context, netip.Addr) (net.HardwareAddr, bool, error) {
	return nil, false, nil
}

// memCluster is three nodes in one process on raft's in-memory transport.
type memCluster struct {
	t         *testing.T
	w         *world
	cfgs      map[string]*config.Config
	trans     map[string]*raft.InmemTransport
	nodes     map[string]*Node
	cancel    map[string]context.CancelFunc
	done      map[string]chan error
	expectErr map[string]bool
	// jointWindow is the nodes' joint-bootstrap window (short in tests).
	jointWindow time.Duration
}

var memIDs = []string{"db1", "db2", "witness"}

func newMemCluster(t *testing.T) *memCluster {
	t.Helper()
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &memCluster{t: t, w: &world{vip: map[string]bool{}, writable: map[string]bool{}, up: map[string]bool{}},
		cfgs: map[string]*config.Config{}, trans: map[string]*raft.InmemTransport{}, nodes: map[string]*Node{},
		cancel: map[string]context.CancelFunc{}, done: map[string]chan error{}, jointWindow: jointWindow, expectErr: map[string]bool{}}
	var peers strings.Builder
	apis := freeAddrs(t, len(memIDs))
	for i, id := range memIDs {
		fmt.Fprintf(&peers, "    - {id: %s, raft_addr: \"127.0.0.1:%d\", api_addr: %q}\n", id, 17000+i, apis[i])
	}
	for i, id := range memIDs {
		role := "database"
		if id == "witness" {
			role = "witness"
		}
		var b strings.Builder
		fmt.Fprintf(&b, "node: {id: %s, role: %s, data_dir: %q}\n", id, role, filepath.Join(dir, id))
		fmt.Fprintf(&b, "cluster:\n  raft_addr: \"127.0.0.1:%d\"\n  api_addr: %q\n  token_file: %q\n  peers:\n%s", 17000+i, "", token, peers.String())
		b.WriteString("  raft: {heartbeat_timeout: 300ms, election_timeout: 300ms, leader_lease_timeout: 150ms}\n")
		if role == "database" {
			fmt.Fprintf(&b, "mysql: {dsn: \"fake\", interval: 50ms, timeout: 50ms}\nvip: {interface: lo, addresses: [198.18.0.100/32]}\nvrrp: {priority: %d}\n", 100-10*i)
			c.w.up[id] = true
		}
		cfg, err := config.Parse(strings.NewReader(fixAPI(b.String(), id, peers.String())))
		if err != nil {
			t.Fatalf("config of %s: %v", id, err)
		}
		c.cfgs[id] = cfg
	}
	t.Cleanup(func() {
		for _, id := range memIDs {
			c.stop(id)
		}
	})
	return c
}

// fixAPI fills the node's own api_addr from the peer list.
func fixAPI(cfg, id, peers string) string {
	for _, line := range strings.Split(peers, "\n") {
		if strings.Contains(line, "id: "+id+",") {
			i := strings.Index(line, "api_addr: ")
			addr := strings.TrimSuffix(strings.TrimSpace(line[i+len("api_addr: "):]), "}")
			return strings.Replace(cfg, "api_addr: \"\"", "api_addr: "+addr, 1)
		}
	}
	return cfg
}

// start builds node id on a fresh in-memory transport connected both ways to the others.
func (c *memCluster) start(id string) {
	c.t.Helper()
	cfg := c.cfgs[id]
	_, tr := raft.NewInmemTransport(raft.ServerAddress(cfg.Cluster.RaftAddr))
	c.trans[id] = tr
	for other, ot := range c.trans {
		if other != id {
			tr.Connect(ot.LocalAddr(), ot)
			ot.Connect(tr.LocalAddr(), tr)
		}
	}
	opts := Options{Transport: tr}
	if cfg.IsDatabase() {
		opts.MySQL, opts.VIP = worldMySQL{c.w, id}, worldVIP{c.w, id}
		opts.Remote = nil
	}
	n, err := New(cfg, zaptest.NewLogger(c.t).Named(id), opts)
	if err != nil {
		c.t.Fatalf("new %s: %v", id, err)
	}
	n.jointWindow = c.jointWindow
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	c.nodes[id], c.cancel[id], c.done[id] = n, cancel, done
}

// stop cancels node id and waits for Run to return.
func (c *memCluster) stop(id string) {
	cancel, ok := c.cancel[id]
	if !ok {
		return
	}
	cancel()
	if err := <-c.done[id]; err != nil && !c.expectErr[id] {
		c.t.Errorf("run %s: %v", id, err)
	}
	delete(c.cancel, id)
	delete(c.nodes, id)
	for other, ot := range c.trans {
		if other != id {
			ot.Disconnect(c.trans[id].LocalAddr())
		}
	}
	delete(c.trans, id)
}

// waitServing waits until every running node's state names one active owner that holds
// the VIP and is the only writable server; want ("" = any) names it.
func (c *memCluster) waitServing(want string, within time.Duration) string {
	c.t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for time.Now().Before(deadline) {
		owner := ""
		agree := true
		for _, n := range c.nodes {
			s := n.State()
			if s.Phase != fsm.PhaseActive || (owner != "" && s.Owner != owner) {
				agree = false
				break
			}
			owner = s.Owner
		}
		vips, writable := c.w.holders(c.w.vip), c.w.holders(c.w.writable)
		last = fmt.Sprintf("owner %q agree %v vip %v writable %v", owner, agree, vips, writable)
		if agree && owner != "" && (want == "" || owner == want) && len(vips) == 1 && vips[0] == owner && len(writable) == 1 && writable[0] == owner {
			return owner
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("no single serving owner within %v: %s", within, last)
	return ""
}

func (c *memCluster) checkViolations() {
	c.t.Helper()
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if len(c.w.violations) > 0 {
		c.t.Fatalf("safety violations: %v", c.w.violations)
	}
}

func TestInProcessCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("in-process cluster runs for several seconds")
	}
	c := newMemCluster(t)
	for _, id := range memIDs {
		c.start(id)
	}
	owner := c.waitServing("db1", 15*time.Second) // db1 has the higher priority

	t.Run("failover on a failed probe", func(t *testing.T) {
		c.w.mu.Lock()
		c.w.up[owner] = false
		c.w.writable[owner] = false // a dead server accepts nothing
		c.w.mu.Unlock()
		owner = c.waitServing("db2", 10*time.Second)
		c.w.mu.Lock()
		c.w.up["db1"] = true
		c.w.mu.Unlock()
		c.checkViolations()
	})

	t.Run("leader loss", func(t *testing.T) {
		leader := ""
		for id, n := range c.nodes {
			if n.IsLeader() {
				leader = id
			}
		}
		if leader == "" {
			t.Fatal("no leader")
		}
		c.stop(leader)
		got := c.waitServing("", 15*time.Second)
		c.start(leader)
		c.waitServing(got, 15*time.Second)
		owner = got
		c.checkViolations()
	})

	t.Run("restart from its own store", func(t *testing.T) {
		other := "db1"
		if owner == "db1" {
			other = "db2"
		}
		before := c.nodes[other].State().Index
		c.stop(other)
		c.start(other)
		deadline := time.Now().Add(10 * time.Second)
		for c.nodes[other].State().Index < before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if got := c.nodes[other].State().Index; got < before {
			t.Fatalf("restarted %s applied %d, want ≥ %d from its own store", other, got, before)
		}
		c.waitServing(owner, 10*time.Second)
		c.checkViolations()
	})
}

// TestNoRaftAmnesia: a node whose data dir was bootstrapped but lost its Raft state
// refuses to start, and so does a wiped data dir whose peers hold state; both errors name
// the recovery.
func TestNoRaftAmnesia(t *testing.T) {
	if testing.Short() {
		t.Skip("in-process cluster runs for several seconds")
	}
	c := newMemCluster(t)
	c.jointWindow = 200 * time.Millisecond
	for _, id := range memIDs {
		c.start(id)
	}
	c.waitServing("", 15*time.Second)
	dir := c.cfgs["db2"].Node.DataDir
	c.stop("db2")
	time.Sleep(300 * time.Millisecond) // past the joint-bootstrap window

	t.Run("raft.db emptied, marker kept", func(t *testing.T) {
		if err := os.Truncate(filepath.Join(dir, "raft.db"), 0); err != nil {
			t.Fatal(err)
		}
		_, err := New(c.cfgs["db2"], zaptest.NewLogger(t), Options{Transport: mustInmem(c.cfgs["db2"]), MySQL: worldMySQL{c.w, "db2"}, VIP: worldVIP{c.w, "db2"}})
		if !errors.Is(err, ErrAmnesia) || !strings.Contains(err.Error(), "re-add") {
			t.Fatalf("New = %v, want ErrAmnesia naming the recovery", err)
		}
	})
	t.Run("data dir wiped while the peers hold state", func(t *testing.T) {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		c.expectErr["db2"] = true
		c.start("db2")
		select {
		case err := <-c.done["db2"]:
			if !errors.Is(err, ErrAmnesia) || !strings.Contains(err.Error(), "already holds cluster state") {
				t.Fatalf("Run = %v, want ErrAmnesia: peers hold state", err)
			}
			delete(c.cancel, "db2")
			delete(c.nodes, "db2")
		case <-time.After(10 * time.Second):
			t.Fatal("a wiped node started without refusing")
		}
	})
}

func mustInmem(cfg *config.Config) raft.Transport {
	_, tr := raft.NewInmemTransport(raft.ServerAddress(cfg.Cluster.RaftAddr))
	return tr
}
