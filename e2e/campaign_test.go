package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/keepraft/keepraft/fsm"
)

// TestCampaign is a randomized fault campaign (make campaign): rounds of random faults —
// mysqld kill/restart, keepraftd SIGKILL/restart and SIGSTOP/SIGCONT, link cuts, pairwise
// partitions — each healed after a random while. Throughout, the event-based tracker must
// never see two keepraft hosts holding the VIP; after every round the cluster must settle
// on one active owner that alone holds the VIP and answers clients. The seed is logged and
// can be replayed with KEEPRAFT_CAMPAIGN_SEED.
func TestCampaign(t *testing.T) {
	if os.Getenv("KEEPRAFT_CAMPAIGN") == "" {
		t.Skip("set KEEPRAFT_CAMPAIGN=1 (make campaign) to run the randomized fault campaign")
	}
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("KEEPRAFT_CAMPAIGN_SEED"), 10, 64); err == nil {
		seed = s
	}
	rounds := 20
	if n, err := strconv.Atoi(os.Getenv("KEEPRAFT_CAMPAIGN_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	t.Logf("campaign seed %d, %d rounds (replay: KEEPRAFT_CAMPAIGN_SEED=%d)", seed, rounds, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	c := newCluster(t, clusterOpts{})
	c.waitOwner(30 * time.Second)
	hosts := []string{"db1", "db2", "witness"}
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }

	for round := 1; round <= rounds; round++ {
		st, err := c.status("")
		if err != nil {
			t.Fatalf("round %d: no status: %v", round, err)
		}
		owner := st.Owner
		var heal func()
		var what string
		switch rng.IntN(6) {
		case 0:
			h := pick([]string{owner, other(owner)})
			what = "kill mysqld on " + h
			if err := c.lab.MariaDB(h).Kill(); err != nil {
				t.Fatal(err)
			}
			heal = func() {
				if err := c.lab.MariaDB(h).Start(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
		case 1:
			h := pick(hosts)
			what = "SIGKILL keepraftd on " + h
			if err := c.procs[h].Kill(); err != nil {
				t.Fatal(err)
			}
			heal = func() { c.start(h) }
		case 2:
			h := pick(hosts)
			what = "freeze keepraftd on " + h
			if err := c.procs[h].Freeze(); err != nil {
				t.Fatal(err)
			}
			heal = func() {
				if err := c.procs[h].Thaw(); err != nil {
					t.Fatal(err)
				}
			}
		case 3:
			h := pick(hosts)
			what = "cut the link of " + h
			if err := c.lab.CutLink(c.lab.Host(h)); err != nil {
				t.Fatal(err)
			}
			heal = func() {
				if err := c.lab.RestoreLink(c.lab.Host(h)); err != nil {
					t.Fatal(err)
				}
			}
		case 4, 5:
			a := pick(hosts)
			b := pick(slices.DeleteFunc(slices.Clone(hosts), func(x string) bool { return x == a }))
			what = fmt.Sprintf("partition %s from %s", a, b)
			if err := c.lab.Partition(c.lab.Host(a), c.lab.Host(b)); err != nil {
				t.Fatal(err)
			}
			heal = func() {
				if err := c.lab.Heal(c.lab.Host(a), c.lab.Host(b)); err != nil {
					t.Fatal(err)
				}
			}
		}
		hold := time.Duration(500+rng.IntN(4000)) * time.Millisecond
		t.Logf("round %d: owner %s epoch %d: %s for %s", round, owner, st.Epoch, what, hold)
		time.Sleep(hold)
		heal()
		c.assertNeverTwoHolders()
		// Settle: one active owner that alone holds the VIP and answers clients.
		final := c.waitOwner(40 * time.Second)
		if _, err := c.firstAnswerFrom(final, 20*time.Second); err != nil {
			t.Fatalf("round %d (%s): owner %s does not answer clients: %v", round, what, final, err)
		}
		// Every member healthy again before the next round, so faults do not pile up.
		waitFor(t, "every database node healthy", 40*time.Second, func() (bool, string) {
			st, err := c.status("")
			if err != nil {
				return false, err.Error()
			}
			for _, m := range st.Members {
				if m.Role == fsm.RoleDatabase && (m.Healthy == nil || !*m.Healthy) {
					return false, m.ID + " not healthy"
				}
			}
			return true, ""
		})
	}
	// Compare-and-set: applied assignments were decided from epochs 0, 1, 2, ... with no
	// gap or repeat (no two owners ever got the same epoch), and name database nodes.
	var epoch uint64
	for _, r := range c.journal("witness") {
		if r.Result != fsm.ResultApplied || r.Event.Type != fsm.OwnerAssigned {
			continue
		}
		var d fsm.AssignData
		if err := r.Event.Payload(&d); err != nil || (d.Owner != "db1" && d.Owner != "db2") {
			t.Fatalf("assignment at index %d: %+v (%v)", r.Index, d, err)
		}
		if r.Event.Epoch != epoch {
			t.Fatalf("assignment at index %d decided from epoch %d, want %d", r.Index, r.Event.Epoch, epoch)
		}
		epoch++
	}
	t.Logf("campaign done: %d rounds, final epoch %d, max simultaneous keepraft holders %d", rounds, epoch, c.tracker.MaxConcurrent())
}
