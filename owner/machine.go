package owner

import (
	"fmt"

	"github.com/keepraft/keepraft/fsm"
)

// Phase is where this database node stands in its own ownership life. It is the one
// state value of the runtime; [step] is the only place it changes.
type Phase string

// The phases.
const (
	// Standby: not the owner of the current epoch (or not sure of it yet). MySQL is kept
	// read_only=1 and the VIP off the interface.
	Standby Phase = "standby"
	// Promoting: the committed state names this node owner of Epoch; it catches up, fences
	// the previous owner and stops replication from it. Writes stay closed.
	Promoting Phase = "promoting"
	// Serving: promotion is done. Writes are open and the VIP is held exactly while the
	// conjunction holds (owner of Epoch, valid lease, healthy MySQL).
	Serving Phase = "serving"
	// Releasing: this node gives Epoch up: VIP dropped, MySQL fenced, OwnerReleased
	// proposed until the journal shows the epoch over.
	Releasing Phase = "releasing"
)

// machine is the runtime's state: a phase and the epoch it refers to.
type machine struct {
	Phase Phase
	Epoch uint64
}

func (m machine) String() string { return fmt.Sprintf("%s@%d", m.Phase, m.Epoch) }

// action is a side effect [step] asks the runtime to perform, in order.
type action string

const (
	// actFence drops the VIP and fences the local MySQL (read_only=1, kill applications).
	actFence action = "fence"
	// actPromote starts the promotion of Epoch (catch-up, remote fence, stop replication).
	actPromote action = "promote"
	// actCancel abandons a running promotion.
	actCancel action = "cancel-promotion"
	// actRelease drops the VIP, fences MySQL and proposes OwnerReleased for Epoch.
	actRelease action = "release"
)

// inputs is everything [step] looks at: the applied state and local facts.
type inputs struct {
	Self string
	// State is the applied state; CaughtUp says whether it is at least as new as the
	// commit index learned from a current leader.
	State    fsm.State
	CaughtUp bool
	// HealthKnown and Healthy are the rise/fall verdict on the local MySQL.
	HealthKnown, Healthy bool
	// Promotion is the result of the promotion of the machine's epoch, once it ended.
	Promotion *promotion
	// RetryRelease is true when the last release attempt of the machine's epoch did not
	// commit and is due again.
	RetryRelease bool
	// FenceBroken is true when the VIP fence was lost and could not be reinstalled for
	// fenceGiveUp: this node can serve no VIP, so it must not keep ownership.
	FenceBroken bool
}

// promotion is what a finished promotion reports.
type promotion struct {
	Epoch uint64
	// OK: writes may open. Otherwise Retry says whether to try again (an error) or hold
	// (on_catchup_timeout: hold, the controller declares PromotionFailed).
	OK, Retry bool
}

// releaseReason says why the owner must give its epoch up now ("" when it need not).
func releaseReason(in inputs) string {
	s, me := in.State, in.Self
	m := s.Members[me]
	switch {
	case s.Owner != me:
		return ""
	case s.Phase == fsm.PhaseRevoked:
		return "ownership revoked by the controller"
	case !s.Holding(me):
		return ""
	case in.HealthKnown && !in.Healthy:
		return "local mysqld unhealthy"
	case in.FenceBroken:
		return "VIP fence lost and not reinstalled: this node cannot serve the VIP"
	case s.Switchover != nil:
		return "switchover requested"
	case m != nil && m.Maintenance:
		return "maintenance"
	}
	return ""
}

// step is the runtime's transition function: from the current machine and inputs it
// returns the next machine, the actions to perform (in order) and a reason for the log.
// It is pure. Rules:
//   - a node not caught up starts nothing (no promotion, no release): it may only fall
//     back to Standby, which is always safe;
//   - any epoch other than the machine's, or a state that no longer names this node,
//     ends Promoting and Serving with a fence;
//   - an owner that must give up releases (which fences) and waits in Releasing until
//     the journal shows its epoch over.
func step(m machine, in inputs) (machine, []action, string) {
	s, me := in.State, in.Self
	mine := s.Holding(me)
	sameEpoch := s.Epoch == m.Epoch
	switch m.Phase {
	case Standby:
		if !in.CaughtUp || s.Owner != me {
			return m, nil, ""
		}
		if r := releaseReason(in); r != "" {
			return machine{Releasing, s.Epoch}, []action{actRelease}, r
		}
		if mine && in.HealthKnown && in.Healthy {
			return machine{Promoting, s.Epoch}, []action{actPromote}, "assigned owner of epoch " + fmt.Sprint(s.Epoch)
		}
	case Promoting:
		if !sameEpoch || s.Owner != me {
			return machine{Standby, s.Epoch}, []action{actCancel, actFence}, "no longer the owner"
		}
		if !in.CaughtUp {
			return m, nil, ""
		}
		if r := releaseReason(in); r != "" {
			return machine{Releasing, m.Epoch}, []action{actCancel, actRelease}, r
		}
		if p := in.Promotion; p != nil && p.Epoch == m.Epoch {
			switch {
			case p.OK:
				return machine{Serving, m.Epoch}, nil, "promotion done"
			case p.Retry:
				return m, []action{actPromote}, "promotion retried"
			}
		}
	case Serving:
		if !sameEpoch || s.Owner != me {
			return machine{Standby, s.Epoch}, []action{actFence}, "no longer the owner"
		}
		if !in.CaughtUp {
			return m, nil, ""
		}
		if r := releaseReason(in); r != "" {
			return machine{Releasing, m.Epoch}, []action{actRelease}, r
		}
	case Releasing:
		if !sameEpoch || s.Owner != me || s.Phase == fsm.PhaseReleased {
			return machine{Standby, s.Epoch}, nil, "release committed"
		}
		if in.RetryRelease {
			return m, []action{actRelease}, "release retried"
		}
	}
	return m, nil, ""
}
