package probe

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"
)

// DefaultTimeout bounds one [Prober.Check] when [Config.Timeout] is zero.
const DefaultTimeout = time.Second

// Config tunes a [Prober].
type Config struct {
	// Flavor selects the SQL dialect and GTID format.
	Flavor Flavor
	// Timeout bounds one whole Check (connect, every query, the write check and the script).
	// Zero means DefaultTimeout.
	Timeout time.Duration
	// WriteCheck upserts a row into keepraft.heartbeat (server_id INT UNSIGNED primary key,
	// ts TIMESTAMP(6); one row per server_id, so the two masters never write the same row)
	// on every Check of a writable server. The daemon does not create that table. The write
	// check is skipped while the server is read-only: on MariaDB the daemon's account holds
	// READ_ONLY ADMIN and would otherwise write to a fenced server.
	WriteCheck bool
	// CheckScript is a keepalived-style check run with /bin/sh -c; exit status 0 means healthy.
	// It is killed (with its process group) when Timeout runs out.
	CheckScript string
	// AppUsers names the application accounts, as "user" (any host) or "user@host". Empty means
	// every account that is not a system account (mariadb.sys, mysql.sys, mysql.session,
	// mysql.infoschema, PUBLIC) and not the daemon's own; root counts as an application account.
	// Fence kills the connections of these accounts and, on MariaDB, of every account that
	// bypasses read_only (see [Health.ReadOnlyAdminAccounts]) whether listed here or not.
	AppUsers []string
}

// Health is the result of one [Prober.Check].
type Health struct {
	// Up is true when every step of the check passed.
	Up bool
	// Err is the first failure when Up is false.
	Err string
	// ReadOnly is @@read_only (on MySQL: read_only or super_read_only).
	ReadOnly bool
	// ServerID is @@server_id.
	ServerID uint32
	// DomainID is @@gtid_domain_id on MariaDB, 0 on MySQL.
	DomainID uint32
	// GTIDExecuted is what the server has: MySQL @@gtid_executed; MariaDB the per-domain union
	// of @@gtid_binlog_pos and @@gtid_slave_pos (a replicated transaction is in the binlog only
	// with log_slave_updates, and @@gtid_current_pos can hide local binlog entries).
	GTIDExecuted string
	// GTIDSlavePos is @@gtid_slave_pos on MariaDB (what MASTER_GTID_WAIT compares against).
	GTIDSlavePos string
	// Replica describes the default replication channel.
	Replica ReplicaStatus
	// ReadOnlyAdminAccounts lists, sorted, as user@host, every account other than the daemon's
	// own and the system accounts that holds READ ONLY ADMIN directly, through a role or through
	// PUBLIC (before MariaDB 10.11 also SUPER, which then implied it); MariaDB only. root (ALL
	// PRIVILEGES) is among them. read_only does not stop these accounts: Fence kills their
	// connections, but they can reconnect and write, so fencing cannot stop them.
	ReadOnlyAdminAccounts []string
	// SemiSync is Rpl_semi_sync_master_status (Rpl_semi_sync_source_status on MySQL): "ON",
	// "OFF", or "" when semi-sync is not available.
	SemiSync string
	// CheckedAt is when the check started.
	CheckedAt time.Time
}

// ReplicaStatus is the part of SHOW REPLICA STATUS that failover needs.
type ReplicaStatus struct {
	// Configured is false when the server has no default replication channel.
	Configured bool
	// IORunning and SQLRunning are true only for the value "Yes" ("Connecting" is not running).
	IORunning, SQLRunning bool
	// LagSeconds is Seconds_Behind_Master, -1 when unknown (NULL or not configured).
	LagSeconds int64
	// LastError is the last SQL error, else the last IO error.
	LastError string
	// LastSQLError is the SQL thread's last error alone: applying failed. An IO error
	// (the source was unreachable) clears itself on a later connect.
	LastSQLError string
	// MasterHost is the configured source host.
	MasterHost string
	// GTIDIOPos is the GTID position the IO thread has received (MariaDB Gtid_IO_Pos, MySQL
	// Retrieved_Gtid_Set).
	GTIDIOPos string
}

// Prober checks one server. It is safe for concurrent use; each Check uses its own connections
// from the pool. Create it with [New].
type Prober struct {
	db  *sql.DB
	cfg Config
	log *zap.Logger
	// writeMu (capacity 1, a mutex that a context can give up waiting for) is held by the write
	// check from its read of read_only to its upsert, and by Fence from start to finish, so no
	// heartbeat of this Prober lands after the GTID set Fence returns.
	writeMu chan struct{}
	// beforeUpsert, when set (tests only), runs in the write check between its read of
	// read_only and the upsert.
	beforeUpsert func()
	// admins caches the accounts that bypass read_only (they change rarely, and reading
	// them costs three queries) until adminsAt+adminsTTL.
	adminsMu sync.Mutex
	admins   []string
	adminsAt time.Time
	// slow caches what a check reads only every slowEvery: the replica status, and the
	// semi-sync status of a read-only server. A failed check clears it.
	slowMu sync.Mutex
	slow   slowPart
}

// slowPart is the part of a check read at the slow pace, with the time it was read.
type slowPart struct {
	replica  ReplicaStatus
	semiSync string
	at       time.Time
	// readOnly is the server's read_only when they were read: a change of role (a
	// promotion, a fence) makes them stale at once.
	readOnly bool
}

const (
	// adminsTTL is how long the list of accounts that bypass read_only is reused.
	adminsTTL = 10 * time.Second
	// slowEvery is how long a check reuses the replica status (and a read-only server's
	// semi-sync status). Neither decides a failover: the replica status steers the
	// standby's replication repairs, whose settle time (owner's stopSettle, 1 s) is
	// longer, and the semi-sync status matters only on a writable server where it is ON,
	// which reads it on every check (readSlow).
	slowEvery = 500 * time.Millisecond
)

// New returns a Prober over db. db should come from [DSN] so that dials time out.
func New(db *sql.DB, cfg Config, log *zap.Logger) *Prober {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	return &Prober{db: db, cfg: cfg, log: log.Named("probe"), writeMu: make(chan struct{}, 1)}
}

// lockWrites takes writeMu, giving up when ctx ends.
func (p *Prober) lockWrites(ctx context.Context) error {
	select {
	case p.writeMu <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Prober) unlockWrites() { <-p.writeMu }

// Fence is the package-level [Fence] on this Prober's server, flavor and application accounts,
// serialized with the write check: it waits for a running write check to finish, and no write
// check of this Prober writes until it returns. Use it to fence the local server when
// Config.WriteCheck is on; the package-level Fence does not know about this Prober's writes.
func (p *Prober) Fence(ctx context.Context) (finalGTID string, err error) {
	if err := p.lockWrites(ctx); err != nil {
		return "", fmt.Errorf("fence: wait for the write check: %w", err)
	}
	defer p.unlockWrites()
	return Fence(ctx, p.db, p.cfg.Flavor, p.cfg.AppUsers)
}

// Check probes the server once, bounded by Config.Timeout: connect, the server
// variables and GTID positions, SHOW REPLICA STATUS, the semi-sync status, READ ONLY ADMIN holders
// (MariaDB), the optional write check and the optional script. The returned error is non-nil
// exactly when Health.Up is false; Health then still carries what was read before the failure.
func (p *Prober) Check(ctx context.Context) (Health, error) {
	h := Health{CheckedAt: time.Now(), Replica: ReplicaStatus{LagSeconds: -1}}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	if err := p.check(ctx, &h); err != nil {
		h.Up, h.Err = false, err.Error()
		p.log.Debug("check failed", zap.Error(err), zap.Duration("took", time.Since(h.CheckedAt)))
		return h, err
	}
	h.Up = true
	p.log.Debug("check passed", zap.Bool("read_only", h.ReadOnly), zap.String("gtid", h.GTIDExecuted),
		zap.Duration("took", time.Since(h.CheckedAt)))
	return h, nil
}

func (p *Prober) check(ctx context.Context, h *Health) error {
	conn, err := p.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	// The first query doubles as the liveness check: a server that answers it is up.
	if err := readVars(ctx, conn, p.cfg.Flavor, h); err != nil {
		return err
	}
	if err := p.readSlow(ctx, conn, h); err != nil {
		p.slowMu.Lock()
		p.slow = slowPart{}
		p.slowMu.Unlock()
		return err
	}
	if p.cfg.Flavor == FlavorMariaDB {
		p.adminsMu.Lock()
		defer p.adminsMu.Unlock()
		if time.Since(p.adminsAt) >= adminsTTL {
			self, err := currentUser(ctx, conn)
			if err != nil {
				return err
			}
			admins, err := readOnlyAdmins(ctx, conn, self)
			if err != nil {
				return err
			}
			p.admins = p.admins[:0]
			for _, a := range admins {
				p.admins = append(p.admins, a.String())
			}
			p.adminsAt = time.Now()
		}
		h.ReadOnlyAdminAccounts = slices.Clone(p.admins)
	}
	if p.cfg.WriteCheck && !h.ReadOnly {
		if err := p.writeCheck(ctx, conn); err != nil {
			return fmt.Errorf("write check on keepraft.heartbeat: %w", err)
		}
	}
	if p.cfg.CheckScript != "" {
		if err := runScript(ctx, p.cfg.CheckScript); err != nil {
			return err
		}
	}
	return nil
}

// readSlow fills h's replica status and semi-sync status: read now when the cached
// ones are older than slowEvery or read_only changed since, else the cached ones. A writable server whose semi-sync
// status is ON has it read on every check: its fall back to asynchronous replication
// (which ends the claim that a failover loses no acknowledged write) is seen at once,
// while OFF turns ON only by an operator's switch, seen within slowEvery.
func (p *Prober) readSlow(ctx context.Context, conn *sql.Conn, h *Health) error {
	p.slowMu.Lock()
	defer p.slowMu.Unlock()
	var err error
	if p.slow.at.IsZero() || time.Since(p.slow.at) >= slowEvery || p.slow.readOnly != h.ReadOnly {
		at := time.Now()
		if p.slow.replica, err = replicaStatus(ctx, conn, p.cfg.Flavor); err != nil {
			return err
		}
		if p.slow.semiSync, err = semiSync(ctx, conn); err != nil {
			return err
		}
		p.slow.at, p.slow.readOnly = at, h.ReadOnly
	} else if !h.ReadOnly && p.slow.semiSync == "ON" {
		if p.slow.semiSync, err = semiSync(ctx, conn); err != nil {
			return err
		}
	}
	h.Replica, h.SemiSync = p.slow.replica, p.slow.semiSync
	return nil
}

// writeCheck upserts this server's heartbeat row unless the server is read-only, under writeMu.
// It reads read_only again under the lock (the value Check read earlier may be stale by a
// Fence), and the upsert itself inserts nothing when read_only was set in between by another
// session, such as a remote Fence: SET GLOBAL read_only waits for running statements, so a
// statement that saw read_only=0 commits before it is set.
func (p *Prober) writeCheck(ctx context.Context, conn *sql.Conn) error {
	if err := p.lockWrites(ctx); err != nil {
		return fmt.Errorf("wait for a running fence: %w", err)
	}
	defer p.unlockWrites()
	roVar := "@@global.read_only"
	if p.cfg.Flavor == FlavorMySQL {
		roVar = "@@global.read_only OR @@global.super_read_only"
	}
	var ro bool
	if err := conn.QueryRowContext(ctx, "SELECT "+roVar).Scan(&ro); err != nil {
		return fmt.Errorf("read read_only: %w", err)
	}
	if p.beforeUpsert != nil {
		p.beforeUpsert()
	}
	if ro {
		p.log.Debug("write check skipped: read-only")
		return nil
	}
	upsert := heartbeatUpsert + " WHERE @@global.read_only = 0"
	if p.cfg.Flavor == FlavorMySQL {
		upsert += " AND @@global.super_read_only = 0"
	}
	if _, err := conn.ExecContext(ctx, upsert+heartbeatOnDup); err != nil {
		// On MySQL the daemon's account does not bypass super_read_only, so a fence set by
		// another session since the read above refuses the statement itself (1290) instead
		// of making its WHERE false: the server is fenced, which is no failure of the check.
		if p.cfg.Flavor == FlavorMySQL && mysqlErrNumber(err) == errOptionReadOnly {
			p.log.Debug("write check skipped: fenced meanwhile")
			return nil
		}
		return err
	}
	return nil
}

// queryer is what the SQL helpers need; *sql.DB and *sql.Conn implement it.
type queryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

var (
	_ queryer = (*sql.DB)(nil)
	_ queryer = (*sql.Conn)(nil)
)

func readVars(ctx context.Context, q queryer, f Flavor, h *Health) error {
	switch f {
	case FlavorMariaDB:
		var binlog, slave string
		err := q.QueryRowContext(ctx,
			"SELECT @@read_only, @@server_id, @@gtid_domain_id, @@gtid_binlog_pos, @@gtid_slave_pos").
			Scan(&h.ReadOnly, &h.ServerID, &h.DomainID, &binlog, &slave)
		if err != nil {
			return fmt.Errorf("read server variables: %w", err)
		}
		exec, err := unionPos(binlog, slave)
		if err != nil {
			return err
		}
		h.GTIDExecuted, h.GTIDSlavePos = exec, slave
	case FlavorMySQL:
		var ro, sro bool
		err := q.QueryRowContext(ctx, "SELECT @@read_only, @@super_read_only, @@server_id, @@gtid_executed").
			Scan(&ro, &sro, &h.ServerID, &h.GTIDExecuted)
		if err != nil {
			return fmt.Errorf("read server variables: %w", err)
		}
		h.ReadOnly = ro || sro
		h.GTIDExecuted = strings.ReplaceAll(h.GTIDExecuted, "\n", "")
	default:
		return fmt.Errorf("read server variables: unknown flavor %q", f)
	}
	return nil
}

// unionPos merges two MariaDB GTID positions per (domain, server).
func unionPos(binlog, slave string) (string, error) {
	b, err := ParseGTIDSet(FlavorMariaDB, binlog)
	if err != nil {
		return "", fmt.Errorf("parse @@gtid_binlog_pos: %w", err)
	}
	s, err := ParseGTIDSet(FlavorMariaDB, slave)
	if err != nil {
		return "", fmt.Errorf("parse @@gtid_slave_pos: %w", err)
	}
	return b.Union(s).String(), nil
}

// mysqlErrNumber returns the server error number of err, or 0.
func mysqlErrNumber(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// Server error numbers this package reacts to.
const (
	errParse          = 1064 // ER_PARSE_ERROR
	errLockWait       = 1205 // ER_LOCK_WAIT_TIMEOUT
	errUnknownThread  = 1094 // ER_NO_SUCH_THREAD
	errKillDenied     = 1095 // ER_KILL_DENIED_ERROR (not owner of the thread)
	errOptionReadOnly = 1290 // ER_OPTION_PREVENTS_STATEMENT (read_only)
)

// showReplicaStatus reads the default channel's SHOW REPLICA STATUS row (SHOW SLAVE
// STATUS on servers that do not know the REPLICA form); found is false without a channel.
func showReplicaStatus(ctx context.Context, q queryer) (row map[string]sql.NullString, found bool, err error) {
	row, found, err = showOneRow(ctx, q, "SHOW REPLICA STATUS")
	if mysqlErrNumber(err) == errParse {
		row, found, err = showOneRow(ctx, q, "SHOW SLAVE STATUS")
	}
	if err != nil {
		return nil, false, fmt.Errorf("show replica status: %w", err)
	}
	return row, found, nil
}

// replicaStatus reads the default channel. SHOW REPLICA STATUS exists on MariaDB ≥ 10.5.1 and
// MySQL ≥ 8.0.22; older servers get SHOW SLAVE STATUS.
func replicaStatus(ctx context.Context, q queryer, f Flavor) (ReplicaStatus, error) {
	rs := ReplicaStatus{LagSeconds: -1}
	row, found, err := showReplicaStatus(ctx, q)
	if err != nil {
		return rs, err
	}
	if !found {
		return rs, nil
	}
	get := func(names ...string) (string, bool) {
		for _, n := range names {
			if v, ok := row[n]; ok {
				return v.String, v.Valid
			}
		}
		return "", false
	}
	rs.Configured = true
	io, _ := get("Slave_IO_Running", "Replica_IO_Running")
	sqlRun, _ := get("Slave_SQL_Running", "Replica_SQL_Running")
	rs.IORunning, rs.SQLRunning = io == "Yes", sqlRun == "Yes"
	if lag, ok := get("Seconds_Behind_Master", "Seconds_Behind_Source"); ok && lag != "" {
		if n, err := strconv.ParseInt(lag, 10, 64); err == nil {
			rs.LagSeconds = n
		}
	}
	rs.MasterHost, _ = get("Master_Host", "Source_Host")
	if e, _ := get("Last_SQL_Error"); e != "" {
		rs.LastError, rs.LastSQLError = e, e
	} else if e, _ := get("Last_IO_Error"); e != "" {
		rs.LastError = e
	}
	if f == FlavorMariaDB {
		rs.GTIDIOPos, _ = get("Gtid_IO_Pos")
	} else {
		rs.GTIDIOPos, _ = get("Retrieved_Gtid_Set")
		rs.GTIDIOPos = strings.ReplaceAll(rs.GTIDIOPos, "\n", "")
	}
	return rs, nil
}

// showOneRow runs a SHOW statement and returns its first row by column name.
func showOneRow(ctx context.Context, q queryer, stmt string) (map[string]sql.NullString, bool, error) {
	rows, err := q.QueryContext(ctx, stmt)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, false, err
	}
	if !rows.Next() {
		return nil, false, rows.Err()
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, false, err
	}
	out := make(map[string]sql.NullString, len(cols))
	for i, c := range cols {
		out[c] = vals[i]
	}
	return out, true, rows.Err()
}

func semiSync(ctx context.Context, q queryer) (string, error) {
	rows, err := q.QueryContext(ctx,
		"SHOW GLOBAL STATUS WHERE Variable_name IN ('Rpl_semi_sync_master_status', 'Rpl_semi_sync_source_status')")
	if err != nil {
		return "", fmt.Errorf("read semi-sync status: %w", err)
	}
	defer rows.Close()
	var status string
	for rows.Next() {
		var name, val string
		if err := rows.Scan(&name, &val); err != nil {
			return "", fmt.Errorf("read semi-sync status: %w", err)
		}
		status = val
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("read semi-sync status: %w", err)
	}
	return status, nil
}

// Bits of the "access" bitmask in mysql.global_priv.Priv (MariaDB ≥ 10.5.2). The mask is stored
// on disk, so the bits do not move between versions.
const (
	superBit         = uint64(1) << 15 // SUPER_ACL
	readOnlyAdminBit = uint64(1) << 33 // READ_ONLY_ADMIN_ACL
)

// superImpliesReadOnlyAdmin reports whether SUPER lets an account write under read_only on this
// MariaDB version: it did from 10.5.2 (when READ ONLY ADMIN was split out) until 10.11.0, and
// always before. ALL PRIVILEGES includes READ ONLY ADMIN on every version.
func superImpliesReadOnlyAdmin(version string) bool {
	major, minor, ok := parseVersion(version)
	return !ok || major < 10 || (major == 10 && minor < 11)
}

// parseVersion reads major and minor from a VERSION() string such as "10.11.9-MariaDB-0+deb12u1".
func parseVersion(v string) (major, minor int, ok bool) {
	maj, rest, found := strings.Cut(v, ".")
	if !found {
		return 0, 0, false
	}
	n := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if n < 0 {
		n = len(rest)
	}
	a, err1 := strconv.Atoi(maj)
	b, err2 := strconv.Atoi(rest[:n])
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return a, b, true
}

// systemAccounts are never application accounts and their connections are never killed: they
// cannot log in (mariadb.sys, MySQL's mysql.* accounts) or are no account (the PUBLIC role).
// root is not among them: it bypasses read_only.
var systemAccounts = []string{"mariadb.sys", "mysql.sys", "mysql.session", "mysql.infoschema", "PUBLIC"}

type account struct{ user, host string }

func (a account) String() string { return a.user + "@" + a.host }

// appFilter decides whether an account (host "" matches any) is an application account.
type appFilter struct {
	users []string
	self  string
}

// isApp reports whether the account is an application account: never the daemon's own or a
// system account; with no configured users every other account, else the listed ones.
func (af appFilter) isApp(user, host string) bool {
	if user == af.self || slices.Contains(systemAccounts, user) {
		return false
	}
	if len(af.users) == 0 {
		return true
	}
	for _, u := range af.users {
		name, h, hasHost := strings.Cut(u, "@")
		if name == user && (!hasHost || host == "" || h == host) {
			return true
		}
	}
	return false
}

// currentUser returns the user part of CURRENT_USER(), the account this connection runs as.
func currentUser(ctx context.Context, q queryer) (string, error) {
	var cur string
	if err := q.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&cur); err != nil {
		return "", fmt.Errorf("read current user: %w", err)
	}
	if i := strings.LastIndexByte(cur, '@'); i >= 0 {
		cur = cur[:i]
	}
	return cur, nil
}

func newAppFilter(ctx context.Context, q queryer, users []string) (appFilter, error) {
	self, err := currentUser(ctx, q)
	if err != nil {
		return appFilter{}, err
	}
	return appFilter{users: users, self: self}, nil
}

// readOnlyAdmins lists, sorted, the accounts that bypass read_only on MariaDB: those holding READ
// ONLY ADMIN (before 10.11 also SUPER) directly, through a role granted to them (default or not:
// they can SET ROLE), or through PUBLIC. The daemon's own account (self) and the system accounts
// are left out; root is not.
func readOnlyAdmins(ctx context.Context, q queryer, self string) ([]account, error) {
	var version string
	if err := q.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		return nil, fmt.Errorf("read server version: %w", err)
	}
	bypass := readOnlyAdminBit
	if superImpliesReadOnlyAdmin(version) {
		bypass |= superBit
	}
	rows, err := q.QueryContext(ctx, "SELECT User, Host, Priv FROM mysql.global_priv")
	if err != nil {
		return nil, fmt.Errorf("read mysql.global_priv: %w", err)
	}
	defer rows.Close()
	type privJSON struct {
		Access json.Number `json:"access"`
		IsRole bool        `json:"is_role"`
	}
	holds := map[account]bool{}
	var accounts []account
	for rows.Next() {
		var a account
		var priv []byte
		if err := rows.Scan(&a.user, &a.host, &priv); err != nil {
			return nil, fmt.Errorf("read mysql.global_priv: %w", err)
		}
		var pj privJSON
		dec := json.NewDecoder(bytes.NewReader(priv))
		dec.UseNumber()
		if err := dec.Decode(&pj); err != nil {
			return nil, fmt.Errorf("parse privileges of %s: %w", a, err)
		}
		access, _ := strconv.ParseUint(string(pj.Access), 10, 64)
		holds[a] = access&bypass != 0
		if !pj.IsRole {
			accounts = append(accounts, a)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read mysql.global_priv: %w", err)
	}
	grants := map[account][]string{} // grantee -> roles granted
	mrows, err := q.QueryContext(ctx, "SELECT User, Host, Role FROM mysql.roles_mapping")
	if err != nil {
		return nil, fmt.Errorf("read mysql.roles_mapping: %w", err)
	}
	defer mrows.Close()
	for mrows.Next() {
		var a account
		var role string
		if err := mrows.Scan(&a.user, &a.host, &role); err != nil {
			return nil, fmt.Errorf("read mysql.roles_mapping: %w", err)
		}
		grants[a] = append(grants[a], role)
	}
	if err := mrows.Err(); err != nil {
		return nil, fmt.Errorf("read mysql.roles_mapping: %w", err)
	}
	// A role is stored with host ""; resolve role-to-role grants with a depth-first walk.
	var viaRole func(a account, seen map[string]bool) bool
	viaRole = func(a account, seen map[string]bool) bool {
		if holds[a] {
			return true
		}
		for _, r := range grants[a] {
			if seen[r] {
				continue
			}
			seen[r] = true
			if viaRole(account{user: r}, seen) {
				return true
			}
		}
		return false
	}
	public := holds[account{user: "PUBLIC"}]
	var out []account
	for _, a := range accounts {
		if a.user == self || slices.Contains(systemAccounts, a.user) {
			continue
		}
		if public || viaRole(a, map[string]bool{}) {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(x, y account) int { return strings.Compare(x.String(), y.String()) })
	return out, nil
}

// heartbeatUpsert + a WHERE clause + heartbeatOnDup is the write check's statement.
const (
	heartbeatUpsert = "INSERT INTO keepraft.heartbeat (server_id, ts) SELECT @@server_id, NOW(6) FROM DUAL"
	heartbeatOnDup  = " ON DUPLICATE KEY UPDATE ts = NOW(6)"
)

// scriptWaitDelay bounds runScript's wait, once ctx ended or the script exited, for the killed
// group to exit and for output pipes a background child still holds (exec.Cmd.WaitDelay).
const scriptWaitDelay = 100 * time.Millisecond

// runScript runs a check script under ctx and kills its whole process group on expiry.
func runScript(ctx context.Context, script string) error {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = scriptWaitDelay
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 200 {
			msg = msg[:200]
		}
		if msg != "" {
			return fmt.Errorf("check script %q: %w: %s", script, err, msg)
		}
		return fmt.Errorf("check script %q: %w", script, err)
	}
	return nil
}
