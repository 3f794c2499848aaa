package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the Prometheus series served on /metrics.
type metrics struct {
	reg          *prometheus.Registry
	isLeader     prometheus.Gauge
	isOwner      prometheus.Gauge
	holdingVIP   prometheus.Gauge
	leaseValid   prometheus.Gauge
	epoch        prometheus.Gauge
	applied      prometheus.Gauge
	mysqlHealthy prometheus.Gauge
	events       *prometheus.CounterVec
	proposals    *prometheus.CounterVec
	renewals     *prometheus.CounterVec
	probeSeconds prometheus.Histogram
}

func newMetrics(node string) *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := prometheus.WrapRegistererWith(prometheus.Labels{"node": node}, reg)
	g := func(name, help string) prometheus.Gauge {
		x := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "keepraft", Name: name, Help: help})
		f.MustRegister(x)
		return x
	}
	m := &metrics{
		reg:          reg,
		isLeader:     g("raft_leader", "1 when this node is the Raft leader."),
		isOwner:      g("owner", "1 when the committed state names this node the VIP owner."),
		holdingVIP:   g("vip_held", "1 when this node has the VIP on its interface."),
		leaseValid:   g("lease_valid", "1 when this node holds a valid quorum lease."),
		epoch:        g("epoch", "Current ownership epoch."),
		applied:      g("applied_index", "Last applied Raft log index."),
		mysqlHealthy: g("mysql_healthy", "1 when the local MySQL is healthy after rise/fall."),
		events:       prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keepraft", Name: "journal_events_total", Help: "Journal events applied, by type and result."}, []string{"type", "result"}),
		proposals:    prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keepraft", Name: "proposals_total", Help: "Events this node proposed, by type and outcome."}, []string{"type", "outcome"}),
		renewals:     prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keepraft", Name: "lease_renewals_total", Help: "Lease renewals sent by the owner, by peer and answer."}, []string{"peer", "answer"}),
		probeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "keepraft", Name: "mysql_probe_seconds", Help: "Duration of local MySQL health checks.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
	}
	f.MustRegister(m.events, m.proposals, m.renewals, m.probeSeconds)
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
