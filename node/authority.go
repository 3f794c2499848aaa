package node

import (
	"errors"
	"fmt"

	"github.com/keepraft/keepraft/fsm"
)

// errForbidden is returned for an event its sender may not author.
var errForbidden = errors.New("not allowed to author this event")

// authorize checks that id, the authenticated sender of a forwarded event (its
// certificate's identity; without cluster.tls the event's own By, unverified), may author
// ev in state s:
//   - an owner's own events (release, promotion, health, semi-sync, VIP conflict, hook
//     failure, membership) only by the node they are about;
//   - a rejoin verdict only by the current owner;
//   - controller decisions never: the leader applies them locally, so one that arrives
//     over the API is forged;
//   - operator requests by any member (the node that took the operator's call).
func authorize(ev fsm.Event, id string, s fsm.State) error {
	if ev.By != id {
		return fmt.Errorf("%w: %s signed by %q but sent by %q", errForbidden, ev.Type, ev.By, id)
	}
	subject := id
	var err error
	switch ev.Type {
	case fsm.Bootstrapped, fsm.OwnerAssigned, fsm.OwnerRevoked, fsm.PromotionFailed, fsm.MemberRemoved:
		return fmt.Errorf("%w: %s is decided only by the raft leader's controller, never forwarded", errForbidden, ev.Type)
	case fsm.OwnerReleased:
		subject, err = field(ev, func(d fsm.ReleaseData) string { return d.Owner })
	case fsm.OwnerPromoted:
		subject, err = field(ev, func(d fsm.PromotedData) string { return d.Owner })
	case fsm.HealthChanged:
		subject, err = field(ev, func(d fsm.HealthData) string { return d.Node })
	case fsm.SemiSyncChanged:
		subject, err = field(ev, func(d fsm.SemiSyncData) string { return d.Node })
	case fsm.VIPConflictSeen:
		subject, err = field(ev, func(d fsm.VIPConflictData) string { return d.Node })
	case fsm.HookFailed:
		subject, err = field(ev, func(d fsm.HookFailedData) string { return d.Node })
	case fsm.MemberJoined:
		subject, err = field(ev, func(d fsm.MemberData) string { return d.Member.ID })
	case fsm.RejoinChecked:
		if id != s.Owner {
			return fmt.Errorf("%w: %s only by the current owner %q, not %q", errForbidden, ev.Type, s.Owner, id)
		}
	}
	if err != nil {
		return err
	}
	if subject != id {
		return fmt.Errorf("%w: %s about %q sent by %q", errForbidden, ev.Type, subject, id)
	}
	return nil
}

// field decodes ev's payload as T and returns the node it is about.
func field[T any](ev fsm.Event, f func(T) string) (string, error) {
	var d T
	if err := ev.Payload(&d); err != nil {
		return "", fmt.Errorf("%w: %w", fsm.ErrInvalid, err)
	}
	return f(d), nil
}
