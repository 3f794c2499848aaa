package opsview

import (
	"fmt"
	"strings"
	"time"

	"github.com/keepraft/keepraft/fsm"
)

// The kinds of ownership change.
const (
	KindInitial     = "initial"     // the first owner of a new cluster
	KindFailover    = "failover"    // the owner's MySQL failed, or the owner went silent
	KindSwitchover  = "switchover"  // an operator asked for a planned move
	KindPreempt     = "preempt"     // the controller moved to a higher-priority node
	KindMaintenance = "maintenance" // the owner was put in maintenance
	KindOperator    = "operator"    // an operator's failover (raftctl failover --to)
	KindStop        = "stop"        // the owner's keepraftd stopped
	KindRelease     = "release"     // the owner released for another reason
	KindUnknown     = "unknown"     // the journal does not reach back to the start
)

// Change is one ownership change: an owner promoted in a new epoch, with what started it.
type Change struct {
	// Time is when the new owner's OwnerPromoted was stamped (At, in the local zone).
	Time  string    `json:"time"`
	At    time.Time `json:"at"`
	Epoch uint64    `json:"epoch"`
	// From is the previous promoted owner ("" for the first owner, or when unknown).
	From   string `json:"from"`
	To     string `json:"to"`
	Kind   string `json:"kind"`
	Reason string `json:"reason"`
	// Trigger is the event that started the change (the owner's failed health, the
	// revoke, the switchover or maintenance request, the release), with its index and time.
	Trigger      fsm.Type  `json:"trigger,omitempty"`
	TriggerIndex uint64    `json:"trigger_index,omitempty"`
	TriggerAt    time.Time `json:"trigger_at,omitzero"`
	// PromotedIndex is the OwnerPromoted record's index.
	PromotedIndex uint64 `json:"promoted_index"`
	// DurationMS is from the trigger to the promotion (null when the trigger is not in
	// the journal).
	DurationMS *int64  `json:"duration_ms"`
	CatchUp    CatchUp `json:"catchup"`
	// Loss says what may have been lost: the assignment's note (the old owner never
	// released, or was not fenced) and the promotion's.
	Loss string `json:"loss,omitempty"`
	// FailedPromotions lists the promotions that failed on the way ("db2: reason").
	FailedPromotions []string `json:"failed_promotions,omitempty"`
}

// CatchUp is the new owner's catch-up result from OwnerPromoted.
type CatchUp struct {
	Target   string `json:"target,omitempty"`
	Reached  bool   `json:"reached"`
	WaitedMS int64  `json:"waited_ms"`
	Missing  string `json:"missing,omitempty"`
	Policy   string `json:"policy,omitempty"`
}

// String is the catch-up in a few words.
func (c CatchUp) String() string {
	switch {
	case !c.Reached && c.Missing != "":
		return fmt.Sprintf("catch-up NOT reached after %d ms, missing %s", c.WaitedMS, c.Missing)
	case !c.Reached:
		return fmt.Sprintf("catch-up NOT reached after %d ms", c.WaitedMS)
	case c.Target == "":
		return "no catch-up target"
	}
	return fmt.Sprintf("catch-up %d ms, nothing missing", c.WaitedMS)
}

// Took is the trigger-to-promotion duration in words ("142 ms", "?" when unknown).
func (c Change) Took() string {
	if c.DurationMS == nil {
		return "?"
	}
	return fmt.Sprintf("%d ms", *c.DurationMS)
}

// Move is "db1 → db2" ("(none) → db1" for a first owner).
func (c Change) Move() string {
	from := c.From
	if from == "" {
		from = "(none)"
	}
	return from + " → " + c.To
}

// Summary is the change in one line: "db1 → db2 in 142 ms (catch-up 0 ms, nothing
// missing)", with the loss note when there is one.
func (c Change) Summary() string {
	s := fmt.Sprintf("%s in %s (%s)", c.Move(), c.Took(), c.CatchUp)
	if c.DurationMS == nil {
		s = fmt.Sprintf("%s (%s)", c.Move(), c.CatchUp)
	}
	if c.Loss != "" {
		s += "; loss: " + c.Loss
	}
	return s
}

// pending is a change under way: started, not yet promoted.
type pending struct {
	kind, reason string
	trigger      fsm.Record
	// healthOnly: the trigger is the owner's failed health and nothing acted on it yet;
	// the owner's recovery cancels it.
	healthOnly bool
	assign     *fsm.AssignData
	failed     []string
}

// Builder folds journal records, in order, into ownership changes.
type Builder struct {
	owner string
	p     *pending
	loc   *time.Location
}

// NewBuilder starts from owner, the promoted owner before the first record ("" when
// none or unknown); times print in loc (nil: the local zone).
func NewBuilder(owner string, loc *time.Location) *Builder {
	return &Builder{owner: owner, loc: loc}
}

// History returns every ownership change in recs (ascending).
func History(recs []fsm.Record, loc *time.Location) []Change {
	b := NewBuilder("", loc)
	var out []Change
	for _, r := range recs {
		if c := b.Add(r); c != nil {
			out = append(out, *c)
		}
	}
	return out
}

func (b *Builder) start(kind, reason string, r fsm.Record) {
	b.p = &pending{kind: kind, reason: reason, trigger: r}
}

// Add folds r and returns the change it completes (an applied OwnerPromoted), else nil.
// Records that were not applied (stale, skipped, invalid) change nothing.
func (b *Builder) Add(r fsm.Record) *Change {
	if r.Result != fsm.ResultApplied {
		return nil
	}
	ev := r.Event
	switch ev.Type {
	case fsm.HealthChanged:
		var d fsm.HealthData
		if ev.Payload(&d) != nil || d.Node == "" || d.Node != b.owner {
			return nil
		}
		switch {
		case !d.Healthy && b.p == nil:
			b.start(KindFailover, fmt.Sprintf("%s unhealthy: %s", d.Node, d.Detail), r)
			b.p.healthOnly = true
		case d.Healthy && b.p != nil && b.p.healthOnly:
			b.p = nil // recovered before anything acted on it
		}
	case fsm.MaintenanceChanged:
		var d fsm.MaintenanceData
		if ev.Payload(&d) == nil && d.On && d.Node == b.owner && b.p == nil {
			b.start(KindMaintenance, "maintenance on "+d.Node+operator(d.Operator, d.From), r)
		}
	case fsm.SwitchoverRequested:
		var d fsm.SwitchoverData
		if ev.Payload(&d) != nil || b.p != nil {
			return nil
		}
		to := ""
		if d.To != "" {
			to = " to " + d.To
		}
		if d.Operator == "" {
			b.start(KindPreempt, "controller moves to the higher-priority "+d.To, r)
		} else {
			b.start(KindSwitchover, "switchover"+to+" requested"+operator(d.Operator, d.From), r)
		}
	case fsm.FailoverRequested:
		var d fsm.FailoverData
		if ev.Payload(&d) != nil {
			return nil
		}
		why := "operator failover to " + d.To + operator(d.Operator, d.From)
		if b.p == nil {
			b.start(KindOperator, why, r)
			return nil
		}
		// What was stuck (a release, a failed promotion, a pause) ends by the operator's
		// hand: the change is the operator's, timed from the first trigger.
		b.p.kind, b.p.reason, b.p.healthOnly = KindOperator, b.p.reason+"; then "+why, false
	case fsm.OwnerRevoked:
		var d fsm.RevokeData
		_ = ev.Payload(&d)
		if b.p == nil {
			b.start(KindFailover, d.Reason, r)
		}
		b.p.healthOnly = false
	case fsm.OwnerReleased:
		var d fsm.ReleaseData
		_ = ev.Payload(&d)
		if b.p == nil {
			b.start(releaseKind(d.Reason), d.Owner+" released: "+d.Reason, r)
		}
		b.p.healthOnly = false
	case fsm.OwnerAssigned:
		var d fsm.AssignData
		_ = ev.Payload(&d)
		if b.p == nil {
			b.start(assignKind(d.Reason), d.Reason, r)
		}
		if b.p.kind == KindSwitchover && strings.HasPrefix(d.Reason, "switchover: ") {
			b.p.reason += "; " + strings.TrimPrefix(d.Reason, "switchover: ")
		}
		b.p.healthOnly = false
		b.p.assign = &d
	case fsm.PromotionFailed:
		var d fsm.PromotionFailedData
		_ = ev.Payload(&d)
		if b.p == nil {
			b.start(KindUnknown, "", r)
		}
		b.p.failed = append(b.p.failed, d.Owner+": "+d.Reason)
	case fsm.OwnerPromoted:
		var d fsm.PromotedData
		_ = ev.Payload(&d)
		return b.promoted(r, d)
	}
	return nil
}

func (b *Builder) promoted(r fsm.Record, d fsm.PromotedData) *Change {
	c := &Change{Time: FormatTime(r.Event.At, b.loc), At: r.Event.At, Epoch: r.Event.Epoch, From: b.owner, To: d.Owner, PromotedIndex: r.Index,
		CatchUp: CatchUp{Target: d.Target, Reached: d.Reached, WaitedMS: d.WaitedMS, Missing: d.Missing, Policy: d.Policy}}
	if c.From == "" {
		c.From = d.PrevOwner
	}
	var loss []string
	if p := b.p; p != nil {
		c.Kind, c.Reason, c.FailedPromotions = p.kind, p.reason, p.failed
		if p.trigger.Event.Type != fsm.PromotionFailed {
			c.Trigger, c.TriggerIndex, c.TriggerAt = p.trigger.Event.Type, p.trigger.Index, p.trigger.Event.At
			ms := r.Event.At.Sub(p.trigger.Event.At).Milliseconds()
			c.DurationMS = &ms
		}
		if p.assign != nil && p.assign.Loss != "" {
			loss = append(loss, p.assign.Loss)
		}
	}
	if c.Kind == "" || c.Kind == KindUnknown {
		c.Kind, c.Reason = KindUnknown, "the journal does not reach back to the start of this change"
	}
	if d.LossNotes != "" {
		loss = append(loss, d.LossNotes)
	}
	c.Loss = strings.Join(loss, "; ")
	b.owner, b.p = d.Owner, nil
	return c
}

func operator(who, from string) string {
	switch {
	case who == "":
		return ""
	case from == "":
		return " by " + who
	}
	return " by " + who + " from " + from
}

// releaseKind classifies an OwnerReleased reason (see the owner runtime's releaseReason).
func releaseKind(reason string) string {
	switch {
	case reason == "switchover requested":
		return KindSwitchover
	case reason == "maintenance":
		return KindMaintenance
	case strings.Contains(reason, "stopping"):
		return KindStop
	case strings.Contains(reason, "unhealthy"), strings.Contains(reason, "revoked"):
		return KindFailover
	}
	return KindRelease
}

// assignKind classifies an OwnerAssigned reason when nothing before it is in the journal.
func assignKind(reason string) string {
	switch {
	case reason == "initial assignment":
		return KindInitial
	case strings.HasPrefix(reason, "switchover"):
		return KindSwitchover
	case strings.Contains(reason, " released: "):
		_, after, _ := strings.Cut(reason, " released: ")
		return releaseKind(after)
	case strings.Contains(reason, "revoked"):
		return KindFailover
	}
	return KindRelease
}
