package owner

import "github.com/prometheus/client_golang/prometheus"

// metrics are the runtime's Prometheus series; the node registers them.
type metrics struct {
	holdingVIP     prometheus.Gauge
	leaseValid     prometheus.Gauge
	mysqlHealthy   prometheus.Gauge
	readOnly       prometheus.Gauge
	proposals      *prometheus.CounterVec
	renewals       *prometheus.CounterVec
	watchdogErrors prometheus.Counter
	probeSeconds   prometheus.Histogram
}

func newMetrics() *metrics {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "keepraft", Name: name, Help: help})
	}
	return &metrics{
		holdingVIP:     g("vip_held", "1 when this node has the VIP on its interface."),
		leaseValid:     g("lease_valid", "1 when this node holds a valid quorum lease."),
		mysqlHealthy:   g("mysql_healthy", "1 when the local MySQL is healthy after rise/fall."),
		readOnly:       g("mysql_read_only", "1 when the local MySQL reported read_only=1 at the last probe."),
		proposals:      prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keepraft", Name: "owner_proposals_total", Help: "Events the owner runtime proposed, by type and outcome."}, []string{"type", "outcome"}),
		watchdogErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "keepraft", Name: "watchdog_errors_total", Help: "Messages to the fence watchdog that could not be delivered (it is restarted)."}),
		renewals:       prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keepraft", Name: "lease_renewals_total", Help: "Lease renewals sent by the owner, by peer and answer."}, []string{"peer", "answer"}),
		probeSeconds:   prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "keepraft", Name: "mysql_probe_seconds", Help: "Duration of local MySQL health checks.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
	}
}

// Collectors returns the runtime's metrics for the node's registry.
func (o *Owner) Collectors() []prometheus.Collector {
	m := o.metrics
	return []prometheus.Collector{m.holdingVIP, m.leaseValid, m.mysqlHealthy, m.readOnly, m.proposals, m.renewals, m.watchdogErrors, m.probeSeconds}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
