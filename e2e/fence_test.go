package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/nftfence"
	"github.com/keepraft/keepraft/testenv"
)

// TestFrozenOwnerVIPFenced: the owner's keepraftd is frozen (SIGSTOP of its group) with
// its host still on the segment, so the VIP address stays on its interface until its
// valid_lft (vip.kernel_lease 10 s here, to tell the two apart) runs out. The nftables fence must stop the frozen owner's VIP traffic when its
// lease ends, and the controller, knowing the fence, hands over after the lease alone:
// the other node answers through the VIP while the frozen host still has the address, and
// the fence-aware tracker never sees two hosts serving the VIP.
func TestFrozenOwnerVIPFenced(t *testing.T) {
	c := newCluster(t, clusterOpts{kernelLease: 10 * time.Second})
	owner := c.waitOwner(30 * time.Second)
	next := other(owner)
	if _, err := c.firstAnswerFrom(owner, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	fenced := false
	for _, r := range c.journal("") {
		var d fsm.MemberData
		if r.Event.Type == fsm.MemberJoined && r.Event.Payload(&d) == nil && d.Member.ID == owner {
			fenced = d.Member.KernelFence
		}
	}
	if !fenced {
		t.Fatalf("the journal does not say %s's VIP is behind the kernel fence (vip.fence auto on this kernel)", owner)
	}
	p := c.procs[owner]
	frozen := time.Now()
	if err := p.Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Thaw() })
	at, err := c.firstAnswerFrom(next, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	took := at.Sub(frozen)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	out, err := c.lab.Host(owner).Run(ctx, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	stillThere := strings.Contains(string(out), c.vip+"/")
	if !stillThere {
		t.Errorf("the VIP address left the frozen host before the handover (valid_lft 10 s): the test proves nothing about the fence")
	}
	t.Logf("MEASURED: owner %s frozen; %s answered through the VIP %s later; VIP address still on the frozen host then: %v",
		owner, next, took.Round(time.Millisecond), stillThere)
	if took > 2*time.Second {
		t.Errorf("handover from a frozen fenced owner took %s, want under 2 s (lease 500 ms, no valid_lft wait)", took.Round(time.Millisecond))
	}
	// Several more answers: none may come from the frozen host.
	for range 20 {
		got, err := c.ask(context.Background(), 200*time.Millisecond)
		if err == nil && got != next {
			t.Fatalf("answer through the VIP from %s while %s serves", got, next)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.assertNeverTwoHolders()
	if err := p.Thaw(); err != nil {
		t.Fatal(err)
	}
	if w := c.requireOneWriter(); w != next {
		t.Errorf("after the thaw the writer is %s, want %s", w, next)
	}
}

// TestTrackerKnowsFenceNames: the tracker reads the fence by the names nftfence uses.
func TestTrackerKnowsFenceNames(t *testing.T) {
	if testenv.FenceTablePrefix+"eth0" != nftfence.TableName("eth0") || testenv.FenceLeaseSet != nftfence.LeaseSet {
		t.Fatalf("testenv reads table %q set %q; nftfence makes %q and %q", testenv.FenceTablePrefix+"eth0", testenv.FenceLeaseSet, nftfence.TableName("eth0"), nftfence.LeaseSet)
	}
}
