// Package probe owns MySQL/MariaDB health checks, GTID-set parsing and the SQL steps of
// fencing and promotion.
//
// [Prober.Check] probes one server under a per-check timeout and reports a [Health];
// [Debouncer] turns single results into rise/fall-debounced transitions. [GTIDSet] parses and
// compares GTID sets of both flavors (MySQL interval sets including 8.3 tagged GTIDs, MariaDB
// domain-server-seq positions). [Fence] and [Prober.Fence], [ReadOnly], [WaitCatchUp],
// [WaitRelayApplied], [Promote], [StopReplication] and [StartReplication] are the SQL side of
// handover and rejoin, and [Grants] lists the least privileges the daemon's account needs for
// all of them.
//
// Server facts the code relies on (checked against MariaDB 10.11.19 by the integration tests):
// MariaDB has no super_read_only, and read_only does not stop accounts holding READ ONLY ADMIN
// (ALL PRIVILEGES includes it, SUPER no longer does), so Check lists the accounts that hold it,
// root included, and Fence kills their connections; an ordinary account's open transaction fails at COMMIT with error 1290 once read_only
// is set, so the GTID set read after fencing is final; MASTER_GTID_WAIT compares per domain
// against gtid_slave_pos and blocks for a domain that gtid_slave_pos lacks, so WaitCatchUp waits
// only on the old owner's domain.
//
// Every function that talks to a server takes a context and honours its deadline; none keeps
// state between calls but the Prober's lock between its write check and its Fence, so all are
// safe for concurrent use. Nothing here logs except the Prober
// (at Debug, per check).
package probe
