package probe

import (
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Flavor names the server family, which decides the GTID format and the SQL used.
type Flavor string

// The supported flavors.
const (
	FlavorMariaDB Flavor = "mariadb"
	FlavorMySQL   Flavor = "mysql"
)

// ErrBadGTID is wrapped by every [ParseGTIDSet] error; the message names the bad token.
var ErrBadGTID = errors.New("bad gtid")

// GTIDSet is a parsed GTID set of either flavor. The zero value is an empty set of no flavor,
// which every set contains. A GTIDSet is immutable: methods return new sets, so values may be
// shared between goroutines.
//
// MySQL sets are per-source (server UUID plus optional tag, MySQL 8.3+) lists of closed
// intervals of transaction numbers. MariaDB sets are GTID positions: for each (domain, server)
// the last sequence number; comparisons use the highest sequence number of each domain, which is
// exact under gtid_strict_mode (sequence numbers then grow by one per transaction in a domain).
type GTIDSet struct {
	flavor Flavor
	mysql  map[mysqlSource][]interval // sorted, merged, non-empty
	maria  map[uint32]map[uint32]uint64
}

type mysqlSource struct {
	uuid [16]byte
	tag  string // lower case; "" untagged
}

type interval struct{ lo, hi uint64 } // closed, 1 <= lo <= hi

// maxGNO is the largest transaction number MySQL accepts (2^63-1).
const maxGNO = math.MaxInt64

// ParseGTIDSet parses s in flavor f. Blanks and newlines around tokens are ignored (MySQL prints
// gtid_executed with ",\n"). The empty string is the empty set. Errors wrap [ErrBadGTID] and name
// the offending token.
func ParseGTIDSet(f Flavor, s string) (GTIDSet, error) {
	switch f {
	case FlavorMySQL:
		return parseMySQL(s)
	case FlavorMariaDB:
		return parseMariaDB(s)
	default:
		return GTIDSet{}, fmt.Errorf("parse gtid set: unknown flavor %q", f)
	}
}

func badToken(tok, why string) error {
	return fmt.Errorf("%w: token %q: %s", ErrBadGTID, tok, why)
}

func parseMariaDB(s string) (GTIDSet, error) {
	g := GTIDSet{flavor: FlavorMariaDB, maria: map[uint32]map[uint32]uint64{}}
	if strings.TrimSpace(s) == "" {
		return g, nil
	}
	for raw := range strings.SplitSeq(s, ",") {
		tok := strings.TrimSpace(raw)
		parts := strings.Split(tok, "-")
		if len(parts) != 3 {
			return GTIDSet{}, badToken(tok, "want domain-server-seq")
		}
		d, err := parseUint(parts[0], 32)
		if err != nil {
			return GTIDSet{}, badToken(tok, "domain: "+err.Error())
		}
		srv, err := parseUint(parts[1], 32)
		if err != nil {
			return GTIDSet{}, badToken(tok, "server id: "+err.Error())
		}
		seq, err := parseUint(parts[2], 64)
		if err != nil {
			return GTIDSet{}, badToken(tok, "sequence number: "+err.Error())
		}
		dom := g.maria[uint32(d)]
		if dom == nil {
			dom = map[uint32]uint64{}
			g.maria[uint32(d)] = dom
		}
		dom[uint32(srv)] = max(dom[uint32(srv)], seq)
	}
	return g, nil
}

// parseUint accepts plain decimal digits only (no sign, no blanks).
func parseUint(s string, bits int) (uint64, error) {
	if s == "" {
		return 0, errors.New("empty number")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", s)
		}
	}
	v, err := strconv.ParseUint(s, 10, bits)
	if err != nil {
		return 0, fmt.Errorf("%q out of range", s)
	}
	return v, nil
}

func parseMySQL(s string) (GTIDSet, error) {
	g := GTIDSet{flavor: FlavorMySQL, mysql: map[mysqlSource][]interval{}}
	if strings.TrimSpace(s) == "" {
		return g, nil
	}
	acc := map[mysqlSource][]interval{}
	for raw := range strings.SplitSeq(s, ",") {
		tok := strings.TrimSpace(raw)
		parts := strings.Split(tok, ":")
		uuid, err := parseUUID(strings.TrimSpace(parts[0]))
		if err != nil {
			return GTIDSet{}, badToken(tok, err.Error())
		}
		src := mysqlSource{uuid: uuid}
		tagOpen := false // a tag was named and has no interval yet
		for _, p := range parts[1:] {
			p = strings.TrimSpace(p)
			if p == "" {
				return GTIDSet{}, badToken(tok, "empty element")
			}
			if c := p[0]; c >= '0' && c <= '9' {
				iv, err := parseInterval(p)
				if err != nil {
					return GTIDSet{}, badToken(tok, err.Error())
				}
				acc[src] = append(acc[src], iv)
				tagOpen = false
				continue
			}
			if tagOpen {
				return GTIDSet{}, badToken(tok, fmt.Sprintf("tag %q has no interval", src.tag))
			}
			tag, err := parseTag(p)
			if err != nil {
				return GTIDSet{}, badToken(tok, err.Error())
			}
			src.tag = tag
			tagOpen = true
		}
		if tagOpen {
			return GTIDSet{}, badToken(tok, fmt.Sprintf("tag %q has no interval", src.tag))
		}
	}
	for src, ivs := range acc {
		g.mysql[src] = normalize(ivs)
	}
	return g, nil
}

func parseUUID(s string) ([16]byte, error) {
	var u [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, fmt.Errorf("%q is not a uuid", s)
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, fmt.Errorf("%q is not a uuid", s)
	}
	return u, nil
}

func formatUUID(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// parseTag follows MySQL 8.3: a letter or underscore, then up to 31 letters, digits or
// underscores; case-insensitive, stored in lower case.
func parseTag(s string) (string, error) {
	if len(s) > 32 {
		return "", fmt.Errorf("tag %q longer than 32 characters", s)
	}
	for i, c := range s {
		ok := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9')
		if !ok {
			return "", fmt.Errorf("%q is neither an interval nor a tag", s)
		}
	}
	return strings.ToLower(s), nil
}

func parseInterval(s string) (interval, error) {
	lo, hi, dash := strings.Cut(s, "-")
	a, err := parseUint(lo, 64)
	if err != nil {
		return interval{}, fmt.Errorf("interval %q: %w", s, err)
	}
	b := a
	if dash {
		if b, err = parseUint(hi, 64); err != nil {
			return interval{}, fmt.Errorf("interval %q: %w", s, err)
		}
	}
	switch {
	case a == 0:
		return interval{}, fmt.Errorf("interval %q: transaction numbers start at 1", s)
	case b > maxGNO:
		return interval{}, fmt.Errorf("interval %q: above 2^63-1", s)
	case b < a:
		return interval{}, fmt.Errorf("interval %q: end before start", s)
	}
	return interval{a, b}, nil
}

// normalize sorts and merges overlapping or adjacent intervals.
func normalize(ivs []interval) []interval {
	ivs = slices.Clone(ivs)
	slices.SortFunc(ivs, func(a, b interval) int {
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	out := ivs[:0]
	for _, iv := range ivs {
		if n := len(out); n > 0 && iv.lo <= out[n-1].hi+1 {
			out[n-1].hi = max(out[n-1].hi, iv.hi)
			continue
		}
		out = append(out, iv)
	}
	return out
}

// IsEmpty reports whether the set holds no GTID.
func (g GTIDSet) IsEmpty() bool { return len(g.mysql) == 0 && len(g.maria) == 0 }

// String formats the set canonically: MySQL sources sorted by UUID, untagged intervals before
// tagged ones, tags sorted; MariaDB entries sorted by domain then server id. The output parses back
// to an equal set and is accepted by the server (WAIT_FOR_EXECUTED_GTID_SET, MASTER_GTID_WAIT).
func (g GTIDSet) String() string {
	var b strings.Builder
	switch g.flavor {
	case FlavorMySQL:
		srcs := slices.SortedFunc(maps.Keys(g.mysql), cmpSource)
		var last [16]byte
		for i, src := range srcs {
			if i == 0 || src.uuid != last {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(formatUUID(src.uuid))
				last = src.uuid
			}
			if src.tag != "" {
				b.WriteByte(':')
				b.WriteString(src.tag)
			}
			for _, iv := range g.mysql[src] {
				b.WriteByte(':')
				b.WriteString(strconv.FormatUint(iv.lo, 10))
				if iv.hi != iv.lo {
					b.WriteByte('-')
					b.WriteString(strconv.FormatUint(iv.hi, 10))
				}
			}
		}
	case FlavorMariaDB:
		first := true
		for _, d := range slices.Sorted(maps.Keys(g.maria)) {
			dom := g.maria[d]
			for _, srv := range slices.Sorted(maps.Keys(dom)) {
				if !first {
					b.WriteByte(',')
				}
				first = false
				fmt.Fprintf(&b, "%d-%d-%d", d, srv, dom[srv])
			}
		}
	}
	return b.String()
}

func cmpSource(a, b mysqlSource) int {
	if c := slices.Compare(a.uuid[:], b.uuid[:]); c != 0 {
		return c
	}
	return strings.Compare(a.tag, b.tag)
}

// Contains reports whether every GTID of o is in g. MySQL: interval containment per source.
// MariaDB: for every domain of o, g's highest sequence number in that domain is at least o's.
// A set of the other flavor is contained only when it is empty.
func (g GTIDSet) Contains(o GTIDSet) bool {
	if o.IsEmpty() {
		return true
	}
	if g.flavor != o.flavor {
		return false
	}
	return g.Missing(o).IsEmpty()
}

// Missing returns what o has that g lacks. MySQL: the exact set difference o−g. MariaDB: for each
// domain where g's highest sequence number is below o's, o's entries of that domain that are
// beyond g (a position, since a GTID list cannot express ranges). If the flavors differ, all of o is missing.
func (g GTIDSet) Missing(o GTIDSet) GTIDSet {
	if g.flavor != o.flavor && !g.IsEmpty() {
		return o
	}
	switch o.flavor {
	case FlavorMySQL:
		out := GTIDSet{flavor: FlavorMySQL, mysql: map[mysqlSource][]interval{}}
		for src, ivs := range o.mysql {
			if d := subtract(ivs, g.mysql[src]); len(d) > 0 {
				out.mysql[src] = d
			}
		}
		return out
	case FlavorMariaDB:
		out := GTIDSet{flavor: FlavorMariaDB, maria: map[uint32]map[uint32]uint64{}}
		for d, dom := range o.maria {
			have := maxSeq(g.maria[d])
			for srv, seq := range dom {
				if seq > have {
					if out.maria[d] == nil {
						out.maria[d] = map[uint32]uint64{}
					}
					out.maria[d][srv] = seq
				}
			}
		}
		return out
	}
	return GTIDSet{}
}

func maxSeq(dom map[uint32]uint64) uint64 {
	var m uint64
	for _, s := range dom {
		m = max(m, s)
	}
	return m
}

// subtract returns a−b for sorted, merged interval lists.
func subtract(a, b []interval) []interval {
	var out []interval
	j := 0
	for _, iv := range a {
		lo := iv.lo
		for j < len(b) && b[j].hi < lo {
			j++
		}
		k := j
		for k < len(b) && b[k].lo <= iv.hi {
			if b[k].lo > lo {
				out = append(out, interval{lo, b[k].lo - 1})
			}
			if b[k].hi >= iv.hi {
				lo = iv.hi + 1
				break
			}
			lo = b[k].hi + 1
			k++
		}
		if lo <= iv.hi {
			out = append(out, interval{lo, iv.hi})
		}
	}
	return out
}

// Domain returns only the MariaDB domain id of g. A MySQL set has no domains and is returned
// unchanged.
func (g GTIDSet) Domain(id uint32) GTIDSet {
	if g.flavor != FlavorMariaDB {
		return g
	}
	out := GTIDSet{flavor: FlavorMariaDB, maria: map[uint32]map[uint32]uint64{}}
	if dom, ok := g.maria[id]; ok {
		out.maria[id] = maps.Clone(dom)
	}
	return out
}

// Union returns the GTIDs of g and o together. MariaDB keeps, per (domain, server), the higher
// sequence number. Sets of different flavors cannot be merged; the non-empty one wins, or g when
// both are non-empty.
func (g GTIDSet) Union(o GTIDSet) GTIDSet {
	switch {
	case o.IsEmpty():
		return g
	case g.IsEmpty():
		return o
	case g.flavor != o.flavor:
		return g
	}
	if g.flavor == FlavorMySQL {
		out := GTIDSet{flavor: FlavorMySQL, mysql: map[mysqlSource][]interval{}}
		for src, ivs := range g.mysql {
			out.mysql[src] = ivs
		}
		for src, ivs := range o.mysql {
			out.mysql[src] = normalize(append(slices.Clone(out.mysql[src]), ivs...))
		}
		return out
	}
	out := GTIDSet{flavor: FlavorMariaDB, maria: map[uint32]map[uint32]uint64{}}
	for _, s := range []GTIDSet{g, o} {
		for d, dom := range s.maria {
			if out.maria[d] == nil {
				out.maria[d] = map[uint32]uint64{}
			}
			for srv, seq := range dom {
				out.maria[d][srv] = max(out.maria[d][srv], seq)
			}
		}
	}
	return out
}
