// Package node composes one keepraftd: raft and its store, the admin API, the peer
// poller, the leader's controller, the lease promiser every voter runs, and on a
// database node the owner runtime. The children (owner, controller) reach the node only
// through interfaces they declare.
package node

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/go-sql-driver/mysql" // database/sql driver
	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/config"
	"github.com/keepraft/keepraft/controller"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/internal/boottime"
	"github.com/keepraft/keepraft/mtls"
	"github.com/keepraft/keepraft/nftfence"
	"github.com/keepraft/keepraft/owner"
	"github.com/keepraft/keepraft/probe"
	"github.com/keepraft/keepraft/store"
	"github.com/keepraft/keepraft/vip"
	"github.com/keepraft/keepraft/vrrp"
	"github.com/keepraft/keepraft/watchdog"
)

// Timing constants of the node's own tasks.
const (
	announceEvery   = 200 * time.Millisecond
	announceTimeout = 2 * time.Second
	goodbyeTimeout  = 300 * time.Millisecond
	// mysqlPool sizes the local MySQL pool: probe, fence, promotion and rejoin at once.
	mysqlPool     = 4
	mysqlIdle     = 2
	mysqlIdleTime = 30 * time.Second
	// apiIdlePerHost and apiIdleTimeout size the API client's pool.
	apiIdlePerHost = 4
	apiIdleTimeout = 30 * time.Second
)

// Options are the node's start options and its test seams.
type Options struct {
	// NoVIP never touches addresses or sends VRRP (Raft-only testing).
	NoVIP bool
	// Transport replaces the raft TCP transport (raft.NewInmemTransport in tests).
	Transport raft.Transport
	// MySQL, Remote and VIP replace the real local server, the peers' servers and the
	// address manager of a database node (fakes in tests).
	MySQL  owner.MySQL
	Remote owner.Remote
	VIP    owner.VIP
	// Now replaces the lease clock.
	Now func() time.Duration
	// Watchdog builds the command of the fence watchdog process (keepraftd
	// fence-watchdog); nil runs none. It is used only with the real local server.
	Watchdog func() *exec.Cmd
	// Version names the build in keepraft_build_info ("" reads the binary's build info).
	Version string
}

// Node is one keepraftd.
type Node struct {
	cfg      *config.Config
	version  string // the build, for GET /v1/config
	log      *zap.Logger
	token    string
	now      func() time.Duration
	boot     time.Duration
	client   *api.Client
	poll     *poller
	metrics  *metrics
	fsm      *fsm.FSM
	raft     *raft.Raft
	trans    raft.Transport
	stores   *store.Stores
	leaderCh chan bool
	ctl      *controller.Controller
	tls      *mtls.Bundle // nil: plaintext control plane
	promiser *owner.Promiser
	owner    *owner.Owner      // nil on a witness
	watchdog *watchdog.Process // nil without one
	// kernelFence: this node's VIPs are behind an nftables fence (announced to the
	// controller, which then waits only for the lease on a handover).
	kernelFence bool

	closeTrans func() error
	sealed     *sealedTransport // nil unless the data dir was new at start
	closers    []func() error
	vrrpTasks  []func(context.Context) error
	fresh      atomic.Bool
	jointUntil atomic.Int64
	// jointWindow is how long after a joint bootstrap this node still reports "fresh".
	jointWindow time.Duration
	stopping    atomic.Bool
}

// New builds the node: opens the store and starts raft (not yet bootstrapped), and on a
// database node opens MySQL, the VIP manager and VRRP.
func New(cfg *config.Config, log *zap.Logger, opts Options) (*Node, error) {
	token, err := cfg.Token()
	if err != nil {
		return nil, err
	}
	now := opts.Now
	if now == nil {
		now = boottime.Now
	}
	n := &Node{cfg: cfg, log: log, token: token, now: now, boot: now(), leaderCh: make(chan bool, 10), jointWindow: jointWindow,
		fsm: fsm.New(cfg.Cluster.Raft.JournalRetain), metrics: newMetrics(cfg.Node.ID)}
	if cfg.Cluster.TLS != nil {
		if n.tls, err = loadTLS(cfg); err != nil {
			return nil, err
		}
		n.client = tlsClient(cfg, n.tls, token)
	} else {
		log.Warn("CONTROL PLANE IS PLAINTEXT: Raft and the admin API are unauthenticated and unencrypted; anyone who reaches cluster.raft_addr can steer the cluster. Set cluster.tls (see keepraftd gen-certs).")
		n.client = api.NewClient(token, nil)
	}
	n.poll = newPoller(cfg, n.client, now, log)
	n.poll.leader, n.poll.steady = n.leader, n.steady
	if err := n.openRaft(opts.Transport); err != nil {
		return nil, err
	}
	n.metrics.leader = n.IsLeader
	var members []fsm.Member
	for _, p := range cfg.Cluster.Peers {
		members = append(members, fsm.Member{ID: p.ID, RaftAddr: p.RaftAddr, APIAddr: p.APIAddr})
	}
	n.ctl = controller.New(controller.Config{Self: cfg.Node.ID, Members: members, Lease: cfg.Failover.Lease, CatchupTimeout: cfg.Failover.CatchupTimeout,
		KernelLease: cfg.VIP.KernelLease, Nopreempt: cfg.Failover.Nopreempt, Damping: cfg.Failover.Damping, Now: now}, n, log)
	n.ctl.Decisions = func(t fsm.Type, outcome string) { n.metrics.proposals.WithLabelValues(string(t), outcome).Inc() }
	n.promiser = owner.NewPromiser(cfg.Node.ID, n, cfg.Failover.Lease, now, log.Named("promiser"))
	if cfg.IsDatabase() {
		if err := n.newOwner(opts); err != nil {
			return nil, errors.Join(err, n.close())
		}
	}
	n.version = opts.Version
	n.metrics.setVersion(opts.Version)
	if err := n.registerClusterMetrics(); err != nil {
		return nil, errors.Join(err, n.close())
	}
	return n, nil
}

// OpenLocalMySQL opens the pool to the local server (mysql.dsn, or host, port, user and
// password file) and its prober.
func OpenLocalMySQL(cfg *config.Config, log *zap.Logger) (*LocalMySQL, error) {
	flavor := probe.Flavor(cfg.MySQL.Flavor)
	dsn := cfg.MySQL.DSN
	if dsn == "" {
		pass, err := cfg.Password()
		if err != nil {
			return nil, err
		}
		dsn = probe.DSN(cfg.MySQL.Host, cfg.MySQL.Port, cfg.MySQL.User, pass, cfg.MySQL.Timeout)
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	db.SetMaxOpenConns(mysqlPool)
	db.SetMaxIdleConns(mysqlIdle)
	db.SetConnMaxIdleTime(mysqlIdleTime)
	prober := probe.New(db, probe.Config{Flavor: flavor, Timeout: cfg.MySQL.Timeout, WriteCheck: cfg.MySQL.WriteCheck, CheckScript: cfg.MySQL.CheckScript, AppUsers: cfg.MySQL.AppUsers}, log)
	return &LocalMySQL{DB: db, Prober: prober, Flavor: flavor, AppUsers: cfg.MySQL.AppUsers}, nil
}

// RunWatchdog is the fence watchdog process (keepraftd fence-watchdog): it reads the
// lease from in (keepraftd's pipe) and from the shared lease page when keepraftd gave one,
// and fences the local server when it expires.
func RunWatchdog(ctx context.Context, cfg *config.Config, in io.ReadCloser, log *zap.Logger) error {
	local, err := OpenLocalMySQL(cfg, log)
	if err != nil {
		return err
	}
	defer local.DB.Close()
	shared, err := watchdog.OpenShared()
	if err != nil {
		return err
	}
	var latest func() time.Duration
	if shared != nil {
		defer shared.Close()
		shared.Ack(os.Getpid())
		latest = shared.Load
	}
	return watchdog.Serve(ctx, in, latest, local.Prober, boottime.Now, log)
}

// newOwner opens the database node's resources and builds its runtime.
func (n *Node) newOwner(opts Options) error {
	cfg := n.cfg
	flavor := probe.Flavor(cfg.MySQL.Flavor)
	deps := owner.Deps{Node: n, MySQL: opts.MySQL, Remote: opts.Remote, VIP: opts.VIP, Renewer: renewer{n}}
	if deps.MySQL == nil {
		local, err := OpenLocalMySQL(cfg, n.log)
		if err != nil {
			return err
		}
		n.closers = append(n.closers, local.DB.Close)
		deps.MySQL = local
		if opts.Watchdog != nil && cfg.Failover.FenceReadOnly {
			n.watchdog = &watchdog.Process{Command: opts.Watchdog, Log: n.log.Named("watchdog")}
			deps.Watchdog = n.watchdog
		}
		if deps.Remote == nil && cfg.MySQL.DSN == "" {
			pass, err := cfg.Password()
			if err != nil {
				return err
			}
			hosts := map[string]string{}
			for _, p := range cfg.Cluster.Peers {
				if host, _, err := net.SplitHostPort(p.RaftAddr); err == nil && p.ID != cfg.Node.ID {
					hosts[p.ID] = host
				}
			}
			ps := &PeerServers{Hosts: hosts, Port: cfg.MySQL.Port, User: cfg.MySQL.User, Password: pass, Timeout: cfg.MySQL.Timeout, Flavor: flavor, AppUsers: cfg.MySQL.AppUsers}
			n.closers = append(n.closers, ps.Close)
			deps.Remote = ps
		}
	}
	var conn *vrrp.Conn
	switch {
	case opts.NoVIP:
		n.log.Warn("VIP and VRRP management disabled by --no-vip: this node will never hold the VIP")
		deps.VIP = nil
	case deps.VIP == nil:
		m, err := vip.New(vip.Options{Interface: cfg.VIP.Interface, Managed: cfg.VIP.Addresses, Label: cfg.VIP.Label, KernelLease: cfg.VIP.KernelLease, GARPRepeat: cfg.VIP.GARPRepeat, GARPInterval: cfg.VIP.GARPInterval}, n.log)
		if err != nil {
			return fmt.Errorf("vip.interface %s: %w", cfg.VIP.Interface, err)
		}
		n.closers = append(n.closers, m.Close)
		deps.VIP = m
		f, err := openFence(cfg, n.log)
		if err != nil {
			return err
		}
		if f != nil {
			n.closers = append(n.closers, f.Remove)
			deps.Fence = f
			n.kernelFence = true
		}
		if cfg.VRRP.Enabled {
			c, err := n.openVRRP()
			if err != nil {
				return err
			}
			conn = c
		}
	}
	var peers []string
	for _, p := range cfg.Cluster.Peers {
		if p.ID != cfg.Node.ID {
			peers = append(peers, p.ID)
		}
	}
	ocfg := owner.Config{Node: cfg.Node.ID, Peers: peers, Voters: cfg.Voters(), Lease: cfg.Failover.Lease, CatchupTimeout: cfg.Failover.CatchupTimeout,
		OnCatchupTimeout: cfg.Failover.OnCatchupTimeout, FenceReadOnly: cfg.Failover.FenceReadOnly, Flavor: flavor, VIPs: cfg.VIP.Addresses,
		Interval: cfg.MySQL.Interval, Timeout: cfg.MySQL.Timeout, Rise: cfg.MySQL.Rise, Fall: cfg.MySQL.Fall,
		Hooks: owner.Hooks{Master: cfg.Notify.Master, Backup: cfg.Notify.Backup, Fault: cfg.Notify.Fault, Any: cfg.Notify.Any,
			Convention: cfg.Notify.Convention, Instance: cfg.Notify.Instance, Priority: cfg.VRRP.Priority, Timeout: cfg.Notify.Timeout},
		SemiSync: cfg.MySQL.SemiSync, Now: n.now, StateDir: cfg.Node.DataDir}
	o, err := owner.New(ocfg, deps, n.log)
	if err != nil {
		return err
	}
	n.owner = o
	n.metrics.labeled.MustRegister(o.Collectors()...)
	if conn != nil {
		if err := n.startVRRP(conn); err != nil {
			return err
		}
	}
	return nil
}

// openFence installs the VIP fence as vip.fence says: nil for "off", and for "auto" on a
// kernel without the netdev egress hook (with a warning).
func openFence(cfg *config.Config, log *zap.Logger) (*nftfence.Fence, error) {
	if cfg.VIP.Fence == config.FenceOff {
		log.Warn("vip.fence is off: a frozen owner keeps answering for the VIP until its valid_lft runs out, and handovers wait for it")
		return nil, nil
	}
	f, err := nftfence.New(nftfence.Options{Interface: cfg.VIP.Interface, VIPs: cfg.VIP.Addresses}, log)
	switch {
	case err == nil:
		return f, nil
	case cfg.VIP.Fence == config.FenceAuto && errors.Is(err, nftfence.ErrNoEgress):
		log.Warn("no VIP fence: handovers wait for the VIP's valid_lft (set vip.fence: off to silence this)", zap.Error(err))
		return nil, nil
	default:
		return nil, fmt.Errorf("vip.fence %s: %w", cfg.VIP.Fence, err)
	}
}

// openVRRP opens the VRRP socket on vip.interface.
func (n *Node) openVRRP() (*vrrp.Conn, error) {
	ifi, err := net.InterfaceByName(n.cfg.VIP.Interface)
	if err != nil {
		return nil, fmt.Errorf("vrrp: interface %s: %w", n.cfg.VIP.Interface, err)
	}
	conn, err := vrrp.Dial(ifi)
	if err != nil {
		return nil, fmt.Errorf("vrrp: %w", err)
	}
	n.closers = append(n.closers, conn.Close)
	return conn, nil
}

// startVRRP builds the speaker (adverts while the owner holds the VIP) and the listener
// (foreign masters on our VRID) that run as the owner's tasks.
func (n *Node) startVRRP(conn *vrrp.Conn) error {
	c := n.cfg.VRRP
	vc := vrrp.Config{Interface: n.cfg.VIP.Interface, Version: c.Version, VRID: uint8(c.VirtualRouterID), Priority: uint8(c.Priority), AdvertInt: c.AdvertInt, AuthPass: c.AuthPass}
	for _, p := range n.cfg.VIP.Addresses {
		vc.VIPs = append(vc.VIPs, p.Addr())
	}
	if err := vc.Validate(); err != nil {
		return fmt.Errorf("vrrp: %w", err)
	}
	speak := vrrp.NewSpeaker(conn, vc, n.owner.Holding, n.owner.HoldingChanged(), n.log)
	n.owner.SetResigner(speak)
	// Our own and our peers' adverts are not foreign routers.
	var self []netip.Addr
	for _, p := range n.cfg.Cluster.Peers {
		if ap, err := netip.ParseAddrPort(p.RaftAddr); err == nil {
			self = append(self, ap.Addr())
		}
	}
	if ifi, err := net.InterfaceByName(n.cfg.VIP.Interface); err == nil {
		if addrs, err := ifi.Addrs(); err == nil {
			for _, ad := range addrs {
				if ipn, ok := ad.(*net.IPNet); ok {
					if x, ok := netip.AddrFromSlice(ipn.IP); ok {
						self = append(self, x.Unmap())
					}
				}
			}
		}
	}
	listen := vrrp.NewListener(conn, vc, self, n.owner.OnForeign, n.log)
	if err := n.registerVRRPMetrics(speak, listen); err != nil {
		return err
	}
	n.vrrpTasks = []func(context.Context) error{speak.Run, listen.Run}
	return nil
}

// close releases what New opened, in reverse order.
func (n *Node) close() error {
	var errs []error
	for i := len(n.closers) - 1; i >= 0; i-- {
		errs = append(errs, n.closers[i]())
	}
	return errors.Join(append(errs, n.shutdownRaft())...)
}

// Run runs every task until ctx ends, then shuts down in reverse order of construction:
// tasks (the owner gives the VIP up), then raft, the transport and the store.
func (n *Node) Run(ctx context.Context) error {
	srv, err := newServer(n)
	if err != nil {
		return errors.Join(err, n.close())
	}
	// From here on the node can report (raft, the controller and the owner exist), so
	// its polls carry its report (the check of the peers before raft started did not).
	n.poll.report = n.Report
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error { return n.poll.Run(gctx) })
	g.Go(func() error { return n.followLeader(gctx) })
	g.Go(func() error { return n.bootstrap(gctx) })
	g.Go(func() error { return n.ctl.Run(gctx, n.leaderCh) })
	g.Go(func() error { return n.announce(gctx) })
	g.Go(func() error { return n.observe(gctx) })
	g.Go(func() error { return n.farewell(gctx) })
	if n.owner != nil {
		// The watchdog outlives the owner's shutdown (which fences and disarms it), then
		// its pipe closes.
		wctx, stopWatchdog := context.WithCancel(context.WithoutCancel(gctx))
		g.Go(func() error {
			defer stopWatchdog()
			return n.owner.Run(gctx, n.vrrpTasks...)
		})
		if n.watchdog != nil {
			g.Go(func() error { return n.watchdog.Run(wctx) })
		}
	}
	n.log.Info("keepraftd running", zap.String("role", n.cfg.Node.Role), zap.String("raft_addr", n.cfg.Cluster.RaftAddr), zap.String("api_addr", n.cfg.Cluster.APIAddr))
	err = g.Wait()
	closeErr := n.close()
	n.log.Info("keepraftd stopped")
	return errors.Join(err, closeErr)
}

// announce proposes this node's MemberJoined (role, priority, supported versions) until
// the journal shows it, so the controller knows who may own the VIP.
func (n *Node) announce(ctx context.Context) error {
	me := fsm.Member{ID: n.cfg.Node.ID, Role: fsm.Role(n.cfg.Node.Role), RaftAddr: n.cfg.Cluster.RaftAddr, APIAddr: n.cfg.Cluster.APIAddr, Versions: fsm.Versions}
	if n.cfg.IsDatabase() {
		me.Priority = n.cfg.VRRP.Priority
		me.KernelFence = n.kernelFence
	}
	t := time.NewTicker(announceEvery)
	defer t.Stop()
	for {
		s := n.fsm.State()
		if m, ok := s.Members[me.ID]; s.Bootstrapped && ok && m.Role == me.Role && m.Priority == me.Priority && m.APIAddr == me.APIAddr && slices.Equal(m.Versions, me.Versions) && m.KernelFence == me.KernelFence {
			return nil
		}
		if s.Bootstrapped && n.leader() != "" {
			ev, err := n.event(fsm.MemberJoined, fsm.MemberData{Member: me})
			if err == nil {
				pctx, cancel := context.WithTimeout(ctx, announceTimeout)
				_, err = n.Propose(pctx, ev)
				cancel()
			}
			if err != nil {
				n.log.Debug("announce membership", zap.Error(err))
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// observe keeps the journal's gauges current and logs every applied journal record; it
// runs when the journal changes (raft_leader is read at scrape time).
func (n *Node) observe(ctx context.Context) error {
	var last uint64
	for {
		ch := n.fsm.Watch()
		for _, r := range n.fsm.Journal(last) {
			last = r.Index
			n.metrics.record(r)
			fields := []zap.Field{zap.Uint64("index", r.Index), zap.String("type", string(r.Event.Type)), zap.String("by", r.Event.By), zap.Uint64("epoch", r.Event.Epoch), zap.String("result", string(r.Result))}
			if r.Error != "" {
				fields = append(fields, zap.String("reason", r.Error))
			}
			if len(r.Event.Data) > 0 {
				fields = append(fields, zap.String("data", string(r.Event.Data)))
			}
			n.log.Info("journal", fields...)
		}
		s := n.fsm.State()
		n.metrics.isOwner.Set(b2f(s.Holding(n.cfg.Node.ID)))
		n.metrics.epoch.Set(float64(s.Epoch))
		n.metrics.applied.Set(float64(s.Index))
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
			n.poll.kick()
		}
	}
}

// steady reports whether the applied state is a steady active owner (the poller then
// polls the peers other than the leader at its idle pace).
func (n *Node) steady() bool {
	s := n.fsm.State()
	return s.Phase == fsm.PhaseActive && s.Owner != ""
}

// farewell tells every peer, when this node stops gracefully, that it is leaving, so an
// owner left alone can tell "the whole cluster is stopping" from "I am cut off".
func (n *Node) farewell(ctx context.Context) error {
	<-ctx.Done()
	n.stopping.Store(true)
	var wg sync.WaitGroup
	for _, p := range n.cfg.Cluster.Peers {
		if p.ID == n.cfg.Node.ID {
			continue
		}
		wg.Go(func() {
			gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), goodbyeTimeout)
			defer cancel()
			if err := n.client.Goodbye(gctx, p.APIAddr, n.cfg.Node.ID, 0); err != nil {
				n.log.Debug("goodbye", zap.String("peer", p.ID), zap.Error(err))
			}
		})
	}
	wg.Wait()
	return nil
}

// Peers returns the latest poll of every peer.
func (n *Node) Peers() map[string]api.Peer { return n.poll.snapshot() }

// PeersWatch returns a channel closed at the next change of Peers: a report polled or
// carried by a renewal, a failed poll, a goodbye.
func (n *Node) PeersWatch() <-chan struct{} { return n.poll.watch() }

// unreachable lists the peers the last poll did not reach.
func (n *Node) unreachable() map[string]bool {
	out := map[string]bool{}
	views := n.poll.snapshot()
	for _, p := range n.cfg.Cluster.Peers {
		if v, ok := views[p.ID]; p.ID != n.cfg.Node.ID && (!ok || !v.OK) {
			out[p.ID] = true
		}
	}
	return out
}

// renewer sends the owner's Renew requests through the API client.
type renewer struct{ n *Node }

// Each request carries this node's report and each answer the peer's, which stand in
// for the polls between the two while the owner renews.
func (r renewer) Renew(ctx context.Context, peer string, req api.RenewRequest) (api.RenewResponse, error) {
	rep := r.n.Report()
	req.Report = &rep
	resp, err := r.n.client.Renew(ctx, r.n.peer(peer).APIAddr, req, 0)
	if err == nil && resp.Report != nil && resp.Report.Node == peer {
		r.n.poll.record(peer, *resp.Report)
	}
	return resp, err
}

// hasPeer reports whether id is a configured peer other than this node.
func (n *Node) hasPeer(id string) bool {
	for _, p := range n.cfg.Cluster.Peers {
		if p.ID == id {
			return id != n.cfg.Node.ID
		}
	}
	return false
}

// Report is this node's answer to GET /v1/node.
func (n *Node) Report() api.NodeReport {
	s := n.fsm.State()
	r := api.NodeReport{Node: n.cfg.Node.ID, Applied: s.Index, Epoch: s.Epoch, Phase: s.Phase, RaftState: n.raft.State().String(),
		Term: n.raft.CurrentTerm(), Stopping: n.stopping.Load()}
	r.Fresh, r.Heard = n.isFresh()
	if n.IsLeader() && n.ctl.ReadyTerm() == r.Term {
		r.LeaderApplied = s.Index
	}
	n.promiser.Fill(&r, s.Owner)
	if n.owner != nil {
		l := n.owner.Local()
		r.Healthy, r.Detail, r.Replication, r.ReadOnly = l.MySQLHealthy, l.MySQLDetail, l.Replication, l.ReadOnly
		r.GTID, r.Domain = l.GTID, n.owner.Domain()
		r.Remote = n.owner.RemoteView()
	}
	return r
}

// Status assembles GET /v1/status.
func (n *Node) Status() api.Status {
	s := n.fsm.State()
	st := api.Status{
		Node: n.cfg.Node.ID, Role: fsm.Role(n.cfg.Node.Role), RaftState: n.raft.State().String(), Leader: n.leader(),
		Owner: s.Owner, Epoch: s.Epoch, Phase: s.Phase, PhaseSince: s.PhaseSince, Foreign: s.Foreign, StaleEvents: s.StaleCount,
		Applied: n.raft.AppliedIndex(), LastLog: n.raft.LastIndex(), Term: n.raft.CurrentTerm(), CommitIndex: n.raft.CommitIndex(),
		ControlPlane: "plaintext",
	}
	if n.tls != nil {
		st.ControlPlane = "mutual TLS"
	}
	if n.owner != nil {
		st.Local = n.owner.Local()
	}
	st.Local.UptimeMS = (n.now() - n.boot).Milliseconds()
	suffrage := map[string]string{}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			suffrage[string(srv.ID)] = srv.Suffrage.String()
		}
	}
	views := n.poll.snapshot()
	now := n.now()
	for _, p := range n.cfg.Cluster.Peers {
		ms := api.MemberStatus{ID: p.ID, RaftAddr: p.RaftAddr, APIAddr: p.APIAddr, Suffrage: suffrage[p.ID], Owner: p.ID == s.Owner && s.Holding(p.ID)}
		if m, ok := s.Members[p.ID]; ok {
			ms.Role, ms.Priority, ms.Maintenance, ms.SemiSync = m.Role, m.Priority, m.Maintenance, m.SemiSync
			if m.HealthKnown {
				h := m.Healthy
				ms.Healthy, ms.Detail = &h, m.Detail
			}
		}
		switch v, ok := views[p.ID]; {
		case p.ID == n.cfg.Node.ID:
			ms.RaftState, ms.Reachable, ms.LastContact, ms.Applied = n.raft.State().String(), true, "self", s.Index
			ms.Replication = st.Local.Replication
		case ok:
			ms.Reachable = v.OK
			ms.RaftState, ms.Applied, ms.Replication = v.Report.RaftState, v.Report.Applied, v.Report.Replication
			if v.At != 0 {
				ms.LastContact = (now - v.At).Round(time.Millisecond).String() + " ago"
			}
			if !v.OK {
				ms.RaftState = "unreachable"
			}
		default:
			ms.RaftState, ms.LastContact = "unknown", "never"
		}
		ms.PeerView = n.peerView(p.ID, views)
		st.Members = append(st.Members, ms)
	}
	return st
}

// peerView joins what the other database nodes' remote probes say about id's MySQL.
func (n *Node) peerView(id string, views map[string]api.Peer) string {
	var parts []string
	add := func(from string, remote map[string]string) {
		if v, ok := remote[id]; ok {
			parts = append(parts, from+": "+v)
		}
	}
	if n.owner != nil {
		add(n.cfg.Node.ID, n.owner.RemoteView())
	}
	for _, p := range n.cfg.Cluster.Peers {
		if v, ok := views[p.ID]; ok && v.OK {
			add(p.ID, v.Report.Remote)
		}
	}
	return strings.Join(parts, "; ")
}
