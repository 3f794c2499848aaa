package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/probe"
	"github.com/keepraft/keepraft/testenv"
)

// TestChaos is the adversary (make chaos): a seeded campaign of overlapping faults (at most
// two at once) under a live workload through the VIP, judged by the checker in
// chaos_check_test.go. It runs in make test for 3 minutes in async mode; KEEPRAFT_CHAOS=1
// with KEEPRAFT_CHAOS_DURATION, KEEPRAFT_CHAOS_SEED and KEEPRAFT_CHAOS_MODE (async or
// semisync) tune it. The schedule (fault kinds, targets, holds, gaps) comes from the seed
// alone; targets named by role ("the owner", "the leader") are resolved when injected.
// ciChaosSeed is the schedule make test runs.
const ciChaosSeed = 20261201

func TestChaos(t *testing.T) { testChaos(t, testenv.FlavorMariaDB, 3*time.Minute) }

// TestMySQLChaos is TestChaos on MySQL, 60 s by default (KEEPRAFT_CHAOS_DURATION overrides):
// the same schedule and the same checker.
func TestMySQLChaos(t *testing.T) { testChaos(t, testenv.FlavorMySQL, time.Minute) }

func testChaos(t *testing.T, flavor probe.Flavor, dur time.Duration) {
	requireFlavor(t, flavor)
	if d, err := time.ParseDuration(os.Getenv("KEEPRAFT_CHAOS_DURATION")); err == nil && d > 0 {
		dur = d
	}
	// make test replays a fixed schedule (the fault timing still varies from run to run);
	// make chaos draws a new seed unless SEED is given.
	seed := uint64(ciChaosSeed)
	if os.Getenv("KEEPRAFT_CHAOS") != "" {
		seed = uint64(time.Now().UnixNano())
	}
	if s, err := strconv.ParseUint(os.Getenv("KEEPRAFT_CHAOS_SEED"), 10, 64); err == nil {
		seed = s
	}
	mode := "async"
	if m := os.Getenv("KEEPRAFT_CHAOS_MODE"); m != "" {
		mode = m
	}
	if mode != "async" && mode != "semisync" {
		t.Fatalf("KEEPRAFT_CHAOS_MODE=%q: want async or semisync", mode)
	}
	t.Logf("chaos: %s, mode %s, duration %s, seed %d (replay: make chaos SEED=%d MODE=%s DURATION=%s)", flavor, mode, dur, seed, seed, mode, dur)
	c, fss := newChaosCluster(t, mode, flavor)
	c.waitOwner(60 * time.Second)
	c.waitDBsHealthy(30 * time.Second)
	c.requireReplicationRuns(15 * time.Second)

	ch := newChaos(t, c, mode)
	ch.fs = fss
	startIdx := lastIndex(c.journalNoFail())
	ch.startMonitors()
	ch.startWorkload()
	ch.run(seed, dur)
	ch.finish(seed, dur, startIdx)
}

// newChaosCluster is newCluster with small filesystems under both servers' datadirs and
// every keepraftd data dir (so disk-full faults can fill them), and semi-sync AFTER_SYNC in
// both servers' my.cnf in semisync mode (so a restarted server keeps it).
func newChaosCluster(t *testing.T, mode string, flavor probe.Flavor) (*cluster, map[string]*testenv.SmallFS) {
	t.Helper()
	dir, err := os.MkdirTemp("", "keepraft-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	fss := map[string]*testenv.SmallFS{}
	var fsMu sync.Mutex
	// Registered before the lab, so it runs after the lab ended every process.
	t.Cleanup(func() {
		fsMu.Lock()
		defer fsMu.Unlock()
		for k, fs := range fss {
			if err := fs.Unmount(); err != nil {
				t.Errorf("unmount %s: %v", k, err)
			}
		}
		if t.Failed() {
			keep := dir + "-logs"
			if out, err := exec.Command("cp", "-a", filepath.Join(dir, "logs"), keep).CombinedOutput(); err != nil {
				t.Logf("keep the logs: %v: %s", err, out)
			} else {
				t.Logf("daemon and server logs kept in %s", keep)
			}
		}
		_ = os.RemoveAll(dir)
	})
	lab := testenv.NewT(t, testenv.Options{MariaDB: true, Dir: dir, Flavor: flavor})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, n := range dbNames {
		wg.Go(func() {
			m := lab.MariaDB(n)
			if err := m.Stop(ctx); err != nil {
				errs[i] = err
				return
			}
			if mode == "semisync" {
				f, err := os.OpenFile(m.ConfigPath(), os.O_APPEND|os.O_WRONLY, 0)
				if err != nil {
					errs[i] = err
					return
				}
				// The zero-loss configuration: no fallback to async (the timeout is the
				// maximum, ~49 days), so a commit waits while the peer is away instead of
				// being acknowledged unprotected. Every acknowledged write must survive.
				// The master side starts off: keepraft (mysql.semi_sync) switches it on on
				// the owner only, since a standby that is a semi-sync master stalls its
				// SQL thread waiting for acknowledgements (32 acknowledged writes lost).
				_, err = f.WriteString(strings.Join(m.SemiSyncConfig(), "\n") + "\n")
				f.Close()
				if err != nil {
					errs[i] = err
					return
				}
			}
			data := filepath.Join(m.Dir, "data")
			used, err := duBytes(data)
			if err != nil {
				errs[i] = err
				return
			}
			fs, err := testenv.MountSmallFS(data, used+96<<20)
			if fs != nil {
				fsMu.Lock()
				fss["mysql:"+n] = fs
				fsMu.Unlock()
			}
			if err != nil {
				errs[i] = err
				return
			}
			errs[i] = m.Start(ctx)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("put the datadirs on small filesystems: %v", err)
	}
	if mode == "semisync" {
		for _, n := range dbNames {
			m := lab.MariaDB(n)
			v, err := m.QueryString(ctx, m.SemiSyncSettingsSQL())
			if err != nil || v != "OFFONAFTER_SYNC" {
				t.Fatalf("semi-sync on %s: %q %v", n, v, err)
			}
		}
	}

	c := &cluster{t: &failT{T: t}, lab: lab, nodes: map[string]testenv.KeepraftdNode{}, procs: map[string]*testenv.Proc{}, vip: lab.VIP.Addr().String()}
	client := lab.Host("client")
	c.http = newLabHTTP(client)
	c.dialer = fmt.Sprintf("lab%d", dialerSeq.Add(1))
	registerDialer(c)
	nodes, err := lab.WriteKeepraftdConfigs(testenv.KeepraftdOptions{Extra: "log: {level: info}\n", SemiSync: mode == "semisync"})
	if err != nil {
		t.Fatal(err)
	}
	tlsConf, err := lab.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	c.tls = tlsConf != nil
	c.http.Transport.(*http.Transport).TLSClientConfig = tlsConf
	for _, n := range nodes {
		fs, err := testenv.MountSmallFS(n.DataDir, 48<<20)
		if fs != nil {
			fsMu.Lock()
			fss["raft:"+n.Name] = fs
			fsMu.Unlock()
		}
		if err != nil {
			t.Fatalf("small fs for keepraftd %s: %v", n.Name, err)
		}
	}
	c.trackAndStart(nodes)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, n := range []string{"db1", "db2", "witness"} {
			if p := c.procs[n]; p != nil {
				t.Logf("--- keepraftd %s (last lines)\n%s", n, p.Tail(40))
			}
		}
	})
	return c, fss
}

func duBytes(dir string) (int64, error) {
	var total int64
	err := filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			total += info.Size()
		}
		return nil
	})
	return total, err
}

// --- faults ---------------------------------------------------------------------------------

// chaosFault is one scheduled fault: what it is, which hosts it touches, and how it is injected
// and healed.
type chaosFault struct {
	n        int
	kind     string
	spec     string // the target as drawn from the seed (a host, or "owner"/"leader")
	hold     time.Duration
	gap      time.Duration // wait before it, after the previous one
	param    int           // kind-specific draw (loss percent, delay, partner index)
	desc     string
	hosts    []string // hosts touched (resolved)
	keys     []string // resources held while active
	injected time.Time
	inject   func() error
	heal     func() error
}

var faultKinds = []struct {
	kind   string
	weight int
}{
	{"mysqld-kill", 3}, {"mysqld-shutdown", 2}, {"mysqld-freeze", 2},
	{"keepraftd-kill", 3}, {"keepraftd-term", 2}, {"keepraftd-freeze", 3},
	{"link-cut", 2}, {"partition", 3}, {"isolate", 2}, {"one-way", 3},
	{"netem", 2}, {"disk-mysql", 1}, {"disk-raft", 1},
	{"switchover", 2}, {"maintenance", 1},
}

// draw makes the next fault from the seed's stream; nothing here depends on the run.
func drawFault(rng *rand.Rand, n int) *chaosFault {
	total := 0
	for _, k := range faultKinds {
		total += k.weight
	}
	x := rng.IntN(total)
	f := &chaosFault{n: n}
	for _, k := range faultKinds {
		if x < k.weight {
			f.kind = k.kind
			break
		}
		x -= k.weight
	}
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	switch f.kind {
	case "mysqld-kill", "mysqld-shutdown", "mysqld-freeze", "disk-mysql", "maintenance":
		f.spec = pick("db1", "db2", "owner", "owner")
	case "keepraftd-kill", "keepraftd-term", "keepraftd-freeze":
		f.spec = pick("db1", "db2", "witness", "owner", "leader")
	case "link-cut", "isolate", "disk-raft":
		f.spec = pick("db1", "db2", "witness", "owner")
	case "partition", "one-way":
		f.spec = pick("db1", "db2", "witness", "owner", "leader")
	case "netem":
		f.spec = pick("db1", "db2", "witness", "owner")
	case "switchover":
		f.spec = pick("", "other")
	}
	f.param = rng.IntN(1000)
	f.hold = time.Duration(500+rng.IntN(5500)) * time.Millisecond
	f.gap = time.Duration(300+rng.IntN(2200)) * time.Millisecond
	return f
}

// run injects faults for dur: each waits its gap, then for a free slot (at most two active),
// then for its resources; a fault whose resources stay busy is skipped (logged).
func (ch *chaos) run(seed uint64, dur time.Duration) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	end := time.Now().Add(dur)
	var faults sync.WaitGroup
	for n := 1; time.Now().Before(end); n++ {
		f := drawFault(rng, n)
		time.Sleep(f.gap)
		for time.Now().Before(end) {
			ch.mu.Lock()
			busy := len(ch.active) >= 2
			ch.mu.Unlock()
			if !busy {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !time.Now().Before(end) {
			break
		}
		if err := ch.resolve(f); err != nil {
			ch.logf("fault #%d %s %s: skipped: %v", f.n, f.kind, f.spec, err)
			ch.mu.Lock()
			ch.skipped++
			ch.mu.Unlock()
			continue
		}
		faults.Go(func() { ch.play(f) })
	}
	ch.logf("campaign over: waiting for the active faults to heal (%s)", ch.activeFaults())
	faults.Wait()
}

// play injects f, holds it and heals it; the resources stay taken until the heal is done.
func (ch *chaos) play(f *chaosFault) {
	ch.logf("INJECT #%d %s (hold %s)", f.n, f.desc, f.hold)
	err := f.inject()
	if err != nil {
		ch.logf("INJECT #%d %s failed: %v", f.n, f.desc, err)
	} else {
		time.Sleep(f.hold)
	}
	var herr error
	if f.heal != nil {
		herr = f.heal()
	}
	now := time.Now()
	ch.mu.Lock()
	delete(ch.active, f.n)
	if f.kind == "disk-mysql" {
		for _, h := range f.hosts {
			ch.diskHealed[h] = now
		}
	}
	if err == nil {
		ch.heals = append(ch.heals, now)
	}
	ch.mu.Unlock()
	if herr != nil {
		ch.harnessError("HEAL #%d %s failed: %v", f.n, f.desc, herr)
		return
	}
	ch.logf("HEAL #%d %s (active now: %s)", f.n, f.desc, ch.activeFaults())
}

// owner and leader as the cluster says now (the newest answer of the last second).
func (ch *chaos) roleHost(role string) string {
	st, ok := ch.latest(time.Second)
	if !ok {
		return ""
	}
	switch role {
	case "owner":
		return st.Owner
	case "leader":
		return st.Leader
	}
	return role
}

// resolve turns f's spec into hosts, takes its resources and builds inject and heal.
func (ch *chaos) resolve(f *chaosFault) error {
	target := ch.roleHost(f.spec)
	if f.kind == "switchover" {
		target = ""
	} else if target == "" {
		return fmt.Errorf("no %s known", f.spec)
	}
	if strings.HasPrefix(f.kind, "mysqld") || f.kind == "disk-mysql" || f.kind == "maintenance" {
		if target == "witness" {
			target = "db1"
		}
	}
	lab := ch.c.lab
	voters := []string{"db1", "db2", "witness"}
	others := slices.DeleteFunc(slices.Clone(voters), func(x string) bool { return x == target })
	partner := ""
	if len(others) > 0 {
		partner = others[f.param%len(others)]
	}
	var keys, hosts []string
	switch f.kind {
	case "mysqld-kill", "mysqld-shutdown", "mysqld-freeze":
		keys, hosts = []string{"mysqld:" + target}, []string{target}
		m := lab.MariaDB(target)
		switch f.kind {
		case "mysqld-kill":
			f.desc = "SIGKILL mysqld on " + target + " (" + f.spec + ")"
			f.inject = m.Kill
		case "mysqld-shutdown":
			f.desc = "graceful shutdown of mysqld on " + target + " (" + f.spec + ")"
			f.inject = func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				return m.Stop(ctx)
			}
		case "mysqld-freeze":
			f.desc = "SIGSTOP mysqld on " + target + " (" + f.spec + ")"
			f.inject = func() error { return m.Proc.Freeze() }
			f.heal = func() error {
				// keepraft kills a frozen server that had writes open (it would resume
				// writable beside the next owner); then the heal restarts it, as a
				// supervisor would.
				if !m.Proc.Alive() {
					ch.logf("mysqld on %s was killed while frozen; restarting it", target)
					return ch.startMySQL(target)
				}
				return m.Proc.Thaw()
			}
		}
		if f.heal == nil {
			f.heal = func() error { return ch.startMySQL(target) }
		}
	case "keepraftd-kill", "keepraftd-term", "keepraftd-freeze":
		keys, hosts = []string{"keepraftd:" + target}, []string{target}
		p := ch.proc(target)
		switch f.kind {
		case "keepraftd-kill":
			f.desc = "SIGKILL keepraftd on " + target + " (" + f.spec + ")"
			f.inject = p.Kill
			f.heal = func() error { return ch.startKeepraftd(target) }
		case "keepraftd-term":
			f.desc = "SIGTERM keepraftd on " + target + " (" + f.spec + ")"
			f.inject = func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
				defer cancel()
				err := p.Stop(ctx)
				if ctx.Err() != nil {
					ch.logf("keepraftd %s ignored SIGTERM for 8 s and was killed", target)
				}
				return err
			}
			f.heal = func() error { return ch.startKeepraftd(target) }
		case "keepraftd-freeze":
			f.desc = "SIGSTOP keepraftd on " + target + " (" + f.spec + ")"
			f.inject = p.Freeze
			f.heal = p.Thaw
		}
	case "link-cut":
		keys, hosts = []string{"net:" + target}, []string{target}
		h := lab.Host(target)
		f.desc = "cut the link of " + target + " (" + f.spec + ")"
		f.inject = func() error { return lab.CutLink(h) }
		f.heal = func() error { return lab.RestoreLink(h) }
	case "partition":
		keys, hosts = []string{"net:" + target, "net:" + partner}, []string{target, partner}
		a, b := lab.Host(target), lab.Host(partner)
		f.desc = fmt.Sprintf("partition %s (%s) from %s", target, f.spec, partner)
		f.inject = func() error { return lab.Partition(a, b) }
		f.heal = func() error { return lab.Heal(a, b) }
	case "isolate":
		keys, hosts = []string{"net:db1", "net:db2", "net:witness", "net:client"}, []string{target}
		h := lab.Host(target)
		f.desc = "isolate " + target + " (" + f.spec + ") from every host"
		f.inject = func() error { return lab.Isolate(h) }
		f.heal = func() error {
			var errs []error
			for _, o := range lab.Hosts() {
				if o != h {
					errs = append(errs, lab.Heal(h, o))
				}
			}
			return errors.Join(errs...)
		}
	case "one-way":
		keys, hosts = []string{"net:" + target, "net:" + partner}, []string{target, partner}
		from, to := lab.Host(target), lab.Host(partner)
		if f.param%2 == 1 {
			from, to = to, from
		}
		f.desc = fmt.Sprintf("one-way drop: %s hears nothing from %s (%s is %s)", to.Name, from.Name, target, f.spec)
		f.inject = func() error { return lab.DropOneWay(from, to, true) }
		f.heal = func() error { return lab.DropOneWay(from, to, false) }
	case "netem":
		keys, hosts = []string{"net:" + target}, []string{target}
		h := lab.Host(target)
		loss := 5 + f.param%36
		delay := time.Duration(10+(f.param/36)%140) * time.Millisecond
		f.desc = fmt.Sprintf("netem on %s (%s): loss %d%%, delay %s ±%s", target, f.spec, loss, delay, delay/4)
		f.inject = func() error {
			what, err := lab.Netem(h, loss, delay, delay/4)
			if err == nil {
				ch.logf("#%d applied: %s", f.n, what)
			}
			return err
		}
		f.heal = func() error { _, err := lab.Netem(h, 0, 0, 0); return err }
	case "disk-mysql", "disk-raft":
		prefix := "mysql:"
		if f.kind == "disk-raft" {
			prefix = "raft:"
		}
		fs := ch.fs[prefix+target]
		if fs == nil {
			return fmt.Errorf("no small filesystem %s%s", prefix, target)
		}
		keys, hosts = []string{"disk:" + prefix + target}, []string{target}
		f.desc = fmt.Sprintf("disk full: %s data dir of %s (%s)", strings.TrimSuffix(prefix, ":"), target, f.spec)
		f.inject = fs.Fill
		f.heal = fs.Unfill
	case "maintenance":
		keys, hosts = []string{"maint:" + target}, nil
		f.desc = "maintenance on " + target + " (" + f.spec + ") via the API"
		on := false
		f.inject = func() error {
			code, err := ch.post("/v1/maintenance", fmt.Sprintf(`{"node":%q,"on":true}`, target))
			if code == 409 {
				ch.logf("maintenance on %s refused (409): %v", target, err)
				ch.mu.Lock()
				ch.refused++
				ch.mu.Unlock()
				return nil
			}
			if err == nil {
				on = true
				ch.mu.Lock()
				ch.maint[target] = true
				ch.mu.Unlock()
			}
			return err
		}
		f.heal = func() error {
			if !on {
				return nil
			}
			return ch.maintenanceOff(target)
		}
	case "switchover":
		f.desc = "switchover via the API"
		body := `{}`
		if f.spec == "other" {
			if o := ch.roleHost("owner"); o == "db1" || o == "db2" {
				body = fmt.Sprintf(`{"to":%q}`, other(o))
				f.desc += " to " + other(o)
			}
		}
		f.hold = 0
		f.inject = func() error {
			code, err := ch.post("/v1/switchover", body)
			if code == 409 {
				ch.logf("switchover refused (409): %v", err)
				ch.mu.Lock()
				ch.refused++
				ch.mu.Unlock()
				return nil
			}
			return err
		}
	default:
		return fmt.Errorf("unknown kind %s", f.kind)
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for _, a := range ch.active {
		for _, k := range a.keys {
			if slices.Contains(keys, k) {
				return fmt.Errorf("%s (%s) is busy with #%d %s", k, f.kind, a.n, a.desc)
			}
		}
	}
	f.keys, f.hosts, f.injected = keys, hosts, time.Now()
	if f.kind != "switchover" {
		ch.active[f.n] = f
	}
	ch.counts[f.kind]++
	return nil
}

func (ch *chaos) proc(name string) *testenv.Proc {
	ch.procMu.Lock()
	defer ch.procMu.Unlock()
	return ch.c.procs[name]
}

// startKeepraftd starts a node's keepraftd again (it must have exited).
func (ch *chaos) startKeepraftd(name string) error {
	p := ch.proc(name)
	if p != nil && !p.Exited() {
		return fmt.Errorf("keepraftd %s still runs (pid %d)", name, p.PID)
	}
	np, err := ch.c.lab.StartKeepraftd(context.Background(), keepraftdBin, ch.c.nodes[name])
	if err != nil {
		return err
	}
	ch.procMu.Lock()
	ch.c.procs[name] = np
	ch.procMu.Unlock()
	return nil
}

// startMySQL starts a stopped server, retrying for up to a minute (its disk may be full).
func (ch *chaos) startMySQL(name string) error {
	m := ch.c.lab.MariaDB(name)
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := m.Start(ctx)
		cancel()
		if err == nil || strings.Contains(err.Error(), "already running") {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		ch.logf("start mysqld on %s failed, retrying: %v", name, err)
		time.Sleep(2 * time.Second)
	}
}

// maintenanceOff retries maintenance off until it commits (30 s at most).
func (ch *chaos) maintenanceOff(name string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := ch.post("/v1/maintenance", fmt.Sprintf(`{"node":%q,"on":false}`, name))
		if err == nil {
			ch.mu.Lock()
			delete(ch.maint, name)
			ch.mu.Unlock()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("maintenance off %s: %w", name, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// healEverything is the final sweep: whatever a fault might have left is undone, and any
// process that is gone (killed by us, or exited by itself) is started again.
func (ch *chaos) healEverything() {
	lab := ch.c.lab
	var errs []error
	errs = append(errs, lab.HealAll())
	for _, a := range lab.Hosts() {
		_, err := lab.Netem(a, 0, 0, 0)
		errs = append(errs, lab.RestoreLink(a), err)
		for _, b := range lab.Hosts() {
			if a != b {
				errs = append(errs, lab.DropOneWay(a, b, false))
			}
		}
	}
	for _, fs := range ch.fs {
		errs = append(errs, fs.Unfill())
	}
	for _, n := range dbNames {
		m := lab.MariaDB(n)
		if m.Proc != nil && m.Proc.Alive() {
			_ = m.Proc.Thaw()
		} else {
			ch.logf("final heal: mysqld on %s is not running, starting it", n)
			errs = append(errs, ch.startMySQL(n))
		}
	}
	for _, n := range []string{"db1", "db2", "witness"} {
		p := ch.proc(n)
		if p.Exited() {
			ch.logf("final heal: keepraftd on %s is not running (%v), starting it", n, p.Err())
			errs = append(errs, ch.startKeepraftd(n))
		} else {
			_ = p.Thaw()
		}
	}
	ch.mu.Lock()
	var maint []string
	for n := range ch.maint {
		maint = append(maint, n)
	}
	ch.mu.Unlock()
	for _, n := range maint {
		errs = append(errs, ch.maintenanceOff(n))
	}
	if err := errors.Join(errs...); err != nil {
		ch.harnessError("final heal: %v", err)
	}
}

// settle waits (within) for one active owner that alone holds the VIP, answers writes, and
// every database node healthy. It returns the owner ("" on timeout, a violation).
func (ch *chaos) settle(within time.Duration) string {
	deadline := time.Now().Add(within)
	last := ""
	for time.Now().Before(deadline) {
		st, ok := ch.fetchAll()
		h := ch.c.tracker.Holders()
		healthy := ok
		if ok {
			var recs []fsm.Record
			for _, m := range st.Members {
				if m.Role != fsm.RoleDatabase || (m.Healthy != nil && *m.Healthy) {
					continue
				}
				// A server whose binlog lost transactions stays unfit until an operator
				// repairs it; the journal says so.
				if recs == nil {
					recs = ch.c.journalNoFail()
				}
				if _, unfit := binlogLosses(recs, m.ID); !unfit {
					healthy = false
				}
			}
		}
		if ok && healthy && st.Phase == fsm.PhaseActive && slices.Equal(h, []string{st.Owner}) {
			if _, err := ch.c.firstAnswerFrom(st.Owner, 5*time.Second); err == nil {
				return st.Owner
			}
		}
		last = fmt.Sprintf("%s; healthy %v; holders %v", fmtState(st, ok), healthy, h)
		time.Sleep(100 * time.Millisecond)
	}
	ch.violate(vNoOwner, "no active owner holding the VIP and answering %s after the final heal: %s%s", within, last, ch.statusLines())
	return ""
}

// finish heals everything, runs the final checks and prints the summary.
func (ch *chaos) finish(seed uint64, dur time.Duration, startIdx uint64) {
	ch.healEverything()
	ch.logf("final heal done; settling")
	owner := ch.settle(60 * time.Second)
	// Let the writer land a few more writes on the settled owner, then stop everything.
	time.Sleep(2 * time.Second)
	ch.checkTracker()
	ch.stopAll()
	ch.mu.Lock()
	acks := slices.Clone(ch.acks)
	ch.mu.Unlock()

	if owner != "" {
		ch.checkReplication(40 * time.Second)
		// Catch-up where the channels run.
		for _, p := range [][2]string{{"db1", "db2"}, {"db2", "db1"}} {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			io, sqlRun, _, err := testenv.ReplicationStatus(ctx, ch.c.lab.MariaDB(p[1]))
			if err == nil && io && sqlRun {
				if err := testenv.WaitCaughtUp(ctx, ch.c.lab.MariaDB(p[0]), ch.c.lab.MariaDB(p[1])); err != nil {
					ch.logf("catch-up %s -> %s: %v", p[0], p[1], err)
				}
			}
			cancel()
		}
	}
	// Journals: wait until all three end at the same index, then compare.
	var js map[string][]fsm.Record
	var probs []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		js = ch.journals()
		probs = compareJournals(js)
		if len(probs) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(probs) > 0 {
		ch.violate(vJournalDiverge, "journals differ after the final heal: %s", strings.Join(probs, "; "))
	}
	recs := js["witness"]
	for _, n := range []string{"db1", "db2"} {
		if len(js[n]) > len(recs) {
			recs = js[n]
		}
	}
	if p := checkAssignments(recs); len(p) > 0 {
		class := vAssignBad
		for _, x := range p {
			if strings.Contains(x, "replay") {
				class = vReplay
			}
		}
		ch.violate(class, "journal replay with package fsm: %s", strings.Join(p, "; "))
	}
	if owner != "" {
		ch.checkAcked(owner, acks, recs, ch.mode == "semisync")
		ch.checkTables(recs)
	}
	if hits := scanLogs(ch.daemonLogs()); len(hits) > 0 {
		ch.violate(vDaemonLog, "%d daemon log lines mention a panic or a data race: %s", len(hits), abbrev(hits, 10))
	}
	ch.summary(seed, dur, startIdx, recs, acks, owner)
}

func chaosPct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(float64(len(ds)-1) * p)
	return ds[i]
}

func (ch *chaos) summary(seed uint64, dur time.Duration, startIdx uint64, recs []fsm.Record, acks []ack, owner string) {
	ch.mu.Lock()
	counts := maps2lines(ch.counts)
	skipped, refused, uncertain := ch.skipped, ch.refused, ch.uncertain
	broken := slices.Sorted(maps.Values(ch.broken))
	reads, readErrs, stale := ch.reads, ch.readErrs, ch.staleReads
	heals := slices.Clone(ch.heals)
	vs := slices.Clone(ch.violations)
	harness := len(ch.harness)
	total := 0
	for _, n := range ch.counts {
		total += n
	}
	ch.mu.Unlock()
	failovers := 0
	for _, r := range recs {
		if r.Index > startIdx && r.Result == fsm.ResultApplied && r.Event.Type == fsm.OwnerAssigned {
			failovers++
		}
	}
	var longest time.Duration
	var longestAt time.Time
	for i := 1; i < len(acks); i++ {
		if g := acks[i].At.Sub(acks[i-1].At); g > longest {
			longest, longestAt = g, acks[i-1].At
		}
	}
	// Time to recover: from a heal to the first acknowledged write through the VIP while
	// exactly one host held it (the owner answering writes).
	var rec []time.Duration
	unrecovered := 0
	for _, h := range heals {
		i := sort.Search(len(acks), func(i int) bool { return !acks[i].At.Before(h) })
		for i < len(acks) && acks[i].Holders != 1 {
			i++
		}
		if i < len(acks) {
			rec = append(rec, acks[i].At.Sub(h))
		} else {
			unrecovered++
		}
	}
	slices.Sort(rec)
	byClass := map[string]int{}
	for _, v := range vs {
		byClass[v.Class]++
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n===== chaos summary =====")
	fmt.Fprintf(&b, "\nmode %s, duration %s, seed %d (replay: make chaos SEED=%d MODE=%s DURATION=%s)", ch.mode, dur, seed, seed, ch.mode, dur)
	fmt.Fprintf(&b, "\nfaults: %d injected (%d skipped: target busy or unknown; %d API requests refused with 409)\n  %s", total, skipped, refused, counts)
	fmt.Fprintf(&b, "\nfailovers (epoch changes): %d; final owner %q", failovers, owner)
	fmt.Fprintf(&b, "\nwrites: %d acknowledged, %d failed or unacknowledged; reads %d (%d failed, %d saw fewer rows than acknowledged before they began)", len(acks), uncertain, reads, readErrs, stale)
	if !longestAt.IsZero() {
		fmt.Fprintf(&b, "\nlongest write outage: %s (from +%s)", longest.Round(time.Millisecond), longestAt.Sub(ch.start).Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "\ntime to recover (heal -> a write acknowledged through the VIP with one holder): p50 %s, p99 %s, max %s over %d heals (%d never recovered before the end)",
		chaosPct(rec, 0.5).Round(time.Millisecond), chaosPct(rec, 0.99).Round(time.Millisecond), chaosPct(rec, 1).Round(time.Millisecond), len(rec), unrecovered)
	if len(broken) > 0 {
		fmt.Fprintf(&b, "\nchannels journaled as broken (ReplicationBroken) or binlogs journaled as lost (HealthChanged); excused the replication and table checks: %s", strings.Join(broken, "; "))
	}
	fmt.Fprintf(&b, "\nharness errors: %d", harness)
	fmt.Fprintf(&b, "\nviolations: %d %s", len(vs), maps2lines(byClass))
	for _, v := range vs {
		fmt.Fprintf(&b, "\n  - +%s %s (faults: %s): %s", v.At, v.Class, v.Faults, truncate(v.Detail, 600))
	}
	ch.t.Log(b.String())
	if len(vs) > 0 || harness > 0 {
		// Straight to stderr, so it comes out now, ahead of the test's buffered log (a CI
		// excerpt keeps the lines around '--- FAIL' and the log's end, not the summary).
		var first strings.Builder
		for i, v := range vs {
			if i == 3 {
				fmt.Fprintf(&first, "\n  ... %d more", len(vs)-i)
				break
			}
			fmt.Fprintf(&first, "\n  - +%s %s (faults: %s): %s", v.At, v.Class, v.Faults, truncate(v.Detail, 300))
		}
		fmt.Fprintf(os.Stderr, "=== %s failed: %d violations %s, %d harness errors (seed %d, mode %s)%s\n",
			ch.t.Name(), len(vs), maps2lines(byClass), harness, seed, ch.mode, first.String())
		ch.t.Fatalf("chaos: %d violations, %d harness errors (seed %d, mode %s)", len(vs), harness, seed, ch.mode)
	}
}

func maps2lines(m map[string]int) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// newLabHTTP is the harness's HTTP client: dials from the client host, no keep-alives.
func newLabHTTP(client *testenv.Host) *http.Client {
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: client.DialContext, DisableKeepAlives: true}}
}
