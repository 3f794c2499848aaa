package node

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/keepraft/keepraft/fsm"
)

// Refusals of a forwarded event, matched with errors.Is.
var (
	// errForbidden is returned for an event its sender may not author.
	errForbidden = errors.New("not allowed to author this event")
	// errUnconfirmed is returned for a forwarded operator failover without the loss
	// note the operator confirmed (the route answers 412 until it is confirmed).
	errUnconfirmed = errors.New("operator failover without a confirmed loss note")
	// errUnknownEvent is returned (with errForbidden) for an event type this build does
	// not know: nobody may forward it.
	errUnknownEvent = errors.New("unknown event type")
	// errVerbUnsupported is returned for an operator verb of schema version 3 while not
	// every member applies that version.
	errVerbUnsupported = errors.New("not every member applies this operator verb")
)

// operatorEvents are the event types of the operator verbs. The node that takes an
// operator's call stamps the operator and address it authenticated, and forwards the
// event to the leader through /v1/propose when it does not lead (Node.Propose); the
// leader re-checks it with forwardedOperator.
var operatorEvents = map[fsm.Type]bool{
	fsm.SwitchoverRequested: true,
	fsm.MaintenanceChanged:  true,
	fsm.PauseChanged:        true,
	fsm.FailoverRequested:   true,
	fsm.RejoinResumed:       true,
}

// authorize checks that id, the authenticated sender of a forwarded event (its
// certificate's identity; without cluster.tls the event's own By, unverified), may author
// ev in state s:
//   - an owner's own events (release, promotion, health, semi-sync, VIP conflict, hook
//     failure, membership) only by the node they are about;
//   - a foreign VRRP master only by a database node (the owner runtime that heard it;
//     the event names no node, its By is the reporter);
//   - a rejoin verdict only by the current owner;
//   - controller decisions never: the leader applies them locally, so one that arrives
//     over the API is forged;
//   - operator requests by any member (the node that took the operator's call), which
//     the leader then re-checks (forwardedOperator);
//   - an event type this build does not know, never.
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
	case fsm.ReplicationBroken:
		subject, err = field(ev, func(d fsm.ReplicationData) string { return d.Node })
	case fsm.MemberJoined:
		subject, err = field(ev, func(d fsm.MemberData) string { return d.Member.ID })
	case fsm.ForeignVRRPMasterSeen:
		if _, err := field(ev, func(fsm.ForeignData) string { return "" }); err != nil {
			return err
		}
		if m, ok := s.Members[id]; !ok || m.Role != fsm.RoleDatabase {
			return fmt.Errorf("%w: %s only by a database node, not %q", errForbidden, ev.Type, id)
		}
	case fsm.RejoinChecked:
		if id != s.Owner {
			return fmt.Errorf("%w: %s only by the current owner %q, not %q", errForbidden, ev.Type, s.Owner, id)
		}
	case fsm.SwitchoverRequested, fsm.MaintenanceChanged, fsm.PauseChanged, fsm.FailoverRequested, fsm.RejoinResumed:
		// Any member forwards an operator's request; forwardedOperator checks the rest.
	default:
		return fmt.Errorf("%w: %w %q", errForbidden, errUnknownEvent, ev.Type)
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

// forwardedOperator checks an operator event that id (its authenticated sender, the node
// that took the operator's call) forwarded from remote, on the leader whose state is s,
// and returns the event to commit.
//
// The leader cannot verify the operator and address the forwarding node stamped: only
// the forwarding node saw the operator's certificate. So it keeps them as the forwarding
// node's claim and appends the hop it did authenticate: From becomes "FROM via ID
// (REMOTE)". A node certificate that proposes an operator event directly can claim any
// operator, but the journal names it as the node that vouches for the claim, with its
// address. The checks of the operator routes (the same state checks, the schema version
// of the newer verbs, a failover's confirmed loss note) run again here, so proposing the
// event directly skips none of them; a failover journals the leader's own loss note.
func forwardedOperator(ev fsm.Event, id, remote string, s fsm.State, unreachable map[string]bool) (fsm.Event, error) {
	via := func(from string) string {
		if from == "" {
			from = "?"
		}
		return fmt.Sprintf("%s via %s (%s)", from, id, remote)
	}
	switch ev.Type {
	case fsm.SwitchoverRequested:
		return restamp(ev, 1, s, func(d *fsm.SwitchoverData) (*string, error) {
			_, err := s.CheckSwitchover(d.To, unreachable)
			d.From = via(d.From)
			return &d.Operator, err
		})
	case fsm.MaintenanceChanged:
		return restamp(ev, 1, s, func(d *fsm.MaintenanceData) (*string, error) {
			d.From = via(d.From)
			return &d.Operator, s.CheckMaintenance(d.Node, d.On, unreachable)
		})
	case fsm.PauseChanged:
		return restamp(ev, operatorVerbVersion, s, func(d *fsm.PauseData) (*string, error) {
			d.From = via(d.From)
			return &d.Operator, s.CheckPause(d.Paused)
		})
	case fsm.FailoverRequested:
		return restamp(ev, operatorVerbVersion, s, func(d *fsm.FailoverData) (*string, error) {
			note, err := s.CheckFailover(d.To, unreachable)
			if err == nil && d.Loss == "" {
				err = fmt.Errorf("%w: failover to %s needs confirmation: %s", errUnconfirmed, d.To, note)
			}
			d.Loss, d.From = note, via(d.From)
			return &d.Operator, err
		})
	case fsm.RejoinResumed:
		return restamp(ev, operatorVerbVersion, s, func(d *fsm.RejoinResumeData) (*string, error) {
			d.From = via(d.From)
			return &d.Operator, s.CheckRejoinResume(d.Node, d.Accept)
		})
	}
	return ev, fmt.Errorf("%w: %s is not an operator event", errForbidden, ev.Type)
}

// restamp decodes ev's payload as T, runs check on it (which rewrites the payload and
// returns its operator field and the route's verdict), and re-encodes it. An operator
// event needs an operator (the routes always stamp one) and at least schema version v,
// which every member must apply.
func restamp[T any](ev fsm.Event, v int, s fsm.State, check func(*T) (*string, error)) (fsm.Event, error) {
	var d T
	if err := ev.Payload(&d); err != nil {
		return ev, fmt.Errorf("%w: %w", fsm.ErrInvalid, err)
	}
	if ev.V < v {
		return ev, fmt.Errorf("%w: %s needs event schema %d, got %d", fsm.ErrInvalid, ev.Type, v, ev.V)
	}
	if !s.Supported(v) {
		return ev, fmt.Errorf("%w: %s (event schema %d); upgrade them first", errVerbUnsupported, ev.Type, v)
	}
	operator, err := check(&d)
	if *operator == "" {
		return ev, fmt.Errorf("%w: %s without an operator: the operator routes always stamp one", errForbidden, ev.Type)
	}
	if err != nil {
		return ev, fmt.Errorf("forwarded %s: %w", ev.Type, err)
	}
	b, err := json.Marshal(d)
	if err != nil {
		return ev, fmt.Errorf("encode forwarded %s payload: %w", ev.Type, err)
	}
	ev.Data = b
	return ev, nil
}
