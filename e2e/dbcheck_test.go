package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/testenv"
)

// The checks in this file look at the databases themselves, not only at the VIP: a daemon
// can keep the VIP on one host and still leave two servers writable, or a channel stopped.

var dbNames = []string{"db1", "db2"}

// readOnly reads @@GLOBAL.read_only of one server as root over its unix socket: "0", "1",
// or "err: ..." when the server does not answer within 150 ms.
// A fence kills root's connections too, so a pooled connection can die under the read:
// the read is tried once more on a fresh one.
func (c *cluster) readOnly(name string) string {
	var err error
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		var v string
		v, err = c.lab.MariaDB(name).QueryString(ctx, "SELECT @@GLOBAL.read_only")
		cancel()
		if err == nil {
			return v
		}
	}
	return "err: " + err.Error()
}

// readOnlyAll returns read_only of db1 and db2.
func (c *cluster) readOnlyAll() map[string]string {
	return map[string]string{"db1": c.readOnly("db1"), "db2": c.readOnly("db2")}
}

func fmtRO(ro map[string]string) string {
	return fmt.Sprintf("read_only db1=%s db2=%s", ro["db1"], ro["db2"])
}

// running lists the keepraftd nodes whose process is alive, in a fixed order.
func (c *cluster) running() []string {
	var out []string
	for _, n := range []string{"db1", "db2", "witness"} {
		if p := c.procs[n]; p != nil && !p.Exited() {
			out = append(out, n)
		}
	}
	return out
}

// statusOf asks one node for its own status with a short timeout.
func (c *cluster) statusOf(node string) (api.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.api().Status(ctx, c.nodes[node].APIAddr.String(), time.Second)
}

// statusReport is one line per keepraftd node: what it says about ownership, raft and itself.
func (c *cluster) statusReport() string {
	var b strings.Builder
	for _, n := range []string{"db1", "db2", "witness"} {
		if p := c.procs[n]; p == nil || p.Exited() {
			fmt.Fprintf(&b, "\n  %s: keepraftd not running", n)
			continue
		}
		st, err := c.statusOf(n)
		if err != nil {
			fmt.Fprintf(&b, "\n  %s: no status: %v", n, err)
			continue
		}
		ro := "?"
		if st.Local.ReadOnly != nil {
			ro = fmt.Sprint(*st.Local.ReadOnly)
		}
		fmt.Fprintf(&b, "\n  %s: owner=%q epoch=%d phase=%s raft=%s leader=%q term=%d applied=%d commit=%d | local: runtime=%s holding_vip=%v promoted=%v lease_valid=%v read_only(probe)=%s repl=%q",
			n, st.Owner, st.Epoch, st.Phase, st.RaftState, st.Leader, st.Term, st.Applied, st.CommitIndex,
			st.Local.Runtime, st.Local.Holding, st.Local.Promoted, st.Local.LeaseValid, ro, st.Local.Replication)
	}
	return b.String()
}

// journalTail returns the last n journal records of the first node that answers, one per
// line; it never fails the test (it is used to build failure messages).
func (c *cluster) journalTail(n int) string {
	for _, node := range []string{"witness", "db1", "db2"} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		jr, err := c.api().Journal(ctx, c.nodes[node].APIAddr.String(), 0, 0, 2*time.Second)
		cancel()
		if err != nil {
			continue
		}
		recs := jr.Records
		if len(recs) > n {
			recs = recs[len(recs)-n:]
		}
		var b strings.Builder
		fmt.Fprintf(&b, "\n  (journal of %s, last %d)", node, len(recs))
		for _, r := range recs {
			fmt.Fprintf(&b, "\n  #%d %s %s by=%s epoch=%d phase=%s %s", r.Index, r.Event.Type, r.Result, r.Event.By, r.Event.Epoch, r.Event.Phase, string(r.Event.Data))
			if r.Error != "" {
				fmt.Fprintf(&b, " error=%q", r.Error)
			}
		}
		return b.String()
	}
	return "\n  (no node answered /v1/journal)"
}

// replReport describes both channels and GTID positions.
func (c *cluster) replReport() string {
	var b strings.Builder
	for _, n := range dbNames {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		io, sqlRun, lastErr, err := testenv.ReplicationStatus(ctx, c.lab.MariaDB(n))
		gtid, gerr := c.lab.MariaDB(n).GTIDState(ctx)
		cancel()
		if gerr != nil {
			gtid = gerr.Error()
		}
		fmt.Fprintf(&b, "\n  %s from %s: io=%v sql=%v last_error=%q err=%v; %s", n, other(n), io, sqlRun, lastErr, err, gtid)
	}
	return b.String()
}

// evidence is everything a database-level assertion prints when it fails.
func (c *cluster) evidence() string {
	return fmt.Sprintf("%s\n VIP holders %v\n status:%s\n replication:%s\n journal:%s",
		fmtRO(c.readOnlyAll()), c.tracker.Holders(), c.statusReport(), c.replReport(), c.journalTail(15))
}

// oneWriter checks, once, that exactly one server is writable, that it is the owner every
// running keepraftd names, active at the same epoch, and that it alone holds the VIP. It
// returns the owner, or "" and what is wrong.
func (c *cluster) oneWriter() (string, string) {
	ro := c.readOnlyAll()
	var writers []string
	for _, n := range dbNames {
		if ro[n] == "0" {
			writers = append(writers, n)
		} else if ro[n] != "1" {
			return "", fmt.Sprintf("%s: read_only unreadable: %s", n, ro[n])
		}
	}
	if len(writers) != 1 {
		return "", fmt.Sprintf("%d writable servers %v (%s)", len(writers), writers, fmtRO(ro))
	}
	var owner string
	var epoch uint64
	for i, n := range c.running() {
		st, err := c.statusOf(n)
		if err != nil {
			return "", fmt.Sprintf("%s: no status: %v", n, err)
		}
		if st.Phase != fsm.PhaseActive {
			return "", fmt.Sprintf("%s says owner %q epoch %d phase %s, want active", n, st.Owner, st.Epoch, st.Phase)
		}
		if i == 0 {
			owner, epoch = st.Owner, st.Epoch
		} else if st.Owner != owner || st.Epoch != epoch {
			return "", fmt.Sprintf("nodes disagree: %s says owner %q epoch %d, another %q epoch %d", n, st.Owner, st.Epoch, owner, epoch)
		}
	}
	if owner == "" {
		return "", "no running keepraftd"
	}
	if writers[0] != owner {
		return "", fmt.Sprintf("the writable server is %s but the owner at epoch %d is %s (%s)", writers[0], epoch, owner, fmtRO(ro))
	}
	if h := c.tracker.Holders(); !slices.Equal(h, []string{owner}) {
		return "", fmt.Sprintf("VIP holders %v, want only the owner %s", h, owner)
	}
	return owner, ""
}

// requireOneWriter waits (15 s at most) until exactly one server has read_only=0, that
// server is the active owner every running keepraftd names at the current epoch, and it
// alone holds the VIP. It returns the owner.
func (c *cluster) requireOneWriter() string {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last string
	for {
		owner, why := c.oneWriter()
		if why == "" {
			return owner
		}
		last = why
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("requireOneWriter: not exactly one writer that is the active owner and the VIP holder after 15s: %s\n%s", last, c.evidence())
	return ""
}

// requireOneWriterStable is requireOneWriter, and then the same condition must hold at
// every check (every 50 ms) for hold: a restarted daemon that acts on replayed history does
// so a moment after it came back, not at once.
func (c *cluster) requireOneWriterStable(hold time.Duration) string {
	c.t.Helper()
	owner := c.requireOneWriter()
	from := time.Now()
	for time.Since(from) < hold {
		got, why := c.oneWriter()
		if why == "" && got != owner {
			why = fmt.Sprintf("the owner changed from %s to %s", owner, got)
		}
		if why != "" {
			c.t.Fatalf("requireOneWriter: one writer (%s) held for %s, then: %s\n%s", owner, time.Since(from).Round(time.Millisecond), why, c.evidence())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return owner
}

// waitCaughtUp waits until node's keepraftd answers, follows a leader, has applied what
// another running node has committed, and (for a database node) has a probe result.
func (c *cluster) waitCaughtUp(node string, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for {
		st, err := c.statusOf(node)
		switch {
		case err != nil:
			last = err.Error()
		case st.Leader == "":
			last = "no leader known, raft " + st.RaftState
		case c.nodes[node].Role == "database" && st.Local.MySQLHealthy == nil:
			last = "no MySQL probe result yet"
		default:
			var commit uint64
			for _, n := range c.running() {
				if n == node {
					continue
				}
				if o, err := c.statusOf(n); err == nil {
					commit = max(commit, o.CommitIndex)
				}
			}
			if commit > 0 && st.Applied >= commit {
				return
			}
			last = fmt.Sprintf("applied %d, others' commit index %d", st.Applied, commit)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("keepraftd %s did not catch up within %s: %s\n%s", node, within, last, c.evidence())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lastRejoin returns the payload of the last applied RejoinChecked about node.
func lastRejoin(recs []fsm.Record, node string) (fsm.RejoinData, bool) {
	var d fsm.RejoinData
	found := false
	for _, r := range recs {
		if r.Event.Type != fsm.RejoinChecked || r.Result != fsm.ResultApplied {
			continue
		}
		var x fsm.RejoinData
		if r.Event.Payload(&x) == nil && x.Node == node {
			d, found = x, true
		}
	}
	return d, found
}

// brokenChannel returns the last applied ReplicationBroken about node's channel from source
// when it says the channel is broken. A later promotion of node supersedes it: the channel
// it named is no longer the one node replicates through.
func brokenChannel(recs []fsm.Record, node, source string) (fsm.ReplicationData, bool) {
	var d fsm.ReplicationData
	for _, r := range recs {
		if r.Result != fsm.ResultApplied {
			continue
		}
		switch r.Event.Type {
		case fsm.ReplicationBroken:
			var x fsm.ReplicationData
			if r.Event.Payload(&x) == nil && x.Node == node {
				d = x
			}
		case fsm.OwnerPromoted:
			var x fsm.PromotedData
			if r.Event.Payload(&x) == nil && x.Owner == node {
				d = fsm.ReplicationData{}
			}
		}
	}
	return d, d.Broken && d.Source == source
}

// binlogLosses returns every applied HealthChanged that journals a loss of node's binlog
// (Lost set), and whether the last health change of node is one (it is unfit still).
func binlogLosses(recs []fsm.Record, node string) ([]fsm.HealthData, bool) {
	var out []fsm.HealthData
	unfit := false
	for _, r := range recs {
		var d fsm.HealthData
		if r.Event.Type != fsm.HealthChanged || r.Result != fsm.ResultApplied || r.Event.Payload(&d) != nil || d.Node != node {
			continue
		}
		unfit = d.Lost != ""
		if unfit {
			out = append(out, d)
		}
	}
	return out, unfit
}

// journalNoFail is c.journal without failing the test when no node answers.
func (c *cluster) journalNoFail() []fsm.Record {
	for _, n := range []string{"witness", "db1", "db2"} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		jr, err := c.api().Journal(ctx, c.nodes[n].APIAddr.String(), 0, 0, 2*time.Second)
		cancel()
		if err == nil {
			return jr.Records
		}
	}
	return nil
}

// requireReplicationRuns waits (within) until both channels (db1 from db2, db2 from db1)
// run their IO and SQL threads. A stopped channel X-from-Y is accepted only when the
// journal's last RejoinChecked about Y is blocked (Y came back with transactions the owner
// lacks, so the owner holds its channel from Y until an operator decides).
func (c *cluster) requireReplicationRuns(within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for {
		ok := true
		var notes []string
		for _, n := range dbNames {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			io, sqlRun, lastErr, err := testenv.ReplicationStatus(ctx, c.lab.MariaDB(n))
			cancel()
			if err == nil && io && sqlRun {
				continue
			}
			from := other(n)
			if d, found := lastRejoin(c.journalNoFail(), from); found && d.Blocked {
				notes = append(notes, fmt.Sprintf("%s from %s stopped, excused by a blocked rejoin of %s (extra %s)", n, from, from, d.Extra))
				continue
			}
			ok = false
			notes = append(notes, fmt.Sprintf("%s from %s: io=%v sql=%v last_error=%q err=%v", n, from, io, sqlRun, lastErr, err))
		}
		last = strings.Join(notes, "; ")
		if ok {
			if last != "" {
				c.t.Logf("replication: %s", last)
			}
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("requireReplicationRuns: a channel is stopped after %s with no blocked rejoin journaled for it: %s\n%s", within, last, c.evidence())
}

var rowSeq atomic.Int64

// writeThroughVIP inserts one row (origin, seq) through the VIP as the application user,
// retrying for up to 10 s (a fresh connection each time), and returns the server that took
// it.
func (c *cluster) writeThroughVIP(origin string, seq int64) string {
	c.t.Helper()
	dsn := fmt.Sprintf("%s:%s@%s(%s:3306)/%s?timeout=1s&readTimeout=2s&writeTimeout=2s", testenv.AppUser, testenv.AppPass, c.dialer, c.vip, testenv.AppSchema)
	deadline := time.Now().Add(10 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		server, err := func() (string, error) {
			db, err := sql.Open("mysql", dsn)
			if err != nil {
				return "", err
			}
			defer db.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			conn, err := db.Conn(ctx)
			if err != nil {
				return "", err
			}
			defer conn.Close()
			var id int
			if err := conn.QueryRowContext(ctx, "SELECT @@server_id").Scan(&id); err != nil {
				return "", err
			}
			if _, err := conn.ExecContext(ctx, "INSERT INTO writes (origin, seq) VALUES (?, ?)", origin, seq); err != nil {
				return hostOfServerID(id), fmt.Errorf("insert on %s: %w", hostOfServerID(id), err)
			}
			return hostOfServerID(id), nil
		}()
		if err == nil {
			return server
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("write (%s, %d) through the VIP failed for 10s: %v\n%s", origin, seq, lastErr, c.evidence())
	return ""
}

// rowCount counts kr.writes rows with origin on one server ("err: ..." when it cannot).
func (c *cluster) rowCount(server, origin string) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n, err := c.lab.MariaDB(server).QueryString(ctx, "SELECT COUNT(*) FROM kr.writes WHERE origin = ?", origin)
	if err != nil {
		return "err: " + err.Error()
	}
	return n
}

// waitRows waits (within) until every server in servers has want rows with origin.
func (c *cluster) waitRows(origin string, want int, servers []string, within time.Duration) (bool, string) {
	deadline := time.Now().Add(within)
	var last string
	for {
		ok := true
		var parts []string
		for _, s := range servers {
			n := c.rowCount(s, origin)
			parts = append(parts, s+"="+n)
			ok = ok && n == fmt.Sprint(want)
		}
		last = strings.Join(parts, " ")
		if ok {
			return true, last
		}
		if time.Now().After(deadline) {
			return false, last
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// requireRowEverywhere writes a row with a unique origin through the VIP as the
// application user and waits (10 s at most) until both servers show it.
func (c *cluster) requireRowEverywhere() {
	c.t.Helper()
	origin := fmt.Sprintf("everywhere-%d-%d", time.Now().UnixNano(), rowSeq.Add(1))
	server := c.writeThroughVIP(origin, 1)
	if ok, counts := c.waitRows(origin, 1, dbNames, 10*time.Second); !ok {
		c.t.Fatalf("requireRowEverywhere: row %q written through the VIP on %s is not on both servers after 10s (counts %s)\n%s", origin, server, counts, c.evidence())
	}
}

// roViolation is an episode during which both servers had read_only=0.
type roViolation struct {
	From, To time.Time
	Samples  int
	Holders  []string
}

// roSampler reads read_only of both servers every 40 ms and records every instant at
// which both were 0. A sample reads db1, db2, then db1 again; it counts only when all three
// reads say 0, so db1 was writable for the whole time db2 was read (no false alarm from a
// handover falling between two reads).
type roSampler struct {
	c     *cluster
	start time.Time
	stop  chan struct{}
	done  chan struct{}

	mu         sync.Mutex
	samples    int
	errors     int
	violations []roViolation
	open       bool // the last sample was a violation (the episode is still going)
}

// startROSampler starts the sampler; it is stopped and its summary logged at cleanup.
func (c *cluster) startROSampler() *roSampler {
	c.t.Helper()
	s := &roSampler{c: c, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	c.t.Cleanup(func() {
		s.Stop()
		c.t.Logf("read_only sampler: %s", s.summary())
	})
	return s
}

func (s *roSampler) run() {
	defer close(s.done)
	t := time.NewTicker(40 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		a := s.c.readOnly("db1")
		b := s.c.readOnly("db2")
		a2 := s.c.readOnly("db1")
		now := time.Now()
		s.mu.Lock()
		s.samples++
		if strings.HasPrefix(a, "err") || strings.HasPrefix(b, "err") || strings.HasPrefix(a2, "err") {
			s.errors++
		}
		both := a == "0" && b == "0" && a2 == "0"
		switch {
		case both && s.open:
			v := &s.violations[len(s.violations)-1]
			v.To = now
			v.Samples++
		case both:
			s.violations = append(s.violations, roViolation{From: now, To: now, Samples: 1, Holders: s.c.tracker.Holders()})
			s.open = true
		default:
			s.open = false
		}
		s.mu.Unlock()
	}
}

// Stop ends sampling (harmless to call twice).
func (s *roSampler) Stop() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// Mark returns a position to pass to Since.
func (s *roSampler) Mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.violations)
}

// Since returns the episodes that began at or after mark.
func (s *roSampler) Since(mark int) []roViolation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.violations[mark:])
}

func (s *roSampler) format(vs []roViolation) string {
	var parts []string
	for _, v := range vs {
		parts = append(parts, fmt.Sprintf("[+%s .. +%s, %d samples, VIP on %v]",
			v.From.Sub(s.start).Round(time.Millisecond), v.To.Sub(s.start).Round(time.Millisecond), v.Samples, v.Holders))
	}
	return strings.Join(parts, " ")
}

func (s *roSampler) summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := fmt.Sprintf("%d samples (%d with an unreadable server), %d episodes with both servers read_only=0", s.samples, s.errors, len(s.violations))
	if len(s.violations) > 0 {
		sum += ": " + s.format(s.violations)
	}
	return sum
}

// requireNoTwoWriters fails when the sampler saw both servers writable since mark.
func (s *roSampler) requireNoTwoWriters(mark int, what string) {
	s.c.t.Helper()
	if vs := s.Since(mark); len(vs) > 0 {
		s.c.t.Fatalf("%s: both servers had read_only=0 at once (sampler, times since it started): %s\n%s", what, s.format(vs), s.c.evidence())
	}
}

// restartKeepraftd stops a node's keepraftd with sig (SIGTERM: graceful, SIGKILL after
// 8 s; SIGKILL: at once), waits until it is gone and starts it again at once.
func (c *cluster) restartKeepraftd(name string, sig syscall.Signal) {
	c.t.Helper()
	c.restartKeepraftdAfter(name, sig, 0)
}

// restartKeepraftdAfter is restartKeepraftd with the node left down for down (a fault
// parameter: the leader backs off from an unreachable follower, so a longer outage makes the
// restarted node replay the log later, after its own MySQL probe is already healthy).
func (c *cluster) restartKeepraftdAfter(name string, sig syscall.Signal, down time.Duration) {
	c.t.Helper()
	p := c.procs[name]
	switch sig {
	case syscall.SIGKILL:
		if err := p.Kill(); err != nil {
			c.t.Fatalf("SIGKILL keepraftd %s: %v", name, err)
		}
	default:
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		err := p.Stop(ctx)
		late := ctx.Err() != nil
		cancel()
		if err != nil {
			c.t.Fatalf("stop keepraftd %s: %v", name, err)
		}
		if late {
			c.t.Logf("keepraftd %s ignored SIGTERM for 8s and was killed", name)
		}
	}
	if down > 0 {
		time.Sleep(down) // the outage itself, not a wait for a condition
	}
	c.start(name)
}

// waitDBsHealthy waits until every running keepraftd's status shows both database members
// healthy.
func (c *cluster) waitDBsHealthy(within time.Duration) {
	c.t.Helper()
	waitFor(c.t, "every database node healthy", within, func() (bool, string) {
		st, err := c.status("")
		if err != nil {
			return false, err.Error()
		}
		for _, m := range st.Members {
			if m.Role == fsm.RoleDatabase && (m.Healthy == nil || !*m.Healthy) {
				return false, m.ID + " not healthy: " + m.Detail
			}
		}
		return true, ""
	})
}
