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
	faultLinkCut    fault = "owner link cut"
)

func benchTrials() int {
	if n, err := strconv.Atoi(os.Getenv("KEEPRAFT_BENCH_TRIALS")); err == nil && n > 0 {
		return n
	}
	return 5
}

func TestBenchFailover(t *testing.T) {
	if os.Getenv("KEEPRAFT_BENCH") == "" {
		t.Skip("set KEEPRAFT_BENCH=1 (make bench) to run the failover benchmark")
	}
	testenv.Require(t)
	n := benchTrials()
	results := map[string][]time.Duration{}
	for _, f := range []fault{faultMysqldKill, faultLinkCut} {
		for i := range n {
			name := fmt.Sprintf("%s_trial%d", strings.ReplaceAll(string(f), " ", "_"), i+1)
			d, overlap := keepraftTrial(t, "keepraft_"+name, f)
			t.Logf("keepraft   %-15s trial %d: %v (max holders %d)", f, i+1, d, overlap)
			if overlap > 1 {
				t.Errorf("keepraft trial had %d VIP holders at once", overlap)
			}
			results["keepraft/"+string(f)] = append(results["keepraft/"+string(f)], d)
			d, overlap = keepalivedTrial(t, "keepalived_"+name, f)
			t.Logf("keepalived %-15s trial %d: %v (max holders %d)", f, i+1, d, overlap)
			results["keepalived/"+string(f)] = append(results["keepalived/"+string(f)], d)
		}
	}
	if t.Failed() {
		t.Fatal("some trials failed; no summary")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nfailover: fault → first client answer through the VIP from the other host (%d trials each)\n", n)
	fmt.Fprintf(&b, "%-16s %-11s %9s %9s   %-11s %9s %9s   %s\n", "fault", "keepraft", "p50", "p99", "keepalived", "p50", "p99", "ratio p50 (p99)")
	for _, f := range []fault{faultMysqldKill, faultLinkCut} {
		kr, ka := results["keepraft/"+string(f)], results["keepalived/"+string(f)]
		fmt.Fprintf(&b, "%-16s %-11s %9s %9s   %-11s %9s %9s   %.2f (%.2f)\n", f, "", pct(kr, 50), pct(kr, 99), "", pct(ka, 50), pct(ka, 99),
			float64(pct(kr, 50))/float64(pct(ka, 50)), float64(pct(kr, 99))/float64(pct(ka, 99)))
	}
	t.Log(b.String())
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

func inject(t *testing.T, lab *testenv.Lab, f fault, owner string) {
	t.Helper()
	var err error
	switch f {
	case faultMysqldKill:
		err = lab.MariaDB(owner).Kill()
	case faultLinkCut:
		err = lab.CutLink(lab.Host(owner))
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
		inject(t, c.lab, f, owner)
		at, err := c.firstAnswerFrom(other(owner), 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		d, holders = at.Sub(start), c.tracker.MaxConcurrent()
	})
	return d, holders
}

func keepalivedTrial(t *testing.T, name string, f fault) (time.Duration, int) {
	var d time.Duration
	var holders int
	t.Run(name, func(t *testing.T) {
		c, tr, owner := keepalivedPair(t)
		lab := c.lab
		if _, err := c.firstAnswerFrom(owner, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		inject(t, lab, f, owner)
		at, err := c.firstAnswerFrom(other(owner), 30*time.Second)
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
			c, tr, _ := keepalivedPair(t)
			lab := c.lab
			if err := lab.Partition(lab.Host("db1"), lab.Host("db2")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(8 * time.Second)
			ka = append(ka, tr.MaxConcurrent())
		})
	}
	t.Logf("db1↔db2 partition for 8 s, most simultaneous VIP holders per trial: keepraft %v, keepalived %v", kr, ka)
	for _, m := range kr {
		if m > 1 {
			t.Errorf("keepraft had %d holders during a db1↔db2 partition", m)
		}
	}
}

// keepalivedPair starts the baseline: a lab with MariaDB dual masters and keepalived on
// db1 and db2 in the seed config, and waits until one of them holds the VIP.
func keepalivedPair(t *testing.T) (*cluster, *testenv.Tracker, string) {
	t.Helper()
	testenv.Require(t)
	lab := testenv.NewT(t, testenv.Options{MariaDB: true})
	c := &cluster{t: t, lab: lab, vip: lab.VIP.Addr().String()}
	c.dialer = fmt.Sprintf("lab%d", dialerSeq.Add(1))
	registerDialer(c)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	tr, err := lab.TrackHolders(ctx, lab.VIP.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	for i, h := range []string{"db1", "db2"} {
		cfg := testenv.KeepalivedConfig{Interface: "eth0", VRID: 51, Priority: 100 - 10*i, AdvertInt: time.Second, AuthPass: "1111",
			VIPs: []netip.Prefix{lab.VIP}, Nopreempt: true, State: "BACKUP", CheckCmd: lab.MariaDB(h).CheckCmd()}
		if _, err := lab.StartKeepalived(ctx, lab.Host(h), cfg); err != nil {
			t.Fatal(err)
		}
	}
	var owner string
	waitFor(t, "keepalived master with the VIP", 30*time.Second, func() (bool, string) {
		h := tr.Holders()
		if len(h) == 1 {
			owner = h[0]
			return true, ""
		}
		return false, fmt.Sprint(h)
	})
	time.Sleep(time.Second)
	return c, tr, owner
}
