package probe

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// relayPoll is how often WaitRelayApplied looks at the replica again.
const relayPoll = 20 * time.Millisecond

// ErrSQLThreadStopped means the replica's SQL thread is not running, so what its IO thread has
// received will not be applied without an operator or a START REPLICA.
var ErrSQLThreadStopped = errors.New("replication SQL thread not running")

// RelayCatchUp is the result of [WaitRelayApplied].
type RelayCatchUp struct {
	// Received is what the IO thread had received when the wait began (MariaDB Gtid_IO_Pos,
	// MySQL Retrieved_Gtid_Set); empty when no replica is configured.
	Received string
	// Applied is what the replica had applied at the end (MariaDB: per domain the union of
	// @@gtid_slave_pos and @@gtid_binlog_pos; MySQL @@gtid_executed).
	Applied string
	// Reached is true when Applied contains Received.
	Reached bool
	// Waited is how long WaitRelayApplied took.
	Waited time.Duration
}

// WaitRelayApplied waits, polling for at most timeout and never past ctx, until the replica
// behind db has applied everything its IO thread had received when the call began, so that a
// promoted replica does not throw away the relay log of a master that is gone. It never starts
// replication threads.
//
// With no replica configured it returns Reached=true and empty sets. When the SQL thread is not
// running (stopped by an operator or by an error) it returns at once with Reached=false and an
// error wrapping [ErrSQLThreadStopped] that carries the last SQL error; the same when the thread
// stops during the wait. Running out of timeout returns Reached=false and a nil error; other
// errors are failures to ask. On MySQL a transaction the IO thread received only in part is in
// Retrieved_Gtid_Set but cannot be applied, so the wait then runs out.
func WaitRelayApplied(ctx context.Context, db *sql.DB, f Flavor, timeout time.Duration) (RelayCatchUp, error) {
	start := time.Now()
	var res RelayCatchUp
	fail := func(err error) (RelayCatchUp, error) {
		res.Waited = time.Since(start)
		return res, fmt.Errorf("wait for relay log: %w", err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fail(fmt.Errorf("connect: %w", err))
	}
	defer conn.Close()
	rs, err := replicaStatus(ctx, conn, f)
	if err != nil {
		return fail(err)
	}
	if !rs.Configured {
		res.Reached, res.Waited = true, time.Since(start)
		return res, nil
	}
	received, err := ParseGTIDSet(f, rs.GTIDIOPos)
	if err != nil {
		return fail(fmt.Errorf("parse received position: %w", err))
	}
	res.Received = received.String()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(relayPoll)
	defer tick.Stop()
	for {
		applied, err := readExecuted(ctx, conn, f)
		if err != nil {
			return fail(err)
		}
		res.Applied = applied.String()
		if applied.Contains(received) {
			res.Reached, res.Waited = true, time.Since(start)
			return res, nil
		}
		if !rs.SQLRunning {
			err := ErrSQLThreadStopped
			if rs.LastError != "" {
				err = fmt.Errorf("%w: %s", ErrSQLThreadStopped, rs.LastError)
			}
			return fail(fmt.Errorf("%s not applied: %w", applied.Missing(received), err))
		}
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-deadline.C:
			res.Waited = time.Since(start)
			return res, nil
		case <-tick.C:
		}
		if rs, err = replicaStatus(ctx, conn, f); err != nil {
			return fail(err)
		}
	}
}

// readExecuted reads what the server has applied or written: on MariaDB the per-domain union of
// @@gtid_slave_pos and @@gtid_binlog_pos (as [Health.GTIDExecuted]), on MySQL @@gtid_executed.
func readExecuted(ctx context.Context, q queryer, f Flavor) (GTIDSet, error) {
	var h Health
	if err := readVars(ctx, q, f, &h); err != nil {
		return GTIDSet{}, err
	}
	g, err := ParseGTIDSet(f, h.GTIDExecuted)
	if err != nil {
		return GTIDSet{}, fmt.Errorf("parse executed GTID set: %w", err)
	}
	return g, nil
}

// Executed returns the server's executed GTID set as [Health.GTIDExecuted] reads it, without
// changing anything (a read for remote checks, unlike [Fence]).
func Executed(ctx context.Context, db *sql.DB, f Flavor) (string, error) {
	g, err := readExecuted(ctx, db, f)
	if err != nil {
		return "", err
	}
	return g.String(), nil
}
