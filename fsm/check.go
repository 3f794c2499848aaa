package fsm

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors returned by [State.CheckSwitchover] and [State.CheckMaintenance], the
// checks an operator request must pass before it is committed.
var (
	// ErrNoCandidate means no database node could take over from the owner; the message
	// names every database node other than the owner and why it cannot.
	ErrNoCandidate = errors.New("no eligible successor")
	// ErrNotDatabase means the named node is a witness, which never owns the VIP.
	ErrNotDatabase = errors.New("not a database node: a witness never owns the VIP")
	// ErrNoChange means the request would change nothing (the node is already in that
	// state), so the caller can say so instead of committing an event.
	ErrNoChange = errors.New("no change")
	// ErrNoOwner means there is no active owner to switch over from.
	ErrNoOwner = errors.New("no active owner")
	// ErrUnknownMember means the named node is not a cluster member.
	ErrUnknownMember = errors.New("not a cluster member")
)

// CheckSwitchover checks a switchover request before it is committed and returns the node
// that would take over from the current owner: to when set, else the best ranked other
// node (see [Candidates]; damping is not considered). unreachable lists the members the
// controller cannot reach now. It fails with [ErrNoOwner] unless an owner is active,
// [ErrUnknownMember] or [ErrNotDatabase] for a bad to, [ErrNoChange] when to already owns
// the VIP, and [ErrNoCandidate] when to (or, without to, every other database node) is in
// maintenance, unhealthy, of unknown health, blocked from rejoining or unreachable.
func (s State) CheckSwitchover(to string, unreachable map[string]bool) (string, error) {
	if s.Phase != PhaseActive || s.Owner == "" {
		return "", fmt.Errorf("switchover: %w (phase %s)", ErrNoOwner, s.Phase)
	}
	if to != "" {
		m, ok := s.Members[to]
		switch {
		case !ok:
			return "", fmt.Errorf("switchover to %s: %w", to, ErrUnknownMember)
		case m.Role != RoleDatabase:
			return "", fmt.Errorf("switchover to %s: %w", to, ErrNotDatabase)
		case to == s.Owner:
			return "", fmt.Errorf("switchover to %s: %w: it already owns the VIP", to, ErrNoChange)
		}
	}
	after := s.Clone()
	after.Switchover = &SwitchoverData{To: to}
	after.enter(PhaseReleased, s.Index, s.PhaseSince)
	succ, err := after.successor(unreachable, to)
	if err != nil {
		return "", fmt.Errorf("switchover from %s: %w", s.Owner, err)
	}
	return succ, nil
}

// CheckMaintenance checks a request to turn maintenance of node on or off before it is
// committed. Turning it on for the owner holding the VIP (assigned or active) is refused
// with [ErrNoCandidate] when no other database node could take over; turning it on for
// any other database node, or off for any node, is allowed. A witness is refused with
// [ErrNotDatabase], an unknown node with [ErrUnknownMember], and a request that changes
// nothing returns [ErrNoChange]. unreachable lists the members the controller cannot
// reach now.
func (s State) CheckMaintenance(node string, on bool, unreachable map[string]bool) error {
	m, ok := s.Members[node]
	switch {
	case !ok:
		return fmt.Errorf("maintenance of %s: %w", node, ErrUnknownMember)
	case on && m.Role != RoleDatabase:
		return fmt.Errorf("maintenance of %s: %w", node, ErrNotDatabase)
	case m.Maintenance == on:
		return fmt.Errorf("maintenance of %s: %w: already %s", node, ErrNoChange, onOff(on))
	case !on || !s.Holding(node):
		return nil
	}
	after := s.Clone()
	after.Members[node].Maintenance = true
	after.enter(PhaseReleased, s.Index, s.PhaseSince)
	if _, err := after.successor(unreachable, ""); err != nil {
		return fmt.Errorf("maintenance of owner %s: %w", node, err)
	}
	return nil
}

// successor returns the node [Candidates] would assign in s, which must be the state
// right after the owner released, provided it is another node than the owner (and to,
// when set). Otherwise the error wraps [ErrNoCandidate] and names every database node
// other than the owner with the reason it cannot take over.
func (s State) successor(unreachable map[string]bool, to string) (string, error) {
	var why []string
	for _, c := range Candidates(s, View{Unreachable: unreachable}) {
		switch {
		case c.Node == s.Owner:
			continue
		case c.Eligible && (to == "" || c.Node == to):
			return c.Node, nil
		case !c.Eligible && (to == "" || c.Node == to):
			why = append(why, c.Node+" "+c.Why)
		}
	}
	if len(why) == 0 {
		why = append(why, "no other database node")
	}
	return "", fmt.Errorf("%w: %s", ErrNoCandidate, strings.Join(why, "; "))
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// CheckPause checks a request to pause (or resume) automatic failover: [ErrNoChange]
// when the cluster is already in that state.
func (s State) CheckPause(paused bool) error {
	if s.Paused == paused {
		return fmt.Errorf("pause: %w: already %s", ErrNoChange, pausedWord(paused))
	}
	return nil
}

// CheckFailover checks an operator's failover to to before it is committed and returns
// the loss note the operator must accept: what may be missing on to, as far as the
// journal knows. It fails with [ErrUnknownMember] or [ErrNotDatabase] for a bad to,
// [ErrNoChange] when to already serves, and [ErrNoCandidate] when to is in maintenance,
// unhealthy, of unknown health, blocked from rejoining or unreachable from the
// controller: a failover never goes to a node that cannot serve.
func (s State) CheckFailover(to string, unreachable map[string]bool) (string, error) {
	m, ok := s.Members[to]
	switch {
	case !ok:
		return "", fmt.Errorf("failover to %s: %w", to, ErrUnknownMember)
	case m.Role != RoleDatabase:
		return "", fmt.Errorf("failover to %s: %w", to, ErrNotDatabase)
	case s.Phase == PhaseActive && s.Owner == to:
		return "", fmt.Errorf("failover to %s: %w: it already owns the VIP", to, ErrNoChange)
	}
	if why := s.ineligible(to, View{Unreachable: unreachable}, false); why != "" && !(why == "ownership revoked" || why == "switching away") {
		return "", fmt.Errorf("failover to %s: %w: %s", to, ErrNoCandidate, why)
	}
	var note string
	switch {
	case s.Owner == "" || s.Owner == to:
		note = fmt.Sprintf("%s is at %q; it opens writes even if its catch-up is incomplete", to, m.GTID)
	case s.Phase == PhaseReleased && s.LastRelease != nil && s.LastRelease.Epoch == s.Epoch && s.LastRelease.Fenced:
		note = fmt.Sprintf("%s released fenced at %q; %s catches up to it if it can, and opens writes even if it cannot", s.Owner, s.LastRelease.GTID, to)
	default:
		last := ""
		if o, ok := s.Members[s.Owner]; ok {
			last = o.GTID
		}
		note = fmt.Sprintf("owner %s last reported %q and %s %q: transactions %s did not ship may be lost, and %s opens writes even if its catch-up is incomplete", s.Owner, last, to, m.GTID, s.Owner, to)
	}
	return note, nil
}

// CheckRejoinResume checks an operator's resume of node's blocked rejoin. accept, when
// set, must be the journaled extra set exactly. [ErrNoChange] when the rejoin is not
// blocked.
func (s State) CheckRejoinResume(node, accept string) error {
	m, ok := s.Members[node]
	switch {
	case !ok:
		return fmt.Errorf("rejoin of %s: %w", node, ErrUnknownMember)
	case m.Role != RoleDatabase:
		return fmt.Errorf("rejoin of %s: %w", node, ErrNotDatabase)
	case !m.RejoinBlocked:
		return fmt.Errorf("rejoin of %s: %w: it is not blocked", node, ErrNoChange)
	case accept != "" && accept != m.RejoinExtra:
		return fmt.Errorf("rejoin of %s: --accept %q is not its extra set %q (it changed, or was mistyped)", node, accept, m.RejoinExtra)
	}
	return nil
}
