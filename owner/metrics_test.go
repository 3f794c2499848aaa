package owner

import (
	"bufio"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keepraft/keepraft/probe"
)

// gather registers cs and returns the families' types by name and the gauges' and
// counters' values as "name{label=value,...}" → value.
func gather(t *testing.T, cs ...prometheus.Collector) (map[string]string, map[string]float64) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(cs...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	types, values := map[string]string{}, map[string]float64{}
	for _, mf := range mfs {
		types[mf.GetName()] = strings.ToLower(mf.GetType().String())
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			k := mf.GetName() + "{" + strings.Join(ls, ",") + "}"
			switch {
			case m.Gauge != nil:
				values[k] = m.GetGauge().GetValue()
			case m.Counter != nil:
				values[k] = m.GetCounter().GetValue()
			}
		}
	}
	return types, values
}

func TestLocalCollector(t *testing.T) {
	up := func(r probe.ReplicaStatus, semi string) probe.Health {
		return probe.Health{Up: true, Replica: r, SemiSync: semi}
	}
	tests := []struct {
		name   string
		health probe.Health
		phase  Phase
		open   bool
		want   map[string]float64
	}{
		{
			name: "never probed: only writes_open",
			want: map[string]float64{"keepraft_mysql_writes_open{}": 0},
		},
		{
			name:   "standby replicating with lag, semi-sync unavailable",
			health: up(probe.ReplicaStatus{Configured: true, IORunning: true, SQLRunning: true, LagSeconds: 12}, ""),
			phase:  Standby,
			want: map[string]float64{"keepraft_mysql_writes_open{}": 0, "keepraft_replication_configured{}": 1,
				"keepraft_replication_io_running{}": 1, "keepraft_replication_sql_running{}": 1, "keepraft_replication_lag_seconds{}": 12},
		},
		{
			name:   "serving owner with writes open, channel stopped (lag NULL), semi-sync ON",
			health: up(probe.ReplicaStatus{Configured: true, LagSeconds: -1}, "ON"),
			phase:  Serving,
			open:   true,
			want: map[string]float64{"keepraft_mysql_writes_open{}": 1, "keepraft_replication_configured{}": 1,
				"keepraft_replication_io_running{}": 0, "keepraft_replication_sql_running{}": 0, "keepraft_mysql_semi_sync_on{}": 1},
		},
		{
			name:   "writes open but no longer serving does not count; no channel; semi-sync OFF",
			health: up(probe.ReplicaStatus{LagSeconds: -1}, "OFF"),
			phase:  Releasing,
			open:   true,
			want: map[string]float64{"keepraft_mysql_writes_open{}": 0, "keepraft_replication_configured{}": 0,
				"keepraft_mysql_semi_sync_on{}": 0},
		},
		{
			name:   "last probe failed: the stale replication status is not exported",
			health: probe.Health{Up: false, Err: "connection refused", Replica: probe.ReplicaStatus{Configured: true, IORunning: true, SQLRunning: true}, SemiSync: "ON"},
			phase:  Standby,
			want:   map[string]float64{"keepraft_mysql_writes_open{}": 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &Owner{metrics: newMetrics()}
			o.health, o.m.Phase, o.writesOpen = tt.health, tt.phase, tt.open
			_, got := gather(t, newLocalCollector(o))
			if !maps.Equal(got, tt.want) {
				t.Errorf("series:\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

// TestCatalogue holds the runtime's series to monitoring/metrics.txt: every one is
// listed there with scope database and its type, and every database series listed is
// the runtime's.
func TestCatalogue(t *testing.T) {
	f, err := os.Open("../monitoring/metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 3 && !strings.HasPrefix(fs[0], "#") && fs[2] == "database" {
			want[fs[0]] = fs[1]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	o := &Owner{metrics: newMetrics(), m: machine{Phase: Serving}}
	o.health = probe.Health{Up: true, Replica: probe.ReplicaStatus{Configured: true, LagSeconds: 0}, SemiSync: "ON"}
	o.metrics.proposals.WithLabelValues("HealthChanged", "applied")
	o.metrics.renewals.WithLabelValues("db2", "granted")
	o.metrics.probeSeconds.Observe(0.01)
	got, _ := gather(t, o.Collectors()...)
	for _, name := range slices.Sorted(maps.Keys(got)) {
		if w, ok := want[name]; !ok {
			t.Errorf("%s (%s) is not in monitoring/metrics.txt with scope database", name, got[name])
		} else if w != got[name] {
			t.Errorf("%s: metrics.txt says %s, the registry has %s", name, w, got[name])
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if _, ok := got[name]; !ok {
			t.Errorf("%s is listed with scope database but the runtime does not export it", name)
		}
	}
}
