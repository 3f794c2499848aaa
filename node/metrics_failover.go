package node

import (
	"strings"
	"time"

	"github.com/keepraft/keepraft/fsm"
)

// Causes of an owner assignment, the reason label of keepraft_failovers_total and
// keepraft_failover_duration_seconds.
const (
	causeInitial          = "initial"
	causeSwitchover       = "switchover"
	causeOwnerUnhealthy   = "owner_unhealthy"
	causeOwnerUnreachable = "owner_unreachable"
	causeOwnerRemoved     = "owner_removed"
	causeOwnerStopped     = "owner_stopped"
	causeMaintenance      = "maintenance"
	causeOwnerReleased    = "owner_released"
	causePromotionFailed  = "promotion_failed"
	causeOther            = "other"
)

// failoverTracker follows the applied ownership events to tell why each owner was
// assigned and how long each handover took. A handover begins with the first
// SwitchoverRequested, OwnerRevoked, OwnerReleased or PromotionFailed after the last
// OwnerPromoted, and ends with the next OwnerPromoted; its duration is the difference of
// the two events' timestamps (stamped by their proposers, so it includes the controller's
// decision and the new owner's catch-up). Events stamped before this process started
// (replayed from the log or a snapshot at a restart) move the tracker but are not
// counted: the nodes that were up counted them, and a counter that jumped at a restart
// would read as failovers that just happened.
type failoverTracker struct {
	started time.Time
	// since is when the handover in progress began (zero: none), cause why.
	since time.Time
	cause string
	// failedSince: a PromotionFailed was applied since the last OwnerAssigned.
	failedSince bool
}

// failoverObs is what one event adds to the failover series: an assignment's cause, and
// a finished handover's cause and duration ("" for none).
type failoverObs struct {
	assigned string
	handover string
	took     time.Duration
}

// apply moves the tracker by one applied event.
func (t *failoverTracker) apply(ev fsm.Event) failoverObs {
	var o failoverObs
	counted := !ev.At.Before(t.started)
	switch ev.Type {
	case fsm.SwitchoverRequested:
		t.begin(ev.At, causeSwitchover)
	case fsm.OwnerRevoked:
		var d fsm.RevokeData
		_ = ev.Payload(&d) // Apply already decoded it; a bad payload leaves the reason empty
		t.begin(ev.At, revokeCause(d.Reason))
	case fsm.OwnerReleased:
		var d fsm.ReleaseData
		_ = ev.Payload(&d)
		t.begin(ev.At, releaseCause(d.Reason))
	case fsm.PromotionFailed:
		t.begin(ev.At, causePromotionFailed)
		t.failedSince = true
	case fsm.OwnerAssigned:
		var d fsm.AssignData
		_ = ev.Payload(&d)
		cause := assignCause(d.Reason)
		switch {
		case t.failedSince:
			cause = causePromotionFailed
		case t.cause != "":
			cause = t.cause
		}
		t.failedSince = false
		if counted {
			o.assigned = cause
		}
	case fsm.OwnerPromoted:
		if !t.since.IsZero() && counted {
			o.handover, o.took = t.cause, max(ev.At.Sub(t.since), 0)
		}
		t.since, t.cause, t.failedSince = time.Time{}, "", false
	}
	return o
}

// begin starts a handover at at unless one is in progress.
func (t *failoverTracker) begin(at time.Time, cause string) {
	if t.since.IsZero() {
		t.since, t.cause = at, cause
	}
}

// revokeCause classifies an OwnerRevoked reason (see fsm.Decide).
func revokeCause(reason string) string {
	switch {
	case strings.Contains(reason, "unhealthy"):
		return causeOwnerUnhealthy
	case strings.Contains(reason, "unreachable"):
		return causeOwnerUnreachable
	case strings.Contains(reason, "no longer a member"):
		return causeOwnerRemoved
	}
	return causeOther
}

// releaseCause classifies the reason of an OwnerReleased that began a handover: the
// owner gave its epoch up on its own (see the owner runtime's releaseReason).
func releaseCause(reason string) string {
	switch {
	case strings.Contains(reason, "unhealthy"):
		return causeOwnerUnhealthy
	case strings.Contains(reason, "switchover"):
		return causeSwitchover
	case strings.Contains(reason, "maintenance"):
		return causeMaintenance
	case strings.Contains(reason, "stopping"):
		return causeOwnerStopped
	}
	return causeOwnerReleased
}

// assignCause classifies an OwnerAssigned reason when the events before it were not
// seen (a journal trimmed by retention).
func assignCause(reason string) string {
	switch {
	case reason == "initial assignment":
		return causeInitial
	case strings.HasPrefix(reason, "switchover"):
		return causeSwitchover
	}
	if _, why, ok := strings.Cut(reason, " released: "); ok {
		return releaseCause(why)
	}
	if strings.HasSuffix(reason, "previous owner released") {
		return causeOwnerReleased
	}
	return causeOther
}
