package e2e

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/keepraft/keepraft/fsm"
)

// TestOwnerCutOffDuringHandover: the owner's host loses its link while it owns the VIP
// (or right after a switchover request, so it likely misses its own revoke and release);
// another node becomes the active owner and takes writes through the VIP; then the link
// heals. Without any operator action the old owner must turn read_only=1 within 10 s,
// exactly one server stays writable (the active owner, the VIP holder), and the rows written
// through the VIP reach both servers (a former owner with extra transactions must be
// journaled as a blocked rejoin instead of rejoining silently).
func TestOwnerCutOffDuringHandover(t *testing.T) {
	for _, tc := range []struct {
		name       string
		switchover bool
	}{
		{"link-cut", false},
		{"cut-after-switchover-request", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, clusterOpts{})
			old := c.waitOwner(30 * time.Second)
			c.waitDBsHealthy(30 * time.Second)
			c.requireOneWriter()
			c.requireReplicationRuns(10 * time.Second)
			sampler := c.startROSampler()
			st, err := c.status("witness")
			if err != nil {
				t.Fatal(err)
			}
			epoch := st.Epoch
			peer := other(old)

			if tc.switchover {
				if err := c.post("/v1/switchover", fmt.Sprintf(`{"to":%q}`, peer)); err != nil {
					t.Fatal(err)
				}
			}
			cut := time.Now()
			if err := c.lab.CutLink(c.lab.Host(old)); err != nil {
				t.Fatal(err)
			}
			t.Logf("owner %s (epoch %d) cut off%s", old, epoch, map[bool]string{true: " right after a switchover request", false: ""}[tc.switchover])

			// Another node becomes the active owner and alone holds the VIP.
			deadline := time.Now().Add(15 * time.Second)
			for {
				st, err = c.status("witness")
				if err == nil && st.Owner == peer && st.Epoch > epoch && st.Phase == fsm.PhaseActive && slices.Equal(c.tracker.Holders(), []string{peer}) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s did not become the active owner holding the VIP within 15s of cutting %s off (status %+v, err %v)\n%s", peer, old, st, err, c.evidence())
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("%s active owner at epoch %d after %s; read_only while %s is cut off: %s", peer, st.Epoch, time.Since(cut).Round(time.Millisecond), old, fmtRO(c.readOnlyAll()))

			origin := fmt.Sprintf("cutoff-%s-%d", tc.name, time.Now().UnixNano())
			const rows = 5
			for i := range rows {
				if got := c.writeThroughVIP(origin, int64(i)); got != peer {
					t.Fatalf("write %d through the VIP landed on %s, want the new owner %s", i, got, peer)
				}
			}
			duringCut := sampler.Since(0)

			if err := c.lab.RestoreLink(c.lab.Host(old)); err != nil {
				t.Fatal(err)
			}
			healed := time.Now()

			// No operator action: the old owner must fence itself (or be fenced) promptly.
			roDeadline := healed.Add(10 * time.Second)
			for c.readOnly(old) != "1" {
				if time.Now().After(roDeadline) {
					t.Fatalf("%s (the cut-off former owner) still has read_only=%s 10s after its link healed, while %s owns epoch %d; writes through the VIP went to %s\n%s",
						old, c.readOnly(old), peer, st.Epoch, peer, c.evidence())
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Logf("%s read_only=1 %s after the heal", old, time.Since(healed).Round(time.Millisecond))
			// The cut-off owner fences itself when its lease lapses, long before the new
			// owner opens writes: never two writable servers, not even during the cut.
			if len(duringCut) > 0 {
				t.Fatalf("both servers were writable while %s was cut off: %s\n%s", old, sampler.format(duringCut), c.evidence())
			}

			owner := c.requireOneWriter()
			if owner != peer {
				t.Fatalf("after the heal the owner is %s, want %s to keep it (nopreempt)\n%s", owner, peer, c.evidence())
			}
			c.requireReplicationRuns(10 * time.Second)

			// The rows written through the VIP converge on both servers.
			if ok, counts := c.waitRows(origin, rows, []string{peer}, 5*time.Second); !ok {
				t.Fatalf("rows written through the VIP are missing on the owner %s: %s\n%s", peer, counts, c.evidence())
			}
			if ok, counts := c.waitRows(origin, rows, []string{old}, 15*time.Second); !ok {
				if d, found := lastRejoin(c.journalNoFail(), old); found && d.Blocked {
					t.Logf("rows did not reach %s (%s), and a blocked rejoin of %s is journaled (extra %s)", old, counts, old, d.Extra)
				} else {
					t.Fatalf("the %d rows written through %s never reached the former owner %s (counts %s) and no blocked rejoin is journaled\n%s", rows, peer, old, counts, c.evidence())
				}
			}
			c.requireRowEverywhere()
			// Once the former owner is read-only again, never two writers.
			sampler.requireNoTwoWriters(0, "during the cut and after the heal")
			c.assertNeverTwoHolders()
		})
	}
}

// TestOwnerMysqldBouncesWhileLeaderlessKeepsOneWriter: the owner's mysqld is killed and
// started again at once (it comes back with read_only=1 from my.cnf) while the Raft leader's
// keepraftd is restarted, so the owner's health transition cannot be committed in time. The
// owner must not keep the VIP over a read-only server: within the bound there is again
// exactly one writable server, the active owner, holding the VIP, and writes through the VIP
// succeed.
func TestOwnerMysqldBouncesWhileLeaderlessKeepsOneWriter(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	owner := c.waitOwner(30 * time.Second)
	c.waitDBsHealthy(30 * time.Second)
	c.requireOneWriter()
	// The leader to restart is not the owner: the owner hands leadership to the standby.
	leader := c.waitStandbyLeads(owner, 15*time.Second)
	sampler := c.startROSampler()
	t.Logf("owner %s, raft leader %s: killing the owner's mysqld and SIGKILLing the leader's keepraftd, then restarting both at once", owner, leader)
	if err := c.lab.MariaDB(owner).Kill(); err != nil {
		t.Fatal(err)
	}
	c.restartKeepraftd(leader, syscall.SIGKILL)
	if err := c.lab.MariaDB(owner).Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("mysqld on %s back (%s)", owner, fmtRO(c.readOnlyAll()))
	c.waitCaughtUp(leader, 15*time.Second)
	c.requireOneWriterStable(3 * time.Second)
	c.requireReplicationRuns(10 * time.Second)
	c.requireRowEverywhere()
	sampler.requireNoTwoWriters(0, "mysqld bounce while leaderless")
	c.assertNeverTwoHolders()
}
