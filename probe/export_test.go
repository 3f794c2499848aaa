package probe

import (
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
