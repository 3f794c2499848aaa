package testenv

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/keepraft/keepraft/probe"
)

// Lab MariaDB accounts and schemas. Every account is created on every server with
// sql_log_bin=0, so none of it replicates.
const (
	// ReplUser and ReplPass are the replication account (REPLICATION SLAVE on *.*).
	ReplUser, ReplPass = "repl", "repl-pass"
	// AppUser and AppPass are the application account: SELECT, INSERT, UPDATE, DELETE, CREATE
	// on schema kr. It has no READ ONLY ADMIN, so read_only=ON stops its writes.
	AppUser, AppPass = "app", "app-pass"
	// DaemonUser and DaemonPass are keepraftd's account.
	DaemonUser, DaemonPass = "keepraft", "keepraft-pass"
	// AppSchema holds the application tables: kr.writes (id auto-increment, origin, seq, at)
	// for write-load tests, and kr.lab_check used by SetupDualMaster's verification.
	AppSchema = "kr"
	// DaemonSchema holds keepraft.heartbeat (server_id primary key, ts TIMESTAMP(6)).
	DaemonSchema = "keepraft"
)

// mariadbStartTimeout bounds how long a server may take to accept connections.
const mariadbStartTimeout = 30 * time.Second

// MariaDBOptions tune [Lab.StartMariaDB]. The zero value fits host dbN: server_id N,
// gtid_domain_id N, auto_increment_offset N.
type MariaDBOptions struct {
	// Name names the server (datadir Dir/mariadb-<Name>, log mariadb-<Name>.log); default
	// the host name, or "local<N>" without a host.
	Name string
	// ServerID and DomainID default to N for host dbN, else to the server's sequence number.
	ServerID, DomainID uint32
	// AutoIncrementOffset defaults to ServerID (increment is always 2).
	AutoIncrementOffset uint32
	// Port defaults to 3306 with a host, a free port on 127.0.0.1 without.
	Port uint16
	// SkipSlaveStart adds skip_slave_start, so replication stays stopped after a restart.
	SkipSlaveStart bool
	// Extra lines appended to the [mariadbd] section of my.cnf.
	Extra []string
	// DaemonGrants replace [DaemonGrantsFor] the flavor for the keepraft account (for
	// example probe.Grants(probe.FlavorMariaDB, "keepraft", "%")).
	DaemonGrants []string
	// Flavor is FlavorMariaDB ("" too: mariadbd from the host) or FlavorMySQL (mysqld
	// chrooted into the Debian sid root of [EnsureMySQLRoot], built on first use).
	Flavor probe.Flavor
}

// MariaDB is one real database server with its own datadir under the lab Dir: mariadbd, or
// mysqld when Flavor is FlavorMySQL (the name stays for compatibility). Flavor-specific SQL
// is in flavor.go.
type MariaDB struct {
	// Name names the server (the host name by default).
	Name string
	// Flavor is FlavorMariaDB or FlavorMySQL.
	Flavor probe.Flavor
	// Host is where the server runs; nil means the root namespace on 127.0.0.1.
	Host *Host
	// Addr is the TCP address the server listens on.
	Addr netip.AddrPort
	// ServerID and DomainID are server_id and gtid_domain_id (0 on MySQL, which has none).
	ServerID, DomainID uint32
	// Dir holds my.cnf, the datadir (data/) and the socket (data/mysqld.sock).
	Dir string
	// Proc is the current mariadbd process (replaced by Start).
	Proc *Proc

	lab  *Lab
	root string // MySQL: the chroot the server runs in
	mu   sync.Mutex
	db   *sql.DB // root over the unix socket
}

var mycnf = template.Must(template.New("my.cnf").Parse(`# written by keepraft testenv
[client]
socket = {{.Socket}}
user = root

[mariadbd]
datadir = {{.DataDir}}
socket = {{.Socket}}
pid-file = {{.Dir}}/mariadbd.pid
tmpdir = {{.Dir}}/tmp
bind-address = {{.Bind}}
port = {{.Addr.Port}}
server_id = {{.ServerID}}
gtid_domain_id = {{.DomainID}}
log_bin = mariadb-bin
relay_log = relay-bin
relay_log_recovery = ON
log_slave_updates = ON
gtid_strict_mode = ON
binlog_format = ROW
auto_increment_increment = 2
auto_increment_offset = {{.Offset}}
read_only = ON
skip-name-resolve
slave_net_timeout = 4
innodb_buffer_pool_size = 32M
innodb_log_file_size = 8M
innodb_log_buffer_size = 1M
innodb_flush_log_at_trx_commit = 2
sync_binlog = 0
performance_schema = OFF
max_connections = 200
key_buffer_size = 1M
{{- if .SkipSlaveStart}}
skip_slave_start
{{- end}}
{{- range .Extra}}
{{.}}
{{- end}}
`))

// StartMariaDB initializes a datadir (mariadb-install-db; MySQL: mysqld
// --initialize-insecure), writes my.cnf, starts the server inside h's namespace (h nil: root
// namespace, 127.0.0.1 and a free port), waits until it answers (30 s at most) and creates
// the lab accounts and schemas with sql_log_bin=0. A MySQL server needs the root of
// [EnsureMySQLRoot] and builds it when missing.
func (l *Lab) StartMariaDB(ctx context.Context, h *Host, opts MariaDBOptions) (*MariaDB, error) {
	flavor, err := normFlavor(opts.Flavor)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	seq := len(l.dbs) + 1
	l.mu.Unlock()
	m := &MariaDB{Host: h, lab: l, Name: opts.Name, Flavor: flavor}
	if m.IsMySQL() {
		if m.root, err = EnsureMySQLRoot(ctx, l.log); err != nil {
			return nil, err
		}
	}
	if m.Name == "" {
		if h != nil {
			m.Name = h.Name
		} else {
			m.Name = fmt.Sprintf("local%d", seq)
		}
	}
	id := uint32(seq)
	if h != nil && strings.HasPrefix(h.Name, "db") {
		if n, err := strconv.Atoi(strings.TrimPrefix(h.Name, "db")); err == nil && n > 0 {
			id = uint32(n)
		}
	}
	m.ServerID, m.DomainID = opts.ServerID, opts.DomainID
	if m.ServerID == 0 {
		m.ServerID = id
	}
	if m.DomainID == 0 && !m.IsMySQL() {
		m.DomainID = id
	}
	offset := opts.AutoIncrementOffset
	if offset == 0 {
		offset = m.ServerID
	}
	if h != nil {
		port := opts.Port
		if port == 0 {
			port = 3306
		}
		m.Addr = netip.AddrPortFrom(h.Addr, port)
	} else {
		port := opts.Port
		if port == 0 {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			port = p
		}
		m.Addr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	}
	m.Dir = filepath.Join(l.Dir, "mariadb-"+m.Name)
	if err := os.MkdirAll(filepath.Join(m.Dir, "tmp"), 0o755); err != nil {
		return nil, fmt.Errorf("make tmpdir for %s: %w", m.Name, err)
	}
	if err := os.MkdirAll(m.dataDir(), 0o755); err != nil {
		return nil, fmt.Errorf("make datadir for %s: %w", m.Name, err)
	}
	// In a host namespace the server listens on every address there, so clients reach it
	// through the VIP too; on the root namespace's loopback only on 127.0.0.1.
	bind := m.Addr.Addr().String()
	if h != nil {
		bind = "0.0.0.0"
	}
	var cnf strings.Builder
	tmpl := mycnf
	if m.IsMySQL() {
		tmpl = mysqlCnf
	}
	if err := tmpl.Execute(&cnf, map[string]any{
		"Bind": bind, "Dir": m.Dir, "DataDir": m.dataDir(), "Socket": m.Socket(), "Addr": m.Addr,
		"ServerID": m.ServerID, "DomainID": m.DomainID, "Offset": offset,
		"SkipSlaveStart": opts.SkipSlaveStart, "Extra": opts.Extra, "Root": m.root,
	}); err != nil {
		return nil, fmt.Errorf("render my.cnf for %s: %w", m.Name, err)
	}
	if err := os.WriteFile(m.ConfigPath(), []byte(cnf.String()), 0o644); err != nil {
		return nil, fmt.Errorf("write my.cnf for %s: %w", m.Name, err)
	}
	iargv := []string{"mariadb-install-db", "--defaults-file=" + m.ConfigPath(),
		"--auth-root-authentication-method=normal", "--user=root", "--skip-test-db"}
	if m.IsMySQL() {
		iargv = m.serverArgv("--initialize-insecure")
	}
	icmd := exec.CommandContext(ctx, iargv[0], iargv[1:]...)
	icmd.WaitDelay = 5 * time.Second
	out, err := icmd.CombinedOutput()
	logPath := filepath.Join(l.Dir, "logs", "install-"+m.Name+".log")
	_ = os.WriteFile(logPath, out, 0o644)
	if err != nil {
		return nil, fmt.Errorf("initialize the datadir of %s (%s): %w (full output in %s): %s", m.Name, iargv[0], err, logPath, errorLines(string(out)))
	}
	l.mu.Lock()
	l.dbs = append(l.dbs, m)
	l.mu.Unlock()
	if err := m.Start(ctx); err != nil {
		return nil, err
	}
	if err := m.bootstrap(ctx, opts.DaemonGrants); err != nil {
		return nil, fmt.Errorf("bootstrap %s: %w", m.Name, err)
	}
	l.log.Info("database server up", zap.String("name", m.Name), zap.String("flavor", string(m.Flavor)), zap.Stringer("addr", m.Addr), zap.Int("pid", m.Proc.PID))
	return m, nil
}

// startAllMariaDB starts MariaDB on every db* host in parallel and pairs the first two.
func (l *Lab) startAllMariaDB(ctx context.Context) error {
	var hosts []*Host
	for _, h := range l.Hosts() {
		if strings.HasPrefix(h.Name, "db") {
			hosts = append(hosts, h)
		}
	}
	ms := make([]*MariaDB, len(hosts))
	g, gctx := errgroup.WithContext(ctx)
	for i, h := range hosts {
		g.Go(func() error {
			m, err := l.StartMariaDB(gctx, h, MariaDBOptions{DaemonGrants: l.daemonGrants, Flavor: l.flavor})
			ms[i] = m
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if len(ms) >= 2 {
		return l.SetupDualMaster(ctx, ms[0], ms[1])
	}
	return nil
}

// MariaDB returns the server with that name (the host name for servers on hosts), or nil.
func (l *Lab) MariaDB(name string) *MariaDB {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.dbs {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// MariaDBs returns every server in start order.
func (l *Lab) MariaDBs() []*MariaDB {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*MariaDB(nil), l.dbs...)
}

func (m *MariaDB) dataDir() string { return filepath.Join(m.Dir, "data") }

// Socket is the unix socket path (root connects there without a password).
func (m *MariaDB) Socket() string { return filepath.Join(m.Dir, "data", "mysqld.sock") }

// ConfigPath is the my.cnf path; `mariadb --defaults-file=PATH` connects as root.
func (m *MariaDB) ConfigPath() string { return filepath.Join(m.Dir, "my.cnf") }

// CheckCmd is a health check for keepalived's track_script: mysqladmin ping over the socket.
func (m *MariaDB) CheckCmd() string {
	return "/usr/bin/mysqladmin --defaults-file=" + m.ConfigPath() + " --connect-timeout=1 ping"
}

// DSN returns a go-sql-driver DSN over TCP to the server. With a Host it uses the dialer
// registered for that host's namespace, so the connection comes from the server's own host.
func (m *MariaDB) DSN(user, pass, db string) string {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.DBName = user, pass, db
	cfg.Net, cfg.Addr = "tcp", m.Addr.String()
	if m.Host != nil {
		cfg.Net = m.Host.dialNet
	}
	cfg.Timeout = 3 * time.Second
	return cfg.FormatDSN()
}

// Start starts the server on the existing datadir (read_only=ON, and super_read_only=ON on
// MySQL, come from my.cnf) and waits (30 s at most) until it accepts connections. Starting a
// running server is an error.
func (m *MariaDB) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.Proc != nil && m.Proc.Alive() {
		m.mu.Unlock()
		return fmt.Errorf("start %s: already running (pid %d)", m.Name, m.Proc.PID)
	}
	// Connections pooled from the server's previous run are dead; the first query on
	// one failed with "invalid connection" (broken pipe) after a restart.
	if m.db != nil {
		_ = m.db.Close()
		m.db = nil
	}
	m.mu.Unlock()
	if err := removeStaleSocketLock(m.Socket()); err != nil {
		return fmt.Errorf("start %s: %w", m.Name, err)
	}
	p, err := m.lab.Spawn(m.Host, "mariadb-"+m.Name, m.serverArgv(), nil)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.Proc = p
	m.mu.Unlock()
	if err := m.lab.saveState(); err != nil {
		return err
	}
	return m.waitReady(ctx, p)
}

// waitReady polls the socket with SELECT 1 until it answers, p exits, or 30 s pass.
func (m *MariaDB) waitReady(ctx context.Context, p *Proc) error {
	ctx, cancel := context.WithTimeout(ctx, mariadbStartTimeout)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var last error
	for {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		_, last = m.QueryString(pctx, "SELECT 1")
		pcancel()
		if last == nil {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("start %s: %s exited: %v\n%s", m.Name, m.daemonName(), p.Err(), p.Tail(20))
		case <-ctx.Done():
			return fmt.Errorf("start %s: not ready: %w (last: %v)\n%s", m.Name, ctx.Err(), last, p.Tail(20))
		case <-t.C:
		}
	}
}

// Stop shuts the server down with SIGTERM (SIGKILL when ctx ends first).
func (m *MariaDB) Stop(ctx context.Context) error {
	m.closeDB()
	if p := m.proc(); p != nil {
		if err := p.Stop(ctx); err != nil {
			return fmt.Errorf("stop %s: %w", m.Name, err)
		}
	}
	return m.lab.saveState()
}

// Kill kills the server with SIGKILL.
func (m *MariaDB) Kill() error {
	m.closeDB()
	if p := m.proc(); p != nil {
		if err := p.Kill(); err != nil {
			return fmt.Errorf("kill %s: %w", m.Name, err)
		}
	}
	return m.lab.saveState()
}

func (m *MariaDB) proc() *Proc {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.Proc
}

// rootDB returns the root pool over the unix socket, opening it on first use.
func (m *MariaDB) rootDB() (*sql.DB, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.db != nil {
		return m.db, nil
	}
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "unix", m.Socket()
	cfg.Timeout = 2 * time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("root connector for %s: %w", m.Name, err)
	}
	m.db = sql.OpenDB(conn)
	m.db.SetMaxIdleConns(2)
	m.db.SetConnMaxIdleTime(30 * time.Second)
	return m.db, nil
}

// Exec runs one statement as root over the unix socket.
func (m *MariaDB) Exec(ctx context.Context, query string, args ...any) error {
	db, err := m.rootDB()
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, query, args...); err != nil {
		return fmt.Errorf("%s: exec %q: %w", m.Name, query, err)
	}
	return nil
}

// QueryString runs a query as root over the unix socket and returns the first column of the
// first row ("" for NULL, sql.ErrNoRows wrapped when there is no row).
func (m *MariaDB) QueryString(ctx context.Context, query string, args ...any) (string, error) {
	db, err := m.rootDB()
	if err != nil {
		return "", err
	}
	var v sql.NullString
	if err := db.QueryRowContext(ctx, query, args...).Scan(&v); err != nil {
		return "", fmt.Errorf("%s: query %q: %w", m.Name, query, err)
	}
	return v.String, nil
}

// ExecNoBinlog runs statements as root on one connection with sql_log_bin=0, so they do not
// replicate (CREATE USER must not: a replicated one breaks the peer's SQL thread). Like
// [MariaDB.ExecAdmin] it works on a fenced server (on MySQL by lifting super_read_only for
// the statements).
func (m *MariaDB) ExecNoBinlog(ctx context.Context, stmts ...string) error {
	return m.execAdmin(ctx, true, stmts...)
}

// DefaultDaemonGrants returns the GRANT statements for the keepraft account on MariaDB:
// probe.Grants(probe.FlavorMariaDB, "keepraft", "%"), the daemon's least privilege (see
// [DaemonGrantsFor] for either flavor). (Because
// testenv imports probe, probe's own tests that use testenv must live in package probe_test.)
func DefaultDaemonGrants() []string {
	return probe.Grants(probe.FlavorMariaDB, DaemonUser, "%")
}

// bootstrap creates the lab accounts and schemas, unlogged, on a fresh server.
func (m *MariaDB) bootstrap(ctx context.Context, grants []string) error {
	stmts := []string{
		"CREATE USER '" + ReplUser + "'@'%' IDENTIFIED BY '" + ReplPass + "'",
		"GRANT REPLICATION SLAVE ON *.* TO '" + ReplUser + "'@'%'",
		"CREATE DATABASE " + AppSchema,
		"CREATE TABLE " + AppSchema + ".writes (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, origin VARCHAR(64) NOT NULL DEFAULT '', seq BIGINT NOT NULL DEFAULT 0, at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB",
		"CREATE TABLE " + AppSchema + ".lab_check (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, origin VARCHAR(64) NOT NULL) ENGINE=InnoDB",
		"CREATE USER '" + AppUser + "'@'%' IDENTIFIED BY '" + AppPass + "'",
		"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON " + AppSchema + ".* TO '" + AppUser + "'@'%'",
		"CREATE DATABASE " + DaemonSchema,
		"CREATE TABLE " + DaemonSchema + ".heartbeat (server_id INT UNSIGNED NOT NULL PRIMARY KEY, ts TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB",
		"CREATE USER '" + DaemonUser + "'@'%' IDENTIFIED BY '" + DaemonPass + "'",
	}
	if grants == nil {
		grants = DaemonGrantsFor(m.Flavor)
	}
	stmts = append(stmts, grants...)
	return m.ExecNoBinlog(ctx, stmts...)
}

// SetupDualMaster points a and b at each other (GTID: MariaDB master_use_gtid=slave_pos,
// MySQL SOURCE_AUTO_POSITION=1; connect retry 1 s), starts both channels and verifies them
// with one row written on each server (as root, past read_only) that must appear on the
// other. Call it on fresh servers of one flavor.
func (l *Lab) SetupDualMaster(ctx context.Context, a, b *MariaDB) error {
	for _, p := range [][2]*MariaDB{{a, b}, {b, a}} {
		if err := p[0].ChangeMaster(ctx, p[1]); err != nil {
			return err
		}
	}
	if a.Flavor != b.Flavor {
		return fmt.Errorf("dual master %s/%s: flavors %s and %s differ", a.Name, b.Name, a.Flavor, b.Flavor)
	}
	for _, m := range []*MariaDB{a, b} {
		if err := m.ExecAdmin(ctx, "INSERT INTO "+AppSchema+".lab_check (origin) VALUES ('"+m.Name+"')"); err != nil {
			return fmt.Errorf("dual master %s/%s: %w", a.Name, b.Name, err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for _, p := range [][2]*MariaDB{{a, b}, {b, a}} {
		if err := WaitCaughtUp(wctx, p[0], p[1]); err != nil {
			io, sqlRun, lastErr, _ := ReplicationStatus(ctx, p[1])
			return fmt.Errorf("dual master %s->%s: %w (io=%v sql=%v last_error=%q)", p[0].Name, p[1].Name, err, io, sqlRun, lastErr)
		}
		n, err := p[1].QueryString(ctx, "SELECT COUNT(*) FROM "+AppSchema+".lab_check WHERE origin = ?", p[0].Name)
		if err != nil {
			return fmt.Errorf("dual master %s->%s: %w", p[0].Name, p[1].Name, err)
		}
		if n != "1" {
			return fmt.Errorf("dual master %s->%s: check row count %s, want 1", p[0].Name, p[1].Name, n)
		}
	}
	l.log.Info("dual master replication running", zap.String("a", a.Name), zap.String("b", b.Name))
	return nil
}

// ChangeMaster makes m replicate from master with GTID (MariaDB slave_pos, MySQL
// auto-positioning) and starts the channel.
func (m *MariaDB) ChangeMaster(ctx context.Context, master *MariaDB) error {
	v := m.replicaVerb()
	for _, s := range []string{"STOP " + v, m.changeSourceSQL(master), "START " + v} {
		if err := m.Exec(ctx, s); err != nil {
			return fmt.Errorf("replicate %s from %s: %w", m.Name, master.Name, err)
		}
	}
	return nil
}

// WaitCaughtUp waits until to has applied everything from has. On MySQL: until from's
// gtid_executed is a subset of to's. On MariaDB: everything in from's gtid_binlog_pos; a domain is
// covered when to's gtid_slave_pos has reached it (the SQL thread committed it, so its rows
// are visible), or, for to's own gtid_domain_id, when to's gtid_binlog_pos has (its own
// writes, which come back from the peer but are never re-applied). gtid_binlog_pos alone is
// not enough for other domains: it moves before the engine commit is visible.
func WaitCaughtUp(ctx context.Context, from, to *MariaDB) error {
	if from.IsMySQL() {
		return waitCaughtUpMySQL(ctx, from, to)
	}
	want, err := from.QueryString(ctx, "SELECT @@GLOBAL.gtid_binlog_pos")
	if err != nil {
		return err
	}
	wantPos, err := parseGTIDPos(want)
	if err != nil {
		return fmt.Errorf("%s gtid_binlog_pos: %w", from.Name, err)
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	have := ""
	for {
		have, err = to.QueryString(ctx, "SELECT CONCAT(@@GLOBAL.gtid_slave_pos, ';', @@GLOBAL.gtid_binlog_pos)")
		if err == nil {
			slave, binlog, _ := strings.Cut(have, ";")
			slavePos, err1 := parseGTIDPos(slave)
			binlogPos, err2 := parseGTIDPos(binlog)
			if err := errors.Join(err1, err2); err != nil {
				return fmt.Errorf("%s gtid positions: %w", to.Name, err)
			}
			if caughtUp(wantPos, slavePos, binlogPos, to.DomainID) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to catch up with %s (%s; has slave;binlog %s): %w", to.Name, from.Name, want, have, ctx.Err())
		case <-t.C:
		}
	}
}

// waitCaughtUpMySQL is WaitCaughtUp on MySQL.
func waitCaughtUpMySQL(ctx context.Context, from, to *MariaDB) error {
	want, err := from.QueryString(ctx, "SELECT @@GLOBAL.gtid_executed")
	if err != nil {
		return err
	}
	want = trimGTID(want)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := to.QueryString(ctx, mysqlGTIDSubset, want)
		if err == nil && ok == "1" {
			return nil
		}
		select {
		case <-ctx.Done():
			have, _ := to.QueryString(context.WithoutCancel(ctx), "SELECT @@GLOBAL.gtid_executed")
			return fmt.Errorf("wait for %s to catch up with %s (%s; has %s): %w", to.Name, from.Name, want, trimGTID(have), ctx.Err())
		case <-t.C:
		}
	}
}

// caughtUp reports whether every domain of want is covered by slave, or by binlog for own.
func caughtUp(want, slave, binlog map[uint32]uint64, own uint32) bool {
	for d, n := range want {
		if slave[d] >= n || (d == own && binlog[d] >= n) {
			continue
		}
		return false
	}
	return true
}

// parseGTIDPos parses "D-S-N,..." into domain -> seq_no.
func parseGTIDPos(s string) (map[uint32]uint64, error) {
	out := map[uint32]uint64{}
	for _, g := range strings.Split(strings.TrimSpace(s), ",") {
		g = strings.TrimSpace(g)
		if g == "" {
			continue
		}
		f := strings.Split(g, "-")
		if len(f) != 3 {
			return nil, fmt.Errorf("gtid %q: want domain-server-seq", g)
		}
		d, err1 := strconv.ParseUint(f[0], 10, 32)
		n, err2 := strconv.ParseUint(f[2], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("gtid %q: %w", g, err)
		}
		if n > out[uint32(d)] {
			out[uint32(d)] = n
		}
	}
	return out, nil
}

// ReplicationStatus reads SHOW SLAVE STATUS (MySQL: SHOW REPLICA STATUS): whether the IO and
// SQL threads run and the last IO/SQL error. A server without a channel reports false,
// false, "".
func ReplicationStatus(ctx context.Context, m *MariaDB) (io, sqlRunning bool, lastErr string, err error) {
	db, err := m.rootDB()
	if err != nil {
		return false, false, "", err
	}
	rows, err := db.QueryContext(ctx, m.showReplicaSQL())
	if err != nil {
		return false, false, "", fmt.Errorf("%s: %s: %w", m.Name, strings.ToLower(m.showReplicaSQL()), err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return false, false, "", fmt.Errorf("%s: show slave status: %w", m.Name, err)
	}
	if !rows.Next() {
		return false, false, "", rows.Err()
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return false, false, "", fmt.Errorf("%s: show slave status: %w", m.Name, err)
	}
	get := map[string]string{}
	for i, c := range cols {
		get[c] = vals[i].String
	}
	var errs []string
	for _, k := range []string{"Last_IO_Error", "Last_SQL_Error"} {
		if v := get[k]; v != "" {
			errs = append(errs, k+": "+v)
		}
	}
	io, sqlRunning = replStatusRunning(get)
	return io, sqlRunning, strings.Join(errs, "; "), rows.Err()
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (uint16, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port), nil
}

// errorLines returns the lines of s that mention an error, or its first 20 lines.
func errorLines(s string) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, "ERROR") || strings.Contains(line, "[ERROR]") || strings.Contains(line, "error") {
			keep = append(keep, line)
		}
	}
	if len(keep) == 0 {
		return lastLines(strings.Join(strings.SplitN(s, "\n", 21)[:min(20, strings.Count(s, "\n")+1)], "\n"), 20)
	}
	return strings.Join(keep, "\n")
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// removeStaleSocketLock removes MySQL's socket lock file (SOCKET.lock, which holds the
// server's pid) when that pid is gone or a zombie: MySQL refuses to start while the pid
// exists ("Another process ... is using unix socket file"), and a server killed under a
// parent that does not reap it (keepraft-lab exits after up) stays a zombie.
func removeStaleSocketLock(socket string) error {
	lock := socket + ".lock"
	b, err := os.ReadFile(lock)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", lock, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err == nil && pid > 0 {
		stat, serr := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		// /proc/PID/stat: "pid (comm) S ..."; the state follows the last ')'.
		if i := strings.LastIndexByte(string(stat), ')'); serr == nil && i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z' && stat[i+2] != 'X' {
			return nil // a live process holds it: let the server decide
		}
	}
	if err := os.Remove(lock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale %s: %w", lock, err)
	}
	return nil
}
