package testenv

import (
	"context"
	"database/sql/driver"
	"fmt"
	"strings"
	"text/template"

	"github.com/keepraft/keepraft/probe"
)

// Every SQL statement and configuration line that differs between MariaDB and MySQL lives in
// this file. A [MariaDB] runs either flavor: mariadbd from the host (FlavorMariaDB, the
// default) or mysqld chrooted into the Debian sid root of [EnsureMySQLRoot] (FlavorMySQL).

// FlavorMariaDB and FlavorMySQL are the server flavors of the lab (probe's names).
const (
	FlavorMariaDB = probe.FlavorMariaDB
	FlavorMySQL   = probe.FlavorMySQL
)

// normFlavor maps "" to MariaDB and checks the value.
func normFlavor(f probe.Flavor) (probe.Flavor, error) {
	switch f {
	case "", FlavorMariaDB:
		return FlavorMariaDB, nil
	case FlavorMySQL:
		return FlavorMySQL, nil
	}
	return "", fmt.Errorf("flavor %q: want mariadb or mysql", f)
}

// MySQL servers' paths are the same inside the chroot and outside (the server's dir is
// bind-mounted at its own path), so the socket, the pid file (probe.ServerPID) and my.cnf
// work from the host. mysqlx is off (two servers on 127.0.0.1 would share its port); both
// semi-sync plugins are loaded, switched off (mysql.semi_sync switches the source side).
// group_concat_max_len is MariaDB's default (MySQL's 1024 bytes truncates the tests'
// GROUP_CONCAT of write sequence numbers).
var mysqlCnf = template.Must(template.New("my.cnf").Parse(`# written by keepraft testenv (MySQL, run chrooted into {{.Root}})
[client]
socket = {{.Socket}}
user = root

[mysqld]
datadir = {{.DataDir}}
socket = {{.Socket}}
pid-file = {{.Dir}}/mysqld.pid
tmpdir = {{.Dir}}/tmp
secure_file_priv = {{.Dir}}/tmp
bind-address = {{.Bind}}
port = {{.Addr.Port}}
mysqlx = OFF
server_id = {{.ServerID}}
log_bin = mysql-bin
relay_log = relay-bin
relay_log_recovery = ON
log_replica_updates = ON
gtid_mode = ON
enforce_gtid_consistency = ON
auto_increment_increment = 2
auto_increment_offset = {{.Offset}}
read_only = ON
super_read_only = ON
skip-name-resolve
replica_net_timeout = 4
plugin-load-add = semisync_source.so
plugin-load-add = semisync_replica.so
innodb_buffer_pool_size = 32M
innodb_redo_log_capacity = 32M
innodb_log_buffer_size = 1M
innodb_flush_log_at_trx_commit = 2
sync_binlog = 0
performance_schema = OFF
max_connections = 200
group_concat_max_len = 1048576
{{- if .SkipSlaveStart}}
skip_replica_start
{{- end}}
{{- range .Extra}}
{{.}}
{{- end}}
`))

// IsMySQL reports whether the server is MySQL.
func (m *MariaDB) IsMySQL() bool { return m.Flavor == FlavorMySQL }

// daemonName is the server binary's name (for messages).
func (m *MariaDB) daemonName() string {
	if m.IsMySQL() {
		return "mysqld"
	}
	return "mariadbd"
}

// serverArgv is the command line that runs the server on its datadir (extra arguments after
// the defaults file).
func (m *MariaDB) serverArgv(extra ...string) []string {
	if m.IsMySQL() {
		return chrootArgv(m.root, m.Dir, append([]string{"/usr/sbin/mysqld", "--defaults-file=" + m.ConfigPath(), "--user=root"}, extra...)...)
	}
	return append([]string{"mariadbd", "--defaults-file=" + m.ConfigPath(), "--user=root"}, extra...)
}

// DaemonGrantsFor returns probe.Grants(f, "keepraft", "%"), the daemon's least privilege on
// flavor f.
func DaemonGrantsFor(f probe.Flavor) []string {
	f, err := normFlavor(f)
	if err != nil {
		f = FlavorMariaDB
	}
	return probe.Grants(f, DaemonUser, "%")
}

// changeSourceSQL is the statement that points m at source with GTID auto-positioning.
// MySQL: caching_sha2_password needs TLS or the source's public key for the first login,
// and SOURCE_RETRY_COUNT (10 by default since 8.4) must not give up during a failover.
func (m *MariaDB) changeSourceSQL(source *MariaDB) string {
	if m.IsMySQL() {
		return fmt.Sprintf("CHANGE REPLICATION SOURCE TO SOURCE_HOST='%s', SOURCE_PORT=%d, SOURCE_USER='%s', SOURCE_PASSWORD='%s', SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, SOURCE_RETRY_COUNT=86400, GET_SOURCE_PUBLIC_KEY=1",
			source.Addr.Addr(), source.Addr.Port(), ReplUser, ReplPass)
	}
	return fmt.Sprintf("CHANGE MASTER TO master_host='%s', master_port=%d, master_user='%s', master_password='%s', master_use_gtid=slave_pos, master_connect_retry=1",
		source.Addr.Addr(), source.Addr.Port(), ReplUser, ReplPass)
}

// replicaVerb returns "REPLICA" on MySQL, "SLAVE" on MariaDB (both accept REPLICA on recent
// versions; MariaDB 10.11 keeps the older name the lab has always used).
func (m *MariaDB) replicaVerb() string {
	if m.IsMySQL() {
		return "REPLICA"
	}
	return "SLAVE"
}

// StopReplicaIO stops the IO thread of m's channel only (STOP SLAVE IO_THREAD / STOP REPLICA
// IO_THREAD): what m already received is still applied, nothing new arrives.
func (m *MariaDB) StopReplicaIO(ctx context.Context) error {
	return m.Exec(ctx, "STOP "+m.replicaVerb()+" IO_THREAD")
}

// StopReplica stops m's channel (STOP SLAVE / STOP REPLICA).
func (m *MariaDB) StopReplica(ctx context.Context) error {
	return m.Exec(ctx, "STOP "+m.replicaVerb())
}

// StartReplica starts m's channel (START SLAVE / START REPLICA).
func (m *MariaDB) StartReplica(ctx context.Context) error {
	return m.Exec(ctx, "START "+m.replicaVerb())
}

// showReplicaSQL reads the channel's status.
func (m *MariaDB) showReplicaSQL() string {
	if m.IsMySQL() {
		return "SHOW REPLICA STATUS"
	}
	return "SHOW SLAVE STATUS"
}

// GTIDState is a one-line description of m's GTID positions for evidence: MariaDB
// "binlog=<gtid_binlog_pos> slave=<gtid_slave_pos>", MySQL "executed=<gtid_executed>".
func (m *MariaDB) GTIDState(ctx context.Context) (string, error) {
	q := "SELECT CONCAT('binlog=', @@GLOBAL.gtid_binlog_pos, ' slave=', @@GLOBAL.gtid_slave_pos)"
	if m.IsMySQL() {
		q = "SELECT CONCAT('executed=', REPLACE(@@GLOBAL.gtid_executed, '\\n', ''))"
	}
	return m.QueryString(ctx, q)
}

// Executed returns what m has applied or written as probe reads it: MySQL @@gtid_executed,
// MariaDB the per-domain union of gtid_binlog_pos and gtid_slave_pos.
func (m *MariaDB) Executed(ctx context.Context) (string, error) {
	db, err := m.rootDB()
	if err != nil {
		return "", err
	}
	s, err := probe.Executed(ctx, db, m.Flavor)
	if err != nil {
		return "", fmt.Errorf("%s: %w", m.Name, err)
	}
	return s, nil
}

// SemiSyncConfig returns the my.cnf lines that make the server a semi-sync replica that
// acknowledges, with the source side off (keepraft switches it on for the owner) and
// waiting after sync without a timeout.
func (m *MariaDB) SemiSyncConfig() []string {
	if m.IsMySQL() {
		return []string{"rpl_semi_sync_source_enabled = OFF", "rpl_semi_sync_replica_enabled = ON",
			"rpl_semi_sync_source_wait_point = AFTER_SYNC", "rpl_semi_sync_source_timeout = 4294967295"}
	}
	return []string{"rpl_semi_sync_master_enabled = OFF", "rpl_semi_sync_slave_enabled = ON",
		"rpl_semi_sync_master_wait_point = AFTER_SYNC", "rpl_semi_sync_master_timeout = 4294967295"}
}

// SemiSyncSettingsSQL reads "<source enabled><replica enabled><wait point>" with ON/OFF
// on both flavors ("OFFONAFTER_SYNC" after SemiSyncConfig).
func (m *MariaDB) SemiSyncSettingsSQL() string {
	if m.IsMySQL() {
		return "SELECT CONCAT(IF(@@rpl_semi_sync_source_enabled, 'ON', 'OFF'), IF(@@rpl_semi_sync_replica_enabled, 'ON', 'OFF'), @@rpl_semi_sync_source_wait_point)"
	}
	return "SELECT CONCAT(@@rpl_semi_sync_master_enabled, @@rpl_semi_sync_slave_enabled, @@rpl_semi_sync_master_wait_point)"
}

// ExecAdmin runs statements as root on one connection even while the server is fenced. On
// MariaDB root bypasses read_only (READ ONLY ADMIN) and this is Exec of each statement; on
// MySQL super_read_only stops root too, so it is switched off for the statements and put back
// to the value it had (read_only stays as it was). Only for lab setup and tests that write
// "as an operator" (never while a keepraftd might fence the server concurrently: it could
// undo that fence).
func (m *MariaDB) ExecAdmin(ctx context.Context, stmts ...string) error {
	return m.execAdmin(ctx, false, stmts...)
}

// execAdmin is ExecAdmin, with sql_log_bin=0 when noBinlog.
func (m *MariaDB) execAdmin(ctx context.Context, noBinlog bool, stmts ...string) (err error) {
	db, err := m.rootDB()
	if err != nil {
		return err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("%s: connect: %w", m.Name, err)
	}
	defer func() {
		if noBinlog {
			// Never hand a connection with sql_log_bin=0 back to the pool.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		conn.Close()
	}()
	if noBinlog {
		if _, err := conn.ExecContext(ctx, "SET SESSION sql_log_bin=0"); err != nil {
			return fmt.Errorf("%s: set sql_log_bin=0: %w", m.Name, err)
		}
	}
	if m.IsMySQL() {
		var sro bool
		if err := conn.QueryRowContext(ctx, "SELECT @@GLOBAL.super_read_only").Scan(&sro); err != nil {
			return fmt.Errorf("%s: read super_read_only: %w", m.Name, err)
		}
		if sro {
			if _, err := conn.ExecContext(ctx, "SET GLOBAL super_read_only = 0"); err != nil {
				return fmt.Errorf("%s: lift super_read_only: %w", m.Name, err)
			}
			defer func() {
				if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), "SET GLOBAL super_read_only = 1"); rerr != nil && err == nil {
					err = fmt.Errorf("%s: restore super_read_only: %w", m.Name, rerr)
				}
			}()
		}
	}
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: exec %q: %w", m.Name, s, err)
		}
	}
	return nil
}

// replStatusRunning reads the IO and SQL thread columns of either flavor's status row.
func replStatusRunning(get map[string]string) (io, sqlRunning bool) {
	pick := func(names ...string) string {
		for _, n := range names {
			if v, ok := get[n]; ok {
				return v
			}
		}
		return ""
	}
	return pick("Slave_IO_Running", "Replica_IO_Running") == "Yes", pick("Slave_SQL_Running", "Replica_SQL_Running") == "Yes"
}

// mysqlGTIDSubset is the MySQL query WaitCaughtUp polls on the replica: whether the
// source's executed set (the argument) is contained in the replica's.
const mysqlGTIDSubset = "SELECT GTID_SUBSET(?, @@GLOBAL.gtid_executed)"

// trimGTID removes the newlines MySQL prints inside long GTID sets.
func trimGTID(s string) string { return strings.ReplaceAll(s, "\n", "") }
