package fsm

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// View is what the controller knows beyond the journal: facts the leader measured on its
// own monotonic clock and from its peers. Decide stays pure by taking them as input.
type View struct {
	// Self is the deciding node's id, stamped as the events' By.
	Self string
	// Now is the wall time stamped as the events' At (audit only, never a deadline).
	Now time.Time
	// Quorum is false when the leader cannot currently reach a majority; nothing is decided.
	Quorum bool
	// OwnerSilent is true when no reachable voter has received a Renew from the owner
	// within the lease: the owner is unreachable or unresponsive.
	OwnerSilent bool
	// PromisesExpired is true when a majority has applied the revoke of the current epoch
	// and every promise to the old owner, plus the kernel lifetime of its VIP, has run out.
	PromisesExpired bool
	// PromotionOverdue is true when the owner has been promoting longer than
	// catchup_timeout plus a margin.
	PromotionOverdue bool
	// Unreachable lists members the leader cannot reach now; they are not candidates.
	Unreachable map[string]bool
	// Nopreempt keeps a healthy owner even when a higher-priority node is healthy.
	Nopreempt bool
	// Settling holds the very first assignment back while some database member has not
	// reported its health yet, so a slow starter with a higher priority is not passed over.
	Settling bool
	// Damping ranks a candidate whose health turned good less than this long ago after
	// stable ones; it never makes a candidate ineligible.
	Damping time.Duration
}

// Decide returns the events the controller should propose for state s. It is a pure
// function: same state and view, same events. The events carry the epoch and phase they
// were decided from, so Apply rejects them as stale if the state moved on meanwhile.
func Decide(s State, v View) []Event {
	if !s.Bootstrapped || !v.Quorum {
		return nil
	}
	mk := func(t Type, p any) []Event {
		ev, err := NewEvent(t, v.Self, v.Now, s.Epoch, s.Phase, p)
		if err != nil {
			return nil
		}
		return []Event{ev}
	}
	fo := s.Failover
	if s.Paused && s.Switchover == nil && fo == nil && s.Phase != PhaseRevoked {
		// Paused: nothing starts on its own (an owner that fails is not replaced, a better
		// node does not preempt); a handover revoked before the pause still completes, and
		// an operator's switchover or failover runs.
		return nil
	}
	switch s.Phase {
	case PhaseNone:
		if v.Settling {
			return nil
		}
		return assign(s, v, mk)
	case PhaseReleased:
		return assign(s, v, mk)
	case PhaseRevoked:
		if v.PromisesExpired {
			return assign(s, v, mk)
		}
	case PhaseAssigned:
		if fo != nil && s.Owner != fo.To {
			return mk(OwnerRevoked, RevokeData{Owner: s.Owner, Reason: operatorFailover(fo)})
		}
		if v.PromotionOverdue {
			return mk(PromotionFailed, PromotionFailedData{Owner: s.Owner, Reason: "promotion did not finish within catchup_timeout"})
		}
		if r := revokeReason(s, v); r != "" {
			return mk(OwnerRevoked, RevokeData{Owner: s.Owner, Reason: r})
		}
	case PhaseActive:
		if fo != nil && s.Owner != fo.To {
			return mk(OwnerRevoked, RevokeData{Owner: s.Owner, Reason: operatorFailover(fo)})
		}
		if r := revokeReason(s, v); r != "" {
			return mk(OwnerRevoked, RevokeData{Owner: s.Owner, Reason: r})
		}
		if !v.Nopreempt && s.Switchover == nil {
			cands := Candidates(s, v)
			if len(cands) > 0 && cands[0].Eligible && cands[0].Node != s.Owner {
				if o, ok := s.Members[s.Owner]; ok && cands[0].Priority > o.Priority {
					return mk(SwitchoverRequested, SwitchoverData{To: cands[0].Node})
				}
			}
		}
	}
	return nil
}

// operatorFailover is the reason journaled for an operator's failover.
func operatorFailover(fo *FailoverData) string {
	r := "operator failover to " + fo.To
	if fo.Operator != "" {
		r += " by " + fo.Operator
	}
	return r
}

func revokeReason(s State, v View) string {
	o, ok := s.Members[s.Owner]
	switch {
	case !ok:
		return "owner is no longer a member"
	case o.HealthKnown && !o.Healthy:
		return fmt.Sprintf("owner %s unhealthy: %s", s.Owner, o.Detail)
	case v.OwnerSilent:
		return fmt.Sprintf("owner %s unreachable: no lease renewal seen by any reachable voter", s.Owner)
	}
	return ""
}

func assign(s State, v View, mk func(Type, any) []Event) []Event {
	cands := Candidates(s, v)
	if len(cands) == 0 || !cands[0].Eligible {
		return nil
	}
	d := AssignData{Owner: cands[0].Node, Candidates: cands}
	sw := s.Switchover
	fo := s.Failover
	switch {
	case fo != nil && d.Owner == fo.To:
		d.Reason, d.Force = operatorFailover(fo), true
	case fo != nil:
		d.Reason = fmt.Sprintf("%s: target %s cannot take over, %s takes its place", operatorFailover(fo), fo.To, d.Owner)
	case s.Members[d.Owner].Maintenance:
		d.Reason = fmt.Sprintf("no other node can serve: %s takes ownership back although it is in maintenance", d.Owner)
	case s.Phase == PhaseNone:
		d.Reason = "initial assignment"
	case sw != nil && d.Owner == s.Owner:
		d.Reason = fmt.Sprintf("switchover: no other node can take over, %s is assigned again", d.Owner)
	case sw != nil && sw.To != "" && d.Owner != sw.To:
		d.Reason = fmt.Sprintf("switchover: target %s cannot take over, %s takes its place", sw.To, d.Owner)
	case sw != nil:
		d.Reason = "switchover"
	case s.Phase == PhaseReleased && s.LastRelease != nil:
		d.Reason = fmt.Sprintf("%s released: %s", s.LastRelease.Owner, s.LastRelease.Reason)
	case s.Phase == PhaseReleased:
		d.Reason = "previous owner released"
	default:
		d.Reason = fmt.Sprintf("%s revoked and its lease expired", s.Owner)
	}
	switch {
	case d.Owner == s.Owner && s.failedNow(d.Owner):
		// The owner never finished promoting in this epoch: it must still reach the
		// target it was given, or a hold policy would be bypassed by reassigning it.
		d.CatchupTarget, d.CatchupDomain = s.Target, s.TargetDomain
	case s.Phase == PhaseReleased && s.LastRelease != nil && s.LastRelease.Epoch == s.Epoch:
		if s.LastRelease.Owner != d.Owner {
			d.CatchupTarget, d.CatchupDomain = s.LastRelease.GTID, s.LastRelease.Domain
		}
		if !s.LastRelease.Fenced && s.LastRelease.Owner != d.Owner {
			d.Loss = fmt.Sprintf("old owner %s was not fenced (mysqld unreachable); transactions after %q may be missing", s.LastRelease.Owner, s.LastRelease.GTID)
		}
	case s.Owner != "" && s.Owner != d.Owner:
		last := ""
		if o, ok := s.Members[s.Owner]; ok {
			last = o.GTID
		}
		d.Loss = fmt.Sprintf("loss unknown after %q: %s never released epoch %d", last, s.Owner, s.Epoch)
	}
	evs := mk(OwnerAssigned, d)
	if len(evs) == 1 && s.Supported(2) {
		evs[0].V = 2 // stale if the assignee's health turns before it applies
	}
	return evs
}

// The ranks of an eligible candidate, best first.
const (
	rankTarget       = iota // the requested switchover target
	rankPlain               // any other eligible node
	rankSwitchedAway        // the owner that released for a switchover
	rankFailed              // promotion failed in the current epoch
)

// Candidates lists every database member ranked for ownership, eligible ones first.
//
// A member in maintenance, with unknown or bad health, with a blocked rejoin, unreachable
// from the controller, or revoked and not yet released, is not eligible. Every other
// member is, and the eligible ones are ranked: a requested switchover target first; then
// the other nodes; then the owner being switched away from, which becomes a candidate
// again only once it released (it dropped the VIP and fenced itself, so it can be
// promoted in the next epoch); last a node whose promotion failed in the current epoch.
// So a handover always ends while any node can serve, and a switchover target that is
// not eligible falls back to the next node. When no node is eligible, an owner that
// released this epoch and is out only for maintenance takes ownership back, last of all:
// a maintenance handover whose target failed after the release leaves no cluster without
// an owner. Ties go to stable health (see
// [View.Damping]), then higher priority, then the smaller id, so the result is
// deterministic. Why says why a node is not eligible, or why it ranks low.
func Candidates(s State, v View) []Candidate {
	type ranked struct {
		Candidate
		rank int
	}
	var out []ranked
	for _, id := range s.MemberIDs() {
		m := s.Members[id]
		if m.Role != RoleDatabase {
			continue
		}
		c := ranked{Candidate: Candidate{Node: id, Priority: m.Priority, Eligible: true}}
		if why := s.ineligible(id, v, false); why != "" {
			c.Eligible, c.Why = false, why
		} else {
			c.rank, c.Why = s.rank(id)
		}
		out = append(out, c)
	}
	// A handover must not end with no owner: when nobody is eligible, an owner that
	// released this epoch and is out only for maintenance (the target it handed over to
	// failed after the release) takes ownership back, ranked last.
	if !slices.ContainsFunc(out, func(c ranked) bool { return c.Eligible }) {
		for i, c := range out {
			if c.Why == "maintenance" && s.releasedNow(c.Node) && s.ineligible(c.Node, v, true) == "" {
				out[i].Eligible, out[i].rank = true, rankFailed+1
				out[i].Why = "in maintenance, but it released this epoch and no other node can serve: taken back"
			}
		}
	}
	stable := func(c ranked) int {
		m := s.Members[c.Node]
		if v.Damping > 0 && !m.HealthAt.IsZero() && v.Now.Sub(m.HealthAt) < v.Damping {
			return 1
		}
		return 0
	}
	slices.SortStableFunc(out, func(a, b ranked) int {
		if a.Eligible != b.Eligible {
			if a.Eligible {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(a.rank, b.rank); c != 0 {
			return c
		}
		if c := cmp.Compare(stable(a), stable(b)); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
			return c
		}
		return cmp.Compare(a.Node, b.Node)
	})
	cands := make([]Candidate, len(out))
	for i, c := range out {
		cands[i] = c.Candidate
	}
	return cands
}

// releasedNow reports whether member id released the current epoch.
func (s State) releasedNow(id string) bool {
	return s.Phase == PhaseReleased && s.LastRelease != nil && s.LastRelease.Epoch == s.Epoch && s.LastRelease.Owner == id
}

// ineligible returns why database member id cannot be assigned in s now, or "";
// ignoreMaintenance looks past a maintenance flag.
func (s State) ineligible(id string, v View, ignoreMaintenance bool) string {
	m := s.Members[id]
	switch {
	case m.Maintenance && !ignoreMaintenance:
		return "maintenance"
	case !m.HealthKnown:
		return "health unknown"
	case !m.Healthy:
		return "unhealthy: " + m.Detail
	case m.RejoinBlocked:
		return "rejoin blocked: extra transactions " + m.RejoinExtra
	case s.Phase == PhaseRevoked && id == s.Owner && (s.Failover == nil || s.Failover.To != id):
		// (An operator's failover may give it back in the next epoch: its promises ran
		// out before any assignment, as after a release.)
		return "ownership revoked"
	case v.Unreachable[id]:
		return "unreachable from the controller"
	case s.Switchover != nil && id == s.Owner && s.Phase != PhaseReleased:
		return "switching away"
	}
	return ""
}

// rank places an eligible database member id and says why it ranks low, if it does.
func (s State) rank(id string) (int, string) {
	sw := s.Switchover
	switch {
	case s.Failover != nil && id == s.Failover.To:
		return rankTarget, "" // the operator's choice, even after a failed promotion
	case s.failedNow(id):
		return rankFailed, fmt.Sprintf("failed promotion in epoch %d; last resort", s.Members[id].FailedEpoch)
	case sw == nil && s.Phase == PhaseReleased && s.LastRelease != nil && s.LastRelease.Epoch == s.Epoch && id == s.LastRelease.Owner:
		// It just gave the VIP up (its mysqld failed, it is stopping): the journal may
		// not show why yet, so prefer anyone else.
		return rankSwitchedAway, "released this epoch; last resort"
	case sw == nil:
		return rankPlain, ""
	case id == s.Owner:
		return rankSwitchedAway, "switching away; last resort"
	case sw.To == "":
		return rankPlain, ""
	case id == sw.To:
		return rankTarget, ""
	}
	return rankPlain, "not the switchover target; fallback"
}

// failedNow reports whether member id failed a promotion in the current epoch.
func (s State) failedNow(id string) bool {
	m, ok := s.Members[id]
	return ok && m.FailedEpoch != 0 && m.FailedEpoch == s.Epoch
}
