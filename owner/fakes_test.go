package owner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/probe"
	"github.com/keepraft/keepraft/vip"
)

// trace is the ordered record of every side effect the fakes saw, shared by all of them,
// so tests can assert order ("vip drop" before "propose OwnerReleased").
type trace struct {
	mu    sync.Mutex
	lines []string
}

func (t *trace) add(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, fmt.Sprintf(format, args...))
}

func (t *trace) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = nil
}

func (t *trace) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// index returns the position of the first line starting with prefix, or -1.
func (t *trace) index(prefix string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, l := range t.lines {
		if strings.HasPrefix(l, prefix) {
			return i
		}
	}
	return -1
}

func (t *trace) count(prefix string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, l := range t.lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// fakeNode is a node whose state is a real fsm.State; proposals are applied to it (or
// fail, while failPropose > 0).
type fakeNode struct {
	tr          *trace
	mu          sync.Mutex
	s           fsm.State
	caught      bool
	watch       chan struct{}
	failPropose int
	peers       map[string]api.Peer
	proposed    []fsm.Event // every event proposed and applied (or stale), in order
	reads       int         // State calls
}

func newFakeNode(tr *trace, s fsm.State) *fakeNode {
	return &fakeNode{tr: tr, s: s, caught: true, watch: make(chan struct{}), peers: map[string]api.Peer{}}
}

func (n *fakeNode) State() fsm.State {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.reads++
	return n.s.Clone()
}

func (n *fakeNode) Watch() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.watch
}

func (n *fakeNode) CaughtUp() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.caught
}

func (n *fakeNode) CaughtUpSinceStart() bool { return n.CaughtUp() }

func (n *fakeNode) setCaughtUp(b bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.caught = b
}

func (n *fakeNode) Peers() map[string]api.Peer {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string]api.Peer{}
	for k, v := range n.peers {
		out[k] = v
	}
	return out
}

// apply commits ev to the state as if the cluster did.
func (n *fakeNode) apply(t *testing.T, ev fsm.Event) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	s, err := n.s.Apply(n.s.Index+1, ev)
	if err != nil {
		t.Fatalf("apply %s: %v", ev.Type, err)
	}
	n.s = s
	close(n.watch)
	n.watch = make(chan struct{})
}

func (n *fakeNode) Propose(_ context.Context, ev fsm.Event) (api.ProposeResponse, error) {
	n.tr.add("propose %s epoch=%d", ev.Type, ev.Epoch)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.failPropose > 0 {
		n.failPropose--
		return api.ProposeResponse{}, errors.New("no raft leader")
	}
	n.proposed = append(n.proposed, ev)
	s, err := n.s.Apply(n.s.Index+1, ev)
	n.s = s
	close(n.watch)
	n.watch = make(chan struct{})
	resp := api.ProposeResponse{Index: s.Index, Result: fsm.ResultApplied}
	if err != nil {
		resp.Result, resp.Error = fsm.ResultStale, err.Error()
	}
	return resp, nil
}

// fakeMySQL is a server with a read_only flag and a replication channel.
type fakeMySQL struct {
	tr         *trace
	mu         sync.Mutex
	up         bool
	readOnly   bool
	replica    bool // the channel runs
	gtid       string
	fenceErr   error
	onCatchUp  func()
	exit       chan struct{} // closed when the "process" exits; nil: not watchable
	process    int           // what Process reports
	catchUp    probe.CatchUp
	relay      probe.RelayCatchUp
	replErr    probe.ReplicaStatus // LastError and LastSQLError reported with the channel
	onStop     func()              // called inside STOP REPLICA, before it returns
	onRelay    func()              // called inside the wait for the relay log, before it returns
	stopErr    error               // STOP REPLICA fails with it
	stopAnyway bool                // ... after stopping the channel (a cancelled statement the server finished)
	startHangs bool                // START REPLICA hangs until its context ends (a held replication lock)
	ioDown     bool                // the IO thread alone stopped (an error from the source)
	semiSync   bool                // the semi-sync master side is on
	semiErr    error               // switching the semi-sync master side fails with it
	onSemiSync func()              // called inside SemiSyncMaster, before it returns
	ioErrno    int                 // Last_IO_Errno reported while the IO thread is down with an error
	noGTID     bool                // the channel positions by binlog file and offset, not GTID
	resetErr   error               // ResetRelayLog fails with it
	srcAdvance uint64              // added to the channel's source position (Read_Master_Log_Pos)
}

func newFakeMySQL(tr *trace) *fakeMySQL {
	return &fakeMySQL{tr: tr, up: true, readOnly: true, replica: true, gtid: "1-1-10", catchUp: probe.CatchUp{Reached: true}, relay: probe.RelayCatchUp{Reached: true}}
}

func (m *fakeMySQL) Check(context.Context) (probe.Health, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.up {
		return probe.Health{Err: "connection refused"}, errors.New("connection refused")
	}
	return probe.Health{Up: true, ReadOnly: m.readOnly, GTIDExecuted: m.gtid, CheckedAt: time.Now(), Replica: probe.ReplicaStatus{Configured: true, IORunning: m.replica && !m.ioDown, SQLRunning: m.replica, LastError: m.replErr.LastError, LastSQLError: m.replErr.LastSQLError}}, nil
}

func (m *fakeMySQL) Fence(context.Context) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tr.add("mysql fence")
	if m.fenceErr != nil {
		return "", m.fenceErr
	}
	m.readOnly = true
	return m.gtid, nil
}

func (m *fakeMySQL) Promote(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tr.add("mysql read_only=0")
	m.readOnly = false
	return nil
}

func (m *fakeMySQL) SemiSyncMaster(_ context.Context, on bool) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.onSemiSync != nil {
		m.onSemiSync()
	}
	if m.semiErr != nil {
		return false, m.semiErr
	}
	if m.semiSync == on {
		return false, nil
	}
	m.tr.add("mysql semi-sync master on=%v", on)
	m.semiSync = on
	return true, nil
}

func (m *fakeMySQL) KillStopped() (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.process != probe.ProcessStopped {
		return false, nil
	}
	m.tr.add("mysql kill stopped")
	m.process, m.up = probe.ProcessGone, false
	return true, nil
}

func (m *fakeMySQL) StopReplication(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tr.add("mysql stop replication")
	if m.stopErr != nil {
		if m.stopAnyway {
			m.replica = false
		}
		return m.stopErr
	}
	m.replica = false
	if m.onStop != nil {
		m.onStop()
	}
	return nil
}

func (m *fakeMySQL) StartReplication(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.startHangs {
		m.mu.Unlock()
		<-ctx.Done()
		m.mu.Lock()
		m.tr.add("mysql start replication: %v", ctx.Err())
		return ctx.Err()
	}
	m.tr.add("mysql start replication")
	m.replica, m.ioDown = true, false
	return nil
}

// channel is the replication channel as ReplicaChannel reports it; the caller holds mu.
func (m *fakeMySQL) channel() probe.ReplicaChannel {
	c := probe.ReplicaChannel{Configured: true, IORunning: m.replica && !m.ioDown, SQLRunning: m.replica,
		SQLError: m.replErr.LastSQLError, Positioning: "Slave_Pos", GTIDPositioned: !m.noGTID,
		SourceLogFile: "mariadb-bin.000014", SourceLogPos: 458705 + m.srcAdvance}
	if c.SQLError != "" {
		c.SQLErrno = 1062
	}
	if !c.IORunning && m.replErr.LastError != "" && m.replErr.LastSQLError == "" {
		c.IOErrno, c.IOError = m.ioErrno, m.replErr.LastError
	}
	if m.noGTID {
		c.Positioning = "No"
	}
	return c
}

func (m *fakeMySQL) ReplicaChannel(context.Context) (probe.ReplicaChannel, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.channel(), nil
}

func (m *fakeMySQL) ResetRelayLog(context.Context) (probe.ReplicaChannel, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tr.add("mysql reset relay log")
	c := m.channel()
	if m.resetErr != nil {
		return c, m.resetErr
	}
	if m.noGTID || c.SQLErrno != 0 {
		return c, errors.New("fake: reset refused")
	}
	m.replica, m.ioDown = true, false
	return c, nil
}

func (m *fakeMySQL) WaitCatchUp(context.Context, string, uint32, time.Duration) (probe.CatchUp, error) {
	m.tr.add("mysql catch-up")
	if m.onCatchUp != nil {
		m.onCatchUp()
	}
	return m.catchUp, nil
}

func (m *fakeMySQL) WaitRelayApplied(context.Context, time.Duration) (probe.RelayCatchUp, error) {
	m.tr.add("mysql relay applied")
	m.mu.Lock()
	hook := m.onRelay
	m.mu.Unlock()
	if hook != nil {
		hook()
	}
	return m.relay, nil
}

func (m *fakeMySQL) WaitExit(ctx context.Context) error {
	m.mu.Lock()
	exit := m.exit
	m.mu.Unlock()
	if exit == nil {
		return errors.New("not local")
	}
	select {
	case <-exit:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *fakeMySQL) Process() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.process
}

func (m *fakeMySQL) isReadOnly() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.readOnly
}

// fakeRemote is the peers' servers.
type fakeRemote struct {
	tr       *trace
	mu       sync.Mutex
	fenceErr error
	gtids    []string // successive answers of Fence (the last one repeats)
	readOnly bool     // ReadOnly's answer
	readErr  error
}

func (r *fakeRemote) Ping(context.Context, string) error { return nil }

func (r *fakeRemote) Fence(_ context.Context, peer string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tr.add("remote fence %s", peer)
	if r.fenceErr != nil {
		return "", r.fenceErr
	}
	g := r.gtids[0]
	if len(r.gtids) > 1 {
		r.gtids = r.gtids[1:]
	}
	return g, nil
}

func (r *fakeRemote) ReadOnly(_ context.Context, peer string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tr.add("remote read_only %s", peer)
	return r.readOnly, r.readErr
}

func (r *fakeRemote) Executed(_ context.Context, peer string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tr.add("remote read %s", peer)
	g := r.gtids[0]
	if len(r.gtids) > 1 {
		r.gtids = r.gtids[1:]
	}
	return g, nil
}

// fakeVIP is the interface's managed addresses.
type fakeVIP struct {
	tr       *trace
	mu       sync.Mutex
	held     bool
	setErr   error
	conflict net.HardwareAddr
	onProbe  func() // called inside ProbeConflict, before it answers
}

func (v *fakeVIP) Set(_ context.Context, desired []netip.Prefix) (vip.Result, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.setErr != nil {
		v.tr.add("vip set failed")
		return vip.Result{}, v.setErr
	}
	var res vip.Result
	switch {
	case len(desired) > 0 && !v.held:
		v.tr.add("vip add")
		res.Added = desired
	case len(desired) > 0:
		v.tr.add("vip renew")
		res.Renewed = desired
	case v.held:
		v.tr.add("vip drop")
		res.Removed = []netip.Prefix{netip.MustParsePrefix("198.18.0.100/32")}
	}
	v.held = len(desired) > 0
	return res, nil
}

func (v *fakeVIP) Held(context.Context) ([]netip.Prefix, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.held {
		return []netip.Prefix{netip.MustParsePrefix("198.18.0.100/32")}, nil
	}
	return nil, nil
}

func (v *fakeVIP) ProbeConflict(context.Context, netip.Addr) (net.HardwareAddr, bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.tr.add("vip arp probe")
	if v.onProbe != nil {
		v.onProbe()
	}
	return v.conflict, v.conflict != nil, nil
}

func (v *fakeVIP) isHeld() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.held
}

// fakeRenewer answers Renew requests: promised unless refuse is set.
type fakeRenewer struct {
	tr     *trace
	mu     sync.Mutex
	refuse bool
	reason string // the refusal's reason
	err    error  // returned instead of an answer when set
	calls  int
	slow   func() // called inside Renew (a late answer advances the clock)
}

func (r *fakeRenewer) Renew(_ context.Context, peer string, req api.RenewRequest) (api.RenewResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.slow != nil {
		r.slow()
	}
	if r.err != nil {
		return api.RenewResponse{}, r.err
	}
	resp := api.RenewResponse{Node: peer, Promised: !r.refuse}
	if r.refuse {
		resp.Reason = r.reason
	}
	return resp, nil
}

// clock is a manual lease clock.
type clock struct {
	mu sync.Mutex
	t  time.Duration
}

func (c *clock) now() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t += d
}

// ev builds an event decided from s.
func ev(t *testing.T, s fsm.State, typ fsm.Type, by string, p any) fsm.Event {
	t.Helper()
	e, err := fsm.NewEvent(typ, by, time.Unix(1700000000, 0), s.Epoch, s.Phase, p)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// cluster returns a bootstrapped state with db1, db2 (healthy) and a witness.
func cluster(t *testing.T) fsm.State {
	t.Helper()
	s := fsm.NewState()
	steps := []func(fsm.State) fsm.Event{
		func(s fsm.State) fsm.Event {
			return ev(t, s, fsm.Bootstrapped, "witness", fsm.BootstrappedData{Members: []fsm.Member{{ID: "db1"}, {ID: "db2"}, {ID: "witness"}}})
		},
		func(s fsm.State) fsm.Event {
			return ev(t, s, fsm.MemberJoined, "db1", fsm.MemberData{Member: fsm.Member{ID: "db1", Role: fsm.RoleDatabase, Priority: 100}})
		},
		func(s fsm.State) fsm.Event {
			return ev(t, s, fsm.MemberJoined, "db2", fsm.MemberData{Member: fsm.Member{ID: "db2", Role: fsm.RoleDatabase, Priority: 90}})
		},
		func(s fsm.State) fsm.Event {
			return ev(t, s, fsm.MemberJoined, "witness", fsm.MemberData{Member: fsm.Member{ID: "witness", Role: fsm.RoleWitness}})
		},
		func(s fsm.State) fsm.Event {
			return ev(t, s, fsm.HealthChanged, "db1", fsm.HealthData{Node: "db1", Healthy: true, GTID: "1-1-10"})
		},
		func(s fsm.State) fsm.Event {
			return ev(t, s, fsm.HealthChanged, "db2", fsm.HealthData{Node: "db2", Healthy: true, GTID: "1-1-10"})
		},
	}
	for i, f := range steps {
		var err error
		if s, err = s.Apply(uint64(i+1), f(s)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// assign applies OwnerAssigned (and OwnerPromoted when active) for owner.
func assign(t *testing.T, n *fakeNode, owner string, active bool) {
	t.Helper()
	n.apply(t, ev(t, n.State(), fsm.OwnerAssigned, "witness", fsm.AssignData{Owner: owner, Reason: "test"}))
	if active {
		n.apply(t, ev(t, n.State(), fsm.OwnerPromoted, owner, fsm.PromotedData{Owner: owner, Reached: true}))
	}
}

// rig is one owner runtime on fakes, as db1.
type rig struct {
	tr     *trace
	node   *fakeNode
	db     *fakeMySQL
	remote *fakeRemote
	vip    *fakeVIP
	renew  *fakeRenewer
	wd     *fakeWatchdog
	fence  *fakeFence
	clock  *clock
	o      *Owner
}

// fakeFence is the VIP fence: open for the last duration given, until shut.
type fakeFence struct {
	tr        *trace
	mu        sync.Mutex
	open      bool
	last      time.Duration
	openErr   error
	reinstall int           // Reinstall calls
	reinstErr error         // Reinstall fails with it
	gone      chan string   // Watch reports each value sent here as a loss
	watching  chan struct{} // closed once Watch runs
	clock     *clock        // the runtime's clock: last is measured on it at the call
	until     time.Duration // the last deadline given
	onOpen    func()        // called inside OpenUntilBoot before it takes effect
}

func newFakeFence(tr *trace) *fakeFence {
	return &fakeFence{tr: tr, gone: make(chan string), watching: make(chan struct{})}
}

func (f *fakeFence) OpenUntilBoot(deadline time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.openErr != nil {
		f.tr.add("fence open failed")
		return f.openErr
	}
	if f.onOpen != nil {
		f.onOpen() // a stall before the kernel is told
	}
	f.tr.add("fence open")
	f.open, f.last, f.until = true, deadline-f.clock.now(), deadline
	return nil
}

func (f *fakeFence) Shut() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tr.add("fence shut")
	f.open = false
	return nil
}

func (f *fakeFence) Watch(ctx context.Context, gone func(string)) error {
	close(f.watching)
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-f.gone:
			gone(r)
		}
	}
}

func (f *fakeFence) Reinstall() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tr.add("fence reinstall")
	f.reinstall++
	if f.reinstErr != nil {
		return f.reinstErr
	}
	f.open = false
	return nil
}

func (f *fakeFence) state() (open bool, last time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.open, f.last
}

// fakeWatchdog records the deadlines it is armed with.
type fakeWatchdog struct {
	tr        *trace
	mu        sync.Mutex
	armed     bool
	deadlines []time.Duration
	err       error  // Arm fails with it
	onArm     func() // called inside Arm, before it returns
}

func (w *fakeWatchdog) Arm(d time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		w.tr.add("watchdog arm failed")
		return w.err
	}
	if w.onArm != nil {
		w.onArm()
	}
	w.tr.add("watchdog arm %s", d)
	w.armed = true
	w.deadlines = append(w.deadlines, d)
	return nil
}

func (w *fakeWatchdog) Disarm() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tr.add("watchdog disarm")
	w.armed = false
	return nil
}

func (w *fakeWatchdog) state() (bool, []time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.armed, append([]time.Duration(nil), w.deadlines...)
}

func newRig(t *testing.T, opts ...func(*Config)) *rig {
	t.Helper()
	tr := &trace{}
	clk := &clock{t: time.Hour}
	fence := newFakeFence(tr)
	fence.clock = clk
	r := &rig{tr: tr, node: newFakeNode(tr, cluster(t)), db: newFakeMySQL(tr), remote: &fakeRemote{tr: tr, gtids: []string{"0-2-5"}},
		vip: &fakeVIP{tr: tr}, renew: &fakeRenewer{tr: tr}, wd: &fakeWatchdog{tr: tr}, fence: fence, clock: clk}
	cfg := Config{Node: "db1", Peers: []string{"db2", "witness"}, Voters: 3, Lease: 500 * time.Millisecond, CatchupTimeout: time.Second,
		OnCatchupTimeout: "promote", FenceReadOnly: true, Flavor: probe.FlavorMariaDB, VIPs: []netip.Prefix{netip.MustParsePrefix("198.18.0.100/32")},
		Interval: 100 * time.Millisecond, Timeout: 200 * time.Millisecond, Rise: 2, Fall: 2, Now: r.clock.now}
	for _, opt := range opts {
		opt(&cfg)
	}
	o, err := New(cfg, Deps{Node: r.node, MySQL: r.db, Remote: r.remote, VIP: r.vip, Renewer: r.renew, Watchdog: r.wd, Fence: r.fence}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	r.o = o
	t.Cleanup(func() { o.bg.Wait() })
	return r
}

// healthy makes the runtime's health verdict known and healthy (as the probe loop would).
func (r *rig) healthy(ok bool) {
	h, _ := r.db.Check(context.Background())
	r.o.mu.Lock()
	defer r.o.mu.Unlock()
	r.o.known, r.o.ok = true, ok
	if h.Up {
		r.o.health = h
		r.o.gtid = h.GTIDExecuted
	}
}

// grantLease records promises from both peers sent now.
func (r *rig) grantLease(epoch uint64) {
	r.o.mu.Lock()
	defer r.o.mu.Unlock()
	if r.o.lease == nil || r.o.lease.Epoch != epoch {
		r.o.lease = fsm.NewOwnerLease(epoch, r.o.cfg.Lease, r.o.cfg.Voters)
	}
	r.o.lease.Granted("db2", r.clock.now())
	r.o.lease.Granted("witness", r.clock.now())
}

// settle runs reconcile until the machine stops changing (bounded), waiting for
// promotions started on the background.
func (r *rig) settle(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for range 20 {
		before, _ := r.o.Machine()
		r.o.reconcile(ctx)
		r.o.bg.Wait()
		r.o.reconcile(ctx)
		if after, _ := r.o.Machine(); after == before {
			return
		}
	}
}

// serve brings db1 to Serving in an active epoch with the VIP held and writes open.
func (r *rig) serve(t *testing.T) uint64 {
	t.Helper()
	assign(t, r.node, "db1", false)
	r.healthy(true)
	epoch := r.node.State().Epoch
	r.grantLease(epoch)
	r.settle(t)
	r.o.acquireOrRenew(context.Background(), r.clock.now())
	r.settle(t)
	r.o.bg.Wait()
	if p, e := r.o.Machine(); p != Serving || e != epoch || !r.vip.isHeld() || r.db.isReadOnly() {
		t.Fatalf("setup: machine %s@%d, vip held %v, read_only %v; trace:\n%s", p, e, r.vip.isHeld(), r.db.isReadOnly(), r.tr)
	}
	return epoch
}
