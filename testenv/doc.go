// Package testenv owns the network-namespace lab: a bridge, hosts, MariaDB instances,
// keepalived peers, keepraftd nodes, fault injection and an event-driven tracker of VIP
// holders. Integration tests and `keepraft-lab` (make demo) build on it.
//
// # Topology
//
// [New] makes one namespace "<prefix>-br" holding the bridge br0, and per host a namespace
// "<prefix>-<host>" with a veth whose inside end is eth0 (198.18.0.x/24, up, lo up) and whose
// outside end (named after the host) is a port of br0. Veth ends are created directly in
// their namespaces; nothing is ever put in the root namespace. Default hosts and addresses:
// db1 .11, db2 .12, witness .13, client .20; other names get .21 upward. MACs are
// 02:00:c6:12:00:<last octet>. 198.18.0.100/32 ([DefaultVIP], Lab.VIP) is reserved for the VIP.
//
// # Tests
//
//	func TestX(t *testing.T) {
//		testenv.Require(t) // skip unless KEEPRAFT_INTEG=1; then fail if not root or a binary is missing
//		lab := testenv.NewT(t, testenv.Options{MariaDB: true}) // closed by t.Cleanup
//		db1 := lab.MariaDB("db1")
//		db, _ := sql.Open("mysql", db1.DSN(testenv.AppUser, testenv.AppPass, testenv.AppSchema))
//		tr, _ := lab.TrackHolders(ctx, lab.VIP.Addr())
//		...
//		if tr.MaxConcurrent() > 1 { t.Errorf("two holders: %+v", tr.Overlaps()) }
//	}
//
// Without namespaces: NewT(t, Options{NoNetwork: true}) and
// lab.StartMariaDB(ctx, nil, MariaDBOptions{}) give a server on 127.0.0.1 and a free port.
//
// # MariaDB
//
// [Lab.StartMariaDB] runs mariadb-install-db into Dir/mariadb-<name>/data, writes my.cnf
// (bind-address = host address, port 3306, socket data/mysqld.sock, server_id and
// gtid_domain_id N for dbN, log_bin, log_slave_updates, gtid_strict_mode, ROW, read_only=ON,
// auto_increment_increment 2 / offset N, slave_net_timeout 4, small buffers, own tmpdir) and
// starts mariadbd --user=root. Accounts, all created with sql_log_bin=0 on every server:
// root over the socket without password; repl/repl-pass; app/app-pass (SELECT, INSERT, UPDATE,
// DELETE, CREATE on kr.*, no READ ONLY ADMIN); keepraft/keepraft-pass with
// [DefaultDaemonGrants] (probe.Grants). Schemas: kr.writes, kr.lab_check and
// keepraft.heartbeat, also unlogged, so both servers start with empty GTID positions.
// [Lab.SetupDualMaster] replicates both ways with master_use_gtid=slave_pos and
// master_connect_retry=1 and checks one row each way. Two servers are up and replicating in
// about 1–2 s.
//
// # MySQL
//
// With Options.Flavor (or MariaDBOptions.Flavor) FlavorMySQL the servers are MySQL 9.x from
// Debian sid, which needs a newer libc than the host: [EnsureMySQLRoot] builds a debootstrap
// sid root with mysql-server once under [MySQLRootDir] (a flock serializes builders; later
// runs reuse it) and every mysqld runs chrooted into it, in a private mount namespace that
// bind-mounts the server's dir at the same path inside (so socket, pid file and my.cnf work
// from the host and the mounts vanish with the process). my.cnf: gtid_mode=ON,
// enforce_gtid_consistency, log_replica_updates, read_only and super_read_only ON, server_id
// and auto_increment_offset N, both semi-sync plugins loaded (off). Replication uses
// CHANGE REPLICATION SOURCE TO ... SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1 (the
// accounts use caching_sha2_password). The flavor-specific SQL is in flavor.go; the same
// helpers (Exec, QueryString, Kill, Stop, Start, DSN, ReplicationStatus, WaitCaughtUp,
// StopReplicaIO, GTIDState, ExecAdmin) work on both. [RequireMySQL] fails a test under
// KEEPRAFT_INTEG=1 when the root cannot be built.
//
// Because testenv imports probe (for the grants), probe's own tests that use testenv must be
// in package probe_test.
//
// # Processes
//
// [Lab.Spawn] runs each process as its own process-group leader with stdout and stderr
// appended to Dir/logs/<name>.log. Unless Options.Detach is set, children get SIGKILL when the
// Go process dies (Pdeathsig, forked from one locked OS thread that never exits). When a
// group leader exits, what remains of its group is killed before it is reaped. [Lab.Close]
// sends SIGTERM (plus SIGCONT, for frozen ones) to every process, SIGKILL after
// Options.StopTimeout, then kills by PID anything still running inside the lab's namespaces
// (never this process), deletes the namespaces and the registry entry, and joins every error.
//
// # State and crashed runs
//
// The lab's state (prefix, namespaces, processes with their /proc start time, MariaDB
// servers) is written to Dir/state.json, to [RegistryDir]/<prefix>.json and to
// Options.StatePath. [Attach] rebuilds a Lab from it in another process; a PID is signalled
// only while its start time matches. [New] first removes labs whose owner process is dead
// ([CleanStale]); [CleanOrphanNamespaces] removes lab-named namespaces no registry entry knows.
//
// # Faults and tracking
//
// [Lab.CutLink] sets the host's bridge port down; [Lab.Partition] installs an nftables table
// inside the two namespaces that drops IPv4 between them (both directions; others and ARP are
// unaffected). [Lab.TrackHolders] subscribes to RTNLGRP_IPV4_IFADDR in every host namespace
// (netlink.AddrSubscribeWithOptions with a namespace handle), seeds from a dump, and stamps
// every notification on receipt with one clock, so an overlap is measured across namespaces
// to within goroutine scheduling delay (microseconds idle; keep that in mind when judging
// overlaps shorter than a millisecond on a loaded machine).
package testenv
