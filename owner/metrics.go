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
	return []prometheus.Collector{m.holdingVIP, m.leaseValid, m.mysqlHealthy, m.readOnly, m.proposals, m.renewals, m.watchdogErrors, m.probeSeconds,
		newLocalCollector(o)}
}

// localCollector exports, at each scrape, the local server's replication and semi-sync
// status from the runtime's last probe, and whether the runtime has opened writes. The
// probe's series are absent while the last probe failed: its last good values would be
// stale.
type localCollector struct {
	o *Owner

	configured, ioRunning, sqlRunning, lag, semiSync, writesOpen *prometheus.Desc
}

func newLocalCollector(o *Owner) *localCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("keepraft", "", name), help, nil, nil)
	}
	return &localCollector{
		o:          o,
		configured: d("replication_configured", "1 when the local server has a default replication channel."),
		ioRunning:  d("replication_io_running", "1 when the local replication IO thread is running (Yes; Connecting is not)."),
		sqlRunning: d("replication_sql_running", "1 when the local replication SQL thread is running."),
		lag:        d("replication_lag_seconds", "Seconds_Behind_Master of the local replication channel; absent when unknown (NULL)."),
		semiSync:   d("mysql_semi_sync_on", "The local server's semi-sync master status (1 ON, 0 OFF); absent when semi-sync is not available or the last probe failed."),
		writesOpen: d("mysql_writes_open", "1 while this runtime, serving as owner, has set read_only=0 and not fenced since."),
	}
}

// Describe implements prometheus.Collector.
func (c *localCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.configured, c.ioRunning, c.sqlRunning, c.lag, c.semiSync, c.writesOpen} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *localCollector) Collect(ch chan<- prometheus.Metric) {
	o := c.o
	o.mu.Lock()
	h := o.health
	open := o.m.Phase == Serving && o.writesOpen
	o.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	gauge(c.writesOpen, b2f(open))
	if !h.Up {
		return
	}
	r := h.Replica
	gauge(c.configured, b2f(r.Configured))
	if r.Configured {
		gauge(c.ioRunning, b2f(r.IORunning))
		gauge(c.sqlRunning, b2f(r.SQLRunning))
		if r.LagSeconds >= 0 {
			gauge(c.lag, float64(r.LagSeconds))
		}
	}
	if h.SemiSync != "" {
		gauge(c.semiSync, b2f(h.SemiSync == "ON"))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
