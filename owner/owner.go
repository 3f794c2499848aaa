package owner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/internal/boottime"
	"github.com/keepraft/keepraft/probe"
)

// Timing constants of the runtime.
const (
	// reconcileEvery is the longest the state machine and the conjunction checks wait
	// when nothing wakes them: every probe (mysql.interval) wakes them right after it
	// reads the server, so they run in the same wakeup of the process instead of on a
	// timer of their own; applied changes, health changes and lease changes wake them at
	// once, and a timer fires at the lease's expiry. This bound applies while the probe
	// is slower (a hung server) or configured slower.
	reconcileEvery = 300 * time.Millisecond
	// sweepEvery is the pace of the idempotent checks that read the world back: a
	// managed VIP left on the interface, a writable server that should not be.
	sweepEvery = time.Second
	// stopSettle is how long after a promotion's STOP REPLICA returned a probe must have
	// been taken before a running channel clears the record that we stopped it.
	stopSettle = time.Second
	// retryEvery spaces retries of a release or an OwnerPromoted that did not commit.
	retryEvery = 300 * time.Millisecond
	// proposeTimeout bounds one proposal.
	proposeTimeout = 3 * time.Second
	// fenceGuard is taken off what remains of the lease when the VIP fence is opened: the
	// fence closes that much before the owner's lease ends. It covers the fence's own
	// tolerance for a slow batch (50 ms: the kernel counts from when it applies the batch),
	// so the element still ends before the lease does.
	fenceGuard = FenceGuard
	// minFenceOpen is the shortest opening worth a renewal; less lets the fence close.
	minFenceOpen = 20 * time.Millisecond
	// fenceRepairEvery spaces attempts to reinstall a lost VIP fence.
	fenceRepairEvery = time.Second
	// ioRetryEvery spaces restarts of a standby's replication IO thread that stopped with
	// an error the server does not retry.
	ioRetryEvery = 10 * time.Second
	// fenceGiveUp is how long an owner whose VIP fence is lost keeps trying to reinstall
	// it before it releases ownership, so the other node can serve the VIP.
	fenceGiveUp = 3 * time.Second
	// vipTimeout bounds one add, renew or removal of the VIPs.
	vipTimeout = time.Second
	// fenceTimeout bounds fencing one server; fenceRetry spaces the attempts on a
	// previous owner's server that answers writable but cannot be fenced.
	// fenceTimeout leaves room for the server's own lock wait (probe.FenceLockWait), the
	// kill of application connections and the retry that follows it.
	fenceTimeout = 3 * time.Second
	fenceRetry   = time.Second
	// replCmdTimeout bounds a START or STOP REPLICA of the local server outside a
	// promotion: the statement waits for the server's replication locks, and the loop that
	// issues it is the one that must react to the next event.
	replCmdTimeout = 5 * time.Second
	// prevFenceEvery spaces the serving owner's attempts to fence a previous owner's
	// server that is not confirmed read-only yet.
	prevFenceEvery = 200 * time.Millisecond
	// conflictProbeTimeout bounds the ARP probe before an acquisition.
	conflictProbeTimeout = 200 * time.Millisecond
	// preProbeFresh is how long the ARP probe started with a promotion stands in for the
	// probe before the acquisition that follows it.
	preProbeFresh = time.Second
	// rejoinEvery spaces rejoin checks; rejoinBlockedEvery spaces re-checks of a
	// blocked rejoin.
	rejoinEvery        = 2 * time.Second
	rejoinBlockedEvery = 10 * time.Second
	// remoteEvery is the pace of the remote probes of the other database nodes (a second
	// opinion shown in the status, never a failover input).
	remoteEvery = time.Second
	// shutdownTimeout bounds the hand-over at a graceful stop.
	shutdownTimeout = 4 * time.Second
	// lastReleaseTimeout bounds the release of an owner that stops with no successor.
	lastReleaseTimeout = time.Second
	// hookTimeout bounds one notify hook.
	hookTimeout = 10 * time.Second
)

// Config is the runtime's part of the node configuration.
type Config struct {
	// Node is this node's id; Peers are the other voters' ids (the witness included);
	// Voters counts every voter.
	Node   string
	Peers  []string
	Voters int
	// Lease is failover.lease; renewals go out every Lease/3.
	Lease            time.Duration
	CatchupTimeout   time.Duration
	OnCatchupTimeout string // "promote" or "hold"
	FenceReadOnly    bool
	Flavor           probe.Flavor
	VIPs             []netip.Prefix
	// Probe pacing: interval, timeout and the rise/fall counts.
	Interval, Timeout time.Duration
	Rise, Fall        int
	// Hooks are the keepalived-compatible notify hooks.
	Hooks Hooks
	// SemiSync is mysql.semi_sync: the semi-sync master side is switched on on this
	// server before it opens writes and off while it is a fenced standby.
	SemiSync bool
	// Now reads the lease clock; nil means CLOCK_BOOTTIME.
	Now func() time.Duration
	// StateDir (node.data_dir) keeps the runtime's few facts that must survive a restart:
	// that it stopped the replication channel itself. "" keeps them in memory only.
	StateDir string
}

// replStoppedFile marks, in StateDir, a replication channel this runtime stopped.
const replStoppedFile = "replication-stopped-by-keepraft"

// Deps are the resources the runtime drives. VIP, Remote and Resigner may be nil (no VIP
// management, no remote access to the peers' servers, no VRRP).
type Deps struct {
	Node     Node
	MySQL    MySQL
	Remote   Remote
	VIP      VIP
	Renewer  Renewer
	Resigner Resigner
	// Fence, when set, is opened for what remains of the lease on every acquisition and
	// renewal of the VIPs and shut before they are removed.
	Fence Fence
	// Watchdog, when set, must be armed with the lease before writes open; without it
	// a frozen keepraftd leaves its server writable until it runs again.
	Watchdog Watchdog
}

// Owner is the database node's runtime. Create it with [New] and run it with [Owner.Run].
type Owner struct {
	cfg     Config
	log     *zap.Logger
	d       Deps
	now     func() time.Duration
	metrics *metrics
	delta   time.Duration

	kick      chan struct{} // wakes the reconcile loop
	died      chan string   // the mysqld process exited (from exitLoop to probeLoop)
	diedKick  chan struct{} // wakes the probe loop at once
	renewKick chan struct{} // wakes the renew loop
	// holding mirrors "the VIP is on our interface" for the VRRP speaker, lock-free;
	// holdingChanged gets a value (without blocking) each time it flips.
	holding        atomic.Bool
	holdingChanged chan struct{}
	// vipMu makes "check the conjunction, then add or renew" atomic against a drop.
	vipMu sync.Mutex
	// wdMu orders the watchdog's messages: a deadline is read and sent under it, so a
	// later (longer) deadline is never overtaken by an earlier one.
	wdMu sync.Mutex
	// bg owns the goroutines the loops start (proposals, promotions, hooks).
	bg sync.WaitGroup

	mu     sync.Mutex
	runCtx context.Context // Run's context, for callbacks from other tasks
	m      machine
	health probe.Health
	known  bool // the debouncer reached a verdict
	ok     bool // ... and it is healthy
	gtid   string
	lease  *fsm.OwnerLease
	// writesOpen: this runtime set read_only=0 and has not fenced since.
	writesOpen bool
	// openedAt is when this runtime last set read_only=0 (wall clock, as Health.CheckedAt).
	openedAt time.Time
	// stoppedRepl: this runtime stopped the replication channel (a promotion) and has not
	// restarted it; only such a channel is restarted by a standby.
	stoppedRepl bool
	// replStopTried is when a promotion's STOP REPLICA last returned (wall clock).
	replStopTried time.Time
	// fenceFailedAt is when the last local fence failed (wall clock).
	fenceFailedAt time.Time
	// prevFenced: the previous owner's server is confirmed read-only in this epoch;
	// prevBusy/prevAt pace the attempts.
	prevFenced bool
	prevBusy   bool
	prevAt     time.Time
	// fencedAt is when the last local fence finished (wall clock, as Health.CheckedAt).
	fencedAt time.Time
	held     bool // the VIP is on the interface
	// fenceLost: the VIP fence's table is gone (until it is reinstalled); no VIP meanwhile.
	fenceLost bool
	// fenceLostAt is when the fence was lost (lease clock).
	fenceLostAt time.Duration
	// ioRetryAt is the last restart of an IO thread stopped by an error.
	ioRetryAt time.Time
	// relay is the bookkeeping of repairRelayLog.
	relay relayRepair
	// broken is the bookkeeping of watchChannel.
	broken brokenChannel
	// promotion bookkeeping for the machine's epoch.
	promo        *promotion
	promoCancel  context.CancelFunc
	promoted     fsm.PromotedData
	announcedAt  time.Duration
	announceBusy bool
	// release bookkeeping for the machine's epoch.
	releaseFailedAt time.Duration
	releaseFailed   bool
	// rejoin bookkeeping of a former owner.
	rejoin rejoinState
	// remote probe verdicts and journaled conflicts.
	remote    map[string]string
	conflicts map[string]bool
	// pre is the ARP conflict probe started with the current promotion (conflict).
	pre     *preProbe
	foreign map[netip.Addr]time.Duration
	// answers is each peer's last kind of renewal answer (noteAnswer).
	answers map[string]string
}

// New builds the runtime.
func New(cfg Config, d Deps, log *zap.Logger) (*Owner, error) {
	var errs []error
	if cfg.Node == "" {
		errs = append(errs, errors.New("owner: node id is empty"))
	}
	if d.Node == nil || d.MySQL == nil || d.Renewer == nil {
		errs = append(errs, errors.New("owner: node, mysql and renewer are required"))
	}
	if cfg.Lease <= 0 || cfg.Interval <= 0 || cfg.Timeout <= 0 || cfg.Rise < 1 || cfg.Fall < 1 {
		errs = append(errs, fmt.Errorf("owner: lease %v, interval %v, timeout %v, rise %d, fall %d must be positive", cfg.Lease, cfg.Interval, cfg.Timeout, cfg.Rise, cfg.Fall))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	now := cfg.Now
	if now == nil {
		now = boottime.Now
	}
	o := &Owner{
		cfg: cfg, log: log.Named("owner"), d: d, now: now, metrics: newMetrics(), delta: RenewDelta(cfg.Lease),
		kick: make(chan struct{}, 1), renewKick: make(chan struct{}, 1), holdingChanged: make(chan struct{}, 1), died: make(chan string, 1), diedKick: make(chan struct{}, 1),
		m:      machine{Phase: Standby},
		remote: map[string]string{}, conflicts: map[string]bool{}, foreign: map[netip.Addr]time.Duration{},
		answers: map[string]string{},
	}
	if cfg.StateDir != "" {
		if _, err := os.Stat(filepath.Join(cfg.StateDir, replStoppedFile)); err == nil {
			o.stoppedRepl = true
		}
	}
	return o, nil
}

// markReplStopped records (or clears) that this runtime stopped the replication channel,
// in memory and, with a StateDir, on disk.
func (o *Owner) markReplStopped(stopped bool) {
	o.mu.Lock()
	o.stoppedRepl = stopped
	o.mu.Unlock()
	if o.cfg.StateDir == "" {
		return
	}
	path := filepath.Join(o.cfg.StateDir, replStoppedFile)
	var err error
	if stopped {
		err = writeSynced(path, []byte("stopped by a promotion; a standby restarts it\n"))
	} else if err = os.Remove(path); errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	if err != nil {
		o.log.Warn("record the replication channel's state", zap.String("file", path), zap.Error(err))
	}
}

// writeSynced writes a small file and flushes it and its directory to disk, so that it
// survives a crash that follows.
func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// RenewDelta is δ: the owner renews every lease/3 and renews the VIP's kernel lifetime
// only on a quorum completed within δ of the request.
func RenewDelta(lease time.Duration) time.Duration { return lease / 3 }

// SetResigner sets the VRRP speaker that sends the priority-0 advert; call it before Run.
func (o *Owner) SetResigner(r Resigner) { o.d.Resigner = r }

// Holding reports whether the VIP is on this node's interface (for the VRRP speaker).
func (o *Owner) Holding() bool { return o.holding.Load() }

// HoldingChanged returns a channel that receives a value after Holding changes, for one
// reader (the VRRP speaker, which then needs no poll). A change while the channel is full
// is folded into the value already there.
func (o *Owner) HoldingChanged() <-chan struct{} { return o.holdingChanged }

func (o *Owner) setHolding(v bool) {
	if o.holding.Swap(v) != v {
		wake(o.holdingChanged)
	}
}

// Machine returns the runtime's phase and epoch.
func (o *Owner) Machine() (Phase, uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.m.Phase, o.m.Epoch
}

// Run runs the runtime's loops, and the extra tasks (the VRRP speaker and listener),
// until ctx ends, then gives the VIP up (see shutdown) and waits for every goroutine it
// started.
func (o *Owner) Run(ctx context.Context, extra ...func(context.Context) error) error {
	g, gctx := errgroup.WithContext(ctx)
	o.mu.Lock()
	o.runCtx = gctx
	o.mu.Unlock()
	for _, f := range extra {
		g.Go(func() error { return f(gctx) })
	}
	g.Go(func() error { return o.probeLoop(gctx) })
	g.Go(func() error { return o.renewLoop(gctx) })
	g.Go(func() error { return o.reconcileLoop(gctx) })
	g.Go(func() error { return o.remoteLoop(gctx) })
	g.Go(func() error { return o.exitLoop(gctx) })
	if o.d.Fence != nil {
		g.Go(func() error { return o.fenceLoop(gctx) })
	}
	err := g.Wait()
	o.shutdown()
	o.bg.Wait()
	return err
}

// spawn runs f on a goroutine that Run waits for.
func (o *Owner) spawn(f func()) {
	o.bg.Add(1)
	go func() {
		defer o.bg.Done()
		f()
	}()
}

// probed wakes the reconcile loop after a probe (not the renewal, which runs on the
// lease's own pace).
func (o *Owner) probed() { wake(o.kick) }

// kickRenew wakes the renew loop, which sleeps while this node does not renew a lease.
func (o *Owner) kickRenew() { wake(o.renewKick) }

// poke wakes the reconcile and renew loops.
func (o *Owner) poke() {
	wake(o.kick)
	wake(o.renewKick)
}

// wake leaves a value in c, a channel of one that a loop waits on, without blocking: a
// value already there stands for this one too.
func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// stillOwner is the check made right before every irreversible step: this node is the
// owner of epoch in a state at least as new as the leader's commit index.
func (o *Owner) stillOwner(epoch uint64) bool {
	s := o.d.Node.State()
	return o.d.Node.CaughtUp() && s.Holding(o.cfg.Node) && s.Epoch == epoch
}

// mayWrite is the conjunction for read_only=0: Serving in the current epoch, named
// owner, a valid quorum lease and a healthy MySQL.
func (o *Owner) mayWrite(s fsm.State) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.mayWriteLocked(s)
}

func (o *Owner) mayWriteLocked(s fsm.State) bool {
	return o.m.Phase == Serving && o.m.Epoch == s.Epoch && s.Holding(o.cfg.Node) &&
		o.lease != nil && o.lease.Epoch == s.Epoch && o.lease.Valid(o.now()) && o.known && o.ok
}

// mayHold is the conjunction for the VIP: mayWrite, writes actually open and, with a
// kernel fence, the fence in place.
func (o *Owner) mayHold(s fsm.State) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.mayWriteLocked(s) && o.writesOpen && !o.fenceLost && !o.fenceClaimedWithout(s)
}

// fenceClaimedWithout reports whether the journal says this node's VIPs are fenced while
// they are not (a restart with vip.fence off, before its MemberJoined commits): the
// controller would then wait too little on a handover from here.
func (o *Owner) fenceClaimedWithout(s fsm.State) bool {
	me := s.Members[o.cfg.Node]
	return me != nil && me.KernelFence && o.d.Fence == nil
}

// event builds an event stamped by this node.
func (o *Owner) event(t fsm.Type, epoch uint64, phase fsm.Phase, p any) (fsm.Event, error) {
	return fsm.NewEvent(t, o.cfg.Node, time.Now(), epoch, phase, p)
}

// propose commits an event and counts the outcome. Not applied is logged, not an error.
func (o *Owner) propose(ctx context.Context, ev fsm.Event) (api.ProposeResponse, error) {
	pctx, cancel := context.WithTimeout(ctx, proposeTimeout)
	defer cancel()
	resp, err := o.d.Node.Propose(pctx, ev)
	outcome := string(resp.Result)
	switch {
	case err != nil:
		outcome = "error"
		o.log.Warn("propose", zap.String("type", string(ev.Type)), zap.Error(err))
	case resp.Result != fsm.ResultApplied:
		o.log.Info("proposal not applied", zap.String("type", string(ev.Type)), zap.String("result", outcome), zap.String("reason", resp.Error))
	}
	o.metrics.proposals.WithLabelValues(string(ev.Type), outcome).Inc()
	return resp, err
}

// proposeNow builds an event from the current epoch and phase, proposes it and reports
// whether it was applied (the outcome is logged and counted by propose).
func (o *Owner) proposeNow(ctx context.Context, t fsm.Type, p any) bool {
	s := o.d.Node.State()
	ev, err := o.event(t, s.Epoch, s.Phase, p)
	if err != nil {
		o.log.Error("build event", zap.String("type", string(t)), zap.Error(err))
		return false
	}
	resp, err := o.propose(ctx, ev)
	return err == nil && resp.Result == fsm.ResultApplied
}

// Local is this node's own part of the status.
func (o *Owner) Local() api.LocalStatus {
	o.mu.Lock()
	defer o.mu.Unlock()
	l := api.LocalStatus{Holding: o.held, Promoted: o.m.Phase == Serving && o.writesOpen, GTID: o.health.GTIDExecuted, Runtime: o.m.String()}
	if o.lease != nil {
		now := o.now()
		l.LeaseValid = o.lease.Valid(now)
		if l.LeaseValid {
			l.LeaseLeftMS = (o.lease.Expiry() - now).Milliseconds()
		}
	}
	if o.known {
		h := o.ok
		l.MySQLHealthy = &h
		l.MySQLDetail = o.health.Err
		if o.health.Up {
			ro := o.health.ReadOnly
			l.ReadOnly = &ro
		}
	}
	l.Replication = replicationString(o.health.Replica) + o.rejoin.note
	if len(o.health.ReadOnlyAdminAccounts) > 0 {
		l.MySQLDetail = strings.TrimSpace(l.MySQLDetail + " note: these accounts bypass read_only; fencing kills their connections: " + strings.Join(o.health.ReadOnlyAdminAccounts, ","))
	}
	if o.held {
		for _, p := range o.cfg.VIPs {
			l.VIPs = append(l.VIPs, p.String())
		}
	}
	return l
}

// Domain is the local server's gtid_domain_id from the last good probe.
func (o *Owner) Domain() uint32 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.health.DomainID
}

// RemoteView returns a copy of the remote probe verdicts by peer.
func (o *Owner) RemoteView() map[string]string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.remote)
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
