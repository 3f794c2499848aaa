package node

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"go.uber.org/zap/zaptest"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/vrrp"
)

// series collects cs and flattens them to "name{label=value,...}" → value; a histogram
// gives name_count and name_sum.
func series(t *testing.T, cs ...prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(cs...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			key := func(suffix string) string { return mf.GetName() + suffix + "{" + strings.Join(ls, ",") + "}" }
			switch {
			case m.Gauge != nil:
				out[key("")] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[key("")] = m.GetCounter().GetValue()
			case m.Histogram != nil:
				out[key("_count")] = float64(m.GetHistogram().GetSampleCount())
				out[key("_sum")] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// only keeps the entries of got whose name starts with prefix.
func only(got map[string]float64, prefix string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range got {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

func diffSeries(t *testing.T, got, want map[string]float64) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[k]; !ok {
			t.Errorf("%s missing, want %v", k, want[k])
		} else if g != want[k] {
			t.Errorf("%s = %v, want %v", k, g, want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %s = %v", k, got[k])
		}
	}
}

// rec builds an applied journal record of type typ with payload p, stamped at.
func rec(t *testing.T, typ fsm.Type, at time.Time, p any) fsm.Record {
	t.Helper()
	ev, err := fsm.NewEvent(typ, "db1", at, 1, "", p)
	if err != nil {
		t.Fatal(err)
	}
	return fsm.Record{Event: ev, Result: fsm.ResultApplied}
}

func TestFailoverSeries(t *testing.T) {
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }
	assigned := func(sec float64, reason string) func(*testing.T) fsm.Record {
		return func(t *testing.T) fsm.Record {
			return rec(t, fsm.OwnerAssigned, at(sec), fsm.AssignData{Owner: "db2", Reason: reason})
		}
	}
	promoted := func(sec float64) func(*testing.T) fsm.Record {
		return func(t *testing.T) fsm.Record {
			return rec(t, fsm.OwnerPromoted, at(sec), fsm.PromotedData{Owner: "db2"})
		}
	}
	revoked := func(sec float64, reason string) func(*testing.T) fsm.Record {
		return func(t *testing.T) fsm.Record {
			return rec(t, fsm.OwnerRevoked, at(sec), fsm.RevokeData{Owner: "db1", Reason: reason})
		}
	}
	released := func(sec float64, reason string) func(*testing.T) fsm.Record {
		return func(t *testing.T) fsm.Record {
			return rec(t, fsm.OwnerReleased, at(sec), fsm.ReleaseData{Owner: "db1", Reason: reason})
		}
	}
	switchover := func(sec float64) func(*testing.T) fsm.Record {
		return func(t *testing.T) fsm.Record {
			return rec(t, fsm.SwitchoverRequested, at(sec), fsm.SwitchoverData{To: "db2"})
		}
	}
	failed := func(sec float64) func(*testing.T) fsm.Record {
		return func(t *testing.T) fsm.Record {
			return rec(t, fsm.PromotionFailed, at(sec), fsm.PromotionFailedData{Owner: "db2", Reason: "overdue"})
		}
	}
	stale := func(f func(*testing.T) fsm.Record) func(*testing.T) fsm.Record {
		return func(t *testing.T) fsm.Record {
			r := f(t)
			r.Result = fsm.ResultStale
			return r
		}
	}
	tests := []struct {
		name string
		// started is the process start, in seconds after start.
		started float64
		records []func(*testing.T) fsm.Record
		want    map[string]float64
	}{
		{
			name:    "initial assignment is counted, no handover observed",
			records: []func(*testing.T) fsm.Record{assigned(1, "initial assignment"), promoted(2)},
			want:    map[string]float64{"keepraft_failovers_total{reason=initial}": 1},
		},
		{
			name: "unhealthy owner: revoke, release, assign, promote",
			records: []func(*testing.T) fsm.Record{assigned(0, "initial assignment"), promoted(1),
				revoked(10, "owner db1 unhealthy: connection refused"), released(10.5, "ownership revoked by the controller"),
				assigned(11, "db1 released: ownership revoked by the controller"), promoted(12.5)},
			want: map[string]float64{
				"keepraft_failovers_total{reason=initial}":                         1,
				"keepraft_failovers_total{reason=owner_unhealthy}":                 1,
				"keepraft_failover_duration_seconds_count{reason=owner_unhealthy}": 1,
				"keepraft_failover_duration_seconds_sum{reason=owner_unhealthy}":   2.5,
			},
		},
		{
			name:    "unreachable owner",
			records: []func(*testing.T) fsm.Record{revoked(20, "owner db1 unreachable: no lease renewal seen by any reachable voter"), assigned(23, "db1 revoked and its lease expired"), promoted(24)},
			want: map[string]float64{
				"keepraft_failovers_total{reason=owner_unreachable}":                 1,
				"keepraft_failover_duration_seconds_count{reason=owner_unreachable}": 1,
				"keepraft_failover_duration_seconds_sum{reason=owner_unreachable}":   4,
			},
		},
		{
			name:    "removed owner",
			records: []func(*testing.T) fsm.Record{revoked(1, "owner is no longer a member"), assigned(2, "db1 revoked and its lease expired"), promoted(3)},
			want: map[string]float64{
				"keepraft_failovers_total{reason=owner_removed}":                 1,
				"keepraft_failover_duration_seconds_count{reason=owner_removed}": 1,
				"keepraft_failover_duration_seconds_sum{reason=owner_removed}":   2,
			},
		},
		{
			name:    "switchover: the request begins the handover, the revoke does not restart it",
			records: []func(*testing.T) fsm.Record{switchover(5), released(5.5, "switchover requested"), assigned(5.75, "switchover"), promoted(6)},
			want: map[string]float64{
				"keepraft_failovers_total{reason=switchover}":                 1,
				"keepraft_failover_duration_seconds_count{reason=switchover}": 1,
				"keepraft_failover_duration_seconds_sum{reason=switchover}":   1,
			},
		},
		{
			name: "the owner releases on its own unhealthy MySQL before any revoke; a late revoke is stale",
			records: []func(*testing.T) fsm.Record{released(2, "local mysqld unhealthy"), stale(revoked(2.1, "owner db1 unhealthy: x")),
				assigned(2.2, "db1 released: local mysqld unhealthy"), promoted(2.5)},
			want: map[string]float64{
				"keepraft_failovers_total{reason=owner_unhealthy}":                 1,
				"keepraft_failover_duration_seconds_count{reason=owner_unhealthy}": 1,
				"keepraft_failover_duration_seconds_sum{reason=owner_unhealthy}":   0.5,
			},
		},
		{
			name:    "graceful stop of the owner",
			records: []func(*testing.T) fsm.Record{released(3, "keepraftd stopping"), assigned(3.5, "db1 released: keepraftd stopping"), promoted(4)},
			want: map[string]float64{
				"keepraft_failovers_total{reason=owner_stopped}":                 1,
				"keepraft_failover_duration_seconds_count{reason=owner_stopped}": 1,
				"keepraft_failover_duration_seconds_sum{reason=owner_stopped}":   1,
			},
		},
		{
			name:    "owner put in maintenance",
			records: []func(*testing.T) fsm.Record{released(3, "maintenance"), assigned(3.25, "db1 released: maintenance"), promoted(3.5)},
			want: map[string]float64{
				"keepraft_failovers_total{reason=maintenance}":                 1,
				"keepraft_failover_duration_seconds_count{reason=maintenance}": 1,
				"keepraft_failover_duration_seconds_sum{reason=maintenance}":   0.5,
			},
		},
		{
			name:    "a release for a reason this build does not know",
			records: []func(*testing.T) fsm.Record{released(3, "something new"), assigned(4, "db1 released: something new"), promoted(5)},
			want: map[string]float64{
				"keepraft_failovers_total{reason=owner_released}":                 1,
				"keepraft_failover_duration_seconds_count{reason=owner_released}": 1,
				"keepraft_failover_duration_seconds_sum{reason=owner_released}":   2,
			},
		},
		{
			name: "a failed promotion: the reassignment is counted apart, the handover keeps its start",
			records: []func(*testing.T) fsm.Record{revoked(1, "owner db1 unhealthy: x"), assigned(2, "db1 revoked and its lease expired"),
				failed(5), assigned(6, "db2 revoked and its lease expired"), promoted(7)},
			want: map[string]float64{
				"keepraft_failovers_total{reason=owner_unhealthy}":                 1,
				"keepraft_failovers_total{reason=promotion_failed}":                1,
				"keepraft_failover_duration_seconds_count{reason=owner_unhealthy}": 1,
				"keepraft_failover_duration_seconds_sum{reason=owner_unhealthy}":   6,
			},
		},
		{
			name: "trimmed journal: the assignment's reason decides",
			records: []func(*testing.T) fsm.Record{assigned(1, "db1 released: keepraftd stopping"), promoted(2),
				assigned(3, "switchover: target db3 cannot take over, db2 takes its place"), promoted(4),
				assigned(5, "db2 released: local mysqld unhealthy"), promoted(6),
				assigned(7, "previous owner released"), promoted(8),
				assigned(9, "db1 revoked and its lease expired")},
			want: map[string]float64{
				"keepraft_failovers_total{reason=owner_stopped}":   1,
				"keepraft_failovers_total{reason=switchover}":      1,
				"keepraft_failovers_total{reason=owner_unhealthy}": 1,
				"keepraft_failovers_total{reason=owner_released}":  1,
				"keepraft_failovers_total{reason=other}":           1,
			},
		},
		{
			name:    "events stamped before the process started are history",
			started: 100,
			records: []func(*testing.T) fsm.Record{assigned(1, "initial assignment"), promoted(2), revoked(99, "owner db1 unhealthy: x"), assigned(99.5, "x"), promoted(101)},
			want: map[string]float64{
				"keepraft_failover_duration_seconds_count{reason=owner_unhealthy}": 1,
				"keepraft_failover_duration_seconds_sum{reason=owner_unhealthy}":   2,
			},
		},
		{
			name:    "records not applied change nothing",
			records: []func(*testing.T) fsm.Record{stale(revoked(1, "owner db1 unhealthy: x")), stale(assigned(2, "initial assignment")), promoted(3)},
			want:    map[string]float64{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMetrics("n1")
			m.tracker.started = at(tt.started)
			for _, f := range tt.records {
				m.record(f(t))
			}
			got := series(t, m.failovers, m.failoverSeconds)
			diffSeries(t, got, tt.want)
			var n float64
			for _, v := range series(t, m.events) {
				n += v
			}
			if n != float64(len(tt.records)) {
				t.Errorf("journal_events_total counted %v of %d records", n, len(tt.records))
			}
		})
	}
}

// TestRaftLeaderAtScrape: raft_leader is read from raft when scraped, so no loop has to
// keep it current (the observe loop no longer wakes every second for it).
func TestRaftLeaderAtScrape(t *testing.T) {
	m := newMetrics("n1")
	if got := series(t, m.isLeader); got["keepraft_raft_leader{}"] != 0 || len(got) != 1 {
		t.Fatalf("before raft is open: %v, want 0", got)
	}
	var leading atomic.Bool
	m.leader = leading.Load
	for _, want := range []bool{true, false, true} {
		leading.Store(want)
		if got := series(t, m.isLeader)["keepraft_raft_leader{}"]; got != b2f(want) {
			t.Errorf("leading %v: raft_leader = %v", want, got)
		}
	}
}

func TestBuildInfo(t *testing.T) {
	m := newMetrics("n1")
	got := series(t, m.buildInfo)
	if len(got) != 1 {
		t.Fatalf("build_info series %v, want one", got)
	}
	m.setVersion("v1.2.3")
	got = series(t, m.buildInfo)
	if len(got) != 1 {
		t.Fatalf("build_info series %v, want one", got)
	}
	for k, v := range got {
		if !strings.Contains(k, "version=v1.2.3") || v != 1 {
			t.Errorf("build_info %s = %v, want version=v1.2.3 and 1", k, v)
		}
	}
}

// fakeView is a clusterView with fixed answers; pausedView adds Paused.
type fakeView struct {
	s         fsm.State
	reachable map[string]bool
	raft      raftFigures
}

func (f fakeView) State() fsm.State           { return f.s }
func (f fakeView) Reachable() map[string]bool { return f.reachable }
func (f fakeView) Raft() raftFigures          { return f.raft }

type pausedView struct {
	fakeView
	paused bool
}

func (p pausedView) Paused(fsm.State) bool { return p.paused }

func TestClusterCollector(t *testing.T) {
	member := func(id string, role fsm.Role, f func(*fsm.NodeState)) *fsm.NodeState {
		m := &fsm.NodeState{Member: fsm.Member{ID: id, Role: role}}
		if f != nil {
			f(m)
		}
		return m
	}
	state := func(owner string, phase fsm.Phase, ms ...*fsm.NodeState) fsm.State {
		s := fsm.NewState()
		s.Owner, s.Phase = owner, phase
		for _, m := range ms {
			s.Members[m.ID] = m
		}
		return s
	}
	phase := func(p fsm.Phase) map[string]float64 {
		out := map[string]float64{}
		for _, q := range phases {
			out["keepraft_ownership_phase{phase="+string(q)+"}"] = b2f(p == q)
		}
		return out
	}
	tests := []struct {
		name string
		v    clusterView
		want map[string]float64
	}{
		{
			name: "fresh node: no state, never heard a leader, peers never polled",
			v:    fakeView{s: fsm.NewState(), reachable: map[string]bool{"db2": false, "witness": false}, raft: raftFigures{LastContact: -1}},
			want: with(phase(fsm.PhaseNone), map[string]float64{
				"keepraft_raft_term{}": 0, "keepraft_raft_commit_index{}": 0, "keepraft_raft_last_log_index{}": 0,
				"keepraft_peer_reachable{peer=db2}": 0, "keepraft_peer_reachable{peer=witness}": 0,
			}),
		},
		{
			name: "active owner on a follower; witness has no member series",
			v: fakeView{
				s: state("db1", fsm.PhaseActive,
					member("db1", fsm.RoleDatabase, func(m *fsm.NodeState) { m.HealthKnown, m.Healthy, m.SemiSync = true, true, "ON" }),
					member("db2", fsm.RoleDatabase, func(m *fsm.NodeState) { m.HealthKnown, m.Healthy, m.Maintenance = true, false, true }),
					member("witness", fsm.RoleWitness, nil)),
				reachable: map[string]bool{"db1": true, "witness": false},
				raft:      raftFigures{Term: 7, CommitIndex: 42, LastIndex: 43, LastContact: 1500 * time.Millisecond},
			},
			want: with(phase(fsm.PhaseActive), map[string]float64{
				"keepraft_raft_term{}": 7, "keepraft_raft_commit_index{}": 42, "keepraft_raft_last_log_index{}": 43, "keepraft_raft_last_contact_seconds{}": 1.5,
				"keepraft_peer_reachable{peer=db1}": 1, "keepraft_peer_reachable{peer=witness}": 0,
				"keepraft_member_owner{member=db1}": 1, "keepraft_member_owner{member=db2}": 0,
				"keepraft_member_healthy{member=db1}": 1, "keepraft_member_healthy{member=db2}": 0,
				"keepraft_member_maintenance{member=db1}": 0, "keepraft_member_maintenance{member=db2}": 1,
				"keepraft_member_rejoin_blocked{member=db1}": 0, "keepraft_member_rejoin_blocked{member=db2}": 0,
				"keepraft_member_semi_sync_on{member=db1}": 1,
			}),
		},
		{
			name: "revoked owner is no longer owner; blocked rejoin, semi-sync off, health unknown, paused, leader",
			v: pausedView{paused: true, fakeView: fakeView{
				s: state("db1", fsm.PhaseRevoked,
					member("db1", fsm.RoleDatabase, func(m *fsm.NodeState) { m.SemiSync, m.RejoinBlocked = "OFF", true }),
					member("db2", fsm.RoleDatabase, nil)),
				reachable: map[string]bool{"db2": true},
				raft:      raftFigures{Term: 3, CommitIndex: 9, LastIndex: 9},
			}},
			want: with(phase(fsm.PhaseRevoked), map[string]float64{
				"keepraft_raft_term{}": 3, "keepraft_raft_commit_index{}": 9, "keepraft_raft_last_log_index{}": 9, "keepraft_raft_last_contact_seconds{}": 0,
				"keepraft_peer_reachable{peer=db2}": 1, "keepraft_paused{}": 1,
				"keepraft_member_owner{member=db1}": 0, "keepraft_member_owner{member=db2}": 0,
				"keepraft_member_maintenance{member=db1}": 0, "keepraft_member_maintenance{member=db2}": 0,
				"keepraft_member_rejoin_blocked{member=db1}": 1, "keepraft_member_rejoin_blocked{member=db2}": 0,
				"keepraft_member_semi_sync_on{member=db1}": 0,
			}),
		},
		{
			name: "assigned owner counts as owner; not paused",
			v: pausedView{fakeView: fakeView{
				s:    state("db2", fsm.PhaseAssigned, member("db2", fsm.RoleDatabase, nil)),
				raft: raftFigures{LastContact: -1},
			}},
			want: with(phase(fsm.PhaseAssigned), map[string]float64{
				"keepraft_raft_term{}": 0, "keepraft_raft_commit_index{}": 0, "keepraft_raft_last_log_index{}": 0, "keepraft_paused{}": 0,
				"keepraft_member_owner{member=db2}": 1, "keepraft_member_maintenance{member=db2}": 0, "keepraft_member_rejoin_blocked{member=db2}": 0,
			}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diffSeries(t, series(t, newClusterCollector(tt.v)), tt.want)
		})
	}
}

type fakeSpeaker vrrp.SpeakerStats

func (f fakeSpeaker) Stats() vrrp.SpeakerStats { return vrrp.SpeakerStats(f) }

type fakeListener vrrp.Stats

func (f fakeListener) Stats() vrrp.Stats { return vrrp.Stats(f) }

func TestVRRPCollector(t *testing.T) {
	zeroDrops := func(over map[vrrp.DropReason]float64) map[string]float64 {
		out := map[string]float64{}
		for _, r := range dropReasons {
			out["keepraft_vrrp_adverts_dropped_total{reason="+string(r)+"}"] = over[r]
		}
		for r, n := range over {
			out["keepraft_vrrp_adverts_dropped_total{reason="+string(r)+"}"] = n
		}
		return out
	}
	tests := []struct {
		name string
		s    vrrp.SpeakerStats
		l    vrrp.Stats
		want map[string]float64
	}{
		{
			name: "nothing yet: every reason at zero",
			want: with(zeroDrops(nil), map[string]float64{
				"keepraft_vrrp_adverts_sent_total{}": 0, "keepraft_vrrp_advert_send_errors_total{}": 0, "keepraft_vrrp_adverts_received_total{}": 0,
				"keepraft_vrrp_adverts_accepted_total{}": 0, "keepraft_vrrp_adverts_invalid_total{}": 0,
			}),
		},
		{
			name: "self and other VRIDs are dropped but not invalid; an unknown reason is exported",
			s:    vrrp.SpeakerStats{Sent: 120, Failed: 2},
			l: vrrp.Stats{Received: 40, Accepted: 3, Dropped: map[vrrp.DropReason]uint64{
				vrrp.DropSelf: 20, vrrp.DropOtherVRID: 10, vrrp.DropAuth: 4, vrrp.DropTTL: 2, "future": 1}},
			want: with(zeroDrops(map[vrrp.DropReason]float64{vrrp.DropSelf: 20, vrrp.DropOtherVRID: 10, vrrp.DropAuth: 4, vrrp.DropTTL: 2, "future": 1}), map[string]float64{
				"keepraft_vrrp_adverts_sent_total{}": 120, "keepraft_vrrp_advert_send_errors_total{}": 2, "keepraft_vrrp_adverts_received_total{}": 40,
				"keepraft_vrrp_adverts_accepted_total{}": 3, "keepraft_vrrp_adverts_invalid_total{}": 7,
			}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diffSeries(t, series(t, newVRRPCollector(fakeSpeaker(tt.s), fakeListener(tt.l))), tt.want)
		})
	}
}

func with(a, b map[string]float64) map[string]float64 {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

// discard is a VRRP advert writer and reader that never sees a packet.
type discard struct{}

func (discard) WriteAdvert(*vrrp.Packet) error { return nil }

// newIdleNode builds db1 of an in-memory cluster without running it.
func newIdleNode(t *testing.T, id string) *Node {
	t.Helper()
	c := newMemCluster(t)
	cfg := c.cfgs[id]
	_, tr := raft.NewInmemTransport(raft.ServerAddress(cfg.Cluster.RaftAddr))
	opts := Options{Transport: tr}
	if cfg.IsDatabase() {
		opts.MySQL, opts.VIP = worldMySQL{c.w, id}, worldVIP{c.w, id}
	}
	n, err := New(cfg, zaptest.NewLogger(t), opts)
	if err != nil {
		t.Fatalf("new %s: %v", id, err)
	}
	t.Cleanup(func() {
		if err := n.close(); err != nil {
			t.Errorf("close %s: %v", id, err)
		}
	})
	return n
}

// registered tolerates a collector New registers already (once the lead wires it).
func registered(t *testing.T, err error) {
	t.Helper()
	var are prometheus.AlreadyRegisteredError
	if err != nil && !errors.As(err, &are) {
		t.Fatalf("register: %v", err)
	}
}

func TestNodeView(t *testing.T) {
	n := newIdleNode(t, "db1")
	v := nodeView{n}
	if got, want := v.Reachable(), map[string]bool{"db2": false, "witness": false}; !maps.Equal(got, want) {
		t.Errorf("Reachable before any poll = %v, want %v", got, want)
	}
	n.poll.mu.Lock()
	n.poll.views["db2"] = api.Peer{OK: true}
	n.poll.mu.Unlock()
	if got, want := v.Reachable(), map[string]bool{"db2": true, "witness": false}; !maps.Equal(got, want) {
		t.Errorf("Reachable after db2 answered = %v, want %v", got, want)
	}
	if f := v.Raft(); f.LastContact >= 0 || f.Term != 0 {
		t.Errorf("Raft of a node that never heard a leader = %+v, want term 0 and LastContact < 0", f)
	}
	registered(t, n.registerClusterMetrics())
	registered(t, n.registerVRRPMetrics(vrrp.NewSpeaker(discard{}, vrrp.Config{AdvertInt: time.Second}, func() bool { return false }, nil, n.log), vrrp.NewListener(nil, vrrp.Config{}, nil, nil, n.log)))
	got := only(series(t, gathererCollector{n.metrics.reg}), "keepraft_")
	for _, name := range []string{"keepraft_raft_term{node=db1}", "keepraft_peer_reachable{node=db1,peer=db2}", "keepraft_vrrp_adverts_sent_total{node=db1}",
		"keepraft_mysql_writes_open{node=db1}", "keepraft_build_info{"} {
		if !slices.ContainsFunc(slices.Collect(maps.Keys(got)), func(k string) bool { return strings.HasPrefix(k, name) }) {
			t.Errorf("node registry lacks %s; has %v", name, slices.Sorted(maps.Keys(got)))
		}
	}
	if got["keepraft_peer_reachable{node=db1,peer=db2}"] != 1 {
		t.Errorf("keepraft_peer_reachable{peer=db2} = %v, want 1", got["keepraft_peer_reachable{node=db1,peer=db2}"])
	}
}

// gathererCollector re-exports a registry's series so series() can read them.
type gathererCollector struct{ g prometheus.Gatherer }

func (gathererCollector) Describe(chan<- *prometheus.Desc) {}

func (c gathererCollector) Collect(ch chan<- prometheus.Metric) {
	mfs, err := c.g.Gather()
	if err != nil {
		return
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var names, values []string
			for _, l := range m.GetLabel() {
				names, values = append(names, l.GetName()), append(values, l.GetValue())
			}
			d := prometheus.NewDesc(mf.GetName(), mf.GetHelp(), names, nil)
			switch {
			case m.Gauge != nil:
				ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, m.GetGauge().GetValue(), values...)
			case m.Counter != nil:
				ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, m.GetCounter().GetValue(), values...)
			}
		}
	}
}

// catalogue reads monitoring/metrics.txt: name → "type scope".
func catalogue(t *testing.T) map[string][2]string {
	t.Helper()
	f, err := os.Open("../monitoring/metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][2]string{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fs := strings.Fields(text)
		if len(fs) != 3 {
			t.Fatalf("metrics.txt:%d: want \"name type scope\", got %q", line, text)
		}
		out[fs[0]] = [2]string{fs[1], fs[2]}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// described lists the names cs describe.
func described(cs ...prometheus.Collector) []string {
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range cs {
			c.Describe(ch)
		}
		close(ch)
	}()
	var out []string
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

// TestMetricCatalogue holds monitoring/metrics.txt, the list the alert rules and the
// dashboard are checked against, to what the code registers: every keepraft_ series
// registered is listed with its type and scope (all nodes, database nodes, or database
// nodes with VRRP), every listed series is registered, and each is documented in
// monitoring/README.md.
func TestMetricCatalogue(t *testing.T) {
	n := newIdleNode(t, "db1")
	m := newMetrics("db1")
	scopes := map[string][]prometheus.Collector{
		"all":      append(m.collectors(), newClusterCollector(nodeView{n})),
		"database": n.owner.Collectors(),
		"vrrp":     {newVRRPCollector(fakeSpeaker{}, fakeListener{})},
	}
	// Gather every series of the all and vrrp scopes, to learn each family's type (the
	// owner's are filled and checked in package owner).
	m.events.WithLabelValues("x", "applied")
	m.proposals.WithLabelValues("x", "applied")
	m.failovers.WithLabelValues("initial")
	m.failoverSeconds.WithLabelValues("initial").Observe(1)
	full := fsm.NewState()
	full.Owner, full.Phase = "db1", fsm.PhaseActive
	full.Members["db1"] = &fsm.NodeState{Member: fsm.Member{ID: "db1", Role: fsm.RoleDatabase}, HealthKnown: true, Healthy: true, SemiSync: "ON"}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.collectors()...)
	reg.MustRegister(scopes["vrrp"]...)
	reg.MustRegister(newClusterCollector(pausedView{fakeView: fakeView{s: full, reachable: map[string]bool{"db2": true}, raft: raftFigures{LastContact: 1}}}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{}
	for _, mf := range mfs {
		types[mf.GetName()] = strings.ToLower(mf.GetType().String())
	}

	want := catalogue(t)
	readme, err := os.ReadFile("../monitoring/README.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, scope := range slices.Sorted(maps.Keys(scopes)) {
		for _, name := range described(scopes[scope]...) {
			seen[name] = true
			w, ok := want[name]
			switch {
			case !ok:
				t.Errorf("%s is registered (scope %s) but not in monitoring/metrics.txt", name, scope)
			case w[1] != scope:
				t.Errorf("%s: metrics.txt says scope %s, the code registers it for %s", name, w[1], scope)
			}
			typ, gathered := types[name]
			switch {
			case scope == "database":
			case !gathered:
				t.Errorf("%s was not gathered: the catalogue test does not fill it", name)
			case ok && typ != w[0]:
				t.Errorf("%s: metrics.txt says type %s, the registry has %s", name, w[0], typ)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if !seen[name] {
			t.Errorf("%s is in monitoring/metrics.txt but nothing registers it", name)
		}
		if !strings.Contains(string(readme), "`"+name+"`") {
			t.Errorf("%s is not documented in monitoring/README.md", name)
		}
	}
	// The names follow Prometheus' conventions.
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
	if t.Failed() {
		var lines []string
		for _, name := range slices.Sorted(maps.Keys(types)) {
			lines = append(lines, fmt.Sprintf("%s %s", name, types[name]))
		}
		t.Logf("gathered:\n%s", strings.Join(lines, "\n"))
	}
}
