package probe

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
)

// semiSyncMasterVars are the names of the semi-sync master (source) switch: MariaDB and
// MySQL before 8.0.26 call it master, MySQL's semisync_source plugin source.
var semiSyncMasterVars = []string{"rpl_semi_sync_master_enabled", "rpl_semi_sync_source_enabled"}

// semiSyncWaitState is the processlist state of a commit waiting for a replica's
// acknowledgement ("... from slave" on MariaDB, "... from replica" on newer MySQL).
const semiSyncWaitState = "Waiting for semi-sync ACK from %"

// ErrNoSemiSync means the server has no semi-sync master variable (MySQL without the
// semisync_source or semisync_master plugin loaded).
var ErrNoSemiSync = errors.New("server has no semi-sync master (source) variable: is the plugin loaded?")

// SetSemiSyncMaster switches the semi-sync master side of the server behind db and reports
// whether it changed anything (it reads the switch first, so calling it again is cheap).
//
// Only the owner may have it on. A server that is a semi-sync master waits, after every
// transaction it binlogs, for one of its replicas to acknowledge it — also for the
// transactions its own SQL thread applies (log_slave_updates). On a standby that replica is
// the owner's channel from the standby, which is down whenever the owner cannot reach the
// standby or keeps that channel stopped (a promotion stops it until the rejoin check passes).
// The standby's SQL thread then stalls behind a wait no one will answer, and the writes the
// owner acknowledged (they are in the standby's relay log) are never applied: a failover
// throws them away.
//
// Turning it off releases every commit waiting for an acknowledgement. Before that, it kills
// the client connections among them (never replication or server threads, never its own
// connection), so no client is told that a write committed which the owner never got: their
// clients see a lost connection, the outcome of an unacknowledged write. The caller turns it
// off only on a fenced server.
func SetSemiSyncMaster(ctx context.Context, db *sql.DB, on bool) (changed bool, err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return false, fmt.Errorf("semi-sync master: connect: %w", err)
	}
	defer conn.Close()
	name, cur, err := semiSyncMaster(ctx, conn)
	if err != nil {
		return false, fmt.Errorf("semi-sync master: %w", err)
	}
	if cur == on {
		return false, nil
	}
	if !on {
		if _, err := killSemiSyncWaiters(ctx, conn); err != nil {
			return false, fmt.Errorf("semi-sync master off: %w", err)
		}
	}
	val := "OFF"
	if on {
		val = "ON"
	}
	if _, err := conn.ExecContext(ctx, "SET GLOBAL "+name+" = "+val); err != nil {
		return false, fmt.Errorf("semi-sync master: set %s=%s: %w", name, val, err)
	}
	return true, nil
}

// semiSyncMaster reads the name and value of the server's semi-sync master switch.
func semiSyncMaster(ctx context.Context, q queryer) (name string, on bool, err error) {
	rows, err := q.QueryContext(ctx, "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('rpl_semi_sync_master_enabled', 'rpl_semi_sync_source_enabled')")
	if err != nil {
		return "", false, fmt.Errorf("read the semi-sync switch: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var n, v string
		if err := rows.Scan(&n, &v); err != nil {
			return "", false, fmt.Errorf("read the semi-sync switch: %w", err)
		}
		// MySQL 8.0.26+ may show both names when both plugins are loaded; the source
		// one is the current plugin.
		if name == "" || n == semiSyncMasterVars[1] {
			name, on = n, v == "ON" || v == "1"
		}
	}
	if err := rows.Err(); err != nil {
		return "", false, fmt.Errorf("read the semi-sync switch: %w", err)
	}
	if !slices.Contains(semiSyncMasterVars, name) {
		return "", false, ErrNoSemiSync
	}
	return name, on, nil
}

// killSemiSyncWaiters kills the client connections whose commit waits for a semi-sync
// acknowledgement and returns their ids.
func killSemiSyncWaiters(ctx context.Context, q queryer) ([]uint64, error) {
	// Replication and server threads are what must not wait; they are never killed.
	ids, err := connections(ctx, q, "STATE LIKE ?", []any{semiSyncWaitState}, func(user, cmd string) bool {
		return !slices.Contains(nonAppUsers, user) && !slices.Contains(nonAppCommands, cmd)
	})
	if err != nil {
		return nil, fmt.Errorf("commits waiting for an acknowledgement: %w", err)
	}
	// A waiter the server will not let us kill (MySQL: a SYSTEM_USER session) fails the
	// switch: releasing it would acknowledge its write.
	killed, err := killConnections(ctx, q, ids, false)
	if err != nil {
		return killed, fmt.Errorf("commits waiting for an acknowledgement: %w", err)
	}
	return killed, nil
}
