package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/go-sql-driver/mysql" // database/sql driver
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/probe"
	"github.com/keepraft/keepraft/vip"
	"github.com/keepraft/keepraft/vrrp"
)

// agent is the database node's side of failover: it probes the local MySQL, renews the
// quorum lease while this node owns the VIP, promotes and fences MySQL, and holds the VIP
// only while owner ∧ lease valid ∧ promoted ∧ locally healthy.
type agent struct {
	d      *daemon
	log    *zap.Logger
	db     *sql.DB
	prober *probe.Prober
	flavor probe.Flavor
	vips   *vip.Manager // nil with --no-vip
	conn   *vrrp.Conn   // nil when VRRP is off
	speak  *vrrp.Speaker
	listen *vrrp.Listener
	kick   chan struct{} // wakes the hold loop
	renew  chan struct{} // wakes the renew loop
	// holding mirrors "the VIP is on our interface" for the VRRP speaker, lock-free.
	holding atomic.Bool
	// vipMu makes "check the conjunction, then add" atomic against a concurrent drop.
	vipMu sync.Mutex

	mu          sync.Mutex
	health      probe.Health
	known       bool // the debouncer reached a verdict
	healthy     bool
	lastGTID    string
	epoch       uint64
	lease       *fsm.OwnerLease
	promoting   bool
	promoted    bool
	announced   bool // OwnerPromoted proposed for this epoch
	catchup     probe.CatchUp
	released    uint64 // epoch whose release this node already proposed
	held        bool
	probedVIP   bool      // the ARP probe before acquiring ran for this epoch
	rejoinState string    // shown in status
	rejoinDone  bool      // the former owner rejoined cleanly
	rejoinExtra string    // extra transactions last journaled ("" when none)
	rejoinAt    time.Time // last check while blocked
	foreignSeen map[netip.Addr]time.Time
	remote      map[string]string // peer → "up" or "down: <error>"
}

func newAgent(d *daemon, opts options) (*agent, error) {
	cfg := d.cfg
	a := &agent{d: d, log: d.log.Named("agent"), flavor: probe.Flavor(cfg.MySQL.Flavor), kick: make(chan struct{}, 1), renew: make(chan struct{}, 1), foreignSeen: map[netip.Addr]time.Time{}, remote: map[string]string{}}
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
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(2)
	db.SetConnMaxIdleTime(30 * time.Second)
	a.db = db
	a.prober = probe.New(db, probe.Config{Flavor: a.flavor, Timeout: cfg.MySQL.Timeout, WriteCheck: cfg.MySQL.WriteCheck, CheckScript: cfg.MySQL.CheckScript, AppUsers: cfg.MySQL.AppUsers}, a.log)
	if opts.noVIP {
		a.log.Warn("VIP and VRRP management disabled by --no-vip: this node will never hold the VIP")
		return a, nil
	}
	a.vips, err = vip.New(vip.Options{Interface: cfg.VIP.Interface, Managed: cfg.VIP.Addresses, Label: cfg.VIP.Label, KernelLease: cfg.VIP.KernelLease, GARPRepeat: cfg.VIP.GARPRepeat, GARPInterval: cfg.VIP.GARPInterval}, a.log)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("vip.interface %s: %w", cfg.VIP.Interface, err), db.Close())
	}
	if cfg.VRRP.Enabled {
		if err := a.openVRRP(); err != nil {
			return nil, errors.Join(err, a.vips.Close(), db.Close())
		}
	}
	return a, nil
}

func (a *agent) vrrpConfig() vrrp.Config {
	c := a.d.cfg.VRRP
	vc := vrrp.Config{Interface: a.d.cfg.VIP.Interface, Version: c.Version, VRID: uint8(c.VirtualRouterID), Priority: uint8(c.Priority), AdvertInt: c.AdvertInt, AuthPass: c.AuthPass}
	for _, p := range a.d.cfg.VIP.Addresses {
		vc.VIPs = append(vc.VIPs, p.Addr())
	}
	return vc
}

func (a *agent) openVRRP() error {
	ifi, err := net.InterfaceByName(a.d.cfg.VIP.Interface)
	if err != nil {
		return fmt.Errorf("vrrp: interface %s: %w", a.d.cfg.VIP.Interface, err)
	}
	a.conn, err = vrrp.Dial(ifi)
	if err != nil {
		return fmt.Errorf("vrrp: %w", err)
	}
	vc := a.vrrpConfig()
	if err := vc.Validate(); err != nil {
		return errors.Join(fmt.Errorf("vrrp: %w", err), a.conn.Close())
	}
	a.speak = vrrp.NewSpeaker(a.conn, vc, a.holding.Load, a.log)
	// Our own and our peers' adverts are not foreign routers.
	var self []netip.Addr
	for _, p := range a.d.cfg.Cluster.Peers {
		if ap, err := netip.ParseAddrPort(p.RaftAddr); err == nil {
			self = append(self, ap.Addr())
		}
	}
	if addrs, err := ifi.Addrs(); err == nil {
		for _, ad := range addrs {
			if ipn, ok := ad.(*net.IPNet); ok {
				if x, ok := netip.AddrFromSlice(ipn.IP); ok {
					self = append(self, x.Unmap())
				}
			}
		}
	}
	a.listen = vrrp.NewListener(a.conn, vc, self, a.onForeign, a.log)
	return nil
}

// Run runs the agent's loops until ctx ends, then gives the VIP up.
func (a *agent) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.probeLoop(gctx) })
	g.Go(func() error { return a.renewLoop(gctx) })
	g.Go(func() error { return a.holdLoop(gctx) })
	g.Go(func() error { return a.remoteLoop(gctx) })
	if a.speak != nil {
		g.Go(func() error { return a.speak.Run(gctx) })
		g.Go(func() error { return a.listen.Run(gctx) })
	}
	err := g.Wait()
	a.shutdown()
	return err
}

// shutdown gives the VIP up. With a healthy successor reachable it hands over: fence,
// release, drop. When no other database node could take the VIP, the whole cluster is
// giving it up, and only then a priority-0 advert tells keepalived backups to take over
// at once (it races nothing).
func (a *agent) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	a.mu.Lock()
	wasHolding, released := a.held, a.released
	a.mu.Unlock()
	s := a.d.node.fsm.State()
	owner := s.Holding(a.d.cfg.Node.ID) && released != s.Epoch
	successor := a.successorExists()
	if owner && successor {
		a.release(ctx, s, "keepraftd stopping")
	}
	a.dropVIP(ctx, "shutdown")
	if wasHolding && a.speak != nil && !successor {
		a.log.Info("no other database node can take the VIP: resigning with a priority-0 advert")
		if err := a.speak.Resign(ctx); err != nil {
			a.log.Warn("resign", zap.Error(err))
		}
	}
	if owner && !successor {
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		a.release(rctx, s, "keepraftd stopping, no successor")
		rcancel()
	}
}

// successorExists reports whether a reachable, healthy database peer could own the VIP.
func (a *agent) successorExists() bool {
	s := a.d.node.fsm.State()
	for id, v := range a.d.poll.snapshot() {
		m, ok := s.Members[id]
		if ok && v.ok && !v.report.Stopping && !a.d.hasLeft(id) && m.Role == fsm.RoleDatabase && !m.Maintenance && v.report.Healthy != nil && *v.report.Healthy {
			return true
		}
	}
	return false
}

func (a *agent) close() error {
	var errs []error
	if a.conn != nil {
		errs = append(errs, a.conn.Close())
	}
	if a.vips != nil {
		errs = append(errs, a.vips.Close())
	}
	errs = append(errs, a.db.Close())
	return errors.Join(errs...)
}

func (a *agent) poke() {
	for _, c := range []chan struct{}{a.kick, a.renew} {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// local is this node's own part of the status.
func (a *agent) local() api.LocalStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := api.LocalStatus{Holding: a.held, Promoted: a.promoted, GTID: a.health.GTIDExecuted}
	if a.lease != nil {
		now := bootNow()
		l.LeaseValid = a.lease.Valid(now)
		if l.LeaseValid {
			l.LeaseLeftMS = (a.lease.Expiry() - now).Milliseconds()
		}
	}
	if a.known {
		h := a.healthy
		l.MySQLHealthy = &h
		l.MySQLDetail = a.health.Err
		if a.health.Up {
			ro := a.health.ReadOnly
			l.ReadOnly = &ro
		}
	}
	l.Replication = replicationString(a.health.Replica) + a.rejoinState
	if len(a.health.ReadOnlyAdminAccounts) > 0 {
		l.MySQLDetail = strings.TrimSpace(l.MySQLDetail + " warning: application accounts with READ ONLY ADMIN bypass fencing: " + strings.Join(a.health.ReadOnlyAdminAccounts, ","))
	}
	if a.held {
		for _, p := range a.d.cfg.VIP.Addresses {
			l.VIPs = append(l.VIPs, p.String())
		}
	}
	return l
}

// domain is the local server's gtid_domain_id from the last good probe.
func (a *agent) domain() uint32 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.health.DomainID
}

func replicationString(r probe.ReplicaStatus) string {
	if !r.Configured {
		return "not configured"
	}
	s := fmt.Sprintf("from %s io=%s sql=%s", r.MasterHost, onOff(r.IORunning), onOff(r.SQLRunning))
	if r.LagSeconds >= 0 {
		s += fmt.Sprintf(" lag=%ds", r.LagSeconds)
	}
	if r.LastError != "" {
		s += " error=" + r.LastError
	}
	return s
}

func onOff(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// probeLoop checks MySQL every mysql.interval and proposes HealthChanged on a rise/fall
// transition only, or when the journal disagrees with the local verdict (a proposal lost
// to a leader change).
func (a *agent) probeLoop(ctx context.Context) error {
	cfg := a.d.cfg.MySQL
	deb := probe.NewDebouncer(cfg.Rise, cfg.Fall, false)
	fails := 0
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	var lastSync, lastSemi time.Time
	for {
		cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		start := time.Now()
		h, err := a.prober.Check(cctx)
		cancel()
		a.d.metrics.probeSeconds.Observe(time.Since(start).Seconds())
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && h.Err == "" {
			h.Err = err.Error()
		}
		if h.Up {
			fails = 0
		} else {
			fails++
		}
		healthy, changed := deb.Observe(h.Up)
		a.mu.Lock()
		wasKnown := a.known
		if changed || (!a.known && !h.Up && fails >= cfg.Fall) {
			a.known = true
		}
		a.healthy = healthy
		if h.Up {
			a.health = h
			a.lastGTID = h.GTIDExecuted
		} else {
			a.health.Up, a.health.Err = false, h.Err
		}
		known := a.known
		gtid := a.lastGTID
		a.mu.Unlock()
		a.d.metrics.mysqlHealthy.Set(b2f(known && healthy))
		if known && (changed || !wasKnown) {
			a.log.Info("mysql health changed", zap.Bool("healthy", healthy), zap.String("detail", h.Err))
			if !healthy {
				a.poke() // the fast path: drop the VIP now, before anything commits
				a.notify("fault")
			}
		}
		s := a.d.node.fsm.State()
		me := s.Members[a.d.cfg.Node.ID]
		if known && me != nil && (!me.HealthKnown || me.Healthy != healthy) && (changed || time.Since(lastSync) > 500*time.Millisecond) {
			lastSync = time.Now()
			a.proposeHealth(ctx, healthy, h.Err, gtid)
			a.poke()
		}
		// The owner journals its semi-sync status changes: OFF after ON means writes are
		// acknowledged without being on the peer. "Never ON" is not journaled.
		if h.Up && me != nil && s.Holding(a.d.cfg.Node.ID) && h.SemiSync != "" && h.SemiSync != me.SemiSync &&
			!(me.SemiSync == "" && h.SemiSync == "OFF") && time.Since(lastSemi) > time.Second {
			lastSemi = time.Now()
			a.log.Info("semi-sync status changed", zap.String("from", me.SemiSync), zap.String("to", h.SemiSync))
			a.propose(ctx, fsm.SemiSyncChanged, fsm.SemiSyncData{Node: a.d.cfg.Node.ID, Status: h.SemiSync})
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (a *agent) proposeHealth(ctx context.Context, healthy bool, detail, gtid string) {
	if healthy {
		detail = "ok"
	}
	a.propose(ctx, fsm.HealthChanged, fsm.HealthData{Node: a.d.cfg.Node.ID, Healthy: healthy, Detail: detail, GTID: gtid})
}

func (a *agent) propose(ctx context.Context, t fsm.Type, p any) (api.ProposeResponse, error) {
	ev, err := a.d.node.event(t, p)
	if err != nil {
		return api.ProposeResponse{}, err
	}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := a.d.node.propose(pctx, ev)
	outcome := string(resp.Result)
	if err != nil {
		outcome = "error"
		a.log.Warn("propose", zap.String("type", string(t)), zap.Error(err))
	} else if resp.Result != fsm.ResultApplied {
		a.log.Info("proposal not applied", zap.String("type", string(t)), zap.String("result", outcome), zap.String("reason", resp.Error))
	}
	a.d.metrics.proposals.WithLabelValues(string(t), outcome).Inc()
	return resp, err
}

// renewLoop sends Renew{epoch} to every peer each lease/3 while the journal names this
// node owner. Every promise counts for the lease from the send time, whenever it arrives;
// the kernel lifetime of the VIP is renewed (or the VIP added) only on a promise that
// completed a quorum within δ of sending. Answers are handled as they arrive, so a dead
// peer never delays a renewal.
func (a *agent) renewLoop(ctx context.Context) error {
	lease := a.d.cfg.Failover.Lease
	delta := renewDelta(lease)
	t := time.NewTicker(lease / 3)
	defer t.Stop()
	var rounds sync.WaitGroup
	defer rounds.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-a.renew:
		}
		s := a.d.node.fsm.State()
		me := a.d.cfg.Node.ID
		if !s.Holding(me) {
			continue
		}
		a.syncEpoch(s)
		sent := bootNow()
		var once sync.Once
		for _, p := range a.d.cfg.Cluster.Peers {
			if p.ID == me {
				continue
			}
			rounds.Go(func() {
				var resp api.RenewResponse
				body, _ := json.Marshal(api.RenewRequest{Owner: me, Epoch: s.Epoch})
				err := a.d.client.do(ctx, http.MethodPost, p.APIAddr, "/v1/renew", bytes.NewReader(body), &resp, lease/2)
				arrived := bootNow()
				answer := "refused"
				switch {
				case err != nil:
					answer = "error"
				case resp.Promised && arrived-sent <= delta:
					answer = "promised"
				case resp.Promised:
					answer = "late"
				}
				a.d.metrics.renewals.WithLabelValues(p.ID, answer).Inc()
				if !resp.Promised || err != nil {
					return
				}
				a.mu.Lock()
				if a.lease == nil || a.lease.Epoch != s.Epoch {
					a.mu.Unlock()
					return
				}
				a.lease.Granted(p.ID, sent)
				fresh := answer == "promised" && a.lease.LastQuorum() == sent
				valid := a.lease.Valid(bootNow())
				a.mu.Unlock()
				a.d.metrics.leaseValid.Set(b2f(valid))
				if fresh && valid {
					once.Do(func() { a.acquireOrRenew(ctx) })
				}
			})
		}
	}
}

// syncEpoch resets the per-epoch bookkeeping when the journal moved to a new epoch.
func (a *agent) syncEpoch(s fsm.State) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.epoch == s.Epoch && a.lease != nil {
		return
	}
	a.epoch = s.Epoch
	a.lease = fsm.NewOwnerLease(s.Epoch, a.d.cfg.Failover.Lease, a.d.cfg.Voters())
	a.promoting, a.promoted, a.announced, a.probedVIP = false, false, false, false
}

// mayHold is the conjunction re-checked before every add or renew of the VIP.
func (a *agent) mayHold(s fsm.State) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return s.Holding(a.d.cfg.Node.ID) && a.lease != nil && a.lease.Epoch == s.Epoch && a.lease.Valid(bootNow()) &&
		a.promoted && a.known && a.healthy
}

// acquireOrRenew adds the VIP (or renews its kernel lifetime) if holding is allowed now.
func (a *agent) acquireOrRenew(ctx context.Context) {
	if a.vips == nil {
		return
	}
	s := a.d.node.fsm.State()
	if !a.mayHold(s) {
		return
	}
	a.mu.Lock()
	probed := a.probedVIP
	a.probedVIP = true
	a.mu.Unlock()
	if !probed {
		// A check, not a proof: a host that still answers for the VIP is journaled.
		for _, p := range a.d.cfg.VIP.Addresses {
			pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			mac, taken, err := a.vips.ProbeConflict(pctx, p.Addr())
			cancel()
			if err != nil {
				a.log.Warn("arp probe before acquiring", zap.String("vip", p.String()), zap.Error(err))
			} else if taken {
				a.log.Warn("another host answers ARP for the VIP before we acquire it", zap.String("vip", p.String()), zap.String("mac", mac.String()))
			}
		}
	}
	// The conjunction is re-checked under vipMu, just before the add or renew.
	a.vipMu.Lock()
	if !a.mayHold(a.d.node.fsm.State()) {
		a.vipMu.Unlock()
		return
	}
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	res, err := a.vips.Set(sctx, a.d.cfg.VIP.Addresses)
	cancel()
	if err != nil {
		a.vipMu.Unlock()
		a.log.Error("add VIP", zap.Error(err))
		return
	}
	a.mu.Lock()
	was := a.held
	a.held = true
	a.holding.Store(true)
	a.vipMu.Unlock()
	announce := !a.announced && s.Phase == fsm.PhaseAssigned
	a.announced = a.announced || announce
	cu := a.catchup
	a.mu.Unlock()
	a.d.metrics.holdingVIP.Set(1)
	if len(res.Added) > 0 || !was {
		a.log.Info("VIP acquired", zap.Uint64("epoch", s.Epoch), zap.Stringers("added", res.Added))
		a.notify("master")
	}
	if announce {
		go a.propose(context.WithoutCancel(ctx), fsm.OwnerPromoted, fsm.PromotedData{
			Owner: a.d.cfg.Node.ID, Reached: cu.Reached, Target: cu.Target, Applied: cu.Applied, Missing: cu.Missing,
			WaitedMS: cu.Waited.Milliseconds(), Policy: a.d.cfg.Failover.OnCatchupTimeout, LossNotes: cu.Reason,
		})
	}
}

// dropVIP removes the VIP at once and stops the adverts.
func (a *agent) dropVIP(ctx context.Context, why string) {
	a.holding.Store(false)
	if a.vips == nil {
		return
	}
	a.vipMu.Lock()
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	res, err := a.vips.Set(sctx, nil)
	cancel()
	if err != nil {
		a.vipMu.Unlock()
		a.log.Error("remove VIP", zap.Error(err))
		return
	}
	a.mu.Lock()
	was := a.held
	a.held = false
	a.mu.Unlock()
	a.vipMu.Unlock()
	a.d.metrics.holdingVIP.Set(0)
	if was || len(res.Removed) > 0 {
		a.log.Info("VIP dropped", zap.String("reason", why), zap.Stringers("removed", res.Removed))
		a.notify("backup")
	}
}

// holdLoop reconciles the VIP with the conjunction, drives promotion, and releases
// ownership when this owner must give it up (its MySQL failed, a switchover or
// maintenance was requested, or the controller revoked it).
func (a *agent) holdLoop(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		s := a.d.node.fsm.State()
		me := a.d.cfg.Node.ID
		if s.Owner == me {
			a.syncEpoch(s)
		}
		a.mu.Lock()
		known, healthy, released := a.known, a.healthy, a.released
		promoting, promoted := a.promoting, a.promoted
		a.mu.Unlock()
		switch {
		case s.Holding(me):
			reason := ""
			switch {
			case known && !healthy:
				reason = "local mysqld unhealthy"
			case s.Switchover != nil:
				reason = "switchover requested"
			case s.Members[me] != nil && s.Members[me].Maintenance:
				reason = "maintenance"
			}
			if reason != "" && released != s.Epoch {
				a.release(ctx, s, reason)
			} else if reason == "" && !promoting && !promoted && known && healthy {
				a.mu.Lock()
				a.promoting = true
				a.mu.Unlock()
				go a.promote(ctx, s)
			}
		case s.Owner == me && s.Phase == fsm.PhaseRevoked && released != s.Epoch:
			a.release(ctx, s, "ownership revoked by the controller")
		}
		if !a.mayHold(a.d.node.fsm.State()) {
			a.mu.Lock()
			held := a.held
			a.mu.Unlock()
			if held || a.holding.Load() {
				a.dropVIP(ctx, "holding no longer allowed")
				if held && a.speak != nil && a.d.allPeersLeft() {
					// Every other voter stopped gracefully: the whole cluster gives the
					// VIP up, so keepalived backups may take over at once.
					a.log.Info("all peers stopped: resigning with a priority-0 advert")
					if err := a.speak.Resign(ctx); err != nil {
						a.log.Warn("resign", zap.Error(err))
					}
				}
			}
		}
		if s.Owner == me && s.Phase == fsm.PhaseActive {
			a.checkRejoin(ctx, s)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-a.kick:
		case <-a.d.node.fsm.Watch():
		}
	}
}

// release is the owner's fast path: drop the VIP, fence MySQL, read the final GTID set
// and propose OwnerReleased so the next owner can be assigned without a lease wait.
func (a *agent) release(ctx context.Context, s fsm.State, reason string) {
	a.mu.Lock()
	a.released = s.Epoch
	a.promoted = false
	gtid := a.lastGTID
	domain := a.health.DomainID
	a.mu.Unlock()
	a.dropVIP(ctx, reason)
	fenced := false
	if a.d.cfg.Failover.FenceReadOnly {
		fctx, cancel := context.WithTimeout(ctx, time.Second)
		g, err := probe.Fence(fctx, a.db, a.flavor, a.d.cfg.MySQL.AppUsers)
		cancel()
		if err != nil {
			a.log.Warn("fence mysql", zap.Error(err))
		} else {
			fenced, gtid = true, g
		}
	}
	a.log.Info("releasing ownership", zap.Uint64("epoch", s.Epoch), zap.String("reason", reason), zap.Bool("fenced", fenced), zap.String("gtid", gtid))
	ev, err := fsm.NewEvent(fsm.OwnerReleased, a.d.cfg.Node.ID, time.Now(), s.Epoch, "", fsm.ReleaseData{Owner: a.d.cfg.Node.ID, Reason: reason, GTID: gtid, Fenced: fenced, Domain: domain})
	if err != nil {
		return
	}
	// Phase is left empty on purpose: a release is valid from assigned, active and revoked.
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := a.d.node.propose(pctx, ev)
	if err != nil || resp.Result != fsm.ResultApplied {
		a.log.Warn("release not applied; will retry", zap.Error(err), zap.String("result", string(resp.Result)), zap.String("reason", resp.Error))
		if cur := a.d.node.fsm.State(); cur.Epoch == s.Epoch && cur.Owner == a.d.cfg.Node.ID && cur.Phase != fsm.PhaseReleased {
			a.mu.Lock()
			a.released = 0
			a.mu.Unlock()
		}
	}
}

// promote catches up with the old owner, opens writes and lets the renew loop add the VIP.
func (a *agent) promote(ctx context.Context, s fsm.State) {
	cfg := a.d.cfg.Failover
	var cu probe.CatchUp
	var err error
	if s.Target != "" {
		cu, err = probe.WaitCatchUp(ctx, a.db, a.flavor, s.Target, s.TargetDomain, cfg.CatchupTimeout)
		if err != nil {
			a.log.Warn("catch-up", zap.Error(err))
		}
	} else {
		cu = probe.CatchUp{Reached: true, Reason: "no catch-up target"}
	}
	a.log.Info("catch-up finished", zap.Bool("reached", cu.Reached), zap.String("target", cu.Target), zap.String("missing", cu.Missing), zap.Duration("waited", cu.Waited))
	if !cu.Reached && cfg.OnCatchupTimeout == "hold" {
		a.log.Warn("catch-up incomplete and on_catchup_timeout is hold: not opening writes")
		return // the controller declares PromotionFailed past its deadline
	}
	if s.PrevOwner != "" && s.PrevOwner != a.d.cfg.Node.ID {
		// Stop the channel from the old owner: transactions it binlogged but never
		// shipped must not arrive later and overwrite newer rows. The rejoin check
		// restarts it when the old owner has nothing extra.
		if err := probe.StopReplication(ctx, a.db); err != nil {
			a.log.Warn("stop replication from old owner", zap.Error(err))
		}
	}
	if err := probe.Promote(ctx, a.db, a.flavor); err != nil {
		a.log.Error("open writes (read_only=0)", zap.Error(err))
		a.mu.Lock()
		a.promoting = false
		a.mu.Unlock()
		return
	}
	a.mu.Lock()
	if a.epoch == s.Epoch {
		a.promoted, a.catchup = true, cu
		a.rejoinState, a.rejoinDone, a.rejoinExtra, a.rejoinAt = "", false, "", time.Time{}
	}
	a.promoting = false
	a.mu.Unlock()
	a.log.Info("promoted: writes open", zap.Uint64("epoch", s.Epoch))
	a.poke()
}

// checkRejoin compares a returning former owner's own-domain GTIDs with ours. With
// nothing extra, our channel from it restarts; otherwise the extra transactions are
// journaled and the channel stays stopped until an operator decides: either by making
// the owner apply them (START SLAVE by hand) or by re-cloning the former owner. A blocked
// rejoin is re-checked every 10 s and clears itself once nothing is extra any more.
func (a *agent) checkRejoin(ctx context.Context, s fsm.State) {
	prev := s.PrevOwner
	if prev == "" || prev == a.d.cfg.Node.ID {
		return
	}
	a.mu.Lock()
	done := a.rejoinDone || (a.rejoinExtra != "" && time.Since(a.rejoinAt) < 10*time.Second)
	mine := a.health.GTIDExecuted
	lastExtra := a.rejoinExtra
	a.mu.Unlock()
	if done || mine == "" {
		return
	}
	v, ok := a.d.poll.snapshot()[prev]
	if !ok || !v.ok || v.report.Healthy == nil || !*v.report.Healthy || v.report.GTID == "" {
		return
	}
	theirs, err1 := probe.ParseGTIDSet(a.flavor, v.report.GTID)
	ours, err2 := probe.ParseGTIDSet(a.flavor, mine)
	if err := errors.Join(err1, err2); err != nil {
		a.log.Warn("rejoin check: parse GTID sets", zap.Error(err))
		return
	}
	extra := probe.ExtraTransactions(ctx, theirs, ours, v.report.Domain)
	d := fsm.RejoinData{Node: prev}
	if !extra.IsEmpty() {
		d.Blocked, d.Extra = true, extra.String()
		a.log.Warn("former owner has transactions we never received; its channel stays stopped", zap.String("node", prev), zap.String("extra", d.Extra))
		a.mu.Lock()
		a.rejoinState = " (channel from " + prev + " held: extra " + d.Extra + ")"
		a.rejoinExtra, a.rejoinAt = d.Extra, time.Now()
		a.mu.Unlock()
		if d.Extra == lastExtra {
			return // already journaled
		}
	} else {
		if err := probe.StartReplication(ctx, a.db); err != nil {
			a.log.Warn("restart replication from former owner", zap.Error(err))
			return
		}
		a.mu.Lock()
		a.rejoinState, a.rejoinDone, a.rejoinExtra = "", true, ""
		a.mu.Unlock()
		a.log.Info("former owner rejoined with nothing extra; replication from it restarted", zap.String("node", prev))
	}
	go a.propose(context.WithoutCancel(ctx), fsm.RejoinChecked, d)
}

// remoteLoop probes the other database nodes' MySQL from here (connect and SELECT 1,
// every 500 ms, with this node's account on the peer's host at mysql.port). The result is
// a second opinion shown in the status ("host reachable, mysqld not"); it never decides a
// failover, so a db1↔db2 partition alone cannot cause one. It needs mysql.host (not dsn).
func (a *agent) remoteLoop(ctx context.Context) error {
	cfg := a.d.cfg
	if cfg.MySQL.DSN != "" {
		return nil
	}
	pass, err := cfg.Password()
	if err != nil {
		return nil
	}
	dbs := map[string]*sql.DB{}
	defer func() {
		for _, db := range dbs {
			_ = db.Close()
		}
	}()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		s := a.d.node.fsm.State()
		for _, p := range cfg.Cluster.Peers {
			m, ok := s.Members[p.ID]
			if p.ID == cfg.Node.ID || !ok || m.Role != fsm.RoleDatabase {
				continue
			}
			db := dbs[p.ID]
			if db == nil {
				host, _, err := net.SplitHostPort(p.RaftAddr)
				if err != nil {
					continue
				}
				if db, err = sql.Open("mysql", probe.DSN(host, cfg.MySQL.Port, cfg.MySQL.User, pass, cfg.MySQL.Timeout)); err != nil {
					continue
				}
				db.SetMaxOpenConns(1)
				dbs[p.ID] = db
			}
			cctx, cancel := context.WithTimeout(ctx, cfg.MySQL.Timeout)
			var one int
			err := db.QueryRowContext(cctx, "SELECT 1").Scan(&one)
			cancel()
			verdict := "up"
			if err != nil {
				verdict = "down: " + err.Error()
			}
			a.mu.Lock()
			a.remote[p.ID] = verdict
			a.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// remoteView returns a copy of the remote probe results.
func (a *agent) remoteView() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.remote)
}

// onForeign journals a foreign VRRP master on our VRID while we hold the VIP, at most
// once a minute per source.
func (a *agent) onForeign(r vrrp.Router) {
	if !a.holding.Load() {
		return
	}
	a.mu.Lock()
	if time.Since(a.foreignSeen[r.Src]) < time.Minute {
		a.mu.Unlock()
		return
	}
	a.foreignSeen[r.Src] = time.Now()
	a.mu.Unlock()
	a.log.Warn("foreign VRRP master on our VRID", zap.String("source", r.Src.String()), zap.Uint8("priority", r.Priority))
	go a.propose(context.Background(), fsm.ForeignVRRPMasterSeen, fsm.ForeignData{Source: r.Src.String(), VRID: int(r.VRID), Priority: int(r.Priority), Version: r.Version})
}

// notify runs the keepalived-compatible hook for state ("master", "backup" or "fault")
// in the background, bounded by 10 s.
func (a *agent) notify(state string) {
	n := a.d.cfg.Notify
	script := map[string]string{"master": n.Master, "backup": n.Backup, "fault": n.Fault}[state]
	if script == "" {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", script)
		cmd.Env = append(cmd.Environ(), "KEEPRAFT_STATE="+strings.ToUpper(state), "KEEPRAFT_NODE="+a.d.cfg.Node.ID)
		out, err := cmd.CombinedOutput()
		if err != nil {
			a.log.Warn("notify hook failed", zap.String("state", state), zap.String("script", script), zap.Error(err), zap.ByteString("output", out))
			return
		}
		a.log.Info("notify hook ran", zap.String("state", state), zap.String("script", script))
	}()
}
