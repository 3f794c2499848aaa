package probe

import (
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Grants returns the least-privilege GRANT statements for the daemon's account user@host (the
// account must exist). MariaDB names are those of 10.11; MySQL names are MySQL 8 dynamic
// privileges. Why each privilege is needed:
//
// MariaDB 10.11 (each one checked against a real server by this package's integration tests):
//   - PROCESS: information_schema.PROCESSLIST shows other accounts' connections (Fence).
//   - CONNECTION ADMIN: KILL CONNECTION of another account's thread (Fence).
//   - READ_ONLY ADMIN: SET GLOBAL read_only needs it (Fence, Promote). It also lets this account
//     write while read_only=1, which is why the write check skips read-only servers and why
//     applications must never use this account.
//   - SLAVE MONITOR (alias REPLICA MONITOR): SHOW REPLICA STATUS (Check, WaitCatchUp,
//     WaitRelayApplied).
//   - REPLICATION SLAVE ADMIN: STOP/START REPLICA (StopReplication, StartReplication).
//   - REPLICATION MASTER ADMIN: SET GLOBAL rpl_semi_sync_master_enabled (SetSemiSyncMaster,
//     used with mysql.semi_sync).
//   - SELECT on mysql.global_priv and mysql.roles_mapping: find the accounts holding READ ONLY
//     ADMIN directly or through roles (Check flags them, Fence kills their connections). Note:
//     global_priv also holds password hashes; no narrower source exists
//     (information_schema.USER_PRIVILEGES and SHOW GRANTS FOR need SELECT on the whole mysql
//     schema).
//   - CREATE, SELECT, INSERT, UPDATE on keepraft.*: creating the heartbeat table (the daemon
//     does not; the integration tests check it with their EnsureHeartbeat) and the write check
//     (INSERT ... ON DUPLICATE KEY UPDATE needs SELECT on the updated column: error 1143).
//
// Reading @@gtid_binlog_pos, @@gtid_slave_pos, global status and MASTER_GTID_WAIT need no
// privilege.
//
// MySQL 8.0.22+/8.4/9.x (each one checked against a real MySQL 9 by this package's
// integration tests, TestMySQLIntegGrantsLeastPrivilege):
//   - PROCESS: information_schema.PROCESSLIST shows other accounts' connections (Fence).
//   - CONNECTION_ADMIN: KILL CONNECTION of another account's thread (Fence).
//   - SYSTEM_VARIABLES_ADMIN: SET GLOBAL super_read_only / read_only (Fence, Promote) and
//     rpl_semi_sync_source_enabled (SetSemiSyncMaster). It does not bypass super_read_only.
//   - REPLICATION CLIENT: SHOW REPLICA STATUS (Check, WaitCatchUp, WaitRelayApplied).
//   - REPLICATION_SLAVE_ADMIN: STOP/START REPLICA (StopReplication, StartReplication).
//   - CREATE, INSERT, UPDATE on keepraft.*: creating the heartbeat table (as for MariaDB) and
//     the write check. Unlike MariaDB, MySQL needs no SELECT for the upsert (it reads no column).
//
// Reading @@gtid_executed, global status, @@pid_file and WAIT_FOR_EXECUTED_GTID_SET need no
// privilege.
//
// On MySQL, read_only does not stop CONNECTION_ADMIN holders, which is why Fence sets
// super_read_only.
func Grants(f Flavor, user, host string) []string {
	to := " TO " + quote(user) + "@" + quote(host)
	if f == FlavorMySQL {
		return []string{
			"GRANT PROCESS, REPLICATION CLIENT ON *.*" + to,
			"GRANT CONNECTION_ADMIN, SYSTEM_VARIABLES_ADMIN, REPLICATION_SLAVE_ADMIN ON *.*" + to,
			"GRANT CREATE, INSERT, UPDATE ON keepraft.*" + to,
		}
	}
	return []string{
		"GRANT PROCESS, CONNECTION ADMIN, READ_ONLY ADMIN, SLAVE MONITOR, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN ON *.*" + to,
		"GRANT SELECT ON mysql.global_priv" + to,
		"GRANT SELECT ON mysql.roles_mapping" + to,
		"GRANT CREATE, SELECT, INSERT, UPDATE ON keepraft.*" + to,
	}
}

// quote makes a single-quoted SQL string literal.
func quote(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// DSN returns a go-sql-driver/mysql DSN for the daemon's connections: TCP to host:port, dial and
// write timeouts of timeout, client-side parameter interpolation (one round trip per query, no
// prepared statements left on the server), parseTime, and connection liveness checks. There is
// no read timeout: WaitCatchUp holds a read open for its whole wait, so reads are bounded by the
// caller's context instead.
func DSN(host string, port int, user, password string, timeout time.Duration) string {
	c := mysql.NewConfig()
	c.Net = "tcp"
	c.Addr = net.JoinHostPort(host, strconv.Itoa(port))
	c.User = user
	c.Passwd = password
	c.Timeout = timeout
	c.WriteTimeout = timeout
	c.InterpolateParams = true
	c.ParseTime = true
	c.CheckConnLiveness = true
	return c.FormatDSN()
}
