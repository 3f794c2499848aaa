package owner

import (
	"context"
	"errors"
	"net"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/probe"
)

// reconcileLoop drives the state machine and enforces the conjunctions: on every applied
// change, on a kick, after every probe, and at least every reconcileEvery; the read-back
// sweep runs every sweepEvery (and once at start, so a node that restarts fences a server
// it may have left writable).
func (o *Owner) reconcileLoop(ctx context.Context) error {
	t := time.NewTimer(reconcileEvery)
	defer t.Stop()
	var lastSweep time.Duration
	for {
		watch := o.d.Node.Watch()
		o.reconcile(ctx)
		if now := o.now(); lastSweep == 0 || now-lastSweep >= sweepEvery {
			lastSweep = now
			o.sweep(ctx)
		}
		t.Reset(o.nextWake())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-o.kick:
		case <-watch:
		}
	}
}

// nextWake is how long the reconcile loop may sleep: reconcileEvery, or less when a held
// lease expires sooner, so an owner cut off fences itself at the expiry, not a tick later.
func (o *Owner) nextWake() time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	d := reconcileEvery
	if o.lease != nil && (o.writesOpen || o.held) {
		if left := o.lease.Expiry() - o.now(); left >= 0 && left < d {
			d = left + time.Millisecond
		}
	}
	return d
}

// inputs gathers what step looks at.
func (o *Owner) inputs() (machine, inputs) {
	in := inputs{Self: o.cfg.Node, State: o.d.Node.State(), CaughtUp: o.d.Node.CaughtUp()}
	o.mu.Lock()
	defer o.mu.Unlock()
	in.HealthKnown, in.Healthy = o.known, o.ok
	if o.promo != nil && o.promo.Epoch == o.m.Epoch {
		p := *o.promo
		in.Promotion = &p
	}
	in.RetryRelease = o.m.Phase == Releasing && o.releaseFailed && o.now()-o.releaseFailedAt >= retryEvery
	in.FenceBroken = o.fenceLost && o.now()-o.fenceLostAt >= fenceGiveUp
	return o.m, in
}

// reconcile runs one step of the machine, performs its actions, then enforces the
// conjunctions on writes and the VIP.
func (o *Owner) reconcile(ctx context.Context) {
	cur, in := o.inputs()
	next, acts, why := step(cur, in)
	if next != cur {
		o.log.Info("owner runtime", zap.Stringer("from", cur), zap.Stringer("to", next), zap.String("reason", why))
		o.mu.Lock()
		o.m = next
		if next.Epoch != cur.Epoch {
			o.promo, o.promoted, o.announcedAt = nil, fsm.PromotedData{}, 0
			o.prevFenced, o.prevAt = false, time.Time{}
			o.releaseFailed = false
			o.rejoin = rejoinState{}
		}
		if next.Phase == Releasing && cur.Phase != Releasing {
			o.releaseFailed = false
		}
		o.mu.Unlock()
		if next.Phase == Promoting || next.Phase == Serving {
			o.kickRenew() // the renew loop sleeps while there is nothing to renew
		}
	}
	for _, a := range acts {
		switch a {
		case actFence:
			o.dropVIP(ctx, why)
			o.fence(ctx, why)
		case actPromote:
			o.startPromotion(ctx, next.Epoch, in.State)
		case actCancel:
			o.cancelPromotion()
		case actRelease:
			o.release(ctx, next.Epoch, why)
		}
	}
	o.enforce(ctx)
}

// enforce keeps read_only and the VIP equal to the conjunctions.
func (o *Owner) enforce(ctx context.Context) {
	s := o.d.Node.State()
	if o.mayWrite(s) {
		o.mu.Lock()
		// A server that restarted (my.cnf starts it read_only=1) or was fenced by someone
		// else is read-only again: a probe that began after we opened writes says so.
		if o.writesOpen && o.health.Up && o.health.ReadOnly && o.health.CheckedAt.After(o.openedAt) {
			o.log.Warn("server is read-only again under the serving owner; reopening writes")
			o.writesOpen = false
		}
		open := o.writesOpen
		epoch := o.m.Epoch
		o.mu.Unlock()
		if !open {
			o.openWrites(ctx, epoch)
		}
		o.announce(ctx, s)
		o.confirmPreviousFenced(ctx, s)
		o.checkRejoin(ctx, s)
		return
	}
	o.mu.Lock()
	held, open := o.held, o.writesOpen
	paced := time.Since(o.fenceFailedAt) < fenceRetry
	o.mu.Unlock()
	if held || o.holding.Load() {
		o.dropVIP(ctx, "holding no longer allowed")
		o.resignIfAlone(ctx)
	}
	if open && !paced {
		o.fence(ctx, "writes no longer allowed: not the serving owner with a valid lease")
	}
	o.mu.Lock()
	// A probe that started after our last fence found the server writable (a restart, an
	// operator, a fence that failed): fence it, at most every fenceRetry while it fails.
	writable := o.health.Up && !o.health.ReadOnly && o.health.CheckedAt.After(o.fencedAt) &&
		time.Since(o.fenceFailedAt) >= fenceRetry
	o.mu.Unlock()
	if writable {
		o.fence(ctx, "server writable but this node may not write")
	}
}

// confirmPreviousFenced keeps fencing the previous owner's server, every prevFenceEvery,
// until it is confirmed read-only: a server whose daemon is frozen, and which could not be
// fenced at promotion (unreachable, or a full disk blocking SET GLOBAL read_only), must not
// stay writable once it can be fenced. It runs on its own goroutine, one at a time.
func (o *Owner) confirmPreviousFenced(ctx context.Context, s fsm.State) {
	prev := s.PrevOwner
	if o.d.Remote == nil || prev == "" || prev == o.cfg.Node {
		return
	}
	o.mu.Lock()
	due := !o.prevFenced && !o.prevBusy && time.Since(o.prevAt) >= prevFenceEvery
	if due {
		o.prevBusy, o.prevAt = true, time.Now()
	}
	o.mu.Unlock()
	if !due {
		return
	}
	epoch := s.Epoch
	o.spawn(func() {
		fctx, cancel := context.WithTimeout(ctx, fenceTimeout)
		_, err := o.d.Remote.Fence(fctx, prev)
		cancel()
		ok := err == nil
		op, dial := errors.AsType[*net.OpError](err)
		if !ok && !(dial && op.Op == "dial") {
			rctx, rcancel := context.WithTimeout(ctx, fenceTimeout)
			ro, rerr := o.d.Remote.ReadOnly(rctx, prev)
			rcancel()
			ok = rerr == nil && ro
		}
		o.mu.Lock()
		o.prevBusy = false
		if ok && o.m.Epoch == epoch {
			o.prevFenced = true
		}
		o.mu.Unlock()
		if ok {
			o.log.Info("previous owner's server confirmed read-only", zap.String("previous", prev), zap.Uint64("epoch", epoch))
		}
	})
}

// sweep reads back what enforce cannot see from the probe: a managed VIP on the interface
// of a node that may not hold it (left by keepalived or by hand) is removed, and a channel
// this runtime stopped is restarted (resumeReplication). A writable server is enforce's
// job, on every reconcile. It is idempotent.
func (o *Owner) sweep(ctx context.Context) {
	s := o.d.Node.State()
	if o.mayWrite(s) {
		return
	}
	o.resumeReplication(ctx, s)
	o.standbySemiSync(ctx)
	if o.d.VIP == nil {
		return
	}
	vctx, cancel := context.WithTimeout(ctx, vipTimeout)
	held, err := o.d.VIP.Held(vctx)
	cancel()
	if err != nil {
		o.log.Warn("read the VIPs on the interface", zap.Error(err))
		return
	}
	if len(held) > 0 {
		o.log.Warn("a managed VIP is on the interface of a node that may not hold it", zap.Stringers("vips", held))
		o.dropVIP(ctx, "managed VIP present on a non-owner")
	}
}

// standbySemiSync switches the semi-sync master side off on a fenced server that may not
// write (mysql.semi_sync): as a semi-sync master its SQL thread would wait, after each
// transaction it applies from the owner, for an acknowledgement from the owner's channel,
// and while that channel is down the writes the owner acknowledged stay unapplied in the
// relay log. Only a server whose probe, taken after our last fence, says read-only is
// switched: client commits still waiting on it are killed first (probe.SetSemiSyncMaster).
func (o *Owner) standbySemiSync(ctx context.Context) {
	if !o.cfg.SemiSync {
		return
	}
	o.mu.Lock()
	fenced := !o.writesOpen && o.health.Up && o.health.ReadOnly
	o.mu.Unlock()
	if !fenced {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, fenceTimeout)
	changed, err := o.d.MySQL.SemiSyncMaster(sctx, false)
	cancel()
	switch {
	case err != nil:
		o.log.Warn("switch the semi-sync master side off on the standby", zap.Error(err))
	case changed:
		o.log.Info("semi-sync master side switched off on the standby: its SQL thread must not wait for acknowledgements")
	}
}

// startReplication starts the local channel within replCmdTimeout.
func (o *Owner) startReplication(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, replCmdTimeout)
	defer cancel()
	return o.d.MySQL.StartReplication(sctx)
}

// stopReplication stops the local channel within replCmdTimeout.
func (o *Owner) stopReplication(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, replCmdTimeout)
	defer cancel()
	return o.d.MySQL.StopReplication(sctx)
}

// resumeReplication restarts a standby's replication channel that this runtime stopped (a
// promotion, recorded in StateDir so it survives a restart) and that is still stopped
// without an error while another node serves an active epoch. A promotion that ended
// without this node becoming the serving owner (it was deposed, or stopped, while
// promoting) leaves it stopped, and the standby would miss every write of the real owner.
// A channel an operator stopped, one stopped with an SQL error, or a node in maintenance
// is left for the operator. Transactions this node may hold of its own never flow to the owner: the
// owner's rejoin check guards its channel from here.
func (o *Owner) resumeReplication(ctx context.Context, s fsm.State) {
	me := s.Members[o.cfg.Node]
	if s.Phase != fsm.PhaseActive || s.Owner == "" || s.Owner == o.cfg.Node || me == nil || me.Maintenance || !o.d.Node.CaughtUp() {
		return
	}
	o.mu.Lock()
	r, up, phase, ours := o.health.Replica, o.health.Up, o.m.Phase, o.stoppedRepl
	settled := o.health.CheckedAt.After(o.replStopTried.Add(stopSettle))
	o.mu.Unlock()
	if phase == Standby && up {
		o.channelRuns(ctx, s.Owner, r.IORunning && r.SQLRunning)
	}
	if ours && phase == Standby && up && settled && r.IORunning && r.SQLRunning {
		o.markReplStopped(false) // the stop it records failed, or someone restarted it
		return
	}
	// An IO thread that gave up with a fatal error from the owner while the SQL thread
	// still runs (1236: the owner's binlog was read mid-write on a full disk, or the
	// owner restarted under it) is started again, at most every ioRetryEvery: the server
	// does not retry such errors itself, and a standby without its channel misses every
	// write of the owner. An operator's STOP leaves no error and is left alone. A relay
	// log that fails the same way on consecutive restarts is reset instead (repairRelayLog).
	if !ours && phase == Standby && up && r.Configured && !r.IORunning && r.SQLRunning && r.LastError != "" && r.LastSQLError == "" {
		o.mu.Lock()
		due := time.Since(o.ioRetryAt) >= ioRetryEvery
		if due {
			o.ioRetryAt = time.Now()
		}
		o.mu.Unlock()
		if !due {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, relayTimeout)
		ch, err := o.d.MySQL.ReplicaChannel(rctx)
		cancel()
		if err != nil {
			o.log.Warn("read the replication channel's IO error", zap.Error(err))
		} else {
			o.watchChannel(ctx, s.Owner, ch)
			if o.repairRelayLog(ctx, s.Owner, ch) {
				return
			}
		}
		if err := o.startReplication(ctx); err != nil {
			o.log.Warn("restart the replication IO thread after its error", zap.String("owner", s.Owner), zap.String("io_error", r.LastError), zap.Error(err))
			return
		}
		o.log.Warn("replication IO thread had stopped with an error; started again", zap.String("owner", s.Owner), zap.String("io_error", r.LastError))
		return
	}
	// An IO error (the owner was unreachable when the channel last ran) does not block
	// the restart: it was a channel this runtime stopped, and START SLAVE reconnects. An
	// SQL error does: applying failed, and that is for the operator.
	if !ours || phase != Standby || !up || !r.Configured || r.IORunning || r.SQLRunning || r.LastSQLError != "" {
		return
	}
	if err := o.startReplication(ctx); err != nil {
		o.log.Warn("restart replication from the owner", zap.String("owner", s.Owner), zap.Error(err))
		return
	}
	o.markReplStopped(false)
	o.log.Info("replication from the owner restarted (a promotion of this node had stopped it)", zap.String("owner", s.Owner))
}

// Relay-log repair of a standby (repairRelayLog).
const (
	// relayResetAfter is how many consecutive IO-thread restarts must find the same
	// relay-log error before the relay logs are reset: the first failure is only
	// restarted, as any other IO error.
	relayResetAfter = 2
	// relayResetEvery bounds the relay-log resets of one runtime, and the messages about a
	// damaged relay log that is left for the operator.
	relayResetEvery = 5 * time.Minute
	// relayStreakGap ends a streak of relay-log errors: one seen longer than this after the
	// previous one counts as a first failure. Restarts are ioRetryEvery apart.
	relayStreakGap = 3 * ioRetryEvery
	// relayTimeout bounds reading the channel and the whole reset, which run on the
	// reconcile loop (STOP, RESET and START take milliseconds when the server is well).
	relayTimeout = 10 * time.Second
)

// relayRepair is one runtime's bookkeeping of repairRelayLog, under o.mu.
type relayRepair struct {
	errno    int       // the relay-log error (Last_IO_Errno) of the current streak
	streak   int       // consecutive restarts that found it
	seenAt   time.Time // when it was last found
	resetAt  time.Time // the last reset attempt
	resetPos string    // the source position the IO thread had stopped at before that reset
	told     bool      // the failure at resetPos after that reset was reported
	warnedAt time.Time // the last message about a channel that does not position by GTID
}

// repairRelayLog handles a standby's IO thread that stopped with an error while the SQL
// thread runs, when its restart is due, and reports whether it did (else the caller
// restarts it as any other IO error). It reads the error's number (Last_IO_Errno): a relay
// log or relay log index damaged by a SIGKILL or a disk fault fails every START REPLICA
// the same way (1595 "Relay log write failure", 1594, 1380, 1371). When the same such error
// is found on relayResetAfter consecutive restarts, the SQL thread has no error and the
// channel positions by GTID, the relay logs are discarded and fetched again from the GTID
// position the standby has applied (probe.ResetRelayLog: STOP, RESET without ALL, START),
// at most every relayResetEvery; between resets the channel is restarted as before. By
// then the SQL thread has had ioRetryEvery to apply what the relay log held, and whatever
// it did not is fetched again from the owner, whose binlog the IO thread was just reading.
// A channel positioned by binlog file and offset would forget its position at a reset: it
// is left alone for the operator, with the manual fix in the log.
func (o *Owner) repairRelayLog(ctx context.Context, owner string, ch probe.ReplicaChannel) bool {
	rctx, cancel := context.WithTimeout(ctx, relayTimeout)
	defer cancel()
	now := time.Now()
	o.mu.Lock()
	rr := &o.relay
	if !ch.RelayLogFailed() {
		rr.errno, rr.streak = 0, 0
		o.mu.Unlock()
		return false
	}
	if ch.IOErrno != rr.errno || now.Sub(rr.seenAt) > relayStreakGap {
		rr.errno, rr.streak = ch.IOErrno, 0
	}
	rr.streak++
	rr.seenAt = now
	streak, pos := rr.streak, sourcePos(ch)
	fields := []zap.Field{zap.String("owner", owner), zap.Int("io_errno", ch.IOErrno), zap.String("io_error", ch.IOError),
		zap.String("positioning", ch.Positioning), zap.String("source_pos", pos), zap.Int("failures", streak)}
	switch {
	case ch.SQLErrno != 0 || ch.SQLError != "":
		// Applying failed as well: the operator's, as any SQL error.
		o.mu.Unlock()
		return true
	case streak < relayResetAfter:
		o.mu.Unlock()
		return false
	case !ch.GTIDPositioned:
		warn := now.Sub(rr.warnedAt) >= relayResetEvery
		if warn {
			rr.warnedAt = now
		}
		o.mu.Unlock()
		if warn {
			o.log.Error("replication IO thread keeps failing with a relay-log error and the channel does not position by GTID: not restarted or reset, fix it by hand",
				append(fields, zap.String("manual_fix", relayManualFix(o.cfg.Flavor)))...)
		}
		return true
	case now.Sub(rr.resetAt) < relayResetEvery:
		// Reset lately: restart as before until the next reset is due.
		again := !rr.told && rr.resetPos == pos
		if again {
			rr.told = true
		}
		o.mu.Unlock()
		if again {
			o.log.Error("relay logs were reset but the IO thread fails again at the same position of the owner's binlog: the owner's binlog is likely damaged there (MariaDB logs a checksum error, 1743, before 1595); check it with mysqlbinlog on the owner",
				append(fields, zap.Duration("next_reset_in", relayResetEvery-now.Sub(rr.resetAt)))...)
		}
		return false
	}
	rr.resetAt, rr.resetPos, rr.told = now, pos, false
	o.mu.Unlock()
	if _, err := o.d.MySQL.ResetRelayLog(rctx); err != nil {
		// The channel is as it was (restarted), or left stopped when RESET changed its
		// positioning: either way the standby misses the owner's writes.
		o.log.Error("reset the relay logs of a replication channel failing with a relay-log error (RESET REPLICA needs RELOAD)",
			append(fields, zap.Error(err))...)
		return true
	}
	o.mu.Lock()
	rr.errno, rr.streak = 0, 0
	o.mu.Unlock()
	o.log.Warn("replication IO thread kept failing with a relay-log error: relay logs discarded and fetched again from the GTID position (STOP, RESET, START REPLICA)",
		append(fields, zap.Duration("next_reset_after", relayResetEvery))...)
	return true
}

// Broken-channel reporting (watchChannel).
const (
	// brokenAfter is how many consecutive restarts must find the IO thread stopped with the
	// same error at the same position of the owner's binlog before the channel is
	// journaled as broken: restarts are ioRetryEvery apart, so about 20 s after the first
	// failure, past the relay-log reset that comes with the second.
	brokenAfter = 3
	// brokenGap ends a streak: a failure found longer than this after the previous one
	// counts as a first failure.
	brokenGap = 3 * ioRetryEvery
	// runsFor is how long a channel must be seen running, without a stop in between,
	// before it counts as running again: after each restart of a broken channel the IO
	// thread runs for a few milliseconds before it meets the bad event again, and a probe
	// may read it then.
	runsFor = ioRetryEvery
)

// brokenChannel is one runtime's bookkeeping of watchChannel, under o.mu.
type brokenChannel struct {
	key       string    // the error and source position of the current streak
	streak    int       // consecutive restarts that found it
	seenAt    time.Time // when it was last found
	journaled bool      // a ReplicationBroken{Broken: true} was proposed and not yet cleared
	source    string    // the owner named in it
	// runningSince is when the probe first found the channel running with no stop seen
	// since (o.now; 0: not running).
	runningSince time.Duration
}

// watchChannel journals a standby's channel that cannot get past one position of the
// owner's binlog (ReplicationBroken), so the operator sees it in the journal and not only in
// the log. It is called with the channel as read before each due IO-thread restart. An IO
// thread that stops with the same error at the same source position on brokenAfter
// consecutive restarts, relay-log reset included, reads a binlog event it cannot take: a
// damaged event on the owner (MariaDB: 1743 checksum, 1236 "bogus data" or "binlog
// truncated", after a write cut by a full disk or a killed mysqld), or a purged binlog
// (1236). The server cannot fix either itself, and meanwhile the standby misses every
// later write of the owner, so a failover to it would lose them.
func (o *Owner) watchChannel(ctx context.Context, owner string, ch probe.ReplicaChannel) {
	if !ch.Configured || ch.IORunning || ch.IOErrno == 0 || ch.SQLErrno != 0 {
		return
	}
	key := strconv.Itoa(ch.IOErrno) + "@" + sourcePos(ch)
	now := time.Now()
	o.mu.Lock()
	b := &o.broken
	if b.key != key || now.Sub(b.seenAt) > brokenGap {
		b.key, b.streak = key, 0
	}
	b.streak++
	b.seenAt = now
	// From the brokenAfter-th failure on, until a proposal is applied (one that failed, for
	// want of a Raft leader say, is made again at the next restart).
	report := b.streak >= brokenAfter && !b.journaled
	streak := b.streak
	o.mu.Unlock()
	if !report {
		return
	}
	hint := brokenHint(o.cfg.Flavor, ch)
	o.log.Error("replication channel is broken: the IO thread stops at the same position of the owner's binlog on every restart; this standby misses the owner's writes until an operator fixes it",
		zap.String("owner", owner), zap.Int("io_errno", ch.IOErrno), zap.String("io_error", ch.IOError),
		zap.String("source_pos", sourcePos(ch)), zap.Int("failures", streak), zap.String("hint", hint))
	if o.proposeNow(ctx, fsm.ReplicationBroken, fsm.ReplicationData{Node: o.cfg.Node, Source: owner, Broken: true,
		IOErrno: ch.IOErrno, IOError: ch.IOError, SourcePos: sourcePos(ch), Failures: streak, Hint: hint}) {
		o.mu.Lock()
		b.journaled, b.source = true, owner
		o.mu.Unlock()
	}
}

// channelRuns is told on every sweep of a standby whether its channel runs. Once it has
// run for runsFor with no stop seen in between, it ends a streak of watchChannel and
// journals that a channel journaled as broken runs again. A stop starts the wait over.
func (o *Owner) channelRuns(ctx context.Context, owner string, running bool) {
	now := o.now()
	o.mu.Lock()
	b := &o.broken
	if !running {
		b.runningSince = 0
		o.mu.Unlock()
		return
	}
	if b.runningSince == 0 {
		b.runningSince = now
	}
	if now-b.runningSince < runsFor {
		o.mu.Unlock()
		return
	}
	b.key, b.streak = "", 0
	was, source := b.journaled, b.source
	o.mu.Unlock()
	if !was {
		return
	}
	if o.proposeNow(ctx, fsm.ReplicationBroken, fsm.ReplicationData{Node: o.cfg.Node, Source: source}) {
		o.log.Info("replication channel runs again after it was journaled as broken", zap.String("owner", owner))
		o.mu.Lock()
		b.journaled = false
		o.mu.Unlock()
	}
}

// brokenHint is the operator's next step for a channel stuck at one source position.
func brokenHint(f probe.Flavor, ch probe.ReplicaChannel) string {
	tool := "mariadb-binlog"
	if f == probe.FlavorMySQL {
		tool = "mysqlbinlog"
	}
	return "on the owner, read " + ch.SourceLogFile + " from offset " + strconv.FormatUint(ch.SourceLogPos, 10) + " with " + tool +
		" --verify-binlog-checksum; a purged binlog needs a re-seed, a damaged event the steps in docs/runbook.md (replication channel broken)"
}

// sourcePos is where the IO thread stopped reading the source's binlog, as file:offset.
func sourcePos(c probe.ReplicaChannel) string {
	return c.SourceLogFile + ":" + strconv.FormatUint(c.SourceLogPos, 10)
}

// relayManualFix is the operator's repair of a damaged relay log on a channel positioned by
// binlog file and offset: restart from where the SQL thread stopped in the source's binlog.
func relayManualFix(f probe.Flavor) string {
	if f == probe.FlavorMySQL {
		return "on this server: STOP REPLICA; SHOW REPLICA STATUS (note Relay_Source_Log_File and Exec_Source_Log_Pos); RESET REPLICA; " +
			"CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='<Relay_Source_Log_File>', SOURCE_LOG_POS=<Exec_Source_Log_Pos>; START REPLICA " +
			"(or restart mysqld with relay_log_recovery=ON). " +
			"With GTID auto-positioning (SOURCE_AUTO_POSITION=1) keepraft does this itself"
	}
	return "on this server: STOP REPLICA; SHOW REPLICA STATUS (note Relay_Master_Log_File and Exec_Master_Log_Pos); RESET REPLICA; " +
		"CHANGE MASTER TO MASTER_LOG_FILE='<Relay_Master_Log_File>', MASTER_LOG_POS=<Exec_Master_Log_Pos>; START REPLICA " +
		"(or restart mariadbd with relay_log_recovery=ON). " +
		"With GTID positioning (MASTER_USE_GTID=slave_pos) keepraft does this itself"
}

// openWrites sets read_only=0 after re-checking ownership and the lease right before.
func (o *Owner) openWrites(ctx context.Context, epoch uint64) {
	if !o.stillOwner(epoch) || !o.mayWrite(o.d.Node.State()) {
		return
	}
	// Under wdMu from the arm to writesOpen: a concurrent fence's disarm cannot slip
	// between them and leave open writes without a watchdog.
	o.wdMu.Lock()
	if err := o.armLocked(true); err != nil {
		o.wdMu.Unlock()
		o.log.Error("not opening writes: the fence watchdog cannot be armed", zap.Error(err))
		return
	}
	if o.cfg.SemiSync {
		// Before read_only=0: a write acknowledged without semi-sync could be lost.
		sctx, cancel := context.WithTimeout(ctx, fenceTimeout)
		changed, err := o.d.MySQL.SemiSyncMaster(sctx, true)
		cancel()
		if err != nil {
			o.wdMu.Unlock()
			o.log.Error("not opening writes: cannot switch the semi-sync master side on (mysql.semi_sync)", zap.Error(err))
			return
		}
		if changed {
			o.log.Info("semi-sync master side switched on for the owner")
		}
	}
	// Once more right before read_only=0: arming the watchdog and switching semi-sync on
	// take time, and the epoch or the lease may have moved on meanwhile.
	if !o.stillOwner(epoch) || !o.mayWrite(o.d.Node.State()) {
		o.wdMu.Unlock()
		o.log.Warn("not opening writes: ownership or lease lost while preparing", zap.Uint64("epoch", epoch))
		return
	}
	if err := o.d.MySQL.Promote(ctx); err != nil {
		o.wdMu.Unlock()
		o.log.Error("open writes (read_only=0)", zap.Error(err))
		return
	}
	o.mu.Lock()
	o.writesOpen, o.openedAt = true, time.Now()
	o.health.ReadOnly = false
	o.mu.Unlock()
	o.wdMu.Unlock()
	o.log.Info("writes open", zap.Uint64("epoch", epoch))
	o.poke()
}

// fence sets read_only=1 and kills application connections (idempotent).
func (o *Owner) fence(ctx context.Context, why string) (gtid string, ok bool) {
	fctx, cancel := context.WithTimeout(ctx, fenceTimeout)
	defer cancel()
	g, err := o.d.MySQL.Fence(fctx)
	if err != nil {
		o.mu.Lock()
		o.fenceFailedAt = time.Now()
		writable := o.writesOpen || !o.health.ReadOnly
		o.mu.Unlock()
		o.log.Warn("fence mysql", zap.String("reason", why), zap.Error(err))
		// A server frozen by SIGSTOP answers nothing, so it cannot be fenced, and it
		// resumes with read_only=0 the moment it is continued, beside the next owner. Kill
		// it: it comes back read-only from my.cnf.
		if writable && o.d.MySQL.Process() == probe.ProcessStopped {
			killed, kerr := o.d.MySQL.KillStopped()
			switch {
			case kerr != nil:
				o.log.Error("mysqld is frozen and writable but could not be killed", zap.Error(kerr))
			case killed:
				o.log.Error("mysqld is frozen (SIGSTOP) with writes open and cannot be fenced: killed it, so it cannot resume writable beside the next owner (it restarts read-only)", zap.String("reason", why))
			}
		}
		return "", false
	}
	o.mu.Lock()
	was := o.writesOpen
	o.writesOpen = false
	o.fencedAt = time.Now()
	o.health.ReadOnly = true
	o.mu.Unlock()
	o.disarmWatchdog()
	o.metrics.readOnly.Set(1)
	if was {
		o.log.Info("mysql fenced (read_only=1)", zap.String("reason", why), zap.String("gtid", g))
	}
	return g, true
}

// dropVIP removes the VIP at once and stops the adverts.
func (o *Owner) dropVIP(ctx context.Context, why string) error {
	o.setHolding(false)
	if o.d.VIP == nil {
		return nil
	}
	o.vipMu.Lock()
	defer o.vipMu.Unlock()
	if o.d.Fence != nil {
		if err := o.d.Fence.Shut(); err != nil {
			o.log.Warn("shut the VIP fence", zap.Error(err))
		}
	}
	sctx, cancel := context.WithTimeout(ctx, vipTimeout)
	res, err := o.d.VIP.Set(sctx, nil)
	cancel()
	if err != nil {
		o.log.Error("remove VIP", zap.Error(err))
		return err
	}
	o.mu.Lock()
	was := o.held
	o.held = false
	o.mu.Unlock()
	o.metrics.holdingVIP.Set(0)
	if was || len(res.Removed) > 0 {
		o.log.Info("VIP dropped", zap.String("reason", why), zap.Stringers("removed", res.Removed))
		o.notify(ctx, "backup")
	}
	return nil
}

// release is the owner's fast path: drop the VIP, fence MySQL, read the final GTID set
// and propose OwnerReleased for epoch, so the next owner is assigned without a lease
// wait. Nothing is proposed while the VIP could not be dropped; a release that did not
// commit is retried (RetryRelease).
func (o *Owner) release(ctx context.Context, epoch uint64, reason string) {
	fail := func() {
		o.mu.Lock()
		o.releaseFailed, o.releaseFailedAt = true, o.now()
		o.mu.Unlock()
	}
	if err := o.dropVIP(ctx, reason); err != nil {
		fail()
		return
	}
	o.mu.Lock()
	gtid, domain := o.gtid, o.health.DomainID
	o.releaseFailed = false
	o.mu.Unlock()
	fenced := false
	if o.cfg.FenceReadOnly {
		if g, ok := o.fence(ctx, reason); ok {
			fenced, gtid = true, g
		} else if ctx.Err() != nil || o.serverAnswers(ctx) || o.d.MySQL.Process() == probe.ProcessRunning {
			// Alive but not fenced (a full disk blocks SET GLOBAL read_only, or this node
			// cannot reach its own server while clients can): releasing now would let the
			// next owner open writes beside ours. Retry instead. A stopped (SIGSTOP) or
			// dead process serves nothing; its server is fenced when it answers again.
			o.log.Error("mysqld answers but cannot be fenced: not releasing until it is", zap.Uint64("epoch", epoch), zap.String("reason", reason))
			fail()
			return
		}
	}
	o.log.Info("releasing ownership", zap.Uint64("epoch", epoch), zap.String("reason", reason), zap.Bool("fenced", fenced), zap.String("gtid", gtid))
	// Phase is left empty on purpose: a release is valid from assigned, active and revoked.
	ev, err := o.event(fsm.OwnerReleased, epoch, "", fsm.ReleaseData{Owner: o.cfg.Node, Reason: reason, GTID: gtid, Fenced: fenced, Domain: domain})
	if err != nil {
		o.log.Error("build release", zap.Error(err))
		fail()
		return
	}
	resp, err := o.propose(ctx, ev)
	if err != nil || (resp.Result != fsm.ResultApplied && resp.Result != fsm.ResultStale) {
		fail()
	}
	o.poke()
}

// serverAnswers reports whether the local server answers a probe now.
func (o *Owner) serverAnswers(ctx context.Context) bool {
	cctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	h, err := o.d.MySQL.Check(cctx)
	return err == nil && h.Up
}

// resignIfAlone sends the priority-0 advert when every other voter said goodbye: the
// whole cluster gives the VIP up, so keepalived backups may take over at once.
func (o *Owner) resignIfAlone(ctx context.Context) {
	if o.d.Resigner == nil || !o.allPeersLeft() {
		return
	}
	o.log.Info("all peers stopped: resigning with a priority-0 advert")
	if err := o.d.Resigner.Resign(ctx); err != nil {
		o.log.Warn("resign", zap.Error(err))
	}
}

func (o *Owner) allPeersLeft() bool {
	peers := o.d.Node.Peers()
	for _, id := range o.cfg.Peers {
		if !peers[id].Left {
			return false
		}
	}
	return true
}

// successorExists reports whether a reachable, healthy database peer could own the VIP.
func (o *Owner) successorExists() bool {
	s := o.d.Node.State()
	for id, p := range o.d.Node.Peers() {
		m, ok := s.Members[id]
		if ok && p.OK && !p.Report.Stopping && !p.Left && m.Role == fsm.RoleDatabase && !m.Maintenance && p.Report.Healthy != nil && *p.Report.Healthy {
			return true
		}
	}
	return false
}

// shutdown gives the VIP up at a graceful stop. With a healthy successor reachable it
// hands over (release: fence, drop, OwnerReleased). When no other database node could
// take the VIP, the whole cluster is giving it up: only then a priority-0 advert tells
// keepalived backups to take over at once.
func (o *Owner) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	o.cancelPromotion()
	o.mu.Lock()
	wasHolding, m := o.held, o.m
	o.mu.Unlock()
	s := o.d.Node.State()
	owner := s.Holding(o.cfg.Node) && s.Epoch == m.Epoch && (m.Phase == Promoting || m.Phase == Serving)
	successor := o.successorExists()
	if owner && successor {
		o.release(ctx, s.Epoch, "keepraftd stopping")
	}
	if err := o.dropVIP(ctx, "shutdown"); err != nil {
		o.log.Error("VIP left on the interface at shutdown; its kernel lifetime removes it", zap.Error(err))
	}
	if wasHolding && o.d.Resigner != nil && !successor {
		o.log.Info("no other database node can take the VIP: resigning with a priority-0 advert")
		if err := o.d.Resigner.Resign(ctx); err != nil {
			o.log.Warn("resign", zap.Error(err))
		}
	}
	if owner && !successor {
		rctx, rcancel := context.WithTimeout(ctx, lastReleaseTimeout)
		o.release(rctx, s.Epoch, "keepraftd stopping, no successor")
		rcancel()
	}
}

// armWatchdog sends the watchdog the current lease's expiry while writes are open (after
// every renewal). Without a watchdog it does nothing.
func (o *Owner) armWatchdog() error {
	o.wdMu.Lock()
	defer o.wdMu.Unlock()
	return o.armLocked(false)
}

// armLocked arms the watchdog with the lease's expiry, when writes are open or force
// (right before they open). The caller holds wdMu.
func (o *Owner) armLocked(force bool) error {
	if o.d.Watchdog == nil {
		return nil
	}
	o.mu.Lock()
	lease, open := o.lease, o.writesOpen
	var expiry time.Duration
	if lease != nil {
		expiry = lease.Expiry()
	}
	o.mu.Unlock()
	if lease == nil || (!open && !force) {
		return nil
	}
	if err := o.d.Watchdog.Arm(expiry); err != nil {
		o.metrics.watchdogErrors.Inc()
		return err
	}
	return nil
}

// disarmWatchdog tells the watchdog the server is fenced, unless writes were opened
// again meanwhile.
func (o *Owner) disarmWatchdog() {
	if o.d.Watchdog == nil {
		return
	}
	o.wdMu.Lock()
	defer o.wdMu.Unlock()
	o.mu.Lock()
	open := o.writesOpen
	o.mu.Unlock()
	if open {
		return
	}
	if err := o.d.Watchdog.Disarm(); err != nil {
		o.metrics.watchdogErrors.Inc()
		o.log.Warn("disarm the fence watchdog", zap.Error(err))
	}
}
