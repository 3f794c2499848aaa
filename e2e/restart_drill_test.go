package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keepraft/keepraft/probe"
	"github.com/keepraft/keepraft/testenv"
)

// drillKind is what one drill iteration restarts, and when.
type drillKind int

const (
	drillOwner        drillKind = iota // the owner's keepraftd
	drillPeer                          // the other database node's keepraftd
	drillWitness                       // the witness's keepraftd
	drillDuringKill                    // a keepraftd, just after the owner's mysqld was killed
	drillDuringSwitch                  // a keepraftd, just after a switchover request
	drillKinds
)

// drillKindNames name the kinds in KEEPRAFT_DRILL_KINDS.
var drillKindNames = map[string]drillKind{
	"owner": drillOwner, "peer": drillPeer, "witness": drillWitness, "kill": drillDuringKill, "switch": drillDuringSwitch,
}

// drillKindsFrom parses KEEPRAFT_DRILL_KINDS (comma-separated names of drillKindNames; empty
// for every kind).
func drillKindsFrom(env string) ([]drillKind, error) {
	if strings.TrimSpace(env) == "" {
		return []drillKind{drillOwner, drillPeer, drillWitness, drillDuringKill, drillDuringSwitch}, nil
	}
	var kinds []drillKind
	for name := range strings.SplitSeq(env, ",") {
		k, ok := drillKindNames[strings.TrimSpace(name)]
		if !ok {
			return nil, fmt.Errorf("KEEPRAFT_DRILL_KINDS: unknown kind %q (owner, peer, witness, kill, switch)", name)
		}
		kinds = append(kinds, k)
	}
	return kinds, nil
}

// TestRestartDrill restarts keepraftd 20 times in a running three-node lab: the owner, the
// other database node and the witness, and restarts issued in the middle of a failover (the
// owner's mysqld killed) or of a switchover, hitting the old or the new owner. Every kind
// gets SIGTERM and SIGKILL, each with a prompt start and with an outage of 0.5 or 1.5 s.
// A restart replays the Raft log; a node that acts on an old OwnerAssigned naming itself
// opens writes (read_only=0) and stops its channel from the real owner. After every restart
// both channels run within 10 s (or a blocked rejoin is journaled), exactly one server is
// writable and it is the active owner holding the VIP, a row written through the VIP
// reaches both servers, and a sampler reading read_only every 40 ms never saw both servers
// writable. The seed is logged; KEEPRAFT_DRILL_SEED replays it, and KEEPRAFT_DRILL_KINDS
// ("switch,kill") restricts the drill to some kinds.
func TestRestartDrill(t *testing.T) { testRestartDrill(t, testenv.FlavorMariaDB, 20) }

// TestMySQLRestartDrill is a short TestRestartDrill on MySQL: one restart of every kind
// (KEEPRAFT_DRILL_ROUNDS overrides).
func TestMySQLRestartDrill(t *testing.T) { testRestartDrill(t, testenv.FlavorMySQL, int(drillKinds)) }

func testRestartDrill(t *testing.T, f probe.Flavor, rounds int) {
	c := newCluster(t, clusterOpts{flavor: f})
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("KEEPRAFT_DRILL_SEED"), 10, 64); err == nil {
		seed = s
	}
	if n, err := strconv.Atoi(os.Getenv("KEEPRAFT_DRILL_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	kinds, err := drillKindsFrom(os.Getenv("KEEPRAFT_DRILL_KINDS"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s restart drill seed %d, %d restarts (replay: KEEPRAFT_DRILL_SEED=%d)", f, seed, rounds, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	c.waitOwner(30 * time.Second)
	c.waitDBsHealthy(30 * time.Second)
	c.requireOneWriter()
	c.requireReplicationRuns(10 * time.Second)
	c.requireRowEverywhere()
	sampler := c.startROSampler()

	// Every kind once per cycle, in a seeded order.
	var order []drillKind
	for len(order) < rounds {
		for _, k := range rng.Perm(len(kinds)) {
			order = append(order, kinds[k])
		}
	}
	sigName := map[syscall.Signal]string{syscall.SIGTERM: "SIGTERM", syscall.SIGKILL: "SIGKILL"}
	start := time.Now()
	seen := map[drillKind]int{}
	for i, kind := range order[:rounds] {
		round := i + 1
		roundStart := time.Now()
		st, err := c.status("")
		if err != nil {
			t.Fatalf("restart %d: no status: %v", round, err)
		}
		owner, epoch := st.Owner, st.Epoch
		// Each kind gets both signals, and each signal both a prompt and a delayed start
		// (the outages below cycle with period 4, the signal with period 4 shifted by 2;
		// the kind's offset alternates the signal across kinds in a short drill).
		sig := []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}[(seen[kind]/2+int(kind))%2]
		hitNew := rng.IntN(2) == 0   // during a handover: restart the new owner (else the old one)
		atAssign := rng.IntN(2) == 0 // during a handover: restart once the new owner is assigned (else at once)
		// At once, or after a short outage (see restartKeepraftdAfter): each kind gets every
		// outage in turn, so 20 restarts cover all of them.
		down := []time.Duration{0, 1500 * time.Millisecond, 0, 500 * time.Millisecond}[seen[kind]%4]
		seen[kind]++
		mark := sampler.Mark()
		var target, what string
		var heal func()
		switch kind {
		case drillOwner:
			target, what = owner, "the owner"
		case drillPeer:
			target, what = other(owner), "the other database node"
		case drillWitness:
			target, what = "witness", "the witness"
		case drillDuringKill, drillDuringSwitch:
			if kind == drillDuringKill {
				what = "mysqld on the owner " + owner + " killed, then"
				if err := c.lab.MariaDB(owner).Kill(); err != nil {
					t.Fatal(err)
				}
				heal = func() {
					if err := c.lab.MariaDB(owner).Start(context.Background()); err != nil {
						t.Fatalf("restart %d: start mysqld on %s again: %v", round, owner, err)
					}
				}
			} else {
				what = "switchover " + owner + " → " + other(owner) + " requested, then"
				if err := c.post("/v1/switchover", fmt.Sprintf(`{"to":%q}`, other(owner))); err != nil {
					t.Fatalf("restart %d: switchover request: %v", round, err)
				}
			}
			if atAssign {
				what += " once the new owner was assigned,"
				c.waitEpochAbove(epoch, 10*time.Second)
			} else {
				what += " at once,"
			}
			target = owner
			if hitNew {
				target = other(owner)
			}
		}
		t.Logf("restart %d/%d (+%s): owner %s epoch %d: %s %s keepraftd on %s, down %s", round, rounds, time.Since(start).Round(time.Millisecond), owner, epoch, what, sigName[sig], target, down)
		c.restartKeepraftdAfter(target, sig, down)
		switch {
		case heal != nil:
			// The killed mysqld stays dead until the failover happened (a crashed server
			// does not come back in milliseconds), then it returns and must rejoin.
			c.waitEpochAbove(epoch, 15*time.Second)
			heal()
		case kind == drillDuringSwitch:
			// The switchover is committed, so it goes on after the restart; when the
			// restarted node was the Raft leader the request waits for the next one (an
			// election timeout), and the checks below must not start while it is pending.
			c.waitEpochAbove(epoch, 15*time.Second)
		}
		desc := fmt.Sprintf("restart %d (%s %s keepraftd on %s, down %s, seed %d)", round, what, sigName[sig], target, down, seed)
		t.Logf("%s: checking replication within 10 s, one writer, a row everywhere, the sampler", desc)
		// Both channels run within 10 s of the restart (of the killed mysqld's return),
		// or a blocked rejoin is journaled; checked again once the writer is stable.
		c.requireReplicationRuns(10 * time.Second)
		c.waitCaughtUp(target, 15*time.Second)
		if lines := c.actionsSinceStart(target); lines != "" {
			t.Logf("%s: keepraftd %s since its restart:\n%s", desc, target, lines)
		}
		c.requireOneWriterStable(3 * time.Second)
		c.requireReplicationRuns(10 * time.Second)
		c.requireRowEverywhere()
		sampler.requireNoTwoWriters(mark, desc)
		c.assertNeverTwoHolders()
		// Settle before the next restart, so faults do not pile up.
		c.waitDBsHealthy(30 * time.Second)
		t.Logf("restart %d ok in %s", round, time.Since(roundStart).Round(time.Millisecond))
	}
	t.Logf("restart drill: %d restarts in %s; %s", rounds, time.Since(start).Round(time.Second), sampler.summary())
}

// actionLine matches the log lines of a node acting on its MySQL or the VIP.
var actionLine = regexp.MustCompile(`promot|catch-up|open writes|stop replication|releasing|VIP acquired|rejoin`)

// actionsSinceStart returns, for diagnosis, the lines of node's current keepraftd log (since
// its last spawn) where it acted on its MySQL or the VIP.
func (c *cluster) actionsSinceStart(node string) string {
	log := c.procs[node].Tail(2000)
	if i := strings.LastIndex(log, "keepraft-lab spawn"); i >= 0 {
		log = log[i:]
	}
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if actionLine.MatchString(l) && !strings.Contains(l, `"msg":"journal"`) {
			out = append(out, "    "+l)
		}
	}
	return strings.Join(out, "\n")
}

// waitEpochAbove waits until a node reports an epoch above epoch (a new owner assigned).
func (c *cluster) waitEpochAbove(epoch uint64, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for time.Now().Before(deadline) {
		st, err := c.status("")
		if err == nil && st.Epoch > epoch {
			return
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("owner %q epoch %d phase %s", st.Owner, st.Epoch, st.Phase)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("no new owner assigned within %s after epoch %d (last: %s)\n%s", within, epoch, last, c.evidence())
}
