package node

import (
	"runtime"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/keepraft/keepraft/fsm"
)

// failoverBuckets are the bounds of keepraft_failover_duration_seconds: a handover takes
// from tens of milliseconds (a switchover) to a few leases (an owner that went silent).
var failoverBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120}

// metrics are the node's Prometheus series served on /metrics; the owner runtime adds
// its own to the same registry, and the scrape-time collectors (collector.go,
// metrics_vrrp.go) theirs.
type metrics struct {
	reg     *prometheus.Registry
	labeled prometheus.Registerer // adds node="<id>" to every series
	// isLeader asks raft at scrape time, through leader (set once raft is open).
	isLeader  prometheus.GaugeFunc
	leader    func() bool
	isOwner   prometheus.Gauge
	epoch     prometheus.Gauge
	applied   prometheus.Gauge
	events    *prometheus.CounterVec
	proposals *prometheus.CounterVec
	// failovers counts applied OwnerAssigned events by cause; failoverSeconds observes
	// each handover from the event that began it to the OwnerPromoted that ended it.
	failovers       *prometheus.CounterVec
	failoverSeconds *prometheus.HistogramVec
	buildInfo       *prometheus.GaugeVec
	tracker         failoverTracker
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
		isOwner:   g("owner", "1 when the committed state names this node the VIP owner."),
		epoch:     g("epoch", "Current ownership epoch."),
		applied:   g("applied_index", "Last applied Raft log index."),
		events:    prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keepraft", Name: "journal_events_total", Help: "Journal events applied, by type and result."}, []string{"type", "result"}),
		proposals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keepraft", Name: "proposals_total", Help: "Events the controller proposed, by type and outcome."}, []string{"type", "outcome"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keepraft", Name: "failovers_total",
			Help: "Owner assignments applied since this process started, by cause (initial, switchover, maintenance, owner_unhealthy, owner_unreachable, owner_removed, owner_stopped, owner_released, promotion_failed, other)."}, []string{"reason"}),
		failoverSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "keepraft", Name: "failover_duration_seconds",
			Help: "Seconds from the event that began a handover (revoke, release, switchover request) to the new owner's OwnerPromoted, by cause.", Buckets: failoverBuckets}, []string{"reason"}),
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "keepraft", Name: "build_info", Help: "Always 1; the labels name the build."}, []string{"version", "goversion"}),
		tracker:   failoverTracker{started: time.Now()},
	}
	m.isLeader = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "keepraft", Name: "raft_leader", Help: "1 when this node is the Raft leader."}, func() float64 {
		if m.leader == nil {
			return 0
		}
		return b2f(m.leader())
	})
	m.setVersion("")
	m.labeled.MustRegister(m.collectors()...)
	return m
}

// collectors lists the series newMetrics registers under the node label.
func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.isLeader, m.isOwner, m.epoch, m.applied, m.events, m.proposals, m.failovers, m.failoverSeconds, m.buildInfo}
}

// setVersion names the build in keepraft_build_info; "" takes the main module's version
// from the binary's build information (the VCS version Go stamps), else "unknown".
func (m *metrics) setVersion(v string) {
	if v == "" {
		v = "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			v = bi.Main.Version
		}
	}
	m.buildInfo.Reset()
	m.buildInfo.WithLabelValues(v, runtime.Version()).Set(1)
}

// record counts one applied journal record: by type and result, and, for the ownership
// events, in the failover series. Call it from one goroutine, in journal order.
func (m *metrics) record(r fsm.Record) {
	m.events.WithLabelValues(string(r.Event.Type), string(r.Result)).Inc()
	if r.Result != fsm.ResultApplied {
		return
	}
	o := m.tracker.apply(r.Event)
	if o.assigned != "" {
		m.failovers.WithLabelValues(o.assigned).Inc()
	}
	if o.handover != "" {
		m.failoverSeconds.WithLabelValues(o.handover).Observe(o.took.Seconds())
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
