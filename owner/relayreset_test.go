package owner

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/probe"
)

const (
	relayWriteErr = "Relay log write failure: could not queue event from master"
	fatalReadErr  = "Got fatal error 1236 from master when reading data from binary log: 'binlog truncated in the middle of event'"
)

// ioRound is one more sweep after the standby's IO thread failed (again) with replErr: the
// IO-thread retry is due at once.
func ioRound(r *rig, replErr probe.ReplicaStatus, errno int) {
	r.db.mu.Lock()
	r.db.replErr, r.db.ioDown, r.db.ioErrno = replErr, true, errno
	r.db.mu.Unlock()
	r.healthy(true)
	r.o.mu.Lock()
	r.o.ioRetryAt = r.o.ioRetryAt.Add(-ioRetryEvery)
	r.o.mu.Unlock()
	r.o.sweep(context.Background())
}

// TestStandbyResetsDamagedRelayLog: a standby's IO thread that fails with the same relay-log
// error on consecutive restarts gets its relay logs reset (once per relayResetEvery), when
// the channel positions by GTID and the SQL thread has no error. Other IO errors are only
// restarted, as before; a channel positioned by file is left for the operator after the
// first restart; an SQL error is left alone.
func TestStandbyResetsDamagedRelayLog(t *testing.T) {
	const rounds = 6
	tests := []struct {
		name       string
		replErr    probe.ReplicaStatus
		errno      int
		noGTID     bool
		resetErr   error
		wantStarts int
		wantResets int
	}{
		// Round 1 restarts; round 2 finds the same error again and resets; after the reset
		// the streak starts over, and the next reset is not due before relayResetEvery.
		{name: "relay-log write failure, GTID positioning: one reset", replErr: probe.ReplicaStatus{LastError: relayWriteErr},
			errno: probe.ErrRelayLogWrite, wantStarts: rounds - 1, wantResets: 1},
		{name: "relay-log init failure, GTID positioning: one reset", replErr: probe.ReplicaStatus{LastError: "Failed initializing relay log position: bogus"},
			errno: probe.ErrRelayLogInit, wantStarts: rounds - 1, wantResets: 1},
		{name: "reset fails: attempted once per interval", replErr: probe.ReplicaStatus{LastError: relayWriteErr},
			errno: probe.ErrRelayLogWrite, resetErr: probe.ErrSQLThreadFailed, wantStarts: rounds - 1, wantResets: 1},
		{name: "fatal error from the source: restarted only", replErr: probe.ReplicaStatus{LastError: fatalReadErr},
			errno: 1236, wantStarts: rounds},
		{name: "relay-log error without GTID positioning: left for the operator", replErr: probe.ReplicaStatus{LastError: relayWriteErr},
			errno: probe.ErrRelayLogWrite, noGTID: true, wantStarts: 1},
		{name: "SQL error: left alone", replErr: probe.ReplicaStatus{LastError: "Duplicate entry", LastSQLError: "Duplicate entry"},
			errno: probe.ErrRelayLogWrite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			assign(t, r.node, "db2", true) // db1 is the standby
			r.db.noGTID, r.db.resetErr = tt.noGTID, tt.resetErr
			r.healthy(true)
			r.settle(t)
			r.tr.reset()
			for range rounds {
				ioRound(r, tt.replErr, tt.errno)
			}
			starts, resets := r.tr.count("mysql start replication"), r.tr.count("mysql reset relay log")
			if starts != tt.wantStarts || resets != tt.wantResets {
				t.Fatalf("%d restarts and %d relay-log resets over %d failures, want %d and %d; trace:\n%s",
					starts, resets, rounds, tt.wantStarts, tt.wantResets, r.tr)
			}
			if tt.wantResets > 0 {
				// The reset replaces the restart of the second failure.
				before(t, r.tr, "mysql start replication", "mysql reset relay log")
			}
		})
	}
}

// TestRelayLogResetBounded: relay-log resets are at most one per relayResetEvery however
// often the relay log fails; once the interval is over, a failure that persists is reset
// again, and one at the same source position as before the reset is reported as the
// source's binlog being damaged.
func TestRelayLogResetBounded(t *testing.T) {
	r := newRig(t)
	core, logs := observer.New(zapcore.InfoLevel)
	r.o.log = zap.New(core)
	assign(t, r.node, "db2", true)
	r.healthy(true)
	r.settle(t)
	r.tr.reset()
	fail := probe.ReplicaStatus{LastError: relayWriteErr}
	for range 20 {
		ioRound(r, fail, probe.ErrRelayLogWrite)
	}
	if got := r.tr.count("mysql reset relay log"); got != 1 {
		t.Fatalf("%d relay-log resets within relayResetEvery, want 1; trace:\n%s", got, r.tr)
	}
	if n := logs.FilterMessageSnippet("fails again at the same position").Len(); n != 1 {
		t.Errorf("%d reports of a failure at the same source position after the reset, want 1", n)
	}
	reset := logs.FilterMessageSnippet("relay logs discarded").All()
	if len(reset) != 1 || reset[0].Level != zapcore.WarnLevel || reset[0].ContextMap()["io_errno"] != int64(probe.ErrRelayLogWrite) {
		t.Errorf("reset logged as %+v, want one warning with io_errno %d", reset, probe.ErrRelayLogWrite)
	}
	r.o.mu.Lock()
	rr := &r.o.relay
	rr.resetAt = rr.resetAt.Add(-relayResetEvery)
	r.o.mu.Unlock()
	ioRound(r, fail, probe.ErrRelayLogWrite) // the streak still runs: due at once
	if got := r.tr.count("mysql reset relay log"); got != 2 {
		t.Fatalf("%d relay-log resets once relayResetEvery is over, want 2; trace:\n%s", got, r.tr)
	}
	// A relay-log error long after the last one starts a new streak: restarted first.
	r.o.mu.Lock()
	rr.resetAt = rr.resetAt.Add(-relayResetEvery)
	rr.seenAt = rr.seenAt.Add(-2 * relayStreakGap)
	r.o.mu.Unlock()
	r.tr.reset()
	ioRound(r, fail, probe.ErrRelayLogWrite)
	ioRound(r, fail, probe.ErrRelayLogWrite)
	if starts, resets := r.tr.count("mysql start replication"), r.tr.count("mysql reset relay log"); starts != 1 || resets != 1 {
		t.Fatalf("%d restarts and %d resets for a new streak of two failures, want 1 and 1; trace:\n%s", starts, resets, r.tr)
	}
}

// TestRelayLogWithoutGTIDLeftForOperator: a channel positioned by binlog file and offset is
// neither reset nor restarted once its relay log keeps failing; the log names the error and
// the manual fix, once per relayResetEvery.
func TestRelayLogWithoutGTIDLeftForOperator(t *testing.T) {
	r := newRig(t)
	core, logs := observer.New(zapcore.InfoLevel)
	r.o.log = zap.New(core)
	assign(t, r.node, "db2", true)
	r.db.noGTID = true
	r.healthy(true)
	r.settle(t)
	for range 5 {
		ioRound(r, probe.ReplicaStatus{LastError: relayWriteErr}, probe.ErrRelayLogWrite)
	}
	if got := r.tr.count("mysql reset relay log"); got != 0 {
		t.Fatalf("%d resets of a channel without GTID positioning; trace:\n%s", got, r.tr)
	}
	msgs := logs.FilterMessageSnippet("does not position by GTID").All()
	if len(msgs) != 1 || msgs[0].Level != zapcore.ErrorLevel {
		t.Fatalf("messages %+v, want one error", msgs)
	}
	m := msgs[0].ContextMap()
	if m["io_errno"] != int64(probe.ErrRelayLogWrite) || m["io_error"] != relayWriteErr || m["positioning"] != "No" ||
		!strings.Contains(m["manual_fix"].(string), "MASTER_LOG_POS=<Exec_Master_Log_Pos>") {
		t.Errorf("fields %v, want the error, its number, the positioning and the manual fix", m)
	}
}

// brokenRecords returns the payloads of the ReplicationBroken events proposed so far.
func brokenRecords(t *testing.T, n *fakeNode) []fsm.ReplicationData {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []fsm.ReplicationData
	for _, ev := range n.proposed {
		if ev.Type != fsm.ReplicationBroken {
			continue
		}
		var d fsm.ReplicationData
		if err := ev.Payload(&d); err != nil {
			t.Fatalf("ReplicationBroken payload: %v", err)
		}
		out = append(out, d)
	}
	return out
}

// TestStandbyJournalsBrokenChannel: a standby whose IO thread stops with the same error at
// the same source position on brokenAfter consecutive restarts (relay-log reset included)
// journals the channel as broken, once; a channel that gets further each time, or whose SQL
// thread failed, is not journaled; a broken channel that runs again for runsFor is journaled
// as running, one seen running for less between failures is not.
func TestStandbyJournalsBrokenChannel(t *testing.T) {
	const rounds = 6
	tests := []struct {
		name    string
		replErr probe.ReplicaStatus
		errno   int
		advance bool // the source position moves on at every failure
		failing int  // proposals that fail (no Raft leader) before one is applied
		want    int  // ReplicationBroken{Broken: true} records
	}{
		{name: "damaged owner binlog: 1236 at the same position", replErr: probe.ReplicaStatus{LastError: fatalReadErr}, errno: 1236, want: 1},
		{name: "checksum error seen as a relay-log write failure, reset included", replErr: probe.ReplicaStatus{LastError: relayWriteErr},
			errno: probe.ErrRelayLogWrite, want: 1},
		{name: "a proposal that fails is made again at the next restart", replErr: probe.ReplicaStatus{LastError: fatalReadErr}, errno: 1236,
			failing: 1, want: 1},
		{name: "the IO thread gets further each time", replErr: probe.ReplicaStatus{LastError: fatalReadErr}, errno: 1236, advance: true},
		{name: "SQL error: the operator's already", replErr: probe.ReplicaStatus{LastError: "Duplicate entry", LastSQLError: "Duplicate entry"},
			errno: 1236},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			assign(t, r.node, "db2", true) // db1 is the standby
			r.healthy(true)
			r.settle(t)
			r.node.mu.Lock()
			r.node.failPropose = tt.failing
			r.node.mu.Unlock()
			for i := range rounds {
				if i == brokenAfter-2 && len(brokenRecords(t, r.node)) != 0 {
					t.Fatalf("journaled as broken after %d failures, want %d", i, brokenAfter)
				}
				if tt.advance {
					r.db.mu.Lock()
					r.db.srcAdvance += 100
					r.db.mu.Unlock()
				}
				ioRound(r, tt.replErr, tt.errno)
			}
			got := brokenRecords(t, r.node)
			if len(got) != tt.want {
				t.Fatalf("%d ReplicationBroken records over %d failures, want %d: %+v", len(got), rounds, tt.want, got)
			}
			if tt.want == 0 {
				return
			}
			d := got[0]
			if !d.Broken || d.Node != "db1" || d.Source != "db2" || d.IOErrno != tt.errno || d.SourcePos != "mariadb-bin.000014:458705" ||
				d.Failures != brokenAfter+tt.failing || !strings.Contains(d.Hint, "mariadb-bin.000014") {
				t.Fatalf("journaled %+v, want db1's channel from db2 broken with errno %d at mariadb-bin.000014:458705 after %d failures", d, tt.errno, brokenAfter)
			}
			// A restart that the probe finds running for a moment before the IO thread meets
			// the bad event again is not the channel running again.
			running := func(d time.Duration) {
				r.db.mu.Lock()
				r.db.replErr, r.db.ioDown = probe.ReplicaStatus{}, false
				r.db.mu.Unlock()
				r.healthy(true)
				r.o.sweep(context.Background())
				r.clock.advance(d)
				r.healthy(true)
				r.o.sweep(context.Background())
			}
			running(runsFor - time.Millisecond)
			ioRound(r, tt.replErr, tt.errno)
			running(runsFor - time.Millisecond)
			if got := brokenRecords(t, r.node); len(got) != 1 {
				t.Fatalf("after runs shorter than %s between failures: %+v, want the broken record only", runsFor, got)
			}
			// The channel runs again (an operator fixed it) for runsFor: journaled once as
			// running.
			running(runsFor)
			running(runsFor)
			got = brokenRecords(t, r.node)
			if len(got) != 2 || got[1].Broken || got[1].Node != "db1" || got[1].Source != "db2" {
				t.Fatalf("after the channel ran again: %+v, want a second record saying it runs", got)
			}
		})
	}
}
