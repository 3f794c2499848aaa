package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.uber.org/zap/zaptest"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/config"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/probe"
	"github.com/keepraft/keepraft/store"
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
func (m worldMySQL) ReplicaChannel(context.Context) (probe.ReplicaChannel, error) {
	return probe.ReplicaChannel{}, nil
}
func (m worldMySQL) ResetRelayLog(context.Context) (probe.ReplicaChannel, error) {
	return probe.ReplicaChannel{}, probe.ErrNoChannel
}
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

// launch builds node id on a fresh in-memory transport, connected both ways to the other
// running nodes when connect is set, and returns it without running it. A failed New
// leaves no transport behind.
func (c *memCluster) launch(id string, connect bool) (*Node, error) {
	c.t.Helper()
	return c.build(id, c.transport(id, connect))
}

// transport gives node id a fresh in-memory transport, connected both ways to the other
// running nodes when connect is set.
func (c *memCluster) transport(id string, connect bool) *raft.InmemTransport {
	_, tr := raft.NewInmemTransport(raft.ServerAddress(c.cfgs[id].Cluster.RaftAddr))
	c.trans[id] = tr
	if connect {
		c.connect(id)
	}
	return tr
}

// build builds node id on tr with the world's fakes; a failed New drops tr.
func (c *memCluster) build(id string, tr *raft.InmemTransport) (*Node, error) {
	cfg := c.cfgs[id]
	opts := Options{Transport: tr}
	if cfg.IsDatabase() {
		opts.MySQL, opts.VIP = worldMySQL{c.w, id}, worldVIP{c.w, id}
		opts.Remote = nil
	}
	n, err := New(cfg, zaptest.NewLogger(c.t).Named(id), opts)
	if err != nil {
		c.drop(id)
		return nil, err
	}
	n.jointWindow = c.jointWindow
	return n, nil
}

// connect links node id's transport with every other one, both ways.
func (c *memCluster) connect(id string) {
	tr := c.trans[id]
	for other, ot := range c.trans {
		if other != id {
			tr.Connect(ot.LocalAddr(), ot)
			ot.Connect(tr.LocalAddr(), tr)
		}
	}
}

// drop unlinks node id's transport from the others and forgets it.
func (c *memCluster) drop(id string) {
	tr, ok := c.trans[id]
	if !ok {
		return
	}
	for other, ot := range c.trans {
		if other != id {
			ot.Disconnect(tr.LocalAddr())
		}
	}
	delete(c.trans, id)
}

// run runs a launched node until stop.
func (c *memCluster) run(id string, n *Node) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	c.nodes[id], c.cancel[id], c.done[id] = n, cancel, done
}

// start launches node id connected to the others and runs it.
func (c *memCluster) start(id string) {
	c.t.Helper()
	n, err := c.launch(id, true)
	if err != nil {
		c.t.Fatalf("new %s: %v", id, err)
	}
	c.run(id, n)
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
	c.drop(id)
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
		time.Sleep(waitPoll)
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

// Timing of the in-process cluster tests.
const (
	// formWithin bounds the first formation (three joint bootstraps, an election, a
	// promotion); failoverWithin a failover or a return to service.
	formWithin     = 15 * time.Second
	failoverWithin = 10 * time.Second
	// waitPoll spaces the checks of the waits.
	waitPoll = 20 * time.Millisecond
)

// leader returns the running node that leads, "" if none does.
func (c *memCluster) leader() string {
	for id, n := range c.nodes {
		if n.IsLeader() {
			return id
		}
	}
	return ""
}

// waitLeader waits until a running node other than not leads, and returns it.
func (c *memCluster) waitLeader(not string, within time.Duration) string {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if id := c.leader(); id != "" && id != not {
			return id
		}
		time.Sleep(waitPoll)
	}
	c.t.Fatalf("no leader other than %q within %v", not, within)
	return ""
}

// waitFor waits until cond holds, at most within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(waitPoll)
	}
}

// otherDB is the database node that is not id.
func otherDB(id string) string {
	if id == "db1" {
		return "db2"
	}
	return "db1"
}

func TestInProcessCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("in-process cluster runs for several seconds")
	}
	c := newMemCluster(t)
	for _, id := range memIDs {
		c.start(id)
	}
	owner := c.waitServing("db1", formWithin) // db1 has the higher priority

	t.Run("failover on a failed probe", func(t *testing.T) {
		c.w.mu.Lock()
		c.w.up[owner] = false
		c.w.writable[owner] = false // a dead server accepts nothing
		c.w.mu.Unlock()
		owner = c.waitServing("db2", failoverWithin)
		c.w.mu.Lock()
		c.w.up["db1"] = true
		c.w.mu.Unlock()
		c.checkViolations()
	})

	t.Run("owner node lost", func(t *testing.T) {
		lost := owner
		c.stop(lost)
		owner = c.waitServing(otherDB(lost), failoverWithin)
		c.start(lost)
		c.waitServing(owner, failoverWithin) // nopreempt: the owner keeps serving
		c.checkViolations()
	})

	t.Run("raft leader lost", func(t *testing.T) {
		leader := c.waitLeader("", failoverWithin)
		want := owner // a leader's loss alone does not move ownership
		if leader == owner {
			want = otherDB(owner)
		}
		t.Logf("stopping the leader %s; owner %s", leader, owner)
		c.stop(leader)
		c.waitLeader(leader, failoverWithin)
		owner = c.waitServing(want, failoverWithin)
		c.start(leader)
		c.waitServing(owner, failoverWithin)
		c.checkViolations()
	})

	t.Run("restart from its own store", func(t *testing.T) {
		other := otherDB(owner)
		n := c.nodes[other]
		before := n.State()
		if err := n.raft.Snapshot().Error(); err != nil {
			t.Fatalf("snapshot %s: %v", other, err)
		}
		c.stop(other)
		// Cut off from the others, the restarted node can hold only what its own data
		// dir gave it: check that right after New, before it can hear a leader.
		n, err := c.launch(other, false)
		if err != nil {
			t.Fatalf("new %s: %v", other, err)
		}
		got := n.State()
		if got.Index < before.Index || got.Index == 0 || got.Epoch != before.Epoch || got.Owner != before.Owner || got.Phase != before.Phase {
			t.Fatalf("restarted %s restored index %d epoch %d owner %q phase %s from its own store, want index ≥ %d, epoch %d, owner %q, phase %s",
				other, got.Index, got.Epoch, got.Owner, got.Phase, before.Index, before.Epoch, before.Owner, before.Phase)
		}
		t.Logf("%s restored index %d (epoch %d, owner %s) from its own store; index %d before", other, got.Index, got.Epoch, got.Owner, before.Index)
		if last := n.raft.LastIndex(); last < before.Index {
			t.Fatalf("restarted %s has its log up to %d, want ≥ %d", other, last, before.Index)
		}
		c.connect(other)
		c.run(other, n)
		c.waitServing(owner, failoverWithin)
		c.checkViolations()
	})
}

// Timing of the amnesia tests.
const (
	// refusalWithin bounds how long a node that must refuse to start may run.
	refusalWithin = 5 * time.Second
	// leaderSample spaces the checks that a lone peer never wins an election, and the
	// fake candidate's vote requests.
	leaderSample = 5 * time.Millisecond
	// voteTimeout bounds one vote request of the fake candidate.
	voteTimeout = 50 * time.Millisecond
	// shortJointWindow is the amnesia test's joint-bootstrap window, and pastJointWindow
	// outlasts it.
	shortJointWindow = 200 * time.Millisecond
	pastJointWindow  = 300 * time.Millisecond
)

// raftDB is what a stopped node's raft.db holds: its term, its last vote and its log.
type raftDB struct {
	Term, VoteTerm, LastIndex uint64
	VoteFor                   string
}

// readRaftDB reads dir's raft.db without creating it: a missing file holds nothing.
func readRaftDB(t *testing.T, dir string) raftDB {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, store.LogFile)); errors.Is(err, os.ErrNotExist) {
		return raftDB{}
	}
	s, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var r raftDB
	for key, v := range map[string]*uint64{"CurrentTerm": &r.Term, "LastVoteTerm": &r.VoteTerm} {
		if *v, err = s.Stable.GetUint64([]byte(key)); err != nil && err.Error() != "not found" {
			t.Fatalf("read %s from %s: %v", key, dir, err)
		}
	}
	cand, err := s.Stable.Get([]byte("LastVoteCand"))
	if err != nil && err.Error() != "not found" {
		t.Fatalf("read LastVoteCand from %s: %v", dir, err)
	}
	r.VoteFor = string(cand)
	if r.LastIndex, err = s.Log.LastIndex(); err != nil {
		t.Fatal(err)
	}
	return r
}

// attemptOpts shape one attempt to start a node that must refuse.
type attemptOpts struct {
	// watch lists running nodes that must never lead during the attempt.
	watch []string
	// candidate names a stopped peer: a fake of it keeps asking for the node's vote in
	// ever higher terms, with a longer log than anyone's.
	candidate string
	// running, when set, is called once the node runs (past New).
	running func()
}

// attemptResult is how an attempt ended.
type attemptResult struct {
	err     error
	inRun   bool     // the refusal came from Run (raft ran, sealed), not from New
	led     []string // watched nodes that led meanwhile
	granted bool     // the node granted the fake candidate a vote
}

// attempt starts node id, which must refuse, and returns its refusal: New's error or
// Run's. A node still running after refusalWithin is stopped and reported with an error
// that is not ErrAmnesia.
func (c *memCluster) attempt(id string, o attemptOpts) (res attemptResult) {
	c.t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var leaders []string
	voted := false
	for _, w := range o.watch {
		n := c.nodes[w]
		wg.Go(func() {
			t := time.NewTicker(leaderSample)
			defer t.Stop()
			for {
				if n.IsLeader() {
					mu.Lock()
					leaders = append(leaders, w)
					mu.Unlock()
					return
				}
				select {
				case <-stop:
					return
				case <-t.C:
				}
			}
		})
	}
	tr := c.transport(id, true)
	if o.candidate != "" {
		addr := raft.ServerAddress(c.cfgs[o.candidate].Cluster.RaftAddr)
		_, fake := raft.NewInmemTransportWithTimeout(addr, voteTimeout)
		fake.Connect(tr.LocalAddr(), tr)
		wg.Go(func() {
			for term := uint64(1000); ; term++ {
				req := &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(o.candidate),
					Addr: fake.EncodePeer(raft.ServerID(o.candidate), addr)}, Term: term, LastLogIndex: 1 << 20, LastLogTerm: term - 1}
				var resp raft.RequestVoteResponse
				if err := fake.RequestVote(raft.ServerID(id), tr.LocalAddr(), req, &resp); err == nil && resp.Granted {
					mu.Lock()
					voted = true
					mu.Unlock()
				}
				select {
				case <-stop:
					return
				case <-time.After(leaderSample):
				}
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
		res.led, res.granted = leaders, voted
	}()
	n, err := c.build(id, tr)
	if err != nil {
		return attemptResult{err: err}
	}
	defer c.drop(id)
	ctx, cancel := context.WithTimeout(context.Background(), refusalWithin)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	if o.running != nil {
		o.running()
	}
	err = <-done
	if err == nil && ctx.Err() != nil {
		err = fmt.Errorf("%s ran for %v without refusing", id, refusalWithin)
	}
	return attemptResult{err: err, inRun: true}
}

// TestNoRaftAmnesia: a node whose data dir was bootstrapped but lost its Raft state
// refuses to start, and so do a data dir whose Raft state sits beside the pending marker
// without the marker and a wiped data dir whose peers hold state, on every start: a
// wiped node never grants a vote and never records a term, and every error names the
// file and the recovery.
func TestNoRaftAmnesia(t *testing.T) {
	if testing.Short() {
		t.Skip("in-process cluster runs for several seconds")
	}
	c := newMemCluster(t)
	c.jointWindow = shortJointWindow
	for _, id := range memIDs {
		c.start(id)
	}
	c.waitServing("", formWithin)
	dir := c.cfgs["db2"].Node.DataDir
	c.stop("db2")
	c.expectErr["db2"] = true
	time.Sleep(pastJointWindow)

	// Refused by New on its own data dir, twice: nothing about it changes between starts.
	local := []struct {
		name   string
		give   func(t *testing.T)
		wantIn []string
	}{
		{"raft state beside the pending marker, no marker", func(t *testing.T) {
			m, ok, err := store.ReadMarker(dir)
			if err != nil || !ok {
				t.Fatalf("ReadMarker = %v, %v", ok, err)
			}
			if err := os.Remove(filepath.Join(dir, store.MarkerFile)); err != nil {
				t.Fatal(err)
			}
			if err := store.WritePending(dir, m); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := errors.Join(store.WriteMarker(dir, m), store.ClearPending(dir)); err != nil {
					t.Error(err)
				}
			})
		}, []string{store.PendingFile, store.MarkerFile, store.LogFile}},
		{"raft.db emptied, marker kept", func(t *testing.T) {
			if err := os.Truncate(filepath.Join(dir, store.LogFile), 0); err != nil {
				t.Fatal(err)
			}
		}, []string{store.MarkerFile, store.LogFile}},
	}
	for _, tt := range local {
		t.Run(tt.name, func(t *testing.T) {
			tt.give(t)
			for start := range 2 {
				n, err := New(c.cfgs["db2"], zaptest.NewLogger(t), Options{Transport: mustInmem(c.cfgs["db2"]), MySQL: worldMySQL{c.w, "db2"}, VIP: worldVIP{c.w, "db2"}})
				if err == nil {
					t.Fatalf("start %d: New succeeded (closing it: %v), want ErrAmnesia", start+1, n.close())
				}
				if !errors.Is(err, ErrAmnesia) || !strings.Contains(err.Error(), "restore this node's own data dir") {
					t.Fatalf("start %d: New = %v, want ErrAmnesia naming the recovery", start+1, err)
				}
				for _, want := range tt.wantIn {
					if !strings.Contains(err.Error(), want) {
						t.Fatalf("start %d: New = %v, want it to name %s", start+1, err, want)
					}
				}
			}
		})
	}

	// A wiped data dir, started twice (as systemd's Restart=on-failure does): both starts
	// refuse, neither grants a vote nor stores a term. With one peer stopped, the other
	// can only win an election with the wiped node's vote; a fake of the stopped one asks
	// for it too. With every peer stopped at first, the node passes the check before
	// raft starts and runs sealed until the peers are back and it learns they hold state.
	tests := []struct {
		name    string
		stopped []string // peers stopped for the case, restarted after it
		restart bool     // restart them while the first start runs
		// inRun says, per start, whether the refusal comes from Run (raft ran sealed)
		// rather than from New (before raft starts).
		inRun [2]bool
	}{
		{"data dir wiped while the peers hold state", nil, false, [2]bool{false, false}},
		{"data dir wiped while one peer is down: no vote for the other", []string{"witness"}, false, [2]bool{false, false}},
		{"data dir wiped, peers back while it waits: sealed", []string{"db1", "witness"}, true, [2]bool{true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			for _, id := range tt.stopped {
				c.stop(id)
			}
			restart := func() {
				for _, id := range tt.stopped {
					if _, ok := c.nodes[id]; !ok {
						c.start(id)
					}
				}
			}
			defer func() {
				restart()
				c.waitServing("", formWithin)
			}()
			o := attemptOpts{}
			if len(tt.stopped) > 0 {
				o.candidate = tt.stopped[0]
				for id := range c.nodes {
					o.watch = append(o.watch, id)
				}
			}
			for start := range 2 {
				if tt.restart && start == 0 {
					o.running = restart
				} else {
					o.running = nil
				}
				before := readRaftDB(t, dir)
				r := c.attempt("db2", o)
				if !errors.Is(r.err, ErrAmnesia) || !strings.Contains(r.err.Error(), "already holds cluster state") || !strings.Contains(r.err.Error(), "restore this node's own data dir") {
					t.Fatalf("start %d: %v, want ErrAmnesia: peers hold state, naming the recovery", start+1, r.err)
				}
				if r.granted {
					t.Fatalf("start %d: the wiped node granted a vote to %s", start+1, o.candidate)
				}
				if len(r.led) > 0 {
					t.Fatalf("start %d: %v won an election while only the wiped node could vote for it", start+1, r.led)
				}
				if after := readRaftDB(t, dir); after != before {
					t.Fatalf("start %d: raft.db went from %+v to %+v: the refused start took part in Raft", start+1, before, after)
				}
				if d, err := store.Inspect(dir); err != nil || d.Marker {
					t.Fatalf("start %d: data dir %+v (%v) after a refused start, want no %s", start+1, d, err, store.MarkerFile)
				}
				if r.inRun != tt.inRun[start] {
					t.Fatalf("start %d: refused in Run %t, want %t (%v)", start+1, r.inRun, tt.inRun[start], r.err)
				}
			}
		})
	}
}

func mustInmem(cfg *config.Config) raft.Transport {
	_, tr := raft.NewInmemTransport(raft.ServerAddress(cfg.Cluster.RaftAddr))
	return tr
}

// TestBootstrapSealedRaft: raft on a new data dir behind a sealed transport refuses every
// request before raft sees it (a leader's heartbeat on the network transport's fast path
// included) and stores nothing; unsealed, the same vote request is granted, as
// hashicorp/raft grants any vote while its configuration is empty.
func TestBootstrapSealedRaft(t *testing.T) {
	tests := []struct {
		name string
		give func(t *testing.T) (raft.Transport, raft.Transport) // server, client
	}{
		{"in-memory", func(t *testing.T) (raft.Transport, raft.Transport) {
			_, srv := raft.NewInmemTransport("")
			_, cli := raft.NewInmemTransportWithTimeout("", voteTimeout)
			cli.Connect(srv.LocalAddr(), srv)
			return srv, cli
		}},
		{"tcp", func(t *testing.T) (raft.Transport, raft.Transport) {
			addrs := freeAddrs(t, 2)
			var out []raft.Transport
			for _, a := range addrs {
				tr, err := raft.NewTCPTransport(a, nil, tcpPool, tcpTimeout, io.Discard)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, tr)
			}
			return out[0], out[1]
		}},
	}
	const term = 7
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner, cli := tt.give(t)
			defer cli.(raft.WithClose).Close()
			s, err := store.Open(t.TempDir(), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			sealed := newSealedTransport(inner)
			rc := raft.DefaultConfig()
			rc.LocalID = "db2"
			rc.Logger = hclog.NewNullLogger()
			r, err := raft.NewRaft(rc, &raft.MockFSM{}, s.Log, s.Stable, s.Snap, sealed.transport())
			if err != nil {
				t.Fatal(err)
			}
			defer r.Shutdown()
			target, leader := inner.LocalAddr(), cli.LocalAddr()
			hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("db1"), Addr: cli.EncodePeer("db1", leader)}
			vote := func() (raft.RequestVoteResponse, error) {
				var resp raft.RequestVoteResponse
				err := cli.RequestVote("db2", target, &raft.RequestVoteRequest{RPCHeader: hdr, Term: term, LastLogIndex: 10, LastLogTerm: term - 1}, &resp)
				return resp, err
			}
			calls := []struct {
				name string
				call func() error
			}{
				{"heartbeat", func() error {
					return cli.AppendEntries("db2", target, &raft.AppendEntriesRequest{RPCHeader: hdr, Term: term}, &raft.AppendEntriesResponse{})
				}},
				{"append entries", func() error {
					return cli.AppendEntries("db2", target, &raft.AppendEntriesRequest{RPCHeader: hdr, Term: term, LeaderCommitIndex: 1,
						Entries: []*raft.Log{{Index: 1, Term: term, Type: raft.LogCommand, Data: []byte("{}")}}}, &raft.AppendEntriesResponse{})
				}},
				{"pre-vote", func() error {
					return cli.(raft.WithPreVote).RequestPreVote("db2", target, &raft.RequestPreVoteRequest{RPCHeader: hdr, Term: term, LastLogIndex: 10, LastLogTerm: term - 1}, &raft.RequestPreVoteResponse{})
				}},
				{"vote", func() error {
					_, err := vote()
					return err
				}},
				{"timeout now", func() error {
					return cli.TimeoutNow("db2", target, &raft.TimeoutNowRequest{RPCHeader: hdr}, &raft.TimeoutNowResponse{})
				}},
			}
			for _, c := range calls {
				if err := c.call(); err == nil || !strings.Contains(err.Error(), "sealed") {
					t.Fatalf("sealed: %s = %v, want it refused as sealed", c.name, err)
				}
			}
			// NewRaft itself writes term 0 (its starting term); a heard term is above it.
			for _, key := range []string{"CurrentTerm", "LastVoteTerm"} {
				if v, err := s.Stable.GetUint64([]byte(key)); v != 0 || (err != nil && err.Error() != "not found") {
					t.Fatalf("sealed raft stored %s %d (%v)", key, v, err)
				}
			}
			if last, err := s.Log.LastIndex(); err != nil || last != 0 {
				t.Fatalf("sealed raft stored log up to %d (%v)", last, err)
			}
			if err := sealed.transport().RequestVote("db1", leader, &raft.RequestVoteRequest{RPCHeader: hdr, Term: term}, &raft.RequestVoteResponse{}); !errors.Is(err, errSealed) {
				t.Fatalf("sealed: outgoing vote request = %v, want errSealed", err)
			}
			sealed.unseal()
			if resp, err := vote(); err != nil || !resp.Granted {
				t.Fatalf("unsealed: vote = %+v, %v; want granted (empty configuration)", resp, err)
			}
		})
	}
}

// TestBootstrapPeersNew: a new node bootstraps once every peer reports a new data dir, or
// once one reports a joint bootstrap moments ago (fresh at a term above 0) and none holds
// state; a peer that holds state, or that bootstrapped jointly and heard this node's Raft
// traffic since, is a refusal.
func TestBootstrapPeersNew(t *testing.T) {
	n := &Node{cfg: newMemCluster(t).cfgs["db2"]}
	fresh := api.Peer{OK: true, Report: api.NodeReport{Fresh: true}}
	joint := api.Peer{OK: true, Report: api.NodeReport{Fresh: true, Term: 1, Applied: 3, Heard: []string{"witness"}}}
	jointHeard := api.Peer{OK: true, Report: api.NodeReport{Fresh: true, Term: 2, Applied: 5, Heard: []string{"db2", "witness"}}}
	state := api.Peer{OK: true, Report: api.NodeReport{Term: 4, Applied: 40}}
	down := api.Peer{Err: "connection refused"}
	const holds, heard = "witness already holds cluster state", "db1, which bootstrapped the cluster moments ago, has heard this node's Raft traffic"
	tests := []struct {
		name        string
		give        map[string]api.Peer
		wantReady   bool
		wantMissing []string
		wantErr     string
	}{
		{"nobody answered", map[string]api.Peer{}, false, []string{"db1", "witness"}, ""},
		{"one new, one down", map[string]api.Peer{"db1": fresh, "witness": down}, false, []string{"witness"}, ""},
		{"every peer new", map[string]api.Peer{"db1": fresh, "witness": fresh}, true, nil, ""},
		{"one bootstrapped jointly, one new", map[string]api.Peer{"db1": joint, "witness": fresh}, true, nil, ""},
		{"one bootstrapped jointly, one down", map[string]api.Peer{"db1": joint, "witness": down}, true, []string{"witness"}, ""},
		{"one bootstrapped jointly and heard this node", map[string]api.Peer{"db1": jointHeard, "witness": joint}, false, nil, heard},
		{"one bootstrapped jointly and heard this node, one down", map[string]api.Peer{"db1": jointHeard, "witness": down}, false, nil, heard},
		{"one holds state", map[string]api.Peer{"db1": fresh, "witness": state}, false, nil, holds},
		{"one holds state, one bootstrapped jointly", map[string]api.Peer{"db1": joint, "witness": state}, false, nil, holds},
		{"one holds state, one down", map[string]api.Peer{"db1": down, "witness": state}, false, nil, holds},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready, missing, err := n.peersNew(tt.give)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrAmnesia) || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), store.Recovery) {
					t.Fatalf("peersNew = %t, %v, %v; want ErrAmnesia: %q, naming the recovery", ready, missing, err, tt.wantErr)
				}
				return
			}
			if err != nil || ready != tt.wantReady || !slices.Equal(missing, tt.wantMissing) {
				t.Fatalf("peersNew = %t, %v, %v; want %t, %v", ready, missing, err, tt.wantReady, tt.wantMissing)
			}
		})
	}
}

// TestNoAmnesiaInJointWindow: a node wiped moments after the joint bootstrap, while its
// peers still report the bootstrap as joint, refuses to bootstrap again: its peers heard
// its Raft traffic. (Before the peers listed whom they heard, it bootstrapped a second
// time and could vote again in a term it had voted in.)
func TestNoAmnesiaInJointWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("in-process cluster runs for several seconds")
	}
	c := newMemCluster(t)
	c.jointWindow = time.Hour
	for _, id := range memIDs {
		c.start(id)
	}
	c.waitServing("", formWithin)
	waitFor(t, formWithin, "a peer heard db2", func() bool {
		for _, id := range []string{"db1", "witness"} {
			if fresh, heard := c.nodes[id].isFresh(); fresh && slices.Contains(heard, "db2") {
				return true
			}
		}
		return false
	})
	dir := c.cfgs["db2"].Node.DataDir
	c.stop("db2")
	c.expectErr["db2"] = true
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	before := readRaftDB(t, dir)
	r := c.attempt("db2", attemptOpts{})
	if !errors.Is(r.err, ErrAmnesia) || !strings.Contains(r.err.Error(), "has heard this node's Raft traffic") {
		t.Fatalf("wiped inside the joint window: %v, want ErrAmnesia: a peer heard it", r.err)
	}
	if after := readRaftDB(t, dir); after != before {
		t.Fatalf("raft.db went from %+v to %+v: the refused start took part in Raft", before, after)
	}
}
