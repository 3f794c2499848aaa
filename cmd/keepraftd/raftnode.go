package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
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

// raftNode owns the raft instance, its stores and the FSM, and the proposal path.
type raftNode struct {
	cfg    *config.Config
	log    *zap.Logger
	fsm    *fsm.FSM
	raft   *raft.Raft
	trans  *raft.NetworkTransport
	stores *store.Stores
	notify chan bool
	client *peerClient
}

func openRaft(cfg *config.Config, log *zap.Logger, client *peerClient) (*raftNode, error) {
	rlog := hclogzap.New(log.Named("raft"), hclog.Info)
	stores, err := store.Open(cfg.Node.DataDir, store.Options{Logger: rlog})
	if err != nil {
		return nil, err
	}
	n := &raftNode{cfg: cfg, log: log, fsm: fsm.New(cfg.Cluster.Raft.JournalRetain), stores: stores, notify: make(chan bool, 10), client: client}

	addr, err := net.ResolveTCPAddr("tcp", cfg.Cluster.RaftAddr)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("cluster.raft_addr: %w", err), stores.Close())
	}
	n.trans, err = raft.NewTCPTransportWithLogger(cfg.Cluster.RaftAddr, addr, 3, 2*time.Second, rlog)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("listen on cluster.raft_addr %s: %w", cfg.Cluster.RaftAddr, err), stores.Close())
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.Node.ID)
	rt := cfg.Cluster.Raft
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = rt.HeartbeatTimeout, rt.ElectionTimeout, rt.LeaderLeaseTimeout
	rc.CommitTimeout, rc.SnapshotThreshold, rc.SnapshotInterval = rt.CommitTimeout, rt.SnapshotThreshold, rt.SnapshotInterval
	rc.NotifyCh = n.notify
	rc.Logger = rlog
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, errors.Join(fmt.Errorf("cluster.raft: %w", err), n.trans.Close(), stores.Close())
	}

	existing, err := raft.HasExistingState(stores.Log, stores.Stable, stores.Snap)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("inspect %s: %w", cfg.Node.DataDir, err), n.trans.Close(), stores.Close())
	}
	n.raft, err = raft.NewRaft(rc, n.fsm, stores.Log, stores.Stable, stores.Snap, n.trans)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("start raft: %w", err), n.trans.Close(), stores.Close())
	}
	if existing {
		log.Info("restarting from existing state", zap.String("data_dir", cfg.Node.DataDir))
		return n, nil
	}
	var servers []raft.Server
	for _, p := range cfg.Cluster.Peers {
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)})
	}
	if err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return nil, errors.Join(fmt.Errorf("bootstrap cluster: %w", err), n.shutdown())
	}
	log.Info("bootstrapped new cluster", zap.Int("voters", len(servers)))
	return n, nil
}

// shutdown stops raft, then the transport, then the store.
func (n *raftNode) shutdown() error {
	return errors.Join(n.raft.Shutdown().Error(), n.trans.Close(), n.stores.Close())
}

// isLeader reports whether this node is the raft leader now.
func (n *raftNode) isLeader() bool { return n.raft.State() == raft.Leader }

// leader returns the leader's id ("" when unknown).
func (n *raftNode) leader() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// propose commits ev through the leader: directly when this node leads, otherwise by
// forwarding it to the leader's API. A stale or skipped event is not an error here: the
// response says what Apply made of it.
func (n *raftNode) propose(ctx context.Context, ev fsm.Event) (api.ProposeResponse, error) {
	if err := n.versionOK(ev); err != nil {
		return api.ProposeResponse{}, err
	}
	deadline := time.Now().Add(5 * time.Second)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	for {
		resp, err := n.proposeOnce(ctx, ev, time.Until(deadline))
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return resp, err
		}
		if !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, errNoLeader) && !errors.Is(err, raft.ErrLeadershipLost) && !errors.Is(err, errForward) {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return resp, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

var (
	errNoLeader = errors.New("no raft leader")
	errForward  = errors.New("forward to leader")
	// errVersion is returned for an event whose schema version some voter does not
	// advertise: it would apply differently on that voter.
	errVersion = errors.New("event version not supported by every voter")
)

// versionOK refuses to propose an event version that not every voter understands.
func (n *raftNode) versionOK(ev fsm.Event) error {
	if !n.fsm.State().Supported(ev.V) {
		return fmt.Errorf("propose %s v%d: %w", ev.Type, ev.V, errVersion)
	}
	return nil
}

func (n *raftNode) proposeOnce(ctx context.Context, ev fsm.Event, timeout time.Duration) (api.ProposeResponse, error) {
	if n.isLeader() {
		return n.applyLocal(ev, timeout)
	}
	id := n.leader()
	if id == "" {
		return api.ProposeResponse{}, errNoLeader
	}
	addr := n.apiAddr(id)
	body, err := json.Marshal(ev)
	if err != nil {
		return api.ProposeResponse{}, fmt.Errorf("encode proposal: %w", err)
	}
	var resp api.ProposeResponse
	if err := n.client.do(ctx, http.MethodPost, addr, "/v1/propose", bytes.NewReader(body), &resp, timeout); err != nil {
		return resp, fmt.Errorf("%w %s: %w", errForward, id, err)
	}
	return resp, nil
}

func (n *raftNode) applyLocal(ev fsm.Event, timeout time.Duration) (api.ProposeResponse, error) {
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
	ar, _ := f.Response().(fsm.ApplyResponse)
	resp := api.ProposeResponse{Index: f.Index(), Result: fsm.ResultApplied}
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

func (n *raftNode) apiAddr(id string) string {
	for _, p := range n.cfg.Cluster.Peers {
		if p.ID == id {
			return p.APIAddr
		}
	}
	return ""
}

// event builds an event stamped by this node from the current state's epoch and phase.
func (n *raftNode) event(t fsm.Type, p any) (fsm.Event, error) {
	s := n.fsm.State()
	return fsm.NewEvent(t, n.cfg.Node.ID, time.Now(), s.Epoch, s.Phase, p)
}
