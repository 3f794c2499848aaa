package node

import "testing"

// TestFirstLeaderStaysCaughtUpAfterSteppingDown: a node that led from its start never
// heard another leader's applied index, yet its own Barrier proved it current. Once it
// stops leading it must still count as caught up (and so keep promising the owner's
// lease) before it has polled a new leader, which may be gone by then. The e2e lab lost
// the VIP this way: the witness led first, handed leadership to the standby, the
// standby was killed at once, and the witness refused the owner's renewals.
func TestFirstLeaderStaysCaughtUpAfterSteppingDown(t *testing.T) {
	if testing.Short() {
		t.Skip("in-process cluster runs for several seconds")
	}
	c := newMemCluster(t)
	for _, id := range memIDs {
		c.start(id)
	}
	var first string
	waitFor(t, formWithin, "a leader that completed its Barrier", func() bool {
		for id, n := range c.nodes {
			if n.IsLeader() && n.ctl.ReadyTerm() == n.Term() {
				first = id
				return true
			}
		}
		return false
	})
	for id, n := range c.nodes {
		if id != first && n.ctl.ReadyTerm() != 0 {
			t.Fatalf("%s led before %s (ready in term %d): %s is not the first leader", id, first, n.ctl.ReadyTerm(), first)
		}
	}
	for _, id := range memIDs {
		if id != first {
			c.stop(id)
		}
	}
	n := c.nodes[first]
	waitFor(t, failoverWithin, first+" stops leading without a quorum", func() bool { return !n.IsLeader() })
	if !n.CaughtUpSinceStart() {
		t.Fatalf("%s led since its start (applied %d) and counts as behind after stepping down: learned %d", first, n.State().Index, n.poll.learned())
	}
}
