package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/config"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/internal/hclogzap"
	"github.com/keepraft/keepraft/store"
)

// Timing constants of the Raft side.
const (
	// tcpTimeout is the raft TCP transport's I/O deadline; tcpPool its pooled
	// connections per peer.
	tcpTimeout = 2 * time.Second
	tcpPool    = 3
	// proposeDeadline bounds a proposal whose context has no deadline; proposeRetry
	// spaces retries while no leader is known or leadership moves.
	proposeDeadline = 5 * time.Second
	proposeRetry    = 20 * time.Millisecond
	// bootstrapPoll spaces the checks of the peers before a joint bootstrap, and
	// jointWindow is how long after a joint bootstrap a node still counts as fresh for
	// peers that are still deciding.
	bootstrapPoll = 200 * time.Millisecond
	jointWindow   = 30 * time.Second
	// bootstrapLogEvery spaces the "waiting for peers" log lines.
	bootstrapLogEvery = 5 * time.Second
	// precheckTimeout bounds the one poll of every peer before raft starts on a new data
	// dir (each request is bounded by the poller's own timeout, well below it).
	precheckTimeout = 2 * time.Second
)

// Sentinel errors of the proposal path and the start.
var (
	// errNoLeader is returned while no raft leader is known.
	errNoLeader = errors.New("no raft leader")
	// errForward wraps a failure to forward a proposal to the leader.
	errForward = errors.New("forward to leader")
	// ErrVersion is returned for an event whose schema version some voter does not
	// advertise: it would apply differently on that voter.
	ErrVersion = errors.New("event version not supported by every voter")
	// ErrAmnesia is returned at start when the data dir was bootstrapped but its Raft
	// state is gone, when its Raft state was stored by a start that never finished its
	// bootstrap, or when a node with a new data dir finds peers that already hold state:
	// starting would forget votes and log. It is [store.ErrAmnesia].
	ErrAmnesia = store.ErrAmnesia
	// errSealed answers every Raft RPC, both ways, while a node on a new data dir has
	// not decided to bootstrap.
	errSealed = errors.New("raft transport sealed: this node's data dir is new and it has not bootstrapped yet")
)

// openRaft opens the stores, decides how this node starts on its data dir, and starts
// raft without bootstrapping. Every refusal comes before raft.NewRaft. On a new data dir
// it first asks every peer once: a peer that holds state means this node lost its own,
// and it refuses. Otherwise it writes the pending marker and starts raft sealed (see
// [sealedTransport]); the bootstrap task unseals it once every peer is new too.
func (n *Node) openRaft(trans raft.Transport) error {
	cfg := n.cfg
	dataDir := cfg.Node.DataDir
	rlog := hclogzap.New(n.log.Named("raft"), hclog.Info)
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.Node.ID)
	rt := cfg.Cluster.Raft
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = rt.HeartbeatTimeout, rt.ElectionTimeout, rt.LeaderLeaseTimeout
	rc.CommitTimeout, rc.SnapshotThreshold, rc.SnapshotInterval = rt.CommitTimeout, rt.SnapshotThreshold, rt.SnapshotInterval
	rc.NotifyCh = n.leaderCh
	rc.Logger = rlog
	if err := raft.ValidateConfig(rc); err != nil {
		return fmt.Errorf("cluster.raft: %w", err)
	}

	dir, err := store.Inspect(dataDir)
	if err != nil {
		return fmt.Errorf("inspect data dir: %w", err)
	}
	if dir.Amnesiac() {
		return amnesia(dataDir)
	}
	if _, _, err := store.ReadMarker(dataDir); err != nil {
		return err
	}
	stores, err := store.Open(dataDir, store.Options{Logger: rlog})
	if err != nil {
		return fmt.Errorf("open data dir %s: %w", dataDir, err)
	}
	n.stores = stores
	existing, err := raft.HasExistingState(stores.Log, stores.Stable, stores.Snap)
	if err != nil {
		return errors.Join(fmt.Errorf("inspect %s: %w", dataDir, err), n.closeStores())
	}
	start, err := dir.Decide(dataDir, existing)
	if err != nil {
		return errors.Join(err, n.closeStores())
	}
	switch start {
	case store.StartLegacy:
		// A data dir from before markers existed: mark it now.
		if err := n.mark(); err != nil {
			return errors.Join(err, n.closeStores())
		}
		n.log.Info("data dir from before the bootstrap marker: marked", zap.String("data_dir", dataDir), zap.String("marker", store.MarkerFile))
	case store.StartExisting:
		if dir.Pending {
			// The bootstrap completed, but the pending marker outlived a crash.
			if err := store.ClearPending(dataDir); err != nil {
				return errors.Join(err, n.closeStores())
			}
		}
	case store.StartNew:
		if err := n.precheckPeers(); err != nil {
			return errors.Join(err, n.closeStores())
		}
		if err := store.WritePending(dataDir, store.Marker{Node: cfg.Node.ID, Cluster: peerIDs(cfg), At: time.Now()}); err != nil {
			return errors.Join(err, n.closeStores())
		}
	}

	if trans == nil && n.tls != nil {
		nt, err := tlsTransport(cfg, n.tls, n, rlog)
		if err != nil {
			return errors.Join(err, n.closeStores())
		}
		trans, n.closeTrans = nt, nt.Close
	}
	if trans == nil {
		addr, err := net.ResolveTCPAddr("tcp", cfg.Cluster.RaftAddr)
		if err != nil {
			return errors.Join(fmt.Errorf("cluster.raft_addr: %w", err), n.closeStores())
		}
		tcp, err := raft.NewTCPTransportWithLogger(cfg.Cluster.RaftAddr, addr, tcpPool, tcpTimeout, rlog)
		if err != nil {
			return errors.Join(fmt.Errorf("listen on cluster.raft_addr %s: %w", cfg.Cluster.RaftAddr, err), n.closeStores())
		}
		trans, n.closeTrans = tcp, tcp.Close
	}
	var sealed *sealedTransport
	if start == store.StartNew {
		sealed = newSealedTransport(trans)
		trans = sealed.transport()
	}
	n.trans, n.sealed = trans, sealed
	n.fresh.Store(start == store.StartNew)
	n.raft, err = raft.NewRaft(rc, n.fsm, stores.Log, stores.Stable, stores.Snap, trans)
	if err != nil {
		if sealed != nil {
			err = errors.Join(err, sealed.Close())
		}
		return errors.Join(fmt.Errorf("start raft: %w", err), n.closeStores())
	}
	if start == store.StartNew {
		n.log.Info("new data dir: raft is sealed until every peer reports a new data dir too", zap.String("data_dir", dataDir),
			zap.String("pending", store.PendingFile))
	} else {
		n.log.Info("restarting from existing state", zap.String("data_dir", dataDir), zap.Stringer("start", start))
	}
	return nil
}

// amnesia is the refusal to start a node that would forget its votes and log.
func amnesia(dir string) error {
	return fmt.Errorf("%w: data dir %s was bootstrapped (%s present) but its Raft state (%s) is missing or empty; "+
		"starting would forget this node's votes and log; %s", ErrAmnesia, dir, store.MarkerFile, store.LogFile, store.Recovery)
}

// peersHoldState is the refusal of a new data dir whose peer already holds state.
func peersHoldState(dir, peer string, applied uint64) error {
	return fmt.Errorf("%w: this node's data dir %s holds no Raft state (%s is new), but peer %s already holds cluster state "+
		"(applied index %d): this node was part of the cluster and lost its data dir, or is joining an existing cluster; %s",
		ErrAmnesia, dir, store.LogFile, peer, applied, store.Recovery)
}

// peerHeardUs is the refusal of a new data dir whose peer bootstrapped jointly moments
// ago and has since heard this node's Raft traffic: this node took part in the new
// cluster (it may have voted or acknowledged entries) and lost its data dir since.
func peerHeardUs(dir, peer string) error {
	return fmt.Errorf("%w: this node's data dir %s holds no Raft state (%s is new), but peer %s, which bootstrapped "+
		"the cluster moments ago, has heard this node's Raft traffic since: this node took part in the cluster and lost "+
		"its data dir; %s", ErrAmnesia, dir, store.LogFile, peer, store.Recovery)
}

func (n *Node) closeStores() error {
	var errs []error
	if n.closeTrans != nil {
		errs = append(errs, n.closeTrans())
	}
	if n.stores != nil {
		errs = append(errs, n.stores.Close())
	}
	return errors.Join(errs...)
}

// shutdownRaft stops raft, then the transport, then the store.
func (n *Node) shutdownRaft() error {
	var err error
	if n.raft != nil {
		err = n.raft.Shutdown().Error()
	}
	return errors.Join(err, n.closeStores())
}

// precheckPeers polls every peer once before raft starts on a new data dir and refuses
// when one that answers holds state. Peers that do not answer yet (new nodes still
// starting) are left to the bootstrap task.
func (n *Node) precheckPeers() error {
	ctx, cancel := context.WithTimeout(context.Background(), precheckTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, p := range n.cfg.Cluster.Peers {
		if p.ID != n.cfg.Node.ID {
			wg.Go(func() { n.poll.pollOne(ctx, p) })
		}
	}
	wg.Wait()
	_, _, err := n.peersNew(n.poll.snapshot())
	return err
}

// peersNew reads the peers' latest reports: an error when one holds state; else ready
// when every peer answered with a new data dir, or when one that answered bootstrapped
// jointly moments ago (it reports fresh at a term above 0) and none holds state; missing
// lists those that did not answer. The second way is safe: that peer bootstrapped only
// after every peer, those missing now included, had reported a new data dir, so the
// cluster it formed is the one this node joins by bootstrapping the same configuration.
// It keeps a node that saw a peer bootstrap from waiting forever for one that went down
// meanwhile (and from refusing once that peer's joint window is over).
func (n *Node) peersNew(views map[string]api.Peer) (ready bool, missing []string, err error) {
	joint := false
	for _, p := range n.cfg.Cluster.Peers {
		if p.ID == n.cfg.Node.ID {
			continue
		}
		v, ok := views[p.ID]
		if !ok || !v.OK {
			missing = append(missing, p.ID)
			continue
		}
		if !v.Report.Fresh {
			return false, nil, peersHoldState(n.cfg.Node.DataDir, p.ID, v.Report.Applied)
		}
		if slices.Contains(v.Report.Heard, n.cfg.Node.ID) {
			return false, nil, peerHeardUs(n.cfg.Node.DataDir, p.ID)
		}
		joint = joint || v.Report.Term > 0
	}
	return len(missing) == 0 || joint, missing, nil
}

// bootstrap forms a new cluster when this node's data dir is new: it waits until every
// peer answers and reports a new data dir as well (or a joint bootstrap moments ago),
// then bootstraps with the configured voters, as every other new node does, so three
// new nodes form one cluster with no extra step. A peer that already holds state means
// this node lost its own (a wiped data dir): it refuses to go on. Until then raft is
// sealed: it neither votes nor hears a leader, so a refused start leaves no Raft state.
func (n *Node) bootstrap(ctx context.Context) error {
	if !n.fresh.Load() {
		return nil
	}
	t := time.NewTicker(bootstrapPoll)
	defer t.Stop()
	var waitingLogged time.Time
	for {
		ready, missing, err := n.peersNew(n.poll.snapshot())
		if err != nil {
			return err
		}
		if ready {
			return n.bootstrapNow()
		}
		if time.Since(waitingLogged) > bootstrapLogEvery {
			waitingLogged = time.Now()
			n.log.Info("new data dir: waiting for every peer before bootstrapping", zap.Strings("waiting_for", missing))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// bootstrapNow writes the marker, stores the bootstrap configuration while raft is still
// sealed, removes the pending marker and only then unseals raft. A crash before the
// configuration is stored leaves marker and pending marker without Raft state, which
// starts new again; a crash after it leaves Raft state beside the marker, a normal
// restart.
func (n *Node) bootstrapNow() error {
	if err := n.mark(); err != nil {
		return err
	}
	var servers []raft.Server
	for _, p := range n.cfg.Cluster.Peers {
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)})
	}
	if err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		return fmt.Errorf("bootstrap cluster in %s: %w", n.cfg.Node.DataDir, err)
	}
	if err := store.ClearPending(n.cfg.Node.DataDir); err != nil {
		return err
	}
	if n.sealed != nil {
		n.sealed.unseal()
	}
	n.log.Info("bootstrapped new cluster", zap.Int("voters", len(servers)))
	n.endFresh()
	return nil
}

func (n *Node) mark() error {
	return store.WriteMarker(n.cfg.Node.DataDir, store.Marker{Node: n.cfg.Node.ID, Cluster: peerIDs(n.cfg), At: time.Now()})
}

// endFresh keeps reporting "fresh" for jointWindow, so peers still deciding see a joint
// bootstrap, not a cluster that formed without them.
func (n *Node) endFresh() {
	n.jointUntil.Store(time.Now().Add(n.jointWindow).UnixNano())
	n.fresh.Store(false)
}

// isFresh is what this node reports to a peer deciding whether to bootstrap, and heard
// the peers whose Raft traffic reached it since its joint bootstrap (none before it).
func (n *Node) isFresh() (fresh bool, heard []string) {
	if n.fresh.Load() {
		return true, nil
	}
	if time.Now().UnixNano() >= n.jointUntil.Load() || n.sealed == nil {
		return false, nil
	}
	return true, n.sealed.heardFrom()
}

func peerIDs(cfg *config.Config) []string {
	var ids []string
	for _, p := range cfg.Cluster.Peers {
		ids = append(ids, p.ID)
	}
	return ids
}

// sealedTransport wraps raft's transport on a new data dir until the node decides to
// bootstrap. hashicorp/raft grants a vote to any candidate while its configuration is
// empty, and stores the term of any leader that reaches it; a node that lost its data
// dir must do neither before it learns that its peers hold state. Sealed, every RPC is
// refused both ways: requests that arrive (heartbeats on their fast path included) are
// answered with errSealed before raft sees them, and raft's own requests fail with
// errSealed. bootstrapNow unseals it once the bootstrap configuration is stored. A
// forwarder goroutine hands the inner transport's requests to raft; Close (called by
// raft's Shutdown) stops it.
type sealedTransport struct {
	inner raft.Transport
	open  atomic.Bool
	// heard records, once unsealed, the peers whose Raft traffic reached this node: a
	// request from them, or an answer to one of ours.
	heardMu sync.Mutex
	heard   map[string]bool
	out     chan raft.RPC
	done    chan struct{}
	once    sync.Once
}

// sealedPreVote is a sealedTransport over a transport with pre-vote, which raft
// detects by the method set.
type sealedPreVote struct{ *sealedTransport }

func newSealedTransport(inner raft.Transport) *sealedTransport {
	s := &sealedTransport{inner: inner, out: make(chan raft.RPC), done: make(chan struct{})}
	go s.forward()
	return s
}

// transport returns s as raft should see it: with pre-vote when the inner one has it.
func (s *sealedTransport) transport() raft.Transport {
	if _, ok := s.inner.(raft.WithPreVote); ok {
		return sealedPreVote{s}
	}
	return s
}

func (s *sealedTransport) unseal() { s.open.Store(true) }

// hear records id as heard from.
func (s *sealedTransport) hear(id string) {
	if id == "" {
		return
	}
	s.heardMu.Lock()
	defer s.heardMu.Unlock()
	if s.heard == nil {
		s.heard = map[string]bool{}
	}
	s.heard[id] = true
}

// hearRPC records the sender of an incoming request.
func (s *sealedTransport) hearRPC(rpc raft.RPC) {
	if h, ok := rpc.Command.(raft.WithRPCHeader); ok {
		s.hear(string(h.GetRPCHeader().ID))
	}
}

// hearAnswer records id when a request to it was answered.
func (s *sealedTransport) hearAnswer(id raft.ServerID, err error) error {
	if err == nil {
		s.hear(string(id))
	}
	return err
}

// heardFrom lists the peers heard from since the unseal, sorted.
func (s *sealedTransport) heardFrom() []string {
	s.heardMu.Lock()
	defer s.heardMu.Unlock()
	ids := make([]string, 0, len(s.heard))
	for id := range s.heard {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (s *sealedTransport) forward() {
	in := s.inner.Consumer()
	for {
		select {
		case <-s.done:
			return
		case rpc, ok := <-in:
			if !ok {
				return
			}
			if !s.open.Load() {
				refuse(rpc, errSealed)
				continue
			}
			s.hearRPC(rpc)
			select {
			case s.out <- rpc:
			case <-s.done:
				refuse(rpc, raft.ErrTransportShutdown)
				return
			}
		}
	}
}

// refuse answers rpc with err and an empty response of its type: some senders read the
// response even beside an error (the in-memory transport's pipeline does).
func refuse(rpc raft.RPC, err error) {
	var resp any
	switch rpc.Command.(type) {
	case *raft.AppendEntriesRequest:
		resp = &raft.AppendEntriesResponse{}
	case *raft.RequestVoteRequest:
		resp = &raft.RequestVoteResponse{}
	case *raft.RequestPreVoteRequest:
		resp = &raft.RequestPreVoteResponse{}
	case *raft.InstallSnapshotRequest:
		resp = &raft.InstallSnapshotResponse{}
	case *raft.TimeoutNowRequest:
		resp = &raft.TimeoutNowResponse{}
	}
	rpc.Respond(resp, err)
}

func (s *sealedTransport) Consumer() <-chan raft.RPC              { return s.out }
func (s *sealedTransport) LocalAddr() raft.ServerAddress          { return s.inner.LocalAddr() }
func (s *sealedTransport) DecodePeer(b []byte) raft.ServerAddress { return s.inner.DecodePeer(b) }
func (s *sealedTransport) EncodePeer(id raft.ServerID, addr raft.ServerAddress) []byte {
	return s.inner.EncodePeer(id, addr)
}

func (s *sealedTransport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	if cb == nil {
		s.inner.SetHeartbeatHandler(nil)
		return
	}
	s.inner.SetHeartbeatHandler(func(rpc raft.RPC) {
		if !s.open.Load() {
			refuse(rpc, errSealed)
			return
		}
		s.hearRPC(rpc)
		cb(rpc)
	})
}

func (s *sealedTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	if !s.open.Load() {
		return nil, errSealed
	}
	return s.inner.AppendEntriesPipeline(id, target)
}

func (s *sealedTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if !s.open.Load() {
		return errSealed
	}
	return s.hearAnswer(id, s.inner.AppendEntries(id, target, args, resp))
}

func (s *sealedTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if !s.open.Load() {
		return errSealed
	}
	return s.hearAnswer(id, s.inner.RequestVote(id, target, args, resp))
}

func (s *sealedTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	if !s.open.Load() {
		return errSealed
	}
	return s.hearAnswer(id, s.inner.InstallSnapshot(id, target, args, resp, data))
}

func (s *sealedTransport) TimeoutNow(id raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	if !s.open.Load() {
		return errSealed
	}
	return s.hearAnswer(id, s.inner.TimeoutNow(id, target, args, resp))
}

// Close stops the forwarder and closes the inner transport (raft's Shutdown calls it, as
// it would the inner one's).
func (s *sealedTransport) Close() error {
	s.once.Do(func() { close(s.done) })
	if c, ok := s.inner.(raft.WithClose); ok {
		if err := c.Close(); err != nil {
			return fmt.Errorf("close raft transport: %w", err)
		}
	}
	return nil
}

func (s sealedPreVote) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if !s.open.Load() {
		return errSealed
	}
	return s.hearAnswer(id, s.inner.(raft.WithPreVote).RequestPreVote(id, target, args, resp))
}

// IsLeader reports whether this node is the raft leader now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// followLeader wakes the poller whenever raft observes a new leader (or loses it), so a
// follower polls a new leader at once instead of looking for a change on a timer.
func (n *Node) followLeader(ctx context.Context) error {
	ch := make(chan raft.Observation, 4)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
			n.poll.leaderChanged()
		}
	}
}

// leader returns the leader's id ("" when unknown).
func (n *Node) leader() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// Term is the current raft term.
func (n *Node) Term() uint64 { return n.raft.CurrentTerm() }

// Barrier waits until every entry before it is applied.
func (n *Node) Barrier(timeout time.Duration) error { return n.raft.Barrier(timeout).Error() }

// TransferLeadership hands leadership to the voter id.
func (n *Node) TransferLeadership(id string) error {
	return n.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(n.peer(id).RaftAddr)).Error()
}

// State returns the applied state; Watch a channel closed at the next change.
func (n *Node) State() fsm.State       { return n.fsm.State() }
func (n *Node) Watch() <-chan struct{} { return n.fsm.Watch() }

// CaughtUp reports whether the applied state is at least as new as the commit index
// learned from a current leader within the lease: for the leader, a Barrier completed
// in its current term; for a follower, its applied index reached the index the leader
// reported (after its own Barrier) in a poll at most one lease old. The owner runtime
// acts on ownership only while this holds.
func (n *Node) CaughtUp() bool {
	applied := n.fsm.State().Index
	term := n.raft.CurrentTerm()
	if n.raft.State() == raft.Leader {
		return n.ctl.ReadyTerm() == term
	}
	id := n.leader()
	if id == "" {
		return false
	}
	p, ok := n.poll.snapshot()[id]
	if !ok || !p.OK || n.now()-p.At > n.cfg.Failover.Lease || p.Report.Term < term || p.Report.LeaderApplied == 0 {
		return false
	}
	return applied >= p.Report.LeaderApplied
}

// CaughtUpSinceStart reports whether this node has learned a leader's applied index
// since it started and has applied at least the highest one learned. The lease promiser
// uses it: a voter restored from an older snapshot, or lagging, promises nothing until
// it caught up, yet a leader's loss does not silence the voters that are current (the
// owner keeps its lease through an election). That is enough because a handover without
// a release needs a majority that applied the revoke: a voter that applied everything it
// learned is never older than a revoke it took part in.
//
// A node that completed a Barrier as leader since it started (its controller's ReadyTerm
// is set) learned a leader's applied index from itself, and its applied index only grows
// from there: it stays caught up after it stops leading, also before it polled a new
// leader. Without that, the first leader of a cluster that hands leadership on (to the
// standby) and sees the new leader die before polling it would refuse the owner's
// renewals, and with one voter down the owner would lose its lease for nothing.
func (n *Node) CaughtUpSinceStart() bool {
	if n.raft.State() == raft.Leader && n.ctl.ReadyTerm() == n.raft.CurrentTerm() {
		return true
	}
	learned := n.poll.learned()
	return (learned > 0 || n.ctl.ReadyTerm() != 0) && n.fsm.State().Index >= learned
}

// Propose commits ev through the leader: directly when this node leads, otherwise by
// forwarding it to the leader's API. A stale or skipped event is not an error here: the
// response says what Apply made of it.
func (n *Node) Propose(ctx context.Context, ev fsm.Event) (api.ProposeResponse, error) {
	if err := n.versionOK(ev); err != nil {
		return api.ProposeResponse{}, err
	}
	deadline := time.Now().Add(proposeDeadline)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	for {
		resp, err := n.proposeOnce(ctx, ev, time.Until(deadline))
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return resp, err
		}
		// A leadership transfer under way is a leader change announced in advance: the
		// leader refuses entries until it is done, then the new leader takes them.
		if !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, errNoLeader) && !errors.Is(err, raft.ErrLeadershipLost) &&
			!errors.Is(err, raft.ErrLeadershipTransferInProgress) && !errors.Is(err, errForward) {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return resp, ctx.Err()
		case <-time.After(proposeRetry):
		}
	}
}

// versionOK refuses to propose an event version that not every voter understands.
func (n *Node) versionOK(ev fsm.Event) error {
	if !n.fsm.State().Supported(ev.V) {
		return fmt.Errorf("propose %s v%d: %w", ev.Type, ev.V, ErrVersion)
	}
	return nil
}

func (n *Node) proposeOnce(ctx context.Context, ev fsm.Event, timeout time.Duration) (api.ProposeResponse, error) {
	if n.IsLeader() {
		return n.Apply(ev, timeout)
	}
	id := n.leader()
	if id == "" {
		return api.ProposeResponse{}, errNoLeader
	}
	resp, err := n.client.Propose(ctx, n.peer(id).APIAddr, ev, timeout)
	if err != nil {
		return resp, fmt.Errorf("%w %s: %w", errForward, id, err)
	}
	return resp, nil
}

// Apply commits ev on this node as the leader.
func (n *Node) Apply(ev fsm.Event, timeout time.Duration) (api.ProposeResponse, error) {
	if err := n.versionOK(ev); err != nil {
		return api.ProposeResponse{}, err
	}
	b, err := ev.Encode()
	if err != nil {
		return api.ProposeResponse{}, err
	}
	f := n.raft.Apply(b, timeout)
	if err := f.Error(); err != nil {
		return api.ProposeResponse{}, fmt.Errorf("apply %s: %w", ev.Type, err)
	}
	// Followers learn the commit index from the leader's next AppendEntries. An idle
	// leader sends one only every commit_timeout (an empty AppendEntries per follower each
	// time, the bulk of the idle cost at 5 ms), so a barrier entry, appended now, carries
	// the new commit index to every follower at once: a new owner applies its assignment
	// within a round trip, while the idle stream runs at a relaxed commit_timeout. Nobody
	// waits for the barrier itself.
	n.raft.Barrier(0)
	resp := api.ProposeResponse{Index: f.Index(), Result: fsm.ResultApplied}
	ar, ok := f.Response().(fsm.ApplyResponse)
	if !ok {
		return resp, fmt.Errorf("apply %s: unexpected FSM response %T", ev.Type, f.Response())
	}
	switch {
	case ar.Err == nil:
	case errors.Is(ar.Err, fsm.ErrStale):
		resp.Result, resp.Error = fsm.ResultStale, ar.Err.Error()
	case errors.Is(ar.Err, fsm.ErrUnknownType):
		resp.Result, resp.Error = fsm.ResultSkipped, ar.Err.Error()
	default:
		resp.Result, resp.Error = fsm.ResultInvalid, ar.Err.Error()
	}
	return resp, nil
}

// event builds an event stamped by this node from the current state's epoch and phase.
func (n *Node) event(t fsm.Type, p any) (fsm.Event, error) {
	s := n.fsm.State()
	return fsm.NewEvent(t, n.cfg.Node.ID, time.Now(), s.Epoch, s.Phase, p)
}

func (n *Node) peer(id string) config.Peer {
	for _, p := range n.cfg.Cluster.Peers {
		if p.ID == id {
			return p
		}
	}
	return config.Peer{}
}
