package node

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// scrape gathers n's registry as "name{label=value,...}" → value (histograms as _count
// and _sum), the node label left out.
func scrape(t *testing.T, n *Node) map[string]float64 {
	t.Helper()
	mfs, err := n.metrics.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				if l.GetName() != "node" {
					ls = append(ls, l.GetName()+"="+l.GetValue())
				}
			}
			key := func(suffix string) string { return mf.GetName() + suffix + "{" + strings.Join(ls, ",") + "}" }
			switch {
			case m.Gauge != nil:
				out[key("")] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[key("")] = m.GetCounter().GetValue()
			case m.Histogram != nil:
				out[key("_count")] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// TestMetricsInProcess runs the in-process cluster through a failover and reads every
// node's /metrics registry: the failover series counted from the applied journal, the
// scrape-time cluster series and the owner's local ones. It needs New to register the
// cluster collector and observe to call metrics.record; until then it skips.
func TestMetricsInProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("in-process cluster runs for several seconds")
	}
	c := newMemCluster(t)
	for _, id := range memIDs {
		c.start(id)
	}
	c.waitServing("db1", 15*time.Second)
	if _, ok := scrape(t, c.nodes["db1"])["keepraft_raft_term{}"]; !ok {
		t.Skip("New does not register the cluster collector yet (registerClusterMetrics) nor observe call metrics.record")
	}
	c.w.mu.Lock()
	c.w.up["db1"], c.w.writable["db1"] = false, false
	c.w.mu.Unlock()
	c.waitServing("db2", 10*time.Second)
	c.checkViolations()

	want := map[string]float64{
		"keepraft_failovers_total{reason=initial}":                         1,
		"keepraft_failovers_total{reason=owner_unhealthy}":                 1,
		"keepraft_failover_duration_seconds_count{reason=owner_unhealthy}": 1,
		"keepraft_member_owner{member=db2}":                                1,
		"keepraft_member_owner{member=db1}":                                0,
		"keepraft_member_healthy{member=db1}":                              0,
		"keepraft_ownership_phase{phase=active}":                           1,
		"keepraft_paused{}":                                                0,
	}
	for _, id := range memIDs {
		n := c.nodes[id]
		w := map[string]float64{}
		for k, v := range want {
			w[k] = v
		}
		for _, p := range memIDs {
			if p != id {
				w[fmt.Sprintf("keepraft_peer_reachable{peer=%s}", p)] = 1
			}
		}
		if id == "db2" {
			w["keepraft_mysql_writes_open{}"] = 1
		}
		// The journal is counted and the peers polled asynchronously: wait for both.
		var got map[string]float64
		var missing []string
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			got, missing = scrape(t, n), nil
			for k, v := range w {
				if g, ok := got[k]; !ok || g != v {
					missing = append(missing, fmt.Sprintf("%s = %v (ok %v), want %v", k, g, ok, v))
				}
			}
			if len(missing) == 0 || time.Now().After(deadline) {
				break
			}
		}
		for _, m := range missing {
			t.Errorf("%s: %s", id, m)
		}
		if got["keepraft_raft_term{}"] < 1 {
			t.Errorf("%s: keepraft_raft_term = %v, want ≥ 1", id, got["keepraft_raft_term{}"])
		}
		for k := range got {
			if id == "witness" && (strings.HasPrefix(k, "keepraft_mysql_") || strings.HasPrefix(k, "keepraft_replication_")) {
				t.Errorf("the witness exports %s", k)
			}
		}
	}
}
