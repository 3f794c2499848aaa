package e2e

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/testenv"
)

// The chaos checker: a live workload through the VIP, samplers that watch the VIP holders,
// read_only of both servers and the cluster's state while faults come and go, and the
// final checks after the last heal (acknowledged writes, table contents, replication,
// journals, daemon logs). Every violation is printed when it is seen, with the time since
// the campaign started, the faults active then and the evidence.

// Violation classes. Each one fails the test.
const (
	vTwoHolders     = "vip-two-holders"
	vTrackerLost    = "tracker-lost-events"
	vTwoWriters     = "two-writable-servers"
	vWriterNotOwner = "writable-server-not-owner"
	vAckLost        = "acknowledged-write-lost"
	vTablesDiffer   = "tables-differ"
	vReplStopped    = "replication-stopped"
	vNoOwner        = "no-owner-too-long"
	vJournalDiverge = "journals-differ"
	vAssignBad      = "assignment-to-ineligible-node"
	vReplay         = "journal-replay-mismatch"
	vDaemonLog      = "panic-or-race-in-daemon-log"
)

// noOwnerBound is how long the cluster may go without an active owner holding the VIP while
// a database node is untouched by every active fault and can reach another untouched voter
// (so a healthy database node and a quorum exist). It covers a mysqld restart after its
// heal (crash recovery, a few seconds), the health rise, the revoke wait (~2.3 s) and a
// promotion with its catch-up wait.
const noOwnerBound = 15 * time.Second

type violation struct {
	At     time.Duration
	Class  string
	Faults string
	Detail string
}

type ack struct {
	ID      int64
	At      time.Time
	Holders int
}

type statusSample struct {
	st  api.Status
	at  time.Time
	err error
}

// chaos is one campaign (or self-test): the cluster, the checker state and the statistics.
type chaos struct {
	t     *testing.T
	c     *cluster
	api   *api.Client
	mode  string
	start time.Time

	procMu sync.Mutex // guards c.procs against the fault goroutines

	mu         sync.Mutex
	violations []violation
	active     map[int]*chaosFault
	// diskHealed is when a full-disk fault on a server's datadir last healed, per host.
	diskHealed map[string]time.Time
	maint      map[string]bool
	counts     map[string]int
	skipped    int
	refused    int
	broken     map[string]string // journaled broken channels the checks excused, by node
	harness    []string
	heals      []time.Time
	statuses   map[string]statusSample
	acks       []ack
	uncertain  int
	reads      int
	readErrs   int
	staleReads int
	overlaps   int
	trackerErr bool
	noOwner    time.Time // start of the current episode without an owner (zero: none)
	noOwnerRep bool
	fs         map[string]*testenv.SmallFS

	// selfTest: violations are expected (the checker's self-test injects them), so they
	// are logged instead of failing the test.
	selfTest bool

	stop chan struct{}
	wg   sync.WaitGroup
}

func newChaos(t *testing.T, c *cluster, mode string) *chaos {
	ch := &chaos{
		t: t, c: c, mode: mode, start: time.Now(),
		active: map[int]*chaosFault{}, maint: map[string]bool{}, counts: map[string]int{}, diskHealed: map[string]time.Time{},
		statuses: map[string]statusSample{}, fs: map[string]*testenv.SmallFS{},
		stop: make(chan struct{}),
	}
	ch.api = c.api()
	return ch
}

func (ch *chaos) since() time.Duration { return time.Since(ch.start).Round(time.Millisecond) }

// logf prints a campaign line stamped with the time since the start.
func (ch *chaos) logf(format string, args ...any) {
	ch.t.Logf("[+%9s] %s", ch.since(), fmt.Sprintf(format, args...))
}

// activeFaults describes the faults active now.
func (ch *chaos) activeFaults() string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.activeFaultsLocked()
}

func (ch *chaos) activeFaultsLocked() string {
	var ids []int
	for id := range ch.active {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	var parts []string
	for _, id := range ids {
		f := ch.active[id]
		parts = append(parts, fmt.Sprintf("#%d %s (since +%s)", f.n, f.desc, f.injected.Sub(ch.start).Round(time.Millisecond)))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// diskGrace is how long after its datadir's full-disk fault heals a server still counts
// as unable to commit: the server resumes, and the owner's next remote fence (every 200 ms
// while the previous owner is not confirmed read-only) lands within it.
const diskGrace = 2 * time.Second

// cannotCommit reports whether name's datadir is full (or was freed less than diskGrace
// ago): a server that cannot write its binlog cannot acknowledge a write, whatever its
// read_only says, and a full disk also blocks SET GLOBAL read_only=1, so nobody can fence it
// until the disk is freed. Such a read_only=0 is logged, not counted as a writable server.
func (ch *chaos) cannotCommit(name string) bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for _, f := range ch.active {
		if f.kind == "disk-mysql" && slices.Contains(f.hosts, name) {
			return true
		}
	}
	return time.Since(ch.diskHealed[name]) < diskGrace
}

// violate records and prints a violation.
func (ch *chaos) violate(class, format string, args ...any) {
	v := violation{At: ch.since(), Class: class, Faults: ch.activeFaults(), Detail: fmt.Sprintf(format, args...)}
	ch.mu.Lock()
	ch.violations = append(ch.violations, v)
	ch.mu.Unlock()
	if ch.selfTest {
		ch.t.Logf("VIOLATION (expected by the self-test) %s at +%s (active faults: %s): %s", v.Class, v.At, v.Faults, v.Detail)
		return
	}
	ch.t.Errorf("VIOLATION %s at +%s (active faults: %s): %s", v.Class, v.At, v.Faults, v.Detail)
}

// harnessError records a failure of the campaign machinery itself (a fault that could not be
// injected or healed); it fails the test but is not a daemon violation.
func (ch *chaos) harnessError(format string, args ...any) {
	msg := fmt.Sprintf("[+%s] %s", ch.since(), fmt.Sprintf(format, args...))
	ch.mu.Lock()
	ch.harness = append(ch.harness, msg)
	ch.mu.Unlock()
	ch.t.Errorf("HARNESS %s", msg)
}

func (ch *chaos) classes() map[string]int {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	out := map[string]int{}
	for _, v := range ch.violations {
		out[v.Class]++
	}
	return out
}

// --- status of the nodes ---------------------------------------------------------------

// fetchStatus asks one node for its status (short timeout) and keeps the answer.
func (ch *chaos) fetchStatus(node string) statusSample {
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	st, err := ch.api.Status(ctx, ch.c.nodes[node].APIAddr.String(), 400*time.Millisecond)
	s := statusSample{st: st, at: time.Now(), err: err}
	ch.mu.Lock()
	if err == nil || ch.statuses[node].err != nil || time.Since(ch.statuses[node].at) > 2*time.Second {
		ch.statuses[node] = s
	}
	ch.mu.Unlock()
	return s
}

// fetchAll asks the three nodes in parallel and returns the newest state among the answers.
func (ch *chaos) fetchAll() (api.Status, bool) {
	var wg sync.WaitGroup
	res := make([]statusSample, 3)
	for i, n := range []string{"db1", "db2", "witness"} {
		wg.Go(func() { res[i] = ch.fetchStatus(n) })
	}
	wg.Wait()
	return newest(res)
}

// newest returns the answer with the highest (epoch, applied index).
func newest(ss []statusSample) (api.Status, bool) {
	var best api.Status
	ok := false
	for _, s := range ss {
		if s.err != nil {
			continue
		}
		if !ok || s.st.Epoch > best.Epoch || (s.st.Epoch == best.Epoch && s.st.Applied > best.Applied) {
			best, ok = s.st, true
		}
	}
	return best, ok
}

// latest is the newest state among answers younger than maxAge.
func (ch *chaos) latest(maxAge time.Duration) (api.Status, bool) {
	ch.mu.Lock()
	var ss []statusSample
	for _, s := range ch.statuses {
		if time.Since(s.at) <= maxAge {
			ss = append(ss, s)
		}
	}
	ch.mu.Unlock()
	return newest(ss)
}

func fmtState(st api.Status, ok bool) string {
	if !ok {
		return "no node answered"
	}
	return fmt.Sprintf("%s says owner=%q epoch=%d phase=%s (applied %d, leader %q)", st.Node, st.Owner, st.Epoch, st.Phase, st.Applied, st.Leader)
}

// stateAllows reports whether st lets node have read_only=0: node is the owner of st's epoch
// and the phase is assigned (writes open a moment before OwnerPromoted commits), active, or
// revoked (the epoch's owner whose lease the leader withdrew: no other server can be
// promoted before the next assignment, and the next owner fences it remotely first).
func stateAllows(st api.Status, node string) bool {
	return st.Owner == node && (st.Phase == fsm.PhaseAssigned || st.Phase == fsm.PhaseActive || st.Phase == fsm.PhaseRevoked)
}

// --- monitors ----------------------------------------------------------------------------

// startMonitors starts the status poller (which also runs the no-owner clock), the
// read_only sampler and the tracker watch.
func (ch *chaos) startMonitors() {
	ch.wg.Go(ch.pollStatus)
	ch.wg.Go(ch.sampleReadOnly)
}

func (ch *chaos) stopped() bool {
	select {
	case <-ch.stop:
		return true
	default:
		return false
	}
}

// pollStatus polls every node every 150 ms and runs the no-owner clock.
func (ch *chaos) pollStatus() {
	for !ch.stopped() {
		st, ok := ch.fetchAll()
		ch.noOwnerClock(st, ok)
		time.Sleep(150 * time.Millisecond)
	}
}

// available lists the database nodes no active fault touches, out of maintenance, that
// share the cluster with at least one other untouched voter.
func (ch *chaos) available() []string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	touched := map[string]bool{}
	for _, f := range ch.active {
		for _, h := range f.hosts {
			touched[h] = true
		}
	}
	untouched := 0
	for _, n := range []string{"db1", "db2", "witness"} {
		if !touched[n] {
			untouched++
		}
	}
	var out []string
	for _, d := range dbNames {
		if !touched[d] && !ch.maint[d] && untouched >= 2 {
			out = append(out, d)
		}
	}
	return out
}

func (ch *chaos) noOwnerClock(st api.Status, ok bool) {
	holders := ch.c.tracker.Holders()
	present := ok && st.Phase == fsm.PhaseActive && slices.Equal(holders, []string{st.Owner})
	avail := ch.available()
	ch.mu.Lock()
	if present || len(avail) == 0 {
		ch.noOwner, ch.noOwnerRep = time.Time{}, false
		ch.mu.Unlock()
		return
	}
	if ch.noOwner.IsZero() {
		ch.noOwner = time.Now()
	}
	long := time.Since(ch.noOwner)
	report := long > noOwnerBound && !ch.noOwnerRep
	if report {
		ch.noOwnerRep = true
	}
	ch.mu.Unlock()
	if !report {
		return
	}
	// A node the journal marks rejoin-blocked, unhealthy or in maintenance is not a
	// candidate; then the outage is the policy's choice, not a violation.
	state, _ := replayState(ch.c.journalNoFail())
	var why []string
	eligible := ""
	for _, d := range avail {
		m := state.Members[d]
		switch {
		case m == nil:
			why = append(why, d+": unknown to the journal")
		case m.RejoinBlocked:
			why = append(why, d+": rejoin blocked (extra "+m.RejoinExtra+")")
		case !m.Healthy:
			why = append(why, d+": journaled unhealthy ("+m.Detail+")")
		case m.Maintenance:
			why = append(why, d+": in maintenance")
		default:
			eligible = d
		}
	}
	if eligible == "" {
		ch.logf("no owner for %s, excused: every available node is ineligible by the journal: %s", long.Round(time.Millisecond), strings.Join(why, "; "))
		return
	}
	ch.violate(vNoOwner, "no active owner holding the VIP for %s (bound %s) while %v were untouched by faults with a quorum (%s eligible by the journal); latest state: %s; VIP holders %v%s",
		long.Round(time.Millisecond), noOwnerBound, avail, eligible, fmtState(st, ok), holders, ch.statusLines())
}

// statusLines prints what every node said last.
func (ch *chaos) statusLines() string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	var b strings.Builder
	for _, n := range []string{"db1", "db2", "witness"} {
		s, ok := ch.statuses[n]
		switch {
		case !ok:
			fmt.Fprintf(&b, "\n    %s: never answered", n)
		case s.err != nil:
			fmt.Fprintf(&b, "\n    %s (+%s): %v", n, s.at.Sub(ch.start).Round(time.Millisecond), s.err)
		default:
			st := s.st
			fmt.Fprintf(&b, "\n    %s (+%s): owner=%q epoch=%d phase=%s raft=%s leader=%q applied=%d | holding_vip=%v promoted=%v lease_valid=%v mysql_healthy=%v repl=%q",
				n, s.at.Sub(ch.start).Round(time.Millisecond), st.Owner, st.Epoch, st.Phase, st.RaftState, st.Leader, st.Applied,
				st.Local.Holding, st.Local.Promoted, st.Local.LeaseValid, deref(st.Local.MySQLHealthy), st.Local.Replication)
		}
	}
	return b.String()
}

func deref(b *bool) string {
	if b == nil {
		return "?"
	}
	return strconv.FormatBool(*b)
}

// readOnlyFast reads read_only with a 150 ms bound ("err: ..." when the server does not
// answer, for example while frozen).
func (ch *chaos) readOnlyFast(name string) string { return ch.c.readOnly(name) }

// sampleReadOnly reads both servers' read_only every 40 ms (a sample takes a few ms) and
// watches the tracker.
func (ch *chaos) sampleReadOnly() {
	suspect := map[string]time.Time{} // writable-not-owner episode start per server
	blocked := map[string]bool{}      // read_only=0 under a full disk, logged once
	reported := map[string]bool{}
	twoOpen := false
	for !ch.stopped() {
		time.Sleep(40 * time.Millisecond)
		ch.checkTracker()
		a, b := ch.readOnlyFast("db1"), ch.readOnlyFast("db2")
		for name, ro := range map[string]*string{"db1": &a, "db2": &b} {
			if *ro == "0" && ch.cannotCommit(name) {
				if !blocked[name] {
					blocked[name] = true
					ch.logf("%s has read_only=0 while its datadir is full: it cannot commit, not counted as writable", name)
				}
				*ro = "0 (disk full)"
			} else if *ro != "0" {
				blocked[name] = false
			}
		}
		if a == "0" && b == "0" && ch.readOnlyFast("db1") == "0" {
			if !twoOpen {
				twoOpen = true
				st, ok := ch.fetchAll()
				ch.violate(vTwoWriters, "db1 and db2 both read_only=0 (read db1, db2, db1 again: all 0); state: %s; VIP holders %v%s",
					fmtState(st, ok), ch.c.tracker.Holders(), ch.statusLines())
			}
		} else {
			twoOpen = false
		}
		for name, ro := range map[string]string{"db1": a, "db2": b} {
			if ro != "0" {
				delete(suspect, name)
				reported[name] = false
				continue
			}
			if pre, ok := ch.latest(time.Second); ok && stateAllows(pre, name) {
				delete(suspect, name)
				continue
			}
			// Suspicious: confirm with fresh answers taken before and after a second read.
			pre, okPre := ch.fetchAll()
			if ch.readOnlyFast(name) != "0" {
				continue
			}
			post, okPost := ch.fetchAll()
			if (okPre && stateAllows(pre, name)) || (okPost && stateAllows(post, name)) {
				delete(suspect, name)
				continue
			}
			if !okPre && !okPost {
				continue // nobody answered: nothing to compare with
			}
			first, seen := suspect[name]
			if !seen {
				suspect[name] = time.Now()
				continue
			}
			// The condition must last 250 ms: the few ms between a state change and the
			// node acting on it are not a finding.
			if time.Since(first) >= 250*time.Millisecond && !reported[name] {
				reported[name] = true
				ch.violate(vWriterNotOwner, "%s has read_only=0 for %s but the cluster does not name it owner: before the re-read %s; after it %s; read_only db1=%s db2=%s; VIP holders %v%s",
					name, time.Since(first).Round(time.Millisecond), fmtState(pre, okPre), fmtState(post, okPost), a, b, ch.c.tracker.Holders(), ch.statusLines())
			}
		}
	}
}

// checkTracker reports new overlaps and lost events.
func (ch *chaos) checkTracker() {
	ov := ch.c.tracker.Overlaps()
	err := ch.c.tracker.Err()
	ch.mu.Lock()
	newOv := ov[min(ch.overlaps, len(ov)):]
	ch.overlaps = len(ov)
	lost := err != nil && !ch.trackerErr
	if lost {
		ch.trackerErr = true
	}
	ch.mu.Unlock()
	for _, o := range newOv {
		ch.violate(vTwoHolders, "hosts %v held the VIP at once from +%s (for %s)%s", o.Hosts, o.Start.Sub(ch.start).Round(time.Millisecond), o.Duration().Round(time.Millisecond), ch.statusLines())
	}
	if lost {
		ch.violate(vTrackerLost, "the VIP tracker lost events, its holder view is incomplete: %v", err)
	}
}

// --- workload ----------------------------------------------------------------------------

const chaosOrigin = "chaos"

// startWorkload starts the writer (autocommit INSERTs with unique ids through the VIP, every
// acknowledged id recorded with its time) and the reader.
func (ch *chaos) startWorkload() {
	dsn := fmt.Sprintf("%s:%s@%s(%s:3306)/%s?timeout=500ms&readTimeout=1500ms&writeTimeout=1500ms", testenv.AppUser, testenv.AppPass, ch.c.dialer, ch.c.vip, testenv.AppSchema)
	ch.wg.Go(func() { ch.writer(dsn) })
	ch.wg.Go(func() { ch.reader(dsn) })
}

func (ch *chaos) writer(dsn string) {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		ch.harnessError("writer: %v", err)
		return
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	var id int64
	for !ch.stopped() {
		id++
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := db.ExecContext(ctx, "INSERT INTO writes (origin, seq) VALUES (?, ?)", chaosOrigin, id)
		cancel()
		now := time.Now()
		ch.mu.Lock()
		if err == nil {
			ch.acks = append(ch.acks, ack{ID: id, At: now, Holders: len(ch.c.tracker.Holders())})
		} else {
			ch.uncertain++
		}
		ch.mu.Unlock()
		if err != nil {
			time.Sleep(20 * time.Millisecond)
		} else {
			time.Sleep(15 * time.Millisecond)
		}
	}
}

func (ch *chaos) reader(dsn string) {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		ch.harnessError("reader: %v", err)
		return
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for !ch.stopped() {
		ch.mu.Lock()
		var before int64
		if n := len(ch.acks); n > 0 {
			before = ch.acks[n-1].ID
		}
		ch.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var maxSeq sql.NullInt64
		err := db.QueryRowContext(ctx, "SELECT MAX(seq) FROM writes WHERE origin = ?", chaosOrigin).Scan(&maxSeq)
		cancel()
		ch.mu.Lock()
		ch.reads++
		if err != nil {
			ch.readErrs++
		} else if maxSeq.Int64 < before {
			ch.staleReads++ // the serving server lacks an acknowledged write (a loss, or a stale owner)
		}
		ch.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
}

// stopAll ends the workload and the monitors.
func (ch *chaos) stopAll() {
	select {
	case <-ch.stop:
	default:
		close(ch.stop)
	}
	ch.wg.Wait()
}

// --- final checks --------------------------------------------------------------------------

// seqs returns the chaos ids on one server (root over the socket).
func seqsOn(m *testenv.MariaDB, origin string) (map[int64]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := m.QueryString(ctx, "SELECT COALESCE(GROUP_CONCAT(seq ORDER BY seq SEPARATOR ','), '') FROM kr.writes WHERE origin = ?", origin)
	if err != nil {
		return nil, err
	}
	out := map[int64]bool{}
	for _, s := range strings.Split(v, ",") {
		if s == "" {
			continue
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: seq %q: %w", m.Name, s, err)
		}
		out[n] = true
	}
	return out, nil
}

// lossNote is a journaled admission that acknowledged writes may be gone.
type lossNote struct {
	At    time.Time
	Index uint64
	What  string
}

// lossNotes lists applied OwnerAssigned records with a loss field, and OwnerPromoted records
// with loss notes or an unreached catch-up target (on_catchup_timeout=promote).
func lossNotes(recs []fsm.Record) []lossNote {
	var out []lossNote
	for _, r := range recs {
		if r.Result != fsm.ResultApplied {
			continue
		}
		switch r.Event.Type {
		case fsm.OwnerAssigned:
			var d fsm.AssignData
			if r.Event.Payload(&d) == nil && d.Loss != "" {
				out = append(out, lossNote{r.Event.At, r.Index, "OwnerAssigned " + d.Owner + ": " + d.Loss})
			}
		case fsm.OwnerPromoted:
			var d fsm.PromotedData
			if r.Event.Payload(&d) == nil && (d.LossNotes != "" || (d.Target != "" && !d.Reached)) {
				out = append(out, lossNote{r.Event.At, r.Index, fmt.Sprintf("OwnerPromoted %s: reached=%v %s", d.Owner, d.Reached, d.LossNotes)})
			}
		case fsm.HealthChanged:
			var d fsm.HealthData
			if r.Event.Payload(&d) == nil && d.Lost != "" {
				out = append(out, lossNote{r.Event.At, r.Index, "HealthChanged " + d.Node + ": binlog lost " + d.Lost})
			}
		}
	}
	return out
}

// semiSyncOff lists the times the journal says an owner's semi-sync went OFF.
func semiSyncOff(recs []fsm.Record) []lossNote {
	var out []lossNote
	for _, r := range recs {
		var d fsm.SemiSyncData
		if r.Result == fsm.ResultApplied && r.Event.Type == fsm.SemiSyncChanged && r.Event.Payload(&d) == nil && d.Status != "ON" {
			out = append(out, lossNote{r.Event.At, r.Index, d.Node + " semi-sync " + d.Status})
		}
	}
	return out
}

// checkAcked compares the acknowledged ids with the final owner's table.
func (ch *chaos) checkAcked(owner string, acks []ack, recs []fsm.Record, semisync bool) {
	have, err := seqsOn(ch.c.lab.MariaDB(owner), chaosOrigin)
	if err != nil {
		ch.violate(vAckLost, "cannot read the final owner %s's table: %v", owner, err)
		return
	}
	notes := lossNotes(recs)
	offs := semiSyncOff(recs)
	var lost, covered []string
	for _, a := range acks {
		if have[a.ID] {
			continue
		}
		var cover *lossNote
		for i := range notes {
			if notes[i].At.After(a.At) {
				cover = &notes[i]
				break
			}
		}
		at := a.At.Sub(ch.start).Round(time.Millisecond)
		if cover != nil && !semisync {
			covered = append(covered, fmt.Sprintf("%d (acked +%s, covered by #%d)", a.ID, at, cover.Index))
			continue
		}
		note := ""
		if cover != nil {
			note = fmt.Sprintf(", loss note #%d %q", cover.Index, cover.What)
		}
		for _, o := range offs {
			if !o.At.After(a.At) {
				note += fmt.Sprintf(", after journaled %q (#%d)", o.What, o.Index)
			}
		}
		lost = append(lost, fmt.Sprintf("%d (acked +%s%s)", a.ID, at, note))
	}
	if len(covered) > 0 {
		ch.logf("%d acknowledged writes missing on %s, covered by journaled loss notes: %s", len(covered), owner, abbrev(covered, 20))
	}
	if len(lost) > 0 {
		var nl []string
		for _, n := range notes {
			nl = append(nl, fmt.Sprintf("#%d at +%s %s", n.Index, n.At.Sub(ch.start).Round(time.Millisecond), n.What))
		}
		ch.violate(vAckLost, "%d of %d acknowledged writes are missing on the final owner %s with no journaled loss note after their ack (semisync=%v): %s; loss notes: %s",
			len(lost), len(acks), owner, semisync, abbrev(lost, 30), abbrev(nl, 20))
	}
}

func abbrev(xs []string, n int) string {
	if len(xs) <= n {
		return strings.Join(xs, "; ")
	}
	return strings.Join(xs[:n], "; ") + fmt.Sprintf("; ... (%d more)", len(xs)-n)
}

// tableDigest is an ordered hash of kr.writes (id, origin, seq) plus CHECKSUM TABLE.
func tableDigest(m *testenv.MariaDB) (string, map[string]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := sql.Open("mysql", m.DSN(testenv.AppUser, testenv.AppPass, testenv.AppSchema))
	if err != nil {
		return "", nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT id, origin, seq FROM writes ORDER BY id")
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", m.Name, err)
	}
	defer rows.Close()
	h := sha256.New()
	set := map[string]bool{}
	for rows.Next() {
		var id, seq int64
		var origin string
		if err := rows.Scan(&id, &origin, &seq); err != nil {
			return "", nil, err
		}
		k := fmt.Sprintf("%d/%s/%d", id, origin, seq)
		set[k] = true
		fmt.Fprintln(h, k)
	}
	if err := rows.Err(); err != nil {
		return "", nil, err
	}
	return hex.EncodeToString(h.Sum(nil))[:16], set, nil
}

// checkTables compares the two servers' kr.writes. A difference is excused only by a
// journaled blocked rejoin still in force (the owner holds its channel from a node that
// came back with transactions it lacks, so the rows cannot converge).
func (ch *chaos) checkTables(recs []fsm.Record) {
	d1, s1, err1 := tableDigest(ch.c.lab.MariaDB("db1"))
	d2, s2, err2 := tableDigest(ch.c.lab.MariaDB("db2"))
	if err1 != nil || err2 != nil {
		ch.violate(vTablesDiffer, "cannot read the tables: db1: %v; db2: %v", err1, err2)
		return
	}
	if d1 == d2 {
		ch.logf("tables equal: kr.writes digest %s on both servers (%d rows)", d1, len(s1))
		return
	}
	var only1, only2 []string
	for k := range s1 {
		if !s2[k] {
			only1 = append(only1, k)
		}
	}
	for k := range s2 {
		if !s1[k] {
			only2 = append(only2, k)
		}
	}
	sort.Strings(only1)
	sort.Strings(only2)
	diff := fmt.Sprintf("digest db1=%s (%d rows) db2=%s (%d rows); only on db1: %s; only on db2: %s",
		d1, len(s1), d2, len(s2), abbrev(only1, 10), abbrev(only2, 10))
	for _, n := range dbNames {
		if d, ok := lastRejoin(recs, n); ok && d.Blocked {
			ch.logf("tables differ, excused by the blocked rejoin of %s (extra %s): %s", n, d.Extra, diff)
			return
		}
		if d, ok := brokenChannel(recs, n, other(n)); ok {
			ch.noteBroken(d)
			ch.logf("tables differ, excused by the journaled broken channel of %s from %s (errno %d at %s): %s", n, d.Source, d.IOErrno, d.SourcePos, diff)
			return
		}
		if ls, _ := binlogLosses(recs, n); len(ls) > 0 {
			ch.noteLoss(ls)
			ch.logf("tables differ, excused by the journaled binlog loss of %s (%s): %s", n, ls[0].Lost, diff)
			return
		}
	}
	ch.violate(vTablesDiffer, "kr.writes differs between the servers after the final heal and catch-up: %s%s", diff, ch.c.replReport())
}

// checkReplication waits (within) until both channels run, or a stopped one is excused by a
// journaled blocked rejoin of the node it replicates from.
func (ch *chaos) checkReplication(within time.Duration) bool {
	deadline := time.Now().Add(within)
	var last []string
	for {
		last = nil
		ok := true
		recs := ch.c.journalNoFail()
		for _, n := range dbNames {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			io, sqlRun, lastErr, err := testenv.ReplicationStatus(ctx, ch.c.lab.MariaDB(n))
			cancel()
			if err == nil && io && sqlRun {
				continue
			}
			from := other(n)
			if d, found := lastRejoin(recs, from); found && d.Blocked {
				last = append(last, fmt.Sprintf("%s from %s stopped, excused by the blocked rejoin of %s (extra %s)", n, from, from, d.Extra))
				continue
			}
			if ls, unfit := binlogLosses(recs, from); unfit {
				ch.noteLoss(ls)
				last = append(last, fmt.Sprintf("%s from %s stopped, excused by the journaled binlog loss of %s (%s): the owner does not take a rejoin from an unhealthy server", n, from, from, ls[len(ls)-1].Lost))
				continue
			}
			if d, found := brokenChannel(recs, n, from); found && !io && sqlRun {
				ch.noteBroken(d)
				last = append(last, fmt.Sprintf("%s from %s stopped, excused by its journaled broken channel (errno %d %q at %s)", n, from, d.IOErrno, d.IOError, d.SourcePos))
				continue
			}
			ok = false
			last = append(last, fmt.Sprintf("%s from %s: io=%v sql=%v last_error=%q err=%v", n, from, io, sqlRun, lastErr, err))
		}
		if ok {
			if len(last) > 0 {
				ch.logf("replication: %s", strings.Join(last, "; "))
			}
			return true
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	ch.violate(vReplStopped, "a replication channel is stopped %s after the final heal with no journaled blocked rejoin: %s%s", within, strings.Join(last, "; "), ch.c.replReport())
	return false
}

// noteBroken records a journaled broken channel that excused a check, for the summary.
func (ch *chaos) noteBroken(d fsm.ReplicationData) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.broken == nil {
		ch.broken = map[string]string{}
	}
	ch.broken[d.Node] = fmt.Sprintf("%s from %s: errno %d at %s (%s)", d.Node, d.Source, d.IOErrno, d.SourcePos, d.IOError)
}

// noteLoss records journaled binlog losses that excused a check, for the summary.
func (ch *chaos) noteLoss(ls []fsm.HealthData) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.broken == nil {
		ch.broken = map[string]string{}
	}
	var sets []string
	for _, d := range ls {
		sets = append(sets, d.Lost)
	}
	ch.broken[ls[0].Node+" binlog"] = fmt.Sprintf("%s lost binlogged transactions %s (HealthChanged)", ls[0].Node, strings.Join(sets, ", "))
}

// journals fetches every node's journal.
func (ch *chaos) journals() map[string][]fsm.Record {
	out := map[string][]fsm.Record{}
	for _, n := range []string{"db1", "db2", "witness"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		jr, err := ch.api.Journal(ctx, ch.c.nodes[n].APIAddr.String(), 0, 0, 5*time.Second)
		cancel()
		if err == nil {
			out[n] = jr.Records
		}
	}
	return out
}

// compareJournals reports the first difference between the nodes' journals (same index,
// different record) and a node that lacks records the others have.
func compareJournals(js map[string][]fsm.Record) []string {
	var probs []string
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range js {
			if !yield(n) {
				return
			}
		}
	})
	if len(names) < 3 {
		probs = append(probs, fmt.Sprintf("only %v answered /v1/journal", names))
	}
	if len(names) < 2 {
		return probs
	}
	ref := names[0]
	for _, n := range names[1:] {
		a, b := js[ref], js[n]
		byIdx := map[uint64]fsm.Record{}
		for _, r := range a {
			byIdx[r.Index] = r
		}
		for _, r := range b {
			o, ok := byIdx[r.Index]
			if !ok {
				continue
			}
			ea, _ := o.Event.Encode()
			eb, _ := r.Event.Encode()
			if o.Term != r.Term || string(ea) != string(eb) || o.Result != r.Result || o.Error != r.Error {
				probs = append(probs, fmt.Sprintf("index %d differs: %s has term %d %s %s %s; %s has term %d %s %s %s",
					r.Index, ref, o.Term, o.Event.Type, o.Result, ea, n, r.Term, r.Event.Type, r.Result, eb))
				break
			}
		}
		la, lb := lastIndex(a), lastIndex(b)
		if la != lb {
			probs = append(probs, fmt.Sprintf("%s ends at index %d, %s at %d", ref, la, n, lb))
		}
	}
	return probs
}

func lastIndex(rs []fsm.Record) uint64 {
	if len(rs) == 0 {
		return 0
	}
	return rs[len(rs)-1].Index
}

// replayState folds the journal with package fsm and returns the final state.
func replayState(recs []fsm.Record) (fsm.State, error) {
	s := fsm.NewState()
	for _, r := range recs {
		s, _ = s.Apply(r.Index, r.Event)
	}
	return s, nil
}

// checkAssignments replays the journal and reports every applied OwnerAssigned that named a
// node the state (just before it) held unhealthy, of unknown health, in maintenance, or not
// a database node, plus replay results that differ from the journal's.
func checkAssignments(recs []fsm.Record) []string {
	var probs []string
	if len(recs) == 0 || recs[0].Event.Type != fsm.Bootstrapped {
		return []string{"the journal does not start with Bootstrapped (trimmed?): cannot replay it"}
	}
	s := fsm.NewState()
	for _, r := range recs {
		if r.Event.Type == fsm.OwnerAssigned && r.Result == fsm.ResultApplied {
			var d fsm.AssignData
			if err := r.Event.Payload(&d); err != nil {
				probs = append(probs, fmt.Sprintf("index %d: %v", r.Index, err))
			} else if m := s.Members[d.Owner]; m == nil || m.Role != fsm.RoleDatabase {
				probs = append(probs, fmt.Sprintf("index %d: OwnerAssigned %s, not a database member", r.Index, d.Owner))
			} else if !m.Healthy || !m.HealthKnown || m.Maintenance {
				probs = append(probs, fmt.Sprintf("index %d: OwnerAssigned %s (reason %q) while the journal had it healthy=%v health_known=%v maintenance=%v (detail %q)",
					r.Index, d.Owner, d.Reason, m.Healthy, m.HealthKnown, m.Maintenance, m.Detail))
			}
		}
		n, err := s.Apply(r.Index, r.Event)
		s = n
		got := fsm.ResultApplied
		if err != nil {
			got = "error"
		}
		if (got == fsm.ResultApplied) != (r.Result == fsm.ResultApplied) {
			probs = append(probs, fmt.Sprintf("index %d %s: journaled %s, replay with package fsm says %s (%v)", r.Index, r.Event.Type, r.Result, got, err))
		}
	}
	return probs
}

// scanLogs returns the lines of the daemon logs that mention a panic or a data race.
func scanLogs(paths []string) []string {
	var hits []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for i, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "panic") || strings.Contains(line, "DATA RACE") {
				hits = append(hits, fmt.Sprintf("%s:%d: %s", filepath.Base(p), i+1, truncate(line, 300)))
			}
		}
	}
	return hits
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func (ch *chaos) daemonLogs() []string {
	ps, _ := filepath.Glob(filepath.Join(ch.c.lab.Dir, "logs", "keepraftd-*.log"))
	return ps
}

// postStatusCode is the HTTP status of an operator request (0: no answer).
func (ch *chaos) post(path, body string) (int, error) {
	err := ch.c.post(path, body)
	if err == nil {
		return http.StatusOK, nil
	}
	return api.StatusCode(err), err
}
