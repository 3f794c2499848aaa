package testenv

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
)

func newTestTracker(vip netip.Addr) *Tracker {
	return &Tracker{vip: vip, log: zap.NewNop(), start: time.Now(), addrs: map[string]map[int]bool{}, fences: map[string]fenceState{}, held: map[string]bool{},
		since: map[string]time.Time{}, noneAt: map[string]time.Time{}, changed: make(chan struct{}), done: make(chan struct{})}
}

type step struct {
	host  string
	add   bool
	addr  string // "fence" sets host's fence instead (open for link ms; link -1: closed); "tick" re-evaluates
	link  int
	after time.Duration // since the tracker's base time
}

func TestTrackerApply(t *testing.T) {
	vipAddr := netip.MustParseAddr("198.18.0.100")
	tests := []struct {
		name         string
		give         []step
		wantHolders  []string
		wantMax      int
		wantOverlaps []string // "hosts start-end" in ms offsets; end -1 = ongoing
	}{
		{name: "sequential move", give: []step{
			{"db1", true, "198.18.0.100", 2, 0}, {"db1", false, "198.18.0.100", 2, 10}, {"db2", true, "198.18.0.100", 2, 20},
		}, wantHolders: []string{"db2"}, wantMax: 1},
		{name: "overlap then heal", give: []step{
			{"db1", true, "198.18.0.100", 2, 0}, {"db2", true, "198.18.0.100", 2, 10}, {"db1", false, "198.18.0.100", 2, 30},
		}, wantHolders: []string{"db2"}, wantMax: 2, wantOverlaps: []string{"[db1 db2] 10-30"}},
		{name: "ongoing overlap of three", give: []step{
			{"db1", true, "198.18.0.100", 2, 0}, {"db2", true, "198.18.0.100", 2, 5}, {"db3", true, "198.18.0.100", 2, 6},
			{"db1", false, "198.18.0.100", 2, 7},
		}, wantHolders: []string{"db2", "db3"}, wantMax: 3, wantOverlaps: []string{"[db1 db2 db3] 5--1"}},
		{name: "renewal and other addresses ignored", give: []step{
			{"db1", true, "198.18.0.100", 2, 0}, {"db1", true, "198.18.0.100", 2, 5}, {"db2", true, "198.18.0.12", 2, 6},
			{"db2", false, "198.18.0.101", 2, 7},
		}, wantHolders: []string{"db1"}, wantMax: 1},
		{name: "two links on one host", give: []step{
			{"db1", true, "198.18.0.100", 2, 0}, {"db1", true, "198.18.0.100", 3, 1}, {"db1", false, "198.18.0.100", 2, 2},
		}, wantHolders: []string{"db1"}, wantMax: 1},
		{name: "a fenced address does not hold: no overlap", give: []step{
			{"db1", true, "fence", 100, 0}, {"db1", true, "198.18.0.100", 2, 0}, {"db2", true, "198.18.0.100", 2, 150},
		}, wantHolders: []string{"db2"}, wantMax: 1},
		{name: "fence still open: overlap until it times out", give: []step{
			{"db1", true, "fence", 300, 0}, {"db1", true, "198.18.0.100", 2, 0}, {"db2", true, "198.18.0.100", 2, 150}, {"", true, "tick", 0, 310},
		}, wantHolders: []string{"db2"}, wantMax: 2, wantOverlaps: []string{"[db1 db2] 150-310"}},
		{name: "a fence reopened later holds again", give: []step{
			{"db1", true, "fence", -1, 0}, {"db1", true, "198.18.0.100", 2, 0}, {"db2", true, "198.18.0.100", 2, 10}, {"db1", true, "fence", 500, 20},
		}, wantHolders: []string{"db1", "db2"}, wantMax: 2, wantOverlaps: []string{"[db1 db2] 20--1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTestTracker(vipAddr)
			base := time.Now()
			for _, s := range tt.give {
				at := base.Add(s.after * time.Millisecond)
				switch s.addr {
				case "fence":
					st := fenceState{table: true}
					if s.link >= 0 {
						st.openUntil = at.Add(time.Duration(s.link) * time.Millisecond)
					}
					tr.mu.Lock()
					tr.fences[s.host] = st
					tr.recomputeLocked(at)
					tr.mu.Unlock()
					continue
				case "tick":
					tr.mu.Lock()
					tr.recomputeLocked(at)
					tr.mu.Unlock()
					continue
				}
				u := netlink.AddrUpdate{LinkAddress: net.IPNet{IP: net.ParseIP(s.addr).To4(), Mask: net.CIDRMask(32, 32)},
					LinkIndex: s.link, NewAddr: s.add}
				tr.apply(s.host, u, base.Add(s.after*time.Millisecond))
			}
			if got := tr.Holders(); !slices.Equal(got, tt.wantHolders) {
				t.Errorf("Holders() = %v, want %v", got, tt.wantHolders)
			}
			if got := tr.MaxConcurrent(); got != tt.wantMax {
				t.Errorf("MaxConcurrent() = %d, want %d", got, tt.wantMax)
			}
			var got []string
			for _, o := range tr.Overlaps() {
				end := int64(-1)
				if !o.End.IsZero() {
					end = o.End.Sub(base).Milliseconds()
				}
				got = append(got, fmt.Sprintf("%v %d-%d", o.Hosts, o.Start.Sub(base).Milliseconds(), end))
			}
			if !slices.Equal(got, tt.wantOverlaps) {
				t.Errorf("Overlaps() = %v, want %v", got, tt.wantOverlaps)
			}
		})
	}
}

func TestTrackerWait(t *testing.T) {
	tr := newTestTracker(netip.MustParseAddr("198.18.0.100"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	at := time.Now()
	go tr.apply("db1", netlink.AddrUpdate{LinkAddress: net.IPNet{IP: net.IPv4(198, 18, 0, 100).To4(), Mask: net.CIDRMask(32, 32)}, LinkIndex: 2, NewAddr: true}, at)
	got, err := tr.WaitHolder(ctx, "db1")
	if err != nil || !got.Equal(at) {
		t.Fatalf("WaitHolder = %v, %v; want %v", got, err, at)
	}
	if got, err := tr.WaitNone(ctx, "db2"); err != nil || !got.Equal(tr.start) {
		t.Fatalf("WaitNone(db2) = %v, %v; want tracker start", got, err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := tr.WaitNone(short, "db1"); err == nil {
		t.Fatalf("WaitNone(db1) returned while db1 holds the vip")
	}
}

func TestFormatEvents(t *testing.T) {
	base := time.Date(2026, 12, 2, 23, 46, 38, 0, time.UTC)
	ev := func(host string, added bool, ms int) AddrEvent {
		return AddrEvent{Host: host, Added: added, At: base.Add(time.Duration(ms) * time.Millisecond), ValidLft: 1}
	}
	tests := []struct {
		name string
		give []AddrEvent
		want string
	}{
		{name: "none", want: ""},
		{name: "renewals counted on the add", give: []AddrEvent{
			ev("db1", true, 0), ev("db1", true, 166), ev("db1", true, 333), ev("db1", false, 400), ev("db2", true, 450),
		}, want: "  23:46:38.000 db1 added valid_lft=1 (renewed 2 times)\n" +
			"  23:46:38.400 db1 removed valid_lft=1\n" +
			"  23:46:38.450 db2 added valid_lft=1"},
		{name: "an overlap keeps each host's renewal", give: []AddrEvent{
			ev("db1", true, 0), ev("db2", true, 10), ev("db1", true, 20), ev("db1", true, 30), ev("db1", false, 40),
		}, want: "  23:46:38.000 db1 added valid_lft=1\n" +
			"  23:46:38.010 db2 added valid_lft=1\n" +
			"  23:46:38.020 db1 renewed valid_lft=1 (renewed 1 times)\n" +
			"  23:46:38.040 db1 removed valid_lft=1"},
		{name: "seeded", give: []AddrEvent{{Host: "db1", Added: true, At: base, ValidLft: 1, Seed: true}},
			want: "  23:46:38.000 db1 added (held when tracking began) valid_lft=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FormatEvents(tt.give); got != tt.want {
				t.Errorf("FormatEvents() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}
