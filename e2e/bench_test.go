package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keepraft/keepraft/testenv"
)

// The failover benchmark: the time from a fault to the first client answer through the
// VIP from the other database host, for keepraft and for keepalived (the seed config:
// BACKUP, nopreempt, priority 100/90, advert_int 1, track_script every 1 s with fall 2)
// measured in the same run, on the same lab. Run with `make bench`.

type fault string

const (
	faultMysqldKill fault = "mysqld SIGKILL"
	faultMysqldStop fault = "mysqld shutdown"
	faultLinkCut    fault = "owner link cut"
	faultDaemonKill fault = "daemon SIGKILL"
)

var benchFaults = []fault{faultMysqldKill, faultMysqldStop, faultLinkCut, faultDaemonKill}

// The sides measured in one run: keepraft with its defaults, and keepalived in the seed
// config with advert_int 1 s and 5 s.
const (
	sideKeepraft    = "keepraft"
	sideKeepalived1 = "keepalived/1s"
	sideKeepalived5 = "keepalived/5s"
)

var benchSides = []string{sideKeepraft, sideKeepalived1, sideKeepalived5}

func benchTrials() int {
	if n, err := strconv.Atoi(os.Getenv("KEEPRAFT_BENCH_TRIALS")); err == nil && n > 0 {
		return n
	}
	return 5
}

// benchReport collects the sections of bench/results.md, written by the last benchmark.
var benchReport = map[string]string{}

func TestBenchFailover(t *testing.T) {
	if os.Getenv("KEEPRAFT_BENCH") == "" {
		t.Skip("set KEEPRAFT_BENCH=1 (make bench) to run the failover benchmark")
	}
	testenv.Require(t)
	n := benchTrials()
	results := map[string][]time.Duration{}
	for _, f := range benchFaults {
		for i := range n {
			for _, side := range benchSides {
				name := fmt.Sprintf("%s_%s_trial%d", strings.ReplaceAll(side, "/", "_"), strings.ReplaceAll(string(f), " ", "_"), i+1)
				var d time.Duration
				var holders int
				if side == sideKeepraft {
					d, holders = keepraftTrial(t, name, f)
				} else {
					d, holders = keepalivedTrial(t, name, f, map[string]time.Duration{sideKeepalived1: time.Second, sideKeepalived5: 5 * time.Second}[side])
				}
				t.Logf("%-14s %-16s trial %d: %v (max holders %d)", side, f, i+1, d, holders)
				if side == sideKeepraft && holders > 1 {
					t.Errorf("keepraft trial had %d VIP holders at once", holders)
				}
				results[side+"|"+string(f)] = append(results[side+"|"+string(f)], d)
			}
		}
	}
	if t.Failed() {
		t.Fatal("some trials failed; no summary")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "fault → first client answer through the VIP from the other database host, %d trials each; ratio = keepraft ÷ keepalived\n\n", n)
	fmt.Fprintf(&b, "| fault | keepraft p50 / p99 | keepalived 1s p50 / p99 | ratio p50 (p99) | keepalived 5s p50 / p99 | ratio p50 (p99) |\n|---|---|---|---|---|---|\n")
	for _, f := range benchFaults {
		kr, k1, k5 := results[sideKeepraft+"|"+string(f)], results[sideKeepalived1+"|"+string(f)], results[sideKeepalived5+"|"+string(f)]
		fmt.Fprintf(&b, "| %s | %s / %s | %s / %s | %.2f (%.2f) | %s / %s | %.2f (%.2f) |\n", f,
			sec(pct(kr, 50)), sec(pct(kr, 99)), sec(pct(k1, 50)), sec(pct(k1, 99)), ratio(kr, k1, 50), ratio(kr, k1, 99),
			sec(pct(k5, 50)), sec(pct(k5, 99)), ratio(kr, k5, 50), ratio(kr, k5, 99))
	}
	b.WriteString("\nraw samples (s):\n\n")
	for _, f := range benchFaults {
		for _, side := range benchSides {
			fmt.Fprintf(&b, "- %s, %s: %s\n", f, side, secs(results[side+"|"+string(f)]))
		}
	}
	t.Log("\n" + b.String())
	benchReport["1 failover"] = "## Failover\n\n" + b.String()
	writeBenchReport(t)
}

func sec(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

func secs(ds []time.Duration) string {
	var out []string
	for _, d := range ds {
		out = append(out, fmt.Sprintf("%.3f", d.Seconds()))
	}
	return strings.Join(out, ", ")
}

func ratio(a, b []time.Duration, p int) float64 {
	if pct(b, p) == 0 {
		return 0
	}
	return float64(pct(a, p)) / float64(pct(b, p))
}

// pct is the nearest-rank percentile.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (p*len(s) + 99) / 100
	return s[max(0, min(len(s)-1, i-1))].Round(time.Millisecond)
}

// inject applies f to owner; daemon is the owner's failover daemon (keepraftd or keepalived).
func inject(t *testing.T, lab *testenv.Lab, f fault, owner string, daemon *testenv.Proc) {
	t.Helper()
	var err error
	switch f {
	case faultMysqldKill:
		err = lab.MariaDB(owner).Kill()
	case faultMysqldStop:
		go func() { // a clean shutdown takes a moment; the clock runs from its start
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_ = lab.MariaDB(owner).Stop(ctx)
		}()
	case faultLinkCut:
		err = lab.CutLink(lab.Host(owner))
	case faultDaemonKill:
		err = daemon.Kill()
	}
	if err != nil {
		t.Fatal(err)
	}
}

func keepraftTrial(t *testing.T, name string, f fault) (time.Duration, int) {
	var d time.Duration
	var holders int
	t.Run(name, func(t *testing.T) {
		c := newCluster(t, clusterOpts{})
		owner := c.waitOwner(30 * time.Second)
		// Let leadership move off the owner and the lease settle, as in steady state.
		time.Sleep(time.Second)
		if _, err := c.firstAnswerFrom(owner, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		inject(t, c.lab, f, owner, c.procs[owner])
		at, err := c.firstAnswerFrom(other(owner), 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		d, holders = at.Sub(start), c.tracker.MaxConcurrent()
	})
	return d, holders
}

func keepalivedTrial(t *testing.T, name string, f fault, advert time.Duration) (time.Duration, int) {
	var d time.Duration
	var holders int
	t.Run(name, func(t *testing.T) {
		c, tr, owner, procs := keepalivedPair(t, advert)
		lab := c.lab
		if _, err := c.firstAnswerFrom(owner, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		inject(t, lab, f, owner, procs[owner])
		at, err := c.firstAnswerFrom(other(owner), 40*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		d, holders = at.Sub(start), tr.MaxConcurrent()
	})
	return d, holders
}

// TestBenchSplitBrain partitions only the two database hosts (keepalived's split-brain
// case) for 8 s and counts how many hosts held the VIP at once, for keepraft and for
// keepalived in the same run.
func TestBenchSplitBrain(t *testing.T) {
	if os.Getenv("KEEPRAFT_BENCH") == "" {
		t.Skip("set KEEPRAFT_BENCH=1 (make bench) to run the benchmark")
	}
	testenv.Require(t)
	n := min(benchTrials(), 3)
	var kr, ka []int
	for i := range n {
		t.Run(fmt.Sprintf("keepraft_partition_trial%d", i+1), func(t *testing.T) {
			c := newCluster(t, clusterOpts{})
			c.waitOwner(30 * time.Second)
			time.Sleep(time.Second)
			if err := c.lab.Partition(c.lab.Host("db1"), c.lab.Host("db2")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(8 * time.Second)
			kr = append(kr, c.tracker.MaxConcurrent())
		})
		t.Run(fmt.Sprintf("keepalived_partition_trial%d", i+1), func(t *testing.T) {
			c, tr, _, _ := keepalivedPair(t, time.Second)
			lab := c.lab
			if err := lab.Partition(lab.Host("db1"), lab.Host("db2")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(8 * time.Second)
			ka = append(ka, tr.MaxConcurrent())
		})
	}
	t.Logf("db1↔db2 partition for 8 s, most simultaneous VIP holders per trial: keepraft %v, keepalived %v", kr, ka)
	benchReport["3 partition"] = fmt.Sprintf("## Partition\n\nOnly db1↔db2 cut for 8 s; the most hosts holding the VIP at once per trial (fence-aware tracker): keepraft %v, keepalived (advert_int 1) %v.\n", kr, ka)
	writeBenchReport(t)
	for _, m := range kr {
		if m > 1 {
			t.Errorf("keepraft had %d holders during a db1↔db2 partition", m)
		}
	}
}

// keepalivedPair starts the baseline: a lab with MariaDB dual masters and keepalived on
// db1 and db2 in the seed config with advert_int advert, and waits until one of them holds
// the VIP. It returns the keepalived processes by host.
func keepalivedPair(t *testing.T, advert time.Duration) (*cluster, *testenv.Tracker, string, map[string]*testenv.Proc) {
	t.Helper()
	testenv.Require(t)
	lab := testenv.NewT(t, testenv.Options{MariaDB: true})
	c := &cluster{t: &failT{T: t}, lab: lab, vip: lab.VIP.Addr().String()}
	c.dialer = fmt.Sprintf("lab%d", dialerSeq.Add(1))
	registerDialer(c)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	tr, err := lab.TrackHolders(ctx, lab.VIP.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	procs := map[string]*testenv.Proc{}
	for i, h := range []string{"db1", "db2"} {
		cfg := testenv.KeepalivedConfig{Interface: "eth0", VRID: 51, Priority: 100 - 10*i, AdvertInt: advert, AuthPass: "1111",
			VIPs: []netip.Prefix{lab.VIP}, Nopreempt: true, State: "BACKUP", CheckCmd: lab.MariaDB(h).CheckCmd()}
		p, err := lab.StartKeepalived(ctx, lab.Host(h), cfg)
		if err != nil {
			t.Fatal(err)
		}
		procs[h] = p
	}
	var owner string
	waitFor(t, "keepalived master with the VIP", 30*time.Second+4*advert, func() (bool, string) {
		h := tr.Holders()
		if len(h) == 1 {
			owner = h[0]
			return true, ""
		}
		return false, fmt.Sprint(h)
	})
	time.Sleep(time.Second)
	return c, tr, owner, procs
}
