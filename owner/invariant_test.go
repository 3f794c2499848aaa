package owner

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/keepraft/keepraft/fsm"
)

// tryApply applies ev when the state accepts it (a random walk proposes events that may
// be stale) and reports whether it did.
func (n *fakeNode) tryApply(ev fsm.Event) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	s, err := n.s.Apply(n.s.Index+1, ev)
	if err != nil {
		return false
	}
	n.s = s
	close(n.watch)
	n.watch = make(chan struct{})
	return true
}

// pick returns an index drawn with the given weights.
func pick(rng *rand.Rand, weights ...int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	n := rng.IntN(total)
	for i, w := range weights {
		if n < w {
			return i
		}
		n -= w
	}
	return len(weights) - 1
}

// TestResourcesFollowTheMachine walks the runtime through seeded random sequences of
// journal changes, lease grants and lapses, health flips and renewals, and checks after
// every reconcile that what it did to the outside world agrees with its one state value:
// a writable server or a held VIP only in phase Serving of the current epoch, as the
// applied owner, with a valid lease and a healthy server (and the VIP only with writes
// open). The machine is the decision; writesOpen and held only mirror what the runtime
// did to MySQL and the interface, and reconcile brings them back in line.
func TestResourcesFollowTheMachine(t *testing.T) {
	const walks, steps = 100, 80
	var opened, heldSteps int // non-vacuity: the walks do reach open writes and a held VIP
	for seed := range uint64(walks) {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			r := newRig(t)
			ctx := context.Background()
			var log []string
			for step := range steps {
				s := r.node.State()
				var what string
				// Weighted towards serving, so the walks spend time with writes open.
				switch k := pick(rng, 3, 1, 4, 1, 3, 1, 1, 4, 3); k {
				case 0:
					what = "time passes (50ms)"
					r.clock.advance(50 * time.Millisecond)
				case 1:
					what = "the lease lapses"
					r.clock.advance(r.o.cfg.Lease + time.Millisecond)
				case 2:
					what = "promises granted"
					r.grantLease(s.Epoch)
				case 3, 4:
					ok := k == 4
					what = fmt.Sprintf("health %v", ok)
					r.healthy(ok)
				case 5:
					what = "owner revoked"
					r.node.tryApply(ev(t, s, fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: s.Owner, Reason: "walk"}))
				case 6:
					owner := []string{"db1", "db2"}[rng.IntN(2)]
					what = "assigned " + owner
					r.node.tryApply(ev(t, s, fsm.OwnerAssigned, "witness", fsm.AssignData{Owner: owner, Reason: "walk"}))
				case 7:
					what = "renewal"
					r.o.acquireOrRenew(ctx, r.clock.now())
				case 8:
					what = "settle"
					r.settle(t)
				}
				r.o.reconcile(ctx)
				r.o.bg.Wait()
				log = append(log, fmt.Sprintf("%d: %s → %s", step, what, r.o.m))
				s = r.node.State()
				r.o.mu.Lock()
				// The conjunction, spelled out here rather than borrowed from the runtime.
				l := r.o.lease
				conj := r.o.m.Phase == Serving && r.o.m.Epoch == s.Epoch && s.Owner == "db1" && s.Holding("db1") &&
					l != nil && l.Epoch == s.Epoch && l.Valid(r.clock.now()) && r.o.known && r.o.ok
				m, open, held := r.o.m, r.o.writesOpen, r.o.held
				r.o.mu.Unlock()
				writable, vipOn := !r.db.isReadOnly(), r.vip.isHeld()
				if writable {
					opened++
				}
				if vipOn {
					heldSteps++
				}
				switch {
				case writable && !conj:
					t.Fatalf("server writable outside the conjunction (machine %s, state %s@%d owner %s)\nwalk:\n%v\ntrace:\n%s", m, s.Phase, s.Epoch, s.Owner, log, r.tr)
				case vipOn && !(conj && open):
					t.Fatalf("VIP held outside the conjunction with writes open (machine %s, writes open %v)\nwalk:\n%v\ntrace:\n%s", m, open, log, r.tr)
				case open != writable || held != vipOn:
					t.Fatalf("mirrors disagree with the world: writesOpen %v vs writable %v, held %v vs VIP %v\nwalk:\n%v", open, writable, held, vipOn, log)
				}
			}
		})
	}
	t.Logf("steps with writes open: %d, with the VIP held: %d (of %d)", opened, heldSteps, walks*steps)
	if opened == 0 || heldSteps == 0 {
		t.Fatalf("the walks never opened writes (%d) or held the VIP (%d): the check proved nothing", opened, heldSteps)
	}
}
