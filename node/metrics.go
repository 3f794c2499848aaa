package node

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the node's Prometheus series served on /metrics; the owner runtime adds
// its own to the same registry.
type metrics struct {
	reg       *prometheus.Registry
	labeled   prometheus.Registerer // adds node="<id>" to every series
	isLeader  prometheus.Gauge
	isOwner   prometheus.Gauge
	epoch     prometheus.Gauge
	applied   prometheus.Gauge
	events    *prometheus.CounterVec
	proposals *prometheus.CounterVec
}

func newMetrics(node string) *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "keepraft", Name: name, Help: help})
	}
	m := &metrics{
		reg:       reg,
		labeled:   prometheus.WrapRegistererWith(prometheus.Labels{"node": node}, reg),
		isLeader:  g("raft_leader", "1 when this node is the Raft leader."),
		isOwner:   g("owner", "1 when the committed state names this node the VIP owner."),
		epoch:     g("epoch", "Current ownership epoch."),
		applied:   g("applied_index", "Last applied Raft log index."),
		events:    prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keepraft", Name: "journal_events_total", Help: "Journal events applied, by type and result."}, []string{"type", "result"}),
		proposals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keepraft", Name: "proposals_total", Help: "Events the controller proposed, by type and outcome."}, []string{"type", "outcome"}),
	}
	m.labeled.MustRegister(m.isLeader, m.isOwner, m.epoch, m.applied, m.events, m.proposals)
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
