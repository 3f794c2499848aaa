package opsview

import (
	"errors"
	"fmt"
	"time"

	"github.com/keepraft/keepraft/fsm"
)

// Outcome is what an operator request came to, once Done.
type Outcome struct {
	Done bool
	// Err is set when the request failed or did not do what was asked; Message is then
	// still printed when not empty.
	Err     error
	Message string
	// Change is the ownership change that ended the wait, if any.
	Change *Change
}

// Watch follows the journal after an accepted switchover or maintenance request until
// its outcome: for a switchover, the OwnerPromoted of the new epoch (or a
// PromotionFailed); for maintenance, the MaintenanceChanged record applied and, when the
// node was the owner and maintenance turns on, the handover's OwnerPromoted.
type Watch struct {
	what string // "switchover" or "maintenance"
	// Index is the request's journal index.
	index uint64
	to    string // switchover target ("" any)
	node  string // maintenance node
	on    bool
	// handover: an ownership change must follow the request.
	handover bool
	b        *Builder
	epoch    uint64
	seen     bool
	stage    string
}

// NewSwitchoverWatch follows the switchover committed at index, requested to node to
// ("" for any), from the promoted owner.
func NewSwitchoverWatch(index uint64, to, owner string, loc *time.Location) *Watch {
	return &Watch{what: "switchover", index: index, to: to, handover: true, b: NewBuilder(owner, loc),
		stage: "the switchover request (journal index " + fmt.Sprint(index) + ") to be applied"}
}

// NewFailoverWatch follows an operator's failover to to, committed at index, until to is
// promoted; owner is the owner when it was asked.
func NewFailoverWatch(index uint64, to, owner string, loc *time.Location) *Watch {
	return &Watch{what: "failover", index: index, to: to, handover: true, b: NewBuilder(owner, loc),
		stage: "the failover request (journal index " + fmt.Sprint(index) + ") to be applied"}
}

// NewMaintenanceWatch follows maintenance on/off of node committed at index; wasOwner
// says whether node held ownership when it was asked.
func NewMaintenanceWatch(index uint64, node string, on, wasOwner bool, loc *time.Location) *Watch {
	owner := ""
	if wasOwner {
		owner = node
	}
	return &Watch{what: "maintenance", index: index, node: node, on: on, handover: on && wasOwner, b: NewBuilder(owner, loc),
		stage: fmt.Sprintf("the MaintenanceChanged record (journal index %d) to be applied", index)}
}

// Pending says what the watch still waits for.
func (w *Watch) Pending() string { return w.stage }

// Add folds the next journal record; the returned Outcome is Done once the request's
// fate is known.
func (w *Watch) Add(r fsm.Record) Outcome {
	if r.Index < w.index {
		return Outcome{}
	}
	if r.Index == w.index {
		w.seen = true
		if r.Result != fsm.ResultApplied {
			return Outcome{Done: true, Err: fmt.Errorf("%s request (journal index %d) was %s: %s", w.what, r.Index, r.Result, r.Error)}
		}
		w.epoch = r.Event.Epoch
		w.b.Add(r)
		if !w.handover {
			state := "off"
			if w.on {
				state = "on"
			}
			return Outcome{Done: true, Message: fmt.Sprintf("maintenance %s for %s applied (journal index %d)", state, w.node, r.Index)}
		}
		w.stage = "the owner to release (OwnerReleased)"
		return Outcome{}
	}
	if !w.seen {
		return Outcome{}
	}
	if r.Result == fsm.ResultApplied {
		switch r.Event.Type {
		case fsm.OwnerReleased, fsm.OwnerRevoked:
			w.stage = "the controller to assign a new owner (OwnerAssigned)"
		case fsm.OwnerAssigned:
			var d fsm.AssignData
			_ = r.Event.Payload(&d)
			w.stage = fmt.Sprintf("%s's promotion in epoch %d (OwnerPromoted; catch-up first)", d.Owner, r.Event.Epoch+1)
		case fsm.PromotionFailed:
			var d fsm.PromotionFailedData
			_ = r.Event.Payload(&d)
			if r.Event.Epoch > w.epoch {
				return Outcome{Done: true, Err: fmt.Errorf("%s: promotion of %s failed in epoch %d: %s (the controller assigns the next candidate; see raftctl history)", w.what, d.Owner, r.Event.Epoch, d.Reason)}
			}
		}
	}
	c := w.b.Add(r)
	if c == nil || c.Epoch <= w.epoch {
		return Outcome{}
	}
	out := Outcome{Done: true, Change: c, Message: c.Summary()}
	switch {
	case c.From == c.To:
		out.Err = fmt.Errorf("%s did not move ownership: %s stays owner (%s)", w.what, c.To, c.Reason)
	case w.to != "" && c.To != w.to:
		out.Err = fmt.Errorf("%s ended on %s, not %s (%s)", w.what, c.To, w.to, c.Reason)
	case w.node != "" && c.To == w.node:
		out.Err = errors.New("the handover ended on " + c.To + " itself")
	}
	return out
}
