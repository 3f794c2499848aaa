package node

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keepraft/keepraft/fsm"
)

// clusterView is what the cluster collector reads at scrape time: the applied state,
// the peer poll and raft's figures. nodeView (metrics_source.go) is the real one.
type clusterView interface {
	// State returns the applied state.
	State() fsm.State
	// Reachable reports, for every other voter, whether its last poll answered.
	Reachable() map[string]bool
	// Raft returns raft's figures.
	Raft() raftFigures
}

// pauseView is a clusterView that knows whether automatic failover is paused in a
// state; the collector exports keepraft_paused only for a view that implements it.
type pauseView interface {
	Paused(s fsm.State) bool
}

// raftFigures are raft's numbers at one instant.
type raftFigures struct {
	Term, CommitIndex, LastIndex uint64
	// LastContact is how long ago the leader was last heard: 0 on the leader, negative
	// when never.
	LastContact time.Duration
}

// phases are the values of keepraft_ownership_phase's phase label.
var phases = []fsm.Phase{fsm.PhaseNone, fsm.PhaseAssigned, fsm.PhaseActive, fsm.PhaseRevoked, fsm.PhaseReleased}

// clusterCollector exports, at each scrape, what this node knows about the cluster. It
// reads the journal's view of every member, so a witness exports the database members'
// journaled health too; the local MySQL's own series come from the owner runtime.
type clusterCollector struct {
	v clusterView

	term, commit, lastIndex, lastContact *prometheus.Desc
	peerReachable, phase, paused         *prometheus.Desc
	memberOwner, memberHealthy           *prometheus.Desc
	memberMaintenance, memberRejoin      *prometheus.Desc
	memberSemiSync                       *prometheus.Desc
}

func newClusterCollector(v clusterView) *clusterCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("keepraft", "", name), help, labels, nil)
	}
	return &clusterCollector{
		v:                 v,
		term:              d("raft_term", "Current Raft term."),
		commit:            d("raft_commit_index", "Raft commit index this node knows."),
		lastIndex:         d("raft_last_log_index", "Last index in this node's Raft log."),
		lastContact:       d("raft_last_contact_seconds", "Seconds since this node last heard from the Raft leader; 0 on the leader, absent when never."),
		peerReachable:     d("peer_reachable", "1 when the last poll of the other voter peer answered.", "peer"),
		phase:             d("ownership_phase", "1 for the ownership phase the applied state is in.", "phase"),
		paused:            d("paused", "1 while automatic failover is paused."),
		memberOwner:       d("member_owner", "1 for the database member the applied state names owner (assigned or active).", "member"),
		memberHealthy:     d("member_healthy", "The database member's last journaled MySQL health (1 healthy); absent until one is journaled.", "member"),
		memberMaintenance: d("member_maintenance", "1 while the database member is in maintenance.", "member"),
		memberRejoin:      d("member_rejoin_blocked", "1 while the database member's rejoin is blocked: it came back with transactions the owner lacks.", "member"),
		memberSemiSync:    d("member_semi_sync_on", "The member's last journaled semi-sync master status (1 ON, 0 OFF); absent while never ON.", "member"),
	}
}

// Describe implements prometheus.Collector.
func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.term, c.commit, c.lastIndex, c.lastContact, c.peerReachable, c.phase, c.paused,
		c.memberOwner, c.memberHealthy, c.memberMaintenance, c.memberRejoin, c.memberSemiSync} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	r := c.v.Raft()
	gauge(c.term, float64(r.Term))
	gauge(c.commit, float64(r.CommitIndex))
	gauge(c.lastIndex, float64(r.LastIndex))
	if r.LastContact >= 0 {
		gauge(c.lastContact, r.LastContact.Seconds())
	}
	for peer, ok := range c.v.Reachable() {
		gauge(c.peerReachable, b2f(ok), peer)
	}
	s := c.v.State()
	if p, ok := c.v.(pauseView); ok {
		gauge(c.paused, b2f(p.Paused(s)))
	}
	for _, p := range phases {
		gauge(c.phase, b2f(s.Phase == p), string(p))
	}
	for _, id := range s.MemberIDs() {
		m := s.Members[id]
		if m.SemiSync != "" {
			gauge(c.memberSemiSync, b2f(m.SemiSync == "ON"), id)
		}
		if m.Role != fsm.RoleDatabase {
			continue
		}
		gauge(c.memberOwner, b2f(s.Holding(id)), id)
		gauge(c.memberMaintenance, b2f(m.Maintenance), id)
		gauge(c.memberRejoin, b2f(m.RejoinBlocked), id)
		if m.HealthKnown {
			gauge(c.memberHealthy, b2f(m.Healthy), id)
		}
	}
}
