package probe

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"math"
	"slices"
)

// Test helpers shared by the internal tests and, through the exported names below, by the
// integration tests in package probe_test (which cannot import testenv from package probe).

// mustParseGTIDSet is ParseGTIDSet for constants in tests; it panics on error.
func mustParseGTIDSet(f Flavor, s string) GTIDSet {
	g, err := ParseGTIDSet(f, s)
	if err != nil {
		panic(err)
	}
	return g
}

// equalSets reports whether g and o hold exactly the same GTIDs (for MariaDB: the same entries
// for every (domain, server)). Two empty sets are equal whatever their flavor.
func equalSets(g, o GTIDSet) bool {
	if g.IsEmpty() || o.IsEmpty() {
		return g.IsEmpty() && o.IsEmpty()
	}
	if g.flavor != o.flavor {
		return false
	}
	switch g.flavor {
	case FlavorMySQL:
		return maps.EqualFunc(g.mysql, o.mysql, slices.Equal)
	default:
		return maps.EqualFunc(g.maria, o.maria, maps.Equal)
	}
}

// countMissing returns how many transactions o has that g lacks: the size of the MySQL set
// difference, or for MariaDB the sum over domains of the sequence-number gap (exact under
// gtid_strict_mode). It saturates at math.MaxUint64.
func countMissing(g, o GTIDSet) uint64 {
	var n uint64
	add := func(k uint64) {
		if n+k < n {
			n = math.MaxUint64
			return
		}
		n += k
	}
	m := g.Missing(o)
	for _, ivs := range m.mysql {
		for _, iv := range ivs {
			add(iv.hi - iv.lo + 1)
		}
	}
	for d, dom := range m.maria {
		if g.flavor == o.flavor {
			add(maxSeq(dom) - maxSeq(g.maria[d]))
		} else {
			add(maxSeq(dom))
		}
	}
	return n
}

// CountMissing is countMissing for the integration tests.
var CountMissing = countMissing

// SetBeforeUpsert makes p's write check call f between its read of read_only and its upsert.
func SetBeforeUpsert(p *Prober, f func()) { p.beforeUpsert = f }

// heartbeatSchema creates the table the write check uses. One row per server_id, so the two
// masters never write the same row.
var heartbeatSchema = []string{
	"CREATE DATABASE IF NOT EXISTS keepraft",
	"CREATE TABLE IF NOT EXISTS keepraft.heartbeat (server_id INT UNSIGNED NOT NULL PRIMARY KEY, " +
		"ts TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB",
}

// EnsureHeartbeat creates the schema keepraft and its table heartbeat (server_id INT UNSIGNED
// primary key, ts TIMESTAMP(6)), which the write check upserts, unless they exist, for the
// integration tests (the daemon never creates it). Run it on a writable server; the
// statements replicate.
func EnsureHeartbeat(ctx context.Context, db *sql.DB) error {
	for _, stmt := range heartbeatSchema {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("create heartbeat schema: %w", err)
		}
	}
	return nil
}

// ExtraTransactions returns the GTIDs of the old owner's own domain that the old owner has and
// the new owner lacks: transactions written to the old owner's binlog and never shipped. On
// MySQL domain is ignored and the whole difference is returned. It is the set the owner's
// rejoin check journals (see package owner), kept here to test GTIDSet.Domain and Missing
// together against real servers.
func ExtraTransactions(oldOwner, newOwner GTIDSet, domain uint32) GTIDSet {
	return newOwner.Missing(oldOwner.Domain(domain))
}
