package probe

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// FenceLockWait is the session lock_wait_timeout Fence sets before SET GLOBAL read_only, which
// waits for the global read lock (running commits, LOCK TABLES, FLUSH).
const FenceLockWait = time.Second

// nonAppCommands are processlist commands of replication and server threads, never killed.
var nonAppCommands = []string{
	"Binlog Dump", "Binlog Dump GTID", "Daemon", "Slave_IO", "Slave_SQL", "Slave_worker",
	"Register Slave", "Connect",
}

// nonAppUsers are processlist users of server threads.
var nonAppUsers = []string{"system user", "event_scheduler", "unauthenticated user"}

// Fence stops writes on the server and returns its final GTID set (as [Health.GTIDExecuted]
// reads it). On one connection it sets a short lock_wait_timeout, kills the connections of
// application accounts (appUsers as in [Config.AppUsers]) and, on MariaDB, of every account
// that bypasses read_only (root and the other holders of READ ONLY ADMIN, see
// [Health.ReadOnlyAdminAccounts]) — first, so none of their transactions holds up the global
// read lock — then sets read_only=1 (MySQL: super_read_only=1, which stops every account),
// kills those connections again (new ones made meanwhile), and reads the GTID set. It never
// kills its own connection, replication or other server threads, system users, or
// connections of the daemon's own account. If read_only still cannot get its lock in time, it
// kills once more and tries again. On MySQL it leaves the connections the server refuses to
// kill (accounts holding SYSTEM_USER, such as root: 1095 for a killer without it) and requires
// CONNECTION_ADMIN ([ErrNoConnectionAdmin]); super_read_only stops those accounts too.
//
// On MariaDB an ordinary account's open transaction fails at COMMIT with 1290 once read_only is
// set, and a killed connection's open transaction rolls back, so the returned set is final
// unless an account that bypasses read_only reconnects and writes. Fence is idempotent. To
// fence the server a [Prober] with Config.WriteCheck watches, use [Prober.Fence].
func Fence(ctx context.Context, db *sql.DB, f Flavor, appUsers []string) (finalGTID string, err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return "", fmt.Errorf("fence: connect: %w", err)
	}
	defer conn.Close()
	wait := FenceLockWait
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl))
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("SET SESSION lock_wait_timeout = %d", max(int(wait.Seconds()), 1))); err != nil {
		return "", fmt.Errorf("fence: set lock_wait_timeout: %w", err)
	}
	af, err := newAppFilter(ctx, conn, appUsers)
	if err != nil {
		return "", fmt.Errorf("fence: %w", err)
	}
	victims := killFilter{apps: af}
	if f == FlavorMariaDB {
		admins, err := readOnlyAdmins(ctx, conn, af.self)
		if err != nil {
			return "", fmt.Errorf("fence: %w", err)
		}
		victims.bypass = map[string]bool{}
		for _, a := range admins {
			victims.bypass[a.user] = true
		}
	}
	if err := requireProcessPriv(ctx, conn); err != nil {
		return "", fmt.Errorf("fence: %w", err)
	}
	if f == FlavorMySQL {
		// MySQL (8.0.16+) refuses, with 1095, to kill a session of an account holding
		// SYSTEM_USER (root) unless the killer holds it too, which the daemon must not.
		// super_read_only stops those accounts' writes as well (an open transaction fails
		// at COMMIT), so their connections are left alone — but only once the account is
		// known to hold CONNECTION_ADMIN, without which every kill fails the same way.
		if err := requireGlobalPriv(ctx, conn, "CONNECTION_ADMIN", ErrNoConnectionAdmin); err != nil {
			return "", fmt.Errorf("fence: %w", err)
		}
		victims.skipDenied = true
	}
	// Kill the application connections first: a transaction of theirs that is running or
	// stuck in its commit would make SET GLOBAL read_only wait for the global read lock.
	if _, err := killApps(ctx, conn, victims); err != nil {
		return "", fmt.Errorf("fence: %w", err)
	}
	if err := setReadOnly(ctx, conn, f, true); err != nil {
		if mysqlErrNumber(err) != errLockWait {
			return "", fmt.Errorf("fence: %w", err)
		}
		if _, kerr := killApps(ctx, conn, victims); kerr != nil {
			return "", fmt.Errorf("fence: %w (then %w)", err, kerr)
		}
		if err := setReadOnly(ctx, conn, f, true); err != nil {
			return "", fmt.Errorf("fence: after killing application connections: %w", err)
		}
	}
	if _, err := killApps(ctx, conn, victims); err != nil {
		return "", fmt.Errorf("fence: %w", err)
	}
	var h Health
	if err := readVars(ctx, conn, f, &h); err != nil {
		return "", fmt.Errorf("fence: %w", err)
	}
	return h.GTIDExecuted, nil
}

// ReadOnly reports whether the server behind db is fenced: @@global.read_only on MariaDB (which
// accounts holding READ ONLY ADMIN bypass), @@global.super_read_only on MySQL (read_only alone
// does not stop accounts holding CONNECTION_ADMIN or SUPER). A new owner uses it to check that
// an ex-owner is fenced before replicating from it.
func ReadOnly(ctx context.Context, db *sql.DB, f Flavor) (bool, error) {
	ro, err := readOnly(ctx, db, f)
	if err != nil {
		return false, fmt.Errorf("read-only check: %w", err)
	}
	return ro, nil
}

// readOnly reads the fencing variable of the flavor (see [ReadOnly]).
func readOnly(ctx context.Context, q queryer, f Flavor) (bool, error) {
	var v string
	switch f {
	case FlavorMariaDB:
		v = "@@global.read_only"
	case FlavorMySQL:
		v = "@@global.super_read_only"
	default:
		return false, fmt.Errorf("read read_only: unknown flavor %q", f)
	}
	var ro bool
	if err := q.QueryRowContext(ctx, "SELECT "+v).Scan(&ro); err != nil {
		return false, fmt.Errorf("read %s: %w", v, err)
	}
	return ro, nil
}

func setReadOnly(ctx context.Context, q queryer, f Flavor, on bool) error {
	v := 0
	if on {
		v = 1
	}
	var stmts []string
	switch {
	case f == FlavorMySQL && on:
		stmts = []string{"SET GLOBAL super_read_only = 1"} // implies read_only = 1
	case f == FlavorMySQL:
		stmts = []string{"SET GLOBAL super_read_only = 0", "SET GLOBAL read_only = 0"}
	default:
		stmts = []string{fmt.Sprintf("SET GLOBAL read_only = %d", v)}
	}
	for _, s := range stmts {
		if _, err := q.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", strings.ToLower(s), err)
		}
	}
	return nil
}

// ErrNoProcessPriv means the daemon's account lacks PROCESS: the processlist would show only its
// own connections, and Fence would kill nothing without noticing.
var ErrNoProcessPriv = errors.New("account lacks the PROCESS privilege; other accounts' connections are invisible")

// ErrNoConnectionAdmin means the daemon's account lacks CONNECTION_ADMIN on MySQL: it could kill
// no other account's connection.
var ErrNoConnectionAdmin = errors.New("account lacks the CONNECTION_ADMIN privilege; other accounts' connections cannot be killed")

// requireProcessPriv checks the account's own global privileges (information_schema.USER_PRIVILEGES
// shows one's own rows to everyone). A PROCESS granted only through a role is not seen.
func requireProcessPriv(ctx context.Context, q queryer) error {
	return requireGlobalPriv(ctx, q, "PROCESS", ErrNoProcessPriv)
}

// requireGlobalPriv checks that the account holds priv globally (directly, not through a
// role), else returns missing wrapped with the account's name.
func requireGlobalPriv(ctx context.Context, q queryer, priv string, missing error) error {
	var cur string
	if err := q.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&cur); err != nil {
		return fmt.Errorf("read current user: %w", err)
	}
	i := strings.LastIndexByte(cur, '@')
	if i < 0 {
		return fmt.Errorf("current user %q: no host part", cur)
	}
	grantee := "'" + cur[:i] + "'@'" + cur[i+1:] + "'"
	var n int
	err := q.QueryRowContext(ctx,
		"SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ? AND PRIVILEGE_TYPE = ?",
		grantee, priv).Scan(&n)
	if err != nil {
		return fmt.Errorf("read own privileges: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", cur, missing)
	}
	return nil
}

// killFilter picks the connections Fence kills, by processlist user and command.
type killFilter struct {
	apps appFilter
	// bypass holds the user names of accounts that bypass read_only. The processlist shows no
	// account host, so every connection of such a user name is killed.
	bypass map[string]bool
	// skipDenied (MySQL) leaves a connection the server refuses to kill (1095: its account
	// holds SYSTEM_USER) instead of failing; super_read_only stops its writes.
	skipDenied bool
}

func (k killFilter) kill(user, command string) bool {
	if user == k.apps.self || slices.Contains(nonAppUsers, user) || slices.Contains(systemAccounts, user) ||
		slices.Contains(nonAppCommands, command) {
		return false
	}
	return k.bypass[user] || k.apps.isApp(user, "")
}

// killApps kills the connections that k selects, never the calling connection, and returns
// their ids.
func killApps(ctx context.Context, q queryer, k killFilter) ([]uint64, error) {
	ids, err := connections(ctx, q, "", nil, k.kill)
	if err != nil {
		return nil, err
	}
	return killConnections(ctx, q, ids, k.skipDenied)
}

// connections lists the ids of the other connections (never the calling one) that the
// processlist condition where (with its args; "" for all) and keep(user, command) select.
func connections(ctx context.Context, q queryer, where string, args []any, keep func(user, cmd string) bool) ([]uint64, error) {
	query := "SELECT ID, USER, COALESCE(COMMAND, '') FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()"
	if where != "" {
		query += " AND " + where
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list connections: %w", err)
	}
	defer rows.Close()
	var ids []uint64
	for rows.Next() {
		var id uint64
		var user, cmd string
		if err := rows.Scan(&id, &user, &cmd); err != nil {
			return nil, fmt.Errorf("list connections: %w", err)
		}
		if keep(user, cmd) {
			ids = append(ids, id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list connections: %w", err)
	}
	return ids, nil
}

// killConnections kills each connection of ids and returns those it killed; one that ended
// on its own is skipped, and with skipDenied so is one the server refuses to kill (1095: a
// SYSTEM_USER session on MySQL, which super_read_only stops).
func killConnections(ctx context.Context, q queryer, ids []uint64, skipDenied bool) ([]uint64, error) {
	var killed []uint64
	for _, id := range ids {
		if _, err := q.ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", id)); err != nil {
			if mysqlErrNumber(err) == errUnknownThread {
				continue // it ended on its own
			}
			if skipDenied && mysqlErrNumber(err) == errKillDenied {
				continue
			}
			return killed, fmt.Errorf("kill connection %d: %w", id, err)
		}
		killed = append(killed, id)
	}
	return killed, nil
}

// CatchUp is the result of [WaitCatchUp].
type CatchUp struct {
	// Reached is true when the replica has applied the whole target.
	Reached bool
	// Target is the target that was waited for (on MariaDB restricted to the old owner's domain).
	Target string
	// Applied is what the replica had applied at the end (MariaDB @@gtid_slave_pos, MySQL
	// @@gtid_executed).
	Applied string
	// Waited is how long WaitCatchUp took.
	Waited time.Duration
	// Missing is the part of Target not applied, when not reached.
	Missing string
	// Reason says why the target was not reached: "timeout" or "sql thread not running".
	Reason string
}

// catchUpMargin is added to WaitCatchUp's server-side wait to bound the query's round trip.
const catchUpMargin = 2 * time.Second

// WaitCatchUp waits up to timeout until the replica behind db has applied target. On MariaDB the
// target is first restricted to domain, the old owner's gtid_domain_id, because MASTER_GTID_WAIT
// compares against gtid_slave_pos per domain and blocks until the timeout for a domain that
// gtid_slave_pos lacks. If the target is already applied it returns at once; otherwise, when the
// SQL thread is not running, it returns Reached=false without waiting; otherwise it runs
// MASTER_GTID_WAIT (MySQL: WAIT_FOR_EXECUTED_GTID_SET). Not reaching the target is a result, not
// an error: the error is for failures to ask.
func WaitCatchUp(ctx context.Context, db *sql.DB, f Flavor, target string, domain uint32, timeout time.Duration) (CatchUp, error) {
	start := time.Now()
	t, err := ParseGTIDSet(f, target)
	if err != nil {
		return CatchUp{}, fmt.Errorf("wait catch-up: target: %w", err)
	}
	t = t.Domain(domain)
	res := CatchUp{Target: t.String()}
	done := func(applied GTIDSet) (CatchUp, error) {
		res.Applied = applied.String()
		res.Reached = applied.Contains(t)
		if !res.Reached {
			res.Missing = applied.Missing(t).String()
		} else {
			res.Reason = ""
		}
		res.Waited = time.Since(start)
		return res, nil
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return res, fmt.Errorf("wait catch-up: connect: %w", err)
	}
	defer conn.Close()
	applied, err := readApplied(ctx, conn, f)
	if err != nil || applied.Contains(t) {
		if err != nil {
			return res, fmt.Errorf("wait catch-up: %w", err)
		}
		return done(applied)
	}
	rs, err := replicaStatus(ctx, conn, f)
	if err != nil {
		return res, fmt.Errorf("wait catch-up: %w", err)
	}
	if !rs.SQLRunning {
		res.Reason = "sql thread not running"
		return done(applied)
	}
	res.Reason = "timeout"
	if timeout > 0 {
		// Server-side wait plus a margin for the round trip; ctx may end it sooner.
		wctx, cancel := context.WithTimeout(ctx, timeout+catchUpMargin)
		defer cancel()
		fn := "MASTER_GTID_WAIT"
		if f == FlavorMySQL {
			fn = "WAIT_FOR_EXECUTED_GTID_SET"
		}
		var rc sql.NullInt64
		q := fmt.Sprintf("SELECT %s(?, %.3f)", fn, max(timeout.Seconds(), 0.001))
		if err := conn.QueryRowContext(wctx, q, res.Target).Scan(&rc); err != nil {
			return res, fmt.Errorf("wait catch-up: %s: %w", strings.ToLower(fn), err)
		}
		if !rc.Valid {
			return res, fmt.Errorf("wait catch-up: %s returned NULL", strings.ToLower(fn))
		}
	}
	if applied, err = readApplied(ctx, conn, f); err != nil {
		return res, fmt.Errorf("wait catch-up: %w", err)
	}
	return done(applied)
}

// readApplied returns what MASTER_GTID_WAIT / WAIT_FOR_EXECUTED_GTID_SET compare against.
func readApplied(ctx context.Context, q queryer, f Flavor) (GTIDSet, error) {
	v := "@@gtid_slave_pos"
	if f == FlavorMySQL {
		v = "@@gtid_executed"
	}
	var s string
	if err := q.QueryRowContext(ctx, "SELECT "+v).Scan(&s); err != nil {
		return GTIDSet{}, fmt.Errorf("read %s: %w", v, err)
	}
	g, err := ParseGTIDSet(f, s)
	if err != nil {
		return GTIDSet{}, fmt.Errorf("parse %s: %w", v, err)
	}
	return g, nil
}

// Promote opens the server for writes: read_only=0 (MySQL: super_read_only=0 and read_only=0).
// It is idempotent.
func Promote(ctx context.Context, db *sql.DB, f Flavor) error {
	if err := setReadOnly(ctx, db, f, false); err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	return nil
}

// StopReplication stops the default replication channel (STOP REPLICA, which MariaDB ≥ 10.5.1
// and MySQL ≥ 8.0.22 accept; STOP SLAVE on older servers). Stopping a stopped channel is not an
// error.
func StopReplication(ctx context.Context, db *sql.DB) error {
	return replicationCmd(ctx, db, "STOP")
}

// StartReplication starts the default replication channel; starting a running one is not an
// error.
func StartReplication(ctx context.Context, db *sql.DB) error {
	return replicationCmd(ctx, db, "START")
}

// replicationCmd runs "<verb> REPLICA" on q, falling back to "<verb> SLAVE" on servers that
// do not know the REPLICA form.
func replicationCmd(ctx context.Context, q queryer, verb string) error {
	_, err := q.ExecContext(ctx, verb+" REPLICA")
	if mysqlErrNumber(err) == errParse {
		_, err = q.ExecContext(ctx, verb+" SLAVE")
	}
	if err != nil {
		return fmt.Errorf("%s replication: %w", strings.ToLower(verb), err)
	}
	return nil
}
