package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keepraft/keepraft/testenv"
)

// TestBenchSwitchover measures a planned move of the writer under a steady writer through
// the VIP: keepraft's switchover, and for keepalived the usual planned move, stopping
// keepalived on the master (it sends a priority-0 advert). The write gap is the longest time
// between two acknowledged writes; lost counts acknowledged writes missing on the new
// writer once replication caught up.
func TestBenchSwitchover(t *testing.T) {
	if os.Getenv("KEEPRAFT_BENCH") == "" {
		t.Skip("set KEEPRAFT_BENCH=1 (make bench) to run the benchmark")
	}
	testenv.Require(t)
	n := benchTrials()
	var krGap, kaGap, krAbsent, kaAbsent []time.Duration
	var krLost, kaLost []int
	for i := range n {
		t.Run(fmt.Sprintf("keepraft_switchover_trial%d", i+1), func(t *testing.T) {
			c := newCluster(t, clusterOpts{})
			owner := c.waitOwner(30 * time.Second)
			target := other(owner)
			time.Sleep(time.Second)
			w := startBenchWriter(t, c, "bench-switchover")
			time.Sleep(time.Second)
			asked := time.Now()
			if err := c.post("/v1/switchover", fmt.Sprintf(`{"to":%q}`, target)); err != nil {
				t.Fatal(err)
			}
			if _, err := c.firstAnswerFrom(target, 15*time.Second); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			gap, lost := w.finish(t, c, target)
			absent := vipAbsent(t, c.tracker.Events(), owner, target, asked)
			krGap, krLost, krAbsent = append(krGap, gap), append(krLost, lost), append(krAbsent, absent)
			t.Logf("keepraft switchover trial %d: write gap %v, VIP without a holder %v, acknowledged writes lost %d of %d", i+1, gap, absent, lost, w.count())
		})
		t.Run(fmt.Sprintf("keepalived_stop_trial%d", i+1), func(t *testing.T) {
			c, tr, owner, procs := keepalivedPair(t, time.Second)
			target := other(owner)
			// keepalived does not manage read_only: the seed's dual masters are both
			// writable, and the VIP alone decides where writes go.
			for _, h := range []string{"db1", "db2"} {
				if err := c.lab.MariaDB(h).Exec(context.Background(), "SET GLOBAL read_only=0"); err != nil {
					t.Fatal(err)
				}
			}
			w := startBenchWriter(t, c, "bench-switchover")
			time.Sleep(time.Second)
			asked := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := procs[owner].Stop(ctx)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.firstAnswerFrom(target, 15*time.Second); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			gap, lost := w.finish(t, c, target)
			absent := vipAbsent(t, tr.Events(), owner, target, asked)
			kaGap, kaLost, kaAbsent = append(kaGap, gap), append(kaLost, lost), append(kaAbsent, absent)
			t.Logf("keepalived stop trial %d: write gap %v, VIP without a holder %v, acknowledged writes lost %d of %d", i+1, gap, absent, lost, w.count())
		})
	}
	if t.Failed() {
		t.Fatal("some trials failed; no summary")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "A steady writer through the VIP (autocommit inserts, one every ~5 ms, connect timeout 200 ms); %d trials each. "+
		"The write gap is the longest time between two acknowledged writes; \"VIP without a holder\" runs from the old holder's "+
		"address removal to the new holder's address add (netlink events, one clock). In that window keepraft's old holder answers "+
		"the writer's packets with a TCP reset (the shut fence, and the release's reset of the VIP's connections), so the writer "+
		"retries at once; keepalived's old holder drops them, so a connect attempt made then costs the writer its connect timeout.\n\n", n)
	fmt.Fprintf(&b, "| planned move | write gap p50 / p99 | VIP without a holder p50 / p99 | acknowledged writes lost per trial |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| keepraft switchover | %s / %s | %s / %s | %v |\n", sec(pct(krGap, 50)), sec(pct(krGap, 99)), sec(pct(krAbsent, 50)), sec(pct(krAbsent, 99)), krLost)
	fmt.Fprintf(&b, "| keepalived stopped on the master (advert_int 1) | %s / %s | %s / %s | %v |\n", sec(pct(kaGap, 50)), sec(pct(kaGap, 99)), sec(pct(kaAbsent, 50)), sec(pct(kaAbsent, 99)), kaLost)
	fmt.Fprintf(&b, "\nratio keepraft ÷ keepalived: write gap p50 %.2f, p99 %.2f; VIP without a holder p50 %.2f, p99 %.2f\n\nraw write gaps (s): keepraft %s; keepalived %s\n\nraw VIP without a holder (s): keepraft %s; keepalived %s\n",
		ratio(krGap, kaGap, 50), ratio(krGap, kaGap, 99), ratio(krAbsent, kaAbsent, 50), ratio(krAbsent, kaAbsent, 99), secs(krGap), secs(kaGap), secs(krAbsent), secs(kaAbsent))
	t.Log("\n" + b.String())
	benchReport["2 switchover"] = "## Planned switchover\n\n" + b.String()
	writeBenchReport(t)
	for i, l := range krLost {
		if l != 0 {
			t.Errorf("keepraft switchover trial %d lost %d acknowledged writes", i+1, l)
		}
	}
}

// vipAbsent is how long the VIP had no holder when it moved from one host to another
// after since: from the first removal on from to the first add on to after it. A trial
// whose events show no such move fails.
func vipAbsent(t *testing.T, evs []testenv.AddrEvent, from, to string, since time.Time) time.Duration {
	t.Helper()
	var dropped time.Time
	for _, e := range evs {
		switch {
		case e.Seed || e.At.Before(since):
		case dropped.IsZero() && e.Host == from && !e.Added:
			dropped = e.At
		case !dropped.IsZero() && e.Host == to && e.Added:
			return e.At.Sub(dropped)
		}
	}
	t.Errorf("no move of the VIP from %s to %s after %s in %d address events", from, to, since.Format(time.StampMicro), len(evs))
	return 0
}

// benchWriter inserts through the VIP and records every acknowledged sequence number with
// its time.
type benchWriter struct {
	origin string
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	seqs   []int64
	at     []time.Time
}

func startBenchWriter(t *testing.T, c *cluster, origin string) *benchWriter {
	t.Helper()
	w := &benchWriter{origin: origin, stop: make(chan struct{}), done: make(chan struct{})}
	dsn := fmt.Sprintf("%s:%s@%s(%s:3306)/%s?timeout=200ms&readTimeout=500ms&writeTimeout=500ms", testenv.AppUser, testenv.AppPass, c.dialer, c.vip, testenv.AppSchema)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetConnMaxLifetime(time.Second)
	go func() {
		defer close(w.done)
		defer db.Close()
		for seq := int64(1); ; seq++ {
			select {
			case <-w.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			res, err := db.ExecContext(ctx, "INSERT INTO writes (origin, seq) VALUES (?, ?)", w.origin, seq)
			cancel()
			if err == nil {
				if n, _ := res.RowsAffected(); n == 1 {
					w.mu.Lock()
					w.seqs, w.at = append(w.seqs, seq), append(w.at, time.Now())
					w.mu.Unlock()
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	t.Cleanup(func() {
		select {
		case <-w.stop:
		default:
			close(w.stop)
		}
		<-w.done
	})
	return w
}

func (w *benchWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seqs)
}

// finish stops the writer and returns the longest gap between acknowledgements and how
// many acknowledged writes the new writer lacks once replication had 5 s to catch up.
func (w *benchWriter) finish(t *testing.T, c *cluster, target string) (time.Duration, int) {
	t.Helper()
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.at) < 50 {
		t.Fatalf("only %d writes acknowledged", len(w.at))
	}
	var gap time.Duration
	for i := 1; i < len(w.at); i++ {
		gap = max(gap, w.at[i].Sub(w.at[i-1]))
	}
	m := c.lab.MariaDB(target)
	lost := 0
	deadline := time.Now().Add(5 * time.Second)
	for {
		rows, err := m.QueryString(context.Background(), fmt.Sprintf("SELECT COUNT(DISTINCT seq) FROM kr.writes WHERE origin='%s'", w.origin))
		if err != nil {
			t.Fatal(err)
		}
		have, _ := strconv.Atoi(rows)
		lost = max(0, len(w.seqs)-have)
		if lost == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return gap, lost
}

// TestBenchIdle measures the steady-state cost of each node: CPU (user+system, from
// /proc/PID/stat) over 30 s idle and resident memory, for keepraftd (its fence watchdog
// included) and for keepalived (all its processes), in the same run.
func TestBenchIdle(t *testing.T) {
	if os.Getenv("KEEPRAFT_BENCH") == "" {
		t.Skip("set KEEPRAFT_BENCH=1 (make bench) to run the benchmark")
	}
	testenv.Require(t)
	const window = 30 * time.Second
	var rows []string
	floor := startFloorPair(t)
	t.Run("keepraft", func(t *testing.T) {
		// The default log level (info), as a user runs it; KEEPRAFT_BENCH_PROFILE=DIR has
		// every keepraftd write a CPU profile there (written when the lab stops it).
		c := newCluster(t, clusterOpts{logLevel: "info", cpuProfileDir: os.Getenv("KEEPRAFT_BENCH_PROFILE")})
		c.waitOwner(30 * time.Second)
		time.Sleep(5 * time.Second)
		for _, name := range []string{"db1", "db2", "witness"} {
			rows = append(rows, idleRow(t, "keepraftd "+name, c.procs[name].PID, floor, window)...)
		}
		// Stopped one by one while the others run, so each ends cleanly and writes its
		// profile (the owner hands over first).
		for _, name := range []string{"db1", "db2", "witness"} {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			if err := c.procs[name].Stop(ctx); err != nil {
				t.Errorf("stop keepraftd %s: %v", name, err)
			}
			cancel()
		}
	})
	t.Run("keepalived", func(t *testing.T) {
		_, _, _, procs := keepalivedPair(t, time.Second)
		time.Sleep(5 * time.Second)
		for _, name := range []string{"db1", "db2"} {
			rows = append(rows, idleRow(t, "keepalived "+name+" (advert_int 1)", procs[name].PID, floor, window)...)
		}
	})
	if t.Failed() {
		t.Fatal("no summary")
	}
	b := fmt.Sprintf("CPU over %s idle (user+system, %% of one core) and resident memory, each process tree (keepraftd with its fence watchdog; keepalived with its VRRP child). "+
		"\"RSS, sum\" adds the trees' resident sets, counting the executable and library pages that the tree's processes share once per process; "+
		"\"resident, shared once\" counts the private pages of every process and the largest shared part once (the watchdog is keepraftd's own executable, keepalived's child a fork); "+
		"\"main process\" is the RSS of keepraftd or of keepalived's parent alone; \"main, touched\" is what of it the process referenced during the window "+
		"(its working set: referenced bits cleared through /proc/PID/clear_refs at the start, read from smaps at the end), which does not count pages the kernel "+
		"mapped around a fault without the process using them.\n\n"+
		"\"Switches/s\" are the tree's threads' context switches (voluntary and not) a second, a measure of its wakeups that a busy VM disturbs less than CPU time.\n\n"+
		"\"Go floor, same window\" is the CPU and switches of a reference process measured over the same window as the row: e2e/testdata/idlefloor, "+
		"a Go process set up as keepraftd is (one P, a millisecond of timer slack) that does nothing but make %d 64-byte TCP round trips a second over "+
		"loopback to an echo server in another process (not counted), two wakeups each, a timer's and an answer's, as a MySQL probe is. "+
		"What a wakeup costs on this VM varies several-fold from minute to minute, so a row is best read against its own window's floor.\n\n"+
		"| node | CPU | switches/s | RSS, sum | resident, shared once | main process | main, touched | Go floor, same window |\n|---|---|---|---|---|---|---|---|\n%s", window, floorRate, strings.Join(rows, ""))
	t.Log("\n" + b)
	benchReport["4 idle"] = "## Idle cost\n\n" + b
	writeBenchReport(t)
}

// floorRate is the round trips a second of the reference process, a MySQL probe's
// (mysql.interval 100ms).
const floorRate = 10

// startFloorPair builds idlefloor and starts its echo server and its client at floorRate,
// both ended by PID when the test ends; it returns the client's pid.
func startFloorPair(t *testing.T) int {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "idlefloor")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/idlefloor").CombinedOutput(); err != nil {
		t.Fatalf("build idlefloor: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	startFloor(t, bin, "-serve", addr)
	return startFloor(t, bin, "-rate", strconv.Itoa(floorRate), "-addr", addr)
}

// startFloor starts idlefloor with args and returns its pid; it is ended by its PID and
// reaped when the test ends.
func startFloor(t *testing.T, bin string, args ...string) int {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start idlefloor %v: %v", args, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd.Process.Pid
}

// idleRow measures the process tree rooted at pid over window, and the reference process
// floor over the same window. The windows run one after the other, so each node is
// measured alone.
func idleRow(t *testing.T, name string, pid, floor int, window time.Duration) []string {
	t.Helper()
	tree := processTree(pid)
	before := treeCounters(tree)
	floorBefore := treeCounters([]int{floor})
	// Clear the main process's referenced bits: what it touches in the window is its
	// working set, which does not depend on how many pages the kernel mapped around a
	// fault (recent kernels map a whole large page-cache folio of the executable).
	clearRefs := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("1"), 0)
	time.Sleep(window)
	cpu, switches := treeCounters(tree).since(before, window)
	floorCPU, floorSwitches := treeCounters([]int{floor}).since(floorBefore, window)
	// A reference that stopped (its echo server gone) would read as a floor of 0 %.
	if floorSwitches < floorRate {
		t.Errorf("%s: the reference process made %.0f switches a second in the window, under one per round trip: it is not running", name, floorSwitches)
	}
	var rss, private, shared int
	for _, p := range tree {
		r, priv := memKB(p)
		rss += r
		private += priv
		shared = max(shared, r-priv)
	}
	main, _ := memKB(pid)
	touched := "n/a"
	if ref, ok := smapsKB(pid, "Referenced"); ok && clearRefs == nil {
		touched = fmt.Sprintf("%.1f MB", float64(ref)/1024)
	}
	return []string{fmt.Sprintf("| %s | %.2f %% | %.0f | %.1f MB | %.1f MB | %.1f MB | %s | %.2f %%, %.0f switches/s |\n", name, cpu, switches, float64(rss)/1024,
		float64(private+shared)/1024, float64(main)/1024, touched, floorCPU, floorSwitches)}
}

// counters are the CPU ticks and context switches of each process of a tree, by pid.
type counters map[int]struct{ ticks, switches uint64 }

func treeCounters(tree []int) counters {
	c := counters{}
	for _, p := range tree {
		c[p] = struct{ ticks, switches uint64 }{cpuTicks(p), ctxSwitches(p)}
	}
	return c
}

// since returns the CPU (% of one core) and the switches a second from before to c over
// window, for the processes of before.
func (c counters) since(before counters, window time.Duration) (cpu, switches float64) {
	var ticks, cs uint64
	for p, b := range before {
		now := c[p]
		// A process or thread that exited takes its counts along.
		if now.ticks > b.ticks {
			ticks += now.ticks - b.ticks
		}
		if now.switches > b.switches {
			cs += now.switches - b.switches
		}
	}
	return float64(ticks) / 100 / window.Seconds() * 100, float64(cs) / window.Seconds() // USER_HZ is 100 on Linux
}

// smapsKB reads one field of pid's /proc/PID/smaps_rollup, in kB.
func smapsKB(pid int, field string) (int, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, false
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == field {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return kb, err == nil
		}
	}
	return 0, false
}

// memKB reads pid's resident set and the private part of it (pages no other process
// maps) from /proc/PID/smaps_rollup.
func memKB(pid int) (rss, private int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return rssKB(pid), 0
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		switch k {
		case "Rss":
			rss = kb
		case "Private_Clean", "Private_Dirty":
			private += kb
		}
	}
	return rss, private
}

// processTree returns pid and its descendants.
func processTree(pid int) []int {
	out := []int{pid}
	ents, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		if len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			children[pp] = append(children[pp], p)
		}
	}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

func cpuTicks(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	s, _ := strconv.ParseUint(f[12], 10, 64)
	return u + s
}

// ctxSwitches sums the voluntary and involuntary context switches of pid's threads (those
// alive now): on a VM they are a steadier measure of an idle daemon's wakeups than CPU time.
func ctxSwitches(pid int) uint64 {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var n uint64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue
		}
		for l := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				c, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				n += c
			}
		}
	}
	return n
}

func rssKB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return kb
		}
	}
	return 0
}

// writeBenchReport writes bench/results.md with the sections measured so far in this
// run, the machine and the versions.
func writeBenchReport(t *testing.T) {
	t.Helper()
	var uts syscall.Utsname
	_ = syscall.Uname(&uts)
	release := utsString(uts.Release[:])
	version := func(argv ...string) string {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			return "unknown"
		}
		return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# keepraft benchmark results\n\nWritten by `make bench` on %s. Every trial starts a fresh three-host lab in network namespaces (MariaDB dual masters, a witness, a client host); keepraft and keepalived run in the same run on the same machine.\n\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "- machine: Linux %s, %d CPUs, %s\n- MariaDB: %s\n- keepalived: %s\n", release, runtime.NumCPU(), runtime.Version(), version("mariadbd", "--version"), version("keepalived", "--version"))
	b.WriteString("- keepraft: defaults (failover.lease 500ms, mysql.interval 100ms fall 2, vip.fence auto, vip.kernel_lease 1s), control plane over mutual TLS\n")
	b.WriteString("- keepalived: the seed config — BACKUP, nopreempt, priority 100/90, VRRPv2, track_script `mysqladmin ping` every 1 s with fall 2, advert_int as stated\n\n")
	keys := make([]string, 0, len(benchReport))
	for k := range benchReport {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b.WriteString(benchReport[k] + "\n")
	}
	dir := filepath.Join("..", "bench")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func utsString(b []int8) string {
	var s []byte
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}
