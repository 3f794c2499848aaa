package probe

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Error numbers of a damaged relay log as SHOW REPLICA STATUS reports them in Last_IO_Errno
// (the same numbers on MariaDB and MySQL). A relay log or relay log index that a SIGKILL or a
// disk fault left damaged fails every START REPLICA the same way; only discarding the relay
// logs (RESET REPLICA) clears it.
const (
	// ErrRelayLogPurge is ER_RELAY_LOG_FAIL, "Failed purging old relay logs".
	ErrRelayLogPurge = 1371
	// ErrRelayLogInit is ER_RELAY_LOG_INIT, "Failed initializing relay log position".
	ErrRelayLogInit = 1380
	// ErrRelayLogRead is ER_SLAVE_RELAY_LOG_READ_FAILURE, "Relay log read failure".
	ErrRelayLogRead = 1594
	// ErrRelayLogWrite is ER_SLAVE_RELAY_LOG_WRITE_FAILURE, "Relay log write failure: could
	// not queue event from master". MariaDB also reports it when an event from the source
	// fails its checksum (error 1743 in the error log just before): then the source's binlog
	// or the network is at fault, not the relay log, and RESET REPLICA does not help.
	ErrRelayLogWrite = 1595
)

// IsRelayLogErrno reports whether n, a Last_IO_Errno, says the relay log is damaged
// (ErrRelayLogPurge, ErrRelayLogInit, ErrRelayLogRead, ErrRelayLogWrite).
func IsRelayLogErrno(n int) bool {
	switch n {
	case ErrRelayLogPurge, ErrRelayLogInit, ErrRelayLogRead, ErrRelayLogWrite:
		return true
	}
	return false
}

// restoreTimeout bounds the START REPLICA with which ResetRelayLog puts back a channel it
// stopped but could not reset.
const restoreTimeout = 5 * time.Second

var (
	// ErrNoChannel means the server has no default replication channel.
	ErrNoChannel = errors.New("no replication channel configured")
	// ErrNotGTIDPositioned means the channel positions by binlog file and offset: RESET
	// REPLICA would make it forget where it stands in the source's binlog, so its relay log
	// is left for the operator.
	ErrNotGTIDPositioned = errors.New("replication channel does not position by GTID")
	// ErrSQLThreadFailed means the channel's SQL thread has an error: applying failed, which
	// is for the operator.
	ErrSQLThreadFailed = errors.New("replication SQL thread has an error")
)

// ReplicaChannel is the default replication channel as [ResetRelayLog] judges it: the
// threads, their last errors with their numbers, and how the channel positions.
type ReplicaChannel struct {
	// Configured is false when the server has no default replication channel.
	Configured bool
	// IORunning and SQLRunning are true only for the value "Yes".
	IORunning, SQLRunning bool
	// IOErrno and IOError are Last_IO_Errno and Last_IO_Error.
	IOErrno int
	IOError string
	// SQLErrno and SQLError are Last_SQL_Errno and Last_SQL_Error.
	SQLErrno int
	SQLError string
	// Positioning is MariaDB's Using_Gtid (No, Slave_Pos, Current_Pos) or, on MySQL,
	// "Auto_Position=1" or "Auto_Position=0".
	Positioning string
	// GTIDPositioned is true when the channel asks its source by GTID (MariaDB Using_Gtid
	// Slave_Pos or Current_Pos, MySQL Auto_Position=1): discarding its relay logs loses
	// nothing, they are fetched again from what the server has applied.
	GTIDPositioned bool
	// SourceLogFile and SourceLogPos are where the IO thread stopped reading the source's
	// binlog (Master_Log_File, Read_Master_Log_Pos).
	SourceLogFile string
	SourceLogPos  uint64
}

// RelayLogFailed reports whether the IO thread is stopped by a relay-log error
// ([IsRelayLogErrno]).
func (c ReplicaChannel) RelayLogFailed() bool {
	return c.Configured && !c.IORunning && IsRelayLogErrno(c.IOErrno)
}

// ReadReplicaChannel reads the default replication channel (SHOW REPLICA STATUS, SHOW SLAVE
// STATUS on older servers). It changes nothing. Without a channel, Configured is false.
func ReadReplicaChannel(ctx context.Context, db *sql.DB, f Flavor) (ReplicaChannel, error) {
	return readReplicaChannel(ctx, db, f)
}

func readReplicaChannel(ctx context.Context, q queryer, f Flavor) (ReplicaChannel, error) {
	var c ReplicaChannel
	row, found, err := showReplicaStatus(ctx, q)
	if err != nil {
		return c, err
	}
	if !found {
		return c, nil
	}
	get := func(names ...string) string {
		for _, n := range names {
			if v, ok := row[n]; ok {
				return v.String
			}
		}
		return ""
	}
	num := func(names ...string) int {
		n, _ := strconv.Atoi(strings.TrimSpace(get(names...)))
		return n
	}
	c.Configured = true
	c.IORunning = get("Slave_IO_Running", "Replica_IO_Running") == "Yes"
	c.SQLRunning = get("Slave_SQL_Running", "Replica_SQL_Running") == "Yes"
	c.IOErrno, c.IOError = num("Last_IO_Errno"), get("Last_IO_Error")
	c.SQLErrno, c.SQLError = num("Last_SQL_Errno"), get("Last_SQL_Error")
	c.SourceLogFile = get("Master_Log_File", "Source_Log_File")
	c.SourceLogPos, _ = strconv.ParseUint(get("Read_Master_Log_Pos", "Read_Source_Log_Pos"), 10, 64)
	if f == FlavorMySQL {
		c.Positioning = "Auto_Position=" + get("Auto_Position")
		c.GTIDPositioned = get("Auto_Position") == "1"
	} else {
		c.Positioning = get("Using_Gtid")
		c.GTIDPositioned = strings.EqualFold(c.Positioning, "Slave_Pos") || strings.EqualFold(c.Positioning, "Current_Pos")
	}
	return c, nil
}

// ResetRelayLog discards the relay logs of the default channel and fetches them again from
// the source: STOP REPLICA; RESET REPLICA; START REPLICA (the SLAVE forms on older servers).
// RESET REPLICA without ALL keeps the connection settings (host, user, password, GTID
// positioning); the channel then asks the source for everything after the GTID position the
// server has applied, so what the relay log held but the SQL thread had not applied is
// fetched again, not lost.
//
// It refuses, changing nothing, a server without a channel ([ErrNoChannel]), a channel that
// does not position by GTID ([ErrNotGTIDPositioned]: RESET would make it forget its binlog
// file and offset) and a channel whose SQL thread has an error ([ErrSQLThreadFailed]). Once
// the channel is stopped, the SQL thread's error is checked again; when that check or the
// RESET fails, the channel is started again as it was (its IO thread then fails as before)
// and the error returned. A channel that no longer positions by GTID after the RESET is left
// stopped rather than started from the first of the source's binlogs. ResetRelayLog returns
// the channel as read before anything was changed.
//
// Grants: RELOAD for RESET on both flavors (MariaDB 10.11 refuses it with REPLICATION SLAVE
// ADMIN alone: error 1227, and the channel is started again), plus what [Grants] has for
// STOP/START and SHOW. [Grants] does not include RELOAD: it also permits RESET MASTER.
func ResetRelayLog(ctx context.Context, db *sql.DB, f Flavor) (ReplicaChannel, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return ReplicaChannel{}, fmt.Errorf("reset relay log: connect: %w", err)
	}
	defer conn.Close()
	before, err := readReplicaChannel(ctx, conn, f)
	if err == nil {
		err = resettable(before)
	}
	if err != nil {
		return before, fmt.Errorf("reset relay log: %w", err)
	}
	if err := replicationCmd(ctx, conn, "STOP"); err != nil {
		return before, fmt.Errorf("reset relay log: %w", err)
	}
	// Stopped: from here a failure starts the channel again as it was, on a connection and
	// a context of its own (ctx may be what ran out, and its connection is then closed).
	restart := func(err error) (ReplicaChannel, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), restoreTimeout)
		defer cancel()
		if serr := replicationCmd(rctx, db, "START"); serr != nil {
			err = errors.Join(err, fmt.Errorf("start it again: %w", serr))
		}
		return before, fmt.Errorf("reset relay log: %w", err)
	}
	stopped, err := readReplicaChannel(ctx, conn, f)
	if err == nil {
		err = resettable(stopped)
	}
	if err != nil {
		return restart(err)
	}
	if err := replicationCmd(ctx, conn, "RESET"); err != nil {
		return restart(err)
	}
	reset, err := readReplicaChannel(ctx, conn, f)
	if err != nil {
		return restart(err)
	}
	if !reset.GTIDPositioned || reset.Positioning != before.Positioning {
		return before, fmt.Errorf("reset relay log: reset replica changed the positioning from %q to %q, channel left stopped: %w",
			before.Positioning, reset.Positioning, ErrNotGTIDPositioned)
	}
	if err := replicationCmd(ctx, conn, "START"); err != nil {
		return before, fmt.Errorf("reset relay log: %w", err)
	}
	return before, nil
}

// resettable says why the relay logs of c may not be discarded, or nil.
func resettable(c ReplicaChannel) error {
	switch {
	case !c.Configured:
		return ErrNoChannel
	case !c.GTIDPositioned:
		return fmt.Errorf("%w (%s)", ErrNotGTIDPositioned, c.Positioning)
	case c.SQLErrno != 0 || c.SQLError != "":
		return fmt.Errorf("%w: %d %s", ErrSQLThreadFailed, c.SQLErrno, c.SQLError)
	}
	return nil
}
