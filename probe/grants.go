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
//   - CREATE, SELECT, INSERT, UPDATE on keepraft.*: EnsureHeartbeat and the write check
//     (INSERT ... ON DUPLICATE KEY UPDATE needs SELECT on the updated column: error 1143).
//
// Reading @@gtid_binlog_pos, @@gtid_slave_pos, global status and MASTER_GTID_WAIT need no
// privilege.
//
// MySQL 8 (not verified here; no MySQL server in the lab):
//   - PROCESS, CONNECTION_ADMIN: see and kill other accounts' connections.
//   - SYSTEM_VARIABLES_ADMIN: SET GLOBAL super_read_only / read_only, and the semi-sync
//     source switch (SetSemiSyncMaster).
//   - REPLICATION CLIENT: SHOW REPLICA STATUS.
//   - REPLICATION_SLAVE_ADMIN: STOP/START REPLICA.
//   - CREATE, SELECT, INSERT, UPDATE on keepraft.*: the write check.
//
// On MySQL, read_only does not stop CONNECTION_ADMIN holders, which is why Fence sets
// super_read_only.
func Grants(f Flavor, user, host string) []string {
	to := " TO " + quote(user) + "@" + quote(host)
	if f == FlavorMySQL {
		return []string{
			"GRANT PROCESS, REPLICATION CLIENT ON *.*" + to,
			"GRANT CONNECTION_ADMIN, SYSTEM_VARIABLES_ADMIN, REPLICATION_SLAVE_ADMIN ON *.*" + to,
			"GRANT CREATE, SELECT, INSERT, UPDATE ON keepraft.*" + to,
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
