package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/config"
	"github.com/keepraft/keepraft/fsm"
)

// task is one long-running part of the daemon. A cancelled task returns nil.
type task interface {
	Run(ctx context.Context) error
}

// daemon wires the parts of one keepraftd node.
type daemon struct {
	cfg     *config.Config
	log     *zap.Logger
	token   string
	boot    time.Duration
	node    *raftNode
	client  *peerClient
	poll    *poller
	metrics *metrics
	agent   *agent // nil on a witness

	mu        sync.Mutex
	promise   fsm.Promise
	lastRenew map[string]time.Duration // owner id → boot-clock time of its last Renew
	left      map[string]bool          // peers that said goodbye and were not heard since
	stopping  atomic.Bool
}

func peerIDs(cfg *config.Config) []string {
	var ids []string
	for _, p := range cfg.Cluster.Peers {
		ids = append(ids, p.ID)
	}
	return ids
}

func newDaemon(cfg *config.Config, log *zap.Logger, opts options) (*daemon, error) {
	token, err := cfg.Token()
	if err != nil {
		return nil, err
	}
	d := &daemon{cfg: cfg, log: log, token: token, boot: bootNow(), lastRenew: map[string]time.Duration{}, left: map[string]bool{}, metrics: newMetrics(cfg.Node.ID)}
	d.client = newPeerClient(token)
	d.poll = newPoller(cfg, d.client, log)
	d.poll.onReachable = func(peer string) { d.markLeft(peer, false) }
	d.node, err = openRaft(cfg, log, d.client)
	if err != nil {
		return nil, err
	}
	if cfg.IsDatabase() {
		d.agent, err = newAgent(d, opts)
		if err != nil {
			return nil, errors.Join(err, d.node.shutdown())
		}
	}
	return d, nil
}

// Run runs every task until ctx ends, then shuts down in reverse order of construction.
func (d *daemon) Run(ctx context.Context) error {
	a, err := newAPI(d)
	if err != nil {
		return errors.Join(err, d.node.shutdown())
	}
	tasks := []task{a, d.poll, &controller{d: d}, taskFunc(d.announce), taskFunc(d.observe), taskFunc(d.farewell)}
	if d.agent != nil {
		tasks = append(tasks, d.agent)
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, t := range tasks {
		g.Go(func() error { return t.Run(gctx) })
	}
	d.log.Info("keepraftd running", zap.String("role", d.cfg.Node.Role), zap.String("raft_addr", d.cfg.Cluster.RaftAddr), zap.String("api_addr", d.cfg.Cluster.APIAddr))
	err = g.Wait()
	var closeErr error
	if d.agent != nil {
		closeErr = d.agent.close()
	}
	closeErr = errors.Join(closeErr, d.node.shutdown())
	d.log.Info("keepraftd stopped")
	return errors.Join(err, closeErr)
}

type taskFunc func(ctx context.Context) error

func (f taskFunc) Run(ctx context.Context) error { return f(ctx) }

// announce proposes this node's MemberJoined (role, priority, supported versions) until
// the journal shows it, so the controller knows who may own the VIP.
func (d *daemon) announce(ctx context.Context) error {
	me := fsm.Member{ID: d.cfg.Node.ID, Role: fsm.Role(d.cfg.Node.Role), RaftAddr: d.cfg.Cluster.RaftAddr, APIAddr: d.cfg.Cluster.APIAddr, Versions: []int{fsm.Version}}
	if d.cfg.IsDatabase() {
		me.Priority = d.cfg.VRRP.Priority
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		s := d.node.fsm.State()
		if m, ok := s.Members[me.ID]; s.Bootstrapped && ok && m.Role == me.Role && m.Priority == me.Priority && m.APIAddr == me.APIAddr && slices.Equal(m.Versions, me.Versions) {
			return nil
		}
		if s.Bootstrapped && d.node.leader() != "" {
			ev, err := d.node.event(fsm.MemberJoined, fsm.MemberData{Member: me})
			if err == nil {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err = d.node.propose(pctx, ev)
				cancel()
			}
			if err != nil {
				d.log.Debug("announce membership", zap.Error(err))
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// observe keeps gauges current and logs every applied journal record.
func (d *daemon) observe(ctx context.Context) error {
	var last uint64
	for {
		ch := d.node.fsm.Watch()
		for _, r := range d.node.fsm.Journal(last) {
			last = r.Index
			d.metrics.events.WithLabelValues(string(r.Event.Type), string(r.Result)).Inc()
			fields := []zap.Field{zap.Uint64("index", r.Index), zap.String("type", string(r.Event.Type)), zap.String("by", r.Event.By), zap.Uint64("epoch", r.Event.Epoch), zap.String("result", string(r.Result))}
			if r.Error != "" {
				fields = append(fields, zap.String("reason", r.Error))
			}
			if len(r.Event.Data) > 0 {
				fields = append(fields, zap.String("data", string(r.Event.Data)))
			}
			d.log.Info("journal", fields...)
		}
		s := d.node.fsm.State()
		d.metrics.isLeader.Set(b2f(d.node.isLeader()))
		d.metrics.isOwner.Set(b2f(s.Holding(d.cfg.Node.ID)))
		d.metrics.epoch.Set(float64(s.Epoch))
		d.metrics.applied.Set(float64(s.Index))
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		case <-time.After(time.Second):
		}
	}
}

// farewell tells every peer, when this node stops gracefully, that it is leaving, so an
// owner left alone can tell "the whole cluster is stopping" from "I am cut off".
func (d *daemon) farewell(ctx context.Context) error {
	<-ctx.Done()
	d.stopping.Store(true)
	body := fmt.Sprintf(`{"node":%q}`, d.cfg.Node.ID)
	var wg sync.WaitGroup
	for _, p := range d.cfg.Cluster.Peers {
		if p.ID == d.cfg.Node.ID {
			continue
		}
		wg.Go(func() {
			err := d.client.do(context.Background(), http.MethodPost, p.APIAddr, "/v1/goodbye", strings.NewReader(body), nil, 300*time.Millisecond)
			if err != nil {
				d.log.Debug("goodbye", zap.String("peer", p.ID), zap.Error(err))
			}
		})
	}
	wg.Wait()
	return nil
}

// markLeft records that peer stopped gracefully (true) or was heard again (false).
func (d *daemon) markLeft(peer string, left bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if left {
		d.left[peer] = true
	} else {
		delete(d.left, peer)
	}
}

// allPeersLeft reports whether every other voter said goodbye: the whole cluster is
// giving the VIP up.
func (d *daemon) allPeersLeft() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.cfg.Cluster.Peers {
		if p.ID != d.cfg.Node.ID && !d.left[p.ID] {
			return false
		}
	}
	return true
}

func (d *daemon) hasLeft(peer string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.left[peer]
}

// grant answers a Renew: promise only what the applied state supports.
func (d *daemon) grant(req api.RenewRequest) api.RenewResponse {
	s := d.node.fsm.State()
	now := bootNow()
	d.mu.Lock()
	defer d.mu.Unlock()
	if s.Owner == req.Owner {
		d.lastRenew[req.Owner] = now
	}
	p, ok := d.promise.Grant(s, req.Owner, req.Epoch, now, d.cfg.Failover.Lease, fsm.DefaultRho)
	d.promise = p
	resp := api.RenewResponse{Node: d.cfg.Node.ID, Promised: ok}
	if !ok {
		resp.Reason = fmt.Sprintf("applied state: owner %q epoch %d phase %s", s.Owner, s.Epoch, s.Phase)
	}
	return resp
}

// report is this node's answer to GET /v1/node.
func (d *daemon) report() api.NodeReport {
	s := d.node.fsm.State()
	now := bootNow()
	r := api.NodeReport{Node: d.cfg.Node.ID, Applied: s.Index, Epoch: s.Epoch, Phase: s.Phase, RenewAgeMS: -1, UptimeMS: (now - d.boot).Milliseconds(), RaftState: d.node.raft.State().String(), Stopping: d.stopping.Load()}
	d.mu.Lock()
	if t, ok := d.lastRenew[s.Owner]; ok && s.Owner != "" {
		r.RenewAgeMS = (now - t).Milliseconds()
	}
	if d.promise.Owner != "" {
		r.PromiseOwner, r.PromiseEpoch = d.promise.Owner, d.promise.Epoch
		r.PromiseLeftMS = (d.promise.Until - now).Milliseconds()
		r.LastGrantAgeMS = (now - d.promise.Last).Milliseconds()
	} else {
		r.LastGrantAgeMS = -1
	}
	d.mu.Unlock()
	if d.agent != nil {
		l := d.agent.local()
		r.Healthy, r.Detail, r.Replication = l.MySQLHealthy, l.MySQLDetail, l.Replication
		r.GTID, r.Domain = l.GTID, d.agent.domain()
		r.Remote = d.agent.remoteView()
	}
	return r
}

// status assembles GET /v1/status.
func (d *daemon) status() api.Status {
	s := d.node.fsm.State()
	st := api.Status{
		Node: d.cfg.Node.ID, Role: fsm.Role(d.cfg.Node.Role), RaftState: d.node.raft.State().String(), Leader: d.node.leader(),
		Owner: s.Owner, Epoch: s.Epoch, Phase: s.Phase, PhaseSince: s.PhaseSince, Foreign: s.Foreign, StaleEvents: s.StaleCount,
		Applied: d.node.raft.AppliedIndex(), LastLog: d.node.raft.LastIndex(),
	}
	stats := d.node.raft.Stats()
	fmt.Sscan(stats["term"], &st.Term)
	fmt.Sscan(stats["commit_index"], &st.CommitIndex)
	if d.agent != nil {
		st.Local = d.agent.local()
	}
	st.Local.UptimeMS = (bootNow() - d.boot).Milliseconds()

	suffrage := map[string]string{}
	if f := d.node.raft.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			suffrage[string(srv.ID)] = srv.Suffrage.String()
		}
	}
	views := d.poll.snapshot()
	now := bootNow()
	for _, p := range d.cfg.Cluster.Peers {
		ms := api.MemberStatus{ID: p.ID, RaftAddr: p.RaftAddr, APIAddr: p.APIAddr, Suffrage: suffrage[p.ID], Owner: p.ID == s.Owner && s.Holding(p.ID)}
		if m, ok := s.Members[p.ID]; ok {
			ms.Role, ms.Priority, ms.Maintenance, ms.SemiSync = m.Role, m.Priority, m.Maintenance, m.SemiSync
			if m.HealthKnown {
				h := m.Healthy
				ms.Healthy, ms.Detail = &h, m.Detail
			}
		}
		if p.ID == d.cfg.Node.ID {
			ms.RaftState, ms.Reachable, ms.LastContact, ms.Applied = d.node.raft.State().String(), true, "self", s.Index
			ms.Replication = st.Local.Replication
		} else if v, ok := views[p.ID]; ok {
			ms.Reachable = v.ok
			ms.RaftState, ms.Applied, ms.Replication = v.report.RaftState, v.report.Applied, v.report.Replication
			if v.at != 0 {
				ms.LastContact = (now - v.at).Round(time.Millisecond).String() + " ago"
			}
			if !v.ok {
				ms.RaftState = "unreachable"
			}
		} else {
			ms.RaftState, ms.LastContact = "unknown", "never"
		}
		ms.PeerView = d.peerView(p.ID, views)
		st.Members = append(st.Members, ms)
	}
	return st
}

// peerView joins what the other database nodes' remote probes say about id's MySQL.
func (d *daemon) peerView(id string, views map[string]peerView) string {
	var parts []string
	add := func(from string, remote map[string]string) {
		if v, ok := remote[id]; ok {
			parts = append(parts, from+": "+v)
		}
	}
	if d.agent != nil {
		add(d.cfg.Node.ID, d.agent.remoteView())
	}
	for _, p := range d.cfg.Cluster.Peers {
		if v, ok := views[p.ID]; ok && v.ok {
			add(p.ID, v.report.Remote)
		}
	}
	return strings.Join(parts, "; ")
}
