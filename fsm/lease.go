package fsm

import (
	"slices"
	"time"
)

// Instants on the lease clock are durations since an arbitrary origin (the daemon reads
// CLOCK_BOOTTIME, which keeps counting through suspend). The types below are pure
// bookkeeping; they never read a clock.

// DefaultRho is the allowed relative clock-rate error between two hosts' boot clocks
// (1%: far beyond what NTP-disciplined or even free-running quartz clocks drift).
const DefaultRho = 0.01

// OwnerLease is the owner's side of the quorum lease: the send times of the Renew calls
// its peers answered with a promise. It holds while a majority of voters, the owner
// included, promise it.
type OwnerLease struct {
	Epoch  uint64
	Lease  time.Duration
	Voters int
	grants map[string]time.Duration
}

// NewOwnerLease starts the bookkeeping for epoch among voters members.
func NewOwnerLease(epoch uint64, lease time.Duration, voters int) *OwnerLease {
	return &OwnerLease{Epoch: epoch, Lease: lease, Voters: voters, grants: map[string]time.Duration{}}
}

// Granted records that peer promised in answer to a Renew sent at sentAt. The owner
// counts the promise from its own send time, which is never later than the peer's
// receipt, so the owner's view ends no later than the peer's.
func (l *OwnerLease) Granted(peer string, sentAt time.Duration) {
	if sentAt > l.grants[peer] {
		l.grants[peer] = sentAt
	}
}

// Expiry returns the instant the lease ends: the point where fewer than a majority of
// promises (the owner's own included) remain. Zero means it never held.
func (l *OwnerLease) Expiry() time.Duration {
	need := l.Voters/2 + 1 - 1 // the owner promises itself
	if need <= 0 {
		return 1<<63 - 1
	}
	ends := make([]time.Duration, 0, len(l.grants))
	for _, at := range l.grants {
		ends = append(ends, at+l.Lease)
	}
	if len(ends) < need {
		return 0
	}
	slices.Sort(ends)
	slices.Reverse(ends)
	return ends[need-1]
}

// Valid reports whether the lease holds at now.
func (l *OwnerLease) Valid(now time.Duration) bool { return now < l.Expiry() }

// LastQuorum returns the send time of the newest Renew that, with older ones, made a
// quorum: the kernel lifetime of the VIP is renewed only when this is recent.
func (l *OwnerLease) LastQuorum() time.Duration {
	e := l.Expiry()
	if e == 0 || e == 1<<63-1 {
		return e
	}
	return e - l.Lease
}

// Promise is a peer's side: while Until is in the future (on the peer's clock), the peer
// answers for Owner at Epoch and will not help revoke it to completion.
type Promise struct {
	Owner string
	Epoch uint64
	// Until is receipt + lease·(1+ρ) on the promising peer's clock.
	Until time.Duration
	// Last is the receipt time of the newest promise given.
	Last time.Duration
}

// Grant decides a Renew{owner, epoch} received at now against the peer's applied state s
// and returns the updated promise and whether it promised. A peer promises only when its
// applied state names that owner at that epoch and the ownership was not revoked or
// released.
func (p Promise) Grant(s State, owner string, epoch uint64, now, lease time.Duration, rho float64) (Promise, bool) {
	if !s.Holding(owner) || s.Epoch != epoch {
		return p, false
	}
	until := now + time.Duration(float64(lease)*(1+rho))
	if p.Owner != owner || p.Epoch != epoch || until > p.Until {
		p = Promise{Owner: owner, Epoch: epoch, Until: until, Last: now}
	}
	return p, true
}

// HandoverWait is how long after the last promise to the old owner a new owner may be
// assigned without a release: the old owner's software lease and the kernel lifetime of
// its VIP (renewed only on a promise at most delta old, removed by the kernel up to slack
// late) must both be over.
func HandoverWait(lease time.Duration, rho float64, delta, kernelLease, slack time.Duration) time.Duration {
	return max(time.Duration(float64(lease)*(1+rho)), delta+kernelLease+slack)
}

// FenceSlack is how late an nftables fence element may stop matching after its timeout
// (one jiffy at HZ=100) plus a margin.
const FenceSlack = 20 * time.Millisecond

// FencedHandoverWait is HandoverWait for an old owner whose VIPs are behind a kernel
// fence opened only for what remained of its lease: the address may outlive the lease,
// but no traffic to or from it passes once the fence's element times out.
func FencedHandoverWait(lease time.Duration, rho float64) time.Duration {
	return time.Duration(float64(lease)*(1+rho)) + FenceSlack
}
