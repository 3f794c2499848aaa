package owner

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/probe"
)

// healthResync spaces re-proposals of a verdict the journal does not show yet (a
// proposal lost to a leader change), and semiSyncResync those of a semi-sync change.
const (
	healthResync   = 500 * time.Millisecond
	semiSyncResync = time.Second
	// exitRetry spaces attempts to find the mysqld process when it cannot be watched.
	exitRetry = 5 * time.Second
)

// probeLoop checks MySQL every interval and proposes HealthChanged on a rise/fall
// transition, or when the journal disagrees with the local verdict. An unhealthy
// verdict wakes the state machine at once: the owner drops the VIP before anything
// commits.
func (o *Owner) probeLoop(ctx context.Context) error {
	cfg := o.cfg
	deb := probe.NewDebouncer(cfg.Rise, cfg.Fall, false)
	fails := 0
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	var lastSync, lastSemi, lastBase time.Time
	sentLost := "" // the lost set last journaled
	for {
		select {
		case reason := <-o.died:
			// The process itself is gone: no need to wait for fall failed probes.
			deb = probe.NewDebouncer(cfg.Rise, cfg.Fall, false)
			o.mu.Lock()
			was := o.known && o.ok
			o.known, o.ok = true, false
			o.health.Up, o.health.Err = false, reason
			o.mu.Unlock()
			o.metrics.mysqlHealthy.Set(0)
			if was {
				o.log.Info("mysql health changed", zap.Bool("healthy", false), zap.String("detail", reason))
				o.poke()
				o.notify(ctx, "fault")
				o.proposeNow(ctx, fsm.HealthChanged, fsm.HealthData{Node: cfg.Node, Healthy: false, Detail: reason, GTID: o.lastGTID()})
				lastSync = time.Now()
			}
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		start := time.Now()
		h, err := o.d.MySQL.Check(cctx)
		cancel()
		o.metrics.probeSeconds.Observe(time.Since(start).Seconds())
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && h.Err == "" {
			h.Err = err.Error()
		}
		s := o.d.Node.State()
		me := s.Members[cfg.Node]
		lost, base := "", ""
		if h.Up && me != nil {
			// The baseline is the set the journal recorded and the last one this runtime read
			// itself: a server restarted within fall×interval leaves no health change, and a
			// lagging state may not show the last one yet.
			base = o.baseline(me.GTID, o.lastGTID())
			lost = o.binlogLoss(base, h.GTIDExecuted)
			switch {
			case lost != "" && me.Maintenance:
				// An operator is working on the server (a re-seed, a repair): what it has
				// now is the new baseline, journaled so maintenance off does not flag it.
				if time.Since(lastBase) > healthResync {
					lastBase = time.Now()
					o.log.Warn("server has fewer transactions than the journal recorded; in maintenance, so its current set is the new baseline",
						zap.String("journaled", base), zap.String("now", h.GTIDExecuted), zap.String("lost", lost))
					o.proposeNow(ctx, fsm.HealthChanged, fsm.HealthData{Node: cfg.Node, Healthy: me.Healthy, Detail: me.Detail, GTID: h.GTIDExecuted})
				}
				lost = ""
			case lost != "":
				// Unfit, though it answers: see binlogLoss.
				h.Up, h.Err = false, binlogLostDetail(base, h.GTIDExecuted, lost)
			}
		}
		if h.Up {
			fails = 0
		} else {
			fails++
		}
		healthy, changed := deb.Observe(h.Up)
		o.mu.Lock()
		wasKnown := o.known
		if changed || (!o.known && !h.Up && fails >= cfg.Fall) {
			o.known = true
		}
		o.ok = healthy
		if h.Up {
			o.health = h
			o.gtid = h.GTIDExecuted
		} else {
			o.health.Up, o.health.Err = false, h.Err
		}
		known, gtid := o.known, o.gtid
		o.mu.Unlock()
		o.metrics.mysqlHealthy.Set(b2f(known && healthy))
		if h.Up {
			o.metrics.readOnly.Set(b2f(h.ReadOnly))
		}
		if known && (changed || !wasKnown) {
			o.log.Info("mysql health changed", zap.Bool("healthy", healthy), zap.String("detail", h.Err))
			o.poke()
			if !healthy {
				o.notify(ctx, "fault")
			}
		}
		if known && me != nil && (!me.HealthKnown || me.Healthy != healthy || (lost != "" && lost != sentLost)) &&
			(changed || time.Since(lastSync) > healthResync) {
			lastSync = time.Now()
			detail := h.Err
			if healthy {
				detail = "ok"
			}
			d := fsm.HealthData{Node: cfg.Node, Healthy: healthy, Detail: detail, GTID: gtid}
			if lost != "" {
				// Journaled once per distinct set, with the earlier set kept in the state
				// (GTID left out), so a restarted keepraftd still sees the loss.
				d.GTID, d.Lost = "", lost
				o.log.Error("server lost transactions the journal recorded it had: unfit for ownership until an operator repairs it in maintenance",
					zap.String("journaled", base), zap.String("now", h.GTIDExecuted), zap.String("lost", lost))
			}
			if o.proposeNow(ctx, fsm.HealthChanged, d) && lost != "" {
				sentLost = lost
			}
			o.poke()
		}
		// The owner journals its semi-sync status changes: OFF after ON means writes are
		// acknowledged without being on the peer. "Never ON" is not journaled.
		if h.Up && me != nil && s.Holding(cfg.Node) && h.SemiSync != "" && h.SemiSync != me.SemiSync &&
			(me.SemiSync != "" || h.SemiSync != "OFF") && time.Since(lastSemi) > semiSyncResync {
			lastSemi = time.Now()
			o.log.Info("semi-sync status changed", zap.String("from", me.SemiSync), zap.String("to", h.SemiSync))
			o.proposeNow(ctx, fsm.SemiSyncChanged, fsm.SemiSyncData{Node: cfg.Node, Status: h.SemiSync})
		}
		o.probed()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-o.diedKick:
		}
	}
}

// binlogLoss returns the transactions this server was known to have (journaled: the set
// its health reports journaled and the last one this runtime read) that it lacks now (""
// when none, or when a set cannot be read). A server's set only grows; one that shrank lost binlogged transactions: MariaDB
// rebuilds @@gtid_binlog_pos at start from the binlog, so a binlog damaged by a full disk and
// then cut by a crash ends the set before transactions InnoDB committed, and a RESET MASTER
// or a restore from an older backup does the same. Such a server must not own: its next
// writes would reuse the lost GTIDs, and the peer, which skips GTIDs it has, would diverge
// silently.
func (o *Owner) binlogLoss(journaled, now string) string {
	if journaled == "" || now == "" {
		return ""
	}
	j, err := probe.ParseGTIDSet(o.cfg.Flavor, journaled)
	if err != nil {
		return ""
	}
	n, err := probe.ParseGTIDSet(o.cfg.Flavor, now)
	if err != nil {
		return ""
	}
	return n.Missing(j).String()
}

// baseline is the union of the sets a server is known to have had ("" when none can be read).
func (o *Owner) baseline(sets ...string) string {
	var u probe.GTIDSet
	for _, s := range sets {
		if g, err := probe.ParseGTIDSet(o.cfg.Flavor, s); err == nil && s != "" {
			u = u.Union(g)
		}
	}
	return u.String()
}

// binlogLostDetail is the health detail of a server that lost transactions.
func binlogLostDetail(journaled, now, lost string) string {
	return "binlog lost transactions " + lost + ": the journal recorded " + journaled + ", the server has " + now +
		" (a binlog cut by a crash after a full disk, a RESET MASTER or an older backup); repair it in maintenance (docs/runbook.md: binlog lost transactions)"
}

func (o *Owner) lastGTID() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.gtid
}

// exitLoop watches the local mysqld process (pidfd) while it is healthy, so a killed or
// crashed server is noticed within milliseconds instead of after fall failed probes. Where
// the process cannot be watched (another host, a container), the probe alone decides.
func (o *Owner) exitLoop(ctx context.Context) error {
	t := time.NewTicker(o.cfg.Interval)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		o.mu.Lock()
		healthy := o.known && o.ok
		o.mu.Unlock()
		if !healthy {
			continue
		}
		err := o.d.MySQL.WaitExit(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			if err.Error() != lastErr {
				lastErr = err.Error()
				o.log.Info("mysqld process not watched; the probe alone detects its death", zap.Error(err))
			}
			if !waitUntil(ctx, exitRetry) {
				return nil
			}
			continue
		}
		lastErr = ""
		o.log.Warn("mysqld process exited")
		select {
		case o.died <- "mysqld process exited":
		default:
		}
		wake(o.diedKick)
		// Wait for the probe to see the server down before watching again.
		for ctx.Err() == nil {
			o.mu.Lock()
			down := o.known && !o.ok
			o.mu.Unlock()
			if down || !waitUntil(ctx, o.cfg.Interval) {
				break
			}
		}
	}
}

// remoteLoop probes the other database nodes' MySQL from here. The verdict is a second
// opinion shown in the status ("host reachable, mysqld not"); it never decides a
// failover, so a db1↔db2 partition alone cannot cause one.
func (o *Owner) remoteLoop(ctx context.Context) error {
	if o.d.Remote == nil {
		return nil
	}
	t := time.NewTicker(remoteEvery)
	defer t.Stop()
	for {
		s := o.d.Node.State()
		for _, id := range s.MemberIDs() {
			if id == o.cfg.Node || s.Members[id].Role != fsm.RoleDatabase {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
			err := o.d.Remote.Ping(cctx, id)
			cancel()
			verdict := "up"
			if err != nil {
				verdict = "down: " + err.Error()
			}
			o.mu.Lock()
			o.remote[id] = verdict
			o.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
