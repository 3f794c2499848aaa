package opsview

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keepraft/keepraft/fsm"
)

// TimeLayout is RFC 3339 with milliseconds, the form every time is printed in.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// FormatTime prints t in the local zone (or loc when not nil) as [TimeLayout]; "-" for
// the zero time.
func FormatTime(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "-"
	}
	if loc == nil {
		loc = time.Local
	}
	return t.In(loc).Format(TimeLayout)
}

// Types lists every event type fsm defines, in the order fsm declares them.
var Types = fsm.Types

// ParseTypes reads event type names, each value possibly a comma list, case-insensitive.
// An unknown name is an error that lists the valid ones.
func ParseTypes(values []string) ([]fsm.Type, error) {
	var out []fsm.Type
	for _, v := range values {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			i := slices.IndexFunc(Types, func(t fsm.Type) bool { return strings.EqualFold(string(t), name) })
			if i < 0 {
				names := make([]string, len(Types))
				for j, t := range Types {
					names[j] = string(t)
				}
				return nil, fmt.Errorf("--type: unknown event type %q (valid: %s)", name, strings.Join(names, ", "))
			}
			if !slices.Contains(out, Types[i]) {
				out = append(out, Types[i])
			}
		}
	}
	return out, nil
}

// Filter selects journal records: by event type (any of Types; all when empty) and by
// node (records whose author or subject is Node; all when empty).
type Filter struct {
	Types []fsm.Type
	Node  string
}

// Match reports whether r passes the filter.
func (f Filter) Match(r fsm.Record) bool {
	if len(f.Types) > 0 && !slices.Contains(f.Types, r.Event.Type) {
		return false
	}
	if f.Node == "" || r.Event.By == f.Node {
		return true
	}
	return slices.Contains(Subjects(r.Event), f.Node)
}

// Apply returns the records of recs that match.
func (f Filter) Apply(recs []fsm.Record) []fsm.Record {
	var out []fsm.Record
	for _, r := range recs {
		if f.Match(r) {
			out = append(out, r)
		}
	}
	return out
}

// Subjects returns the nodes an event is about (besides its author): the node whose
// health, maintenance, semi-sync or rejoin it records, the owner it names, a
// switchover's target, a promotion's previous owner, the members it adds or removes.
// A payload that does not decode has no subjects.
func Subjects(ev fsm.Event) []string {
	var out []string
	add := func(ids ...string) {
		for _, id := range ids {
			if id != "" && !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	switch ev.Type {
	case fsm.Bootstrapped:
		var d fsm.BootstrappedData
		if ev.Payload(&d) == nil {
			for _, m := range d.Members {
				add(m.ID)
			}
		}
	case fsm.MemberJoined, fsm.MemberRemoved:
		var d fsm.MemberData
		if ev.Payload(&d) == nil {
			add(d.Member.ID)
		}
	case fsm.HealthChanged:
		var d fsm.HealthData
		if ev.Payload(&d) == nil {
			add(d.Node)
		}
	case fsm.OwnerRevoked:
		var d fsm.RevokeData
		if ev.Payload(&d) == nil {
			add(d.Owner)
		}
	case fsm.OwnerReleased:
		var d fsm.ReleaseData
		if ev.Payload(&d) == nil {
			add(d.Owner)
		}
	case fsm.OwnerAssigned:
		var d fsm.AssignData
		if ev.Payload(&d) == nil {
			add(d.Owner)
		}
	case fsm.OwnerPromoted:
		var d fsm.PromotedData
		if ev.Payload(&d) == nil {
			add(d.Owner, d.PrevOwner)
		}
	case fsm.PromotionFailed:
		var d fsm.PromotionFailedData
		if ev.Payload(&d) == nil {
			add(d.Owner)
		}
	case fsm.SwitchoverRequested:
		var d fsm.SwitchoverData
		if ev.Payload(&d) == nil {
			add(d.To)
		}
	case fsm.MaintenanceChanged:
		var d fsm.MaintenanceData
		if ev.Payload(&d) == nil {
			add(d.Node)
		}
	case fsm.RejoinChecked:
		var d fsm.RejoinData
		if ev.Payload(&d) == nil {
			add(d.Node)
		}
	case fsm.SemiSyncChanged:
		var d fsm.SemiSyncData
		if ev.Payload(&d) == nil {
			add(d.Node)
		}
	case fsm.FailoverRequested:
		var d fsm.FailoverData
		if ev.Payload(&d) == nil {
			add(d.To)
		}
	case fsm.RejoinResumed:
		var d fsm.RejoinResumeData
		if ev.Payload(&d) == nil {
			add(d.Node)
		}
	case fsm.HookFailed:
		var d fsm.HookFailedData
		if ev.Payload(&d) == nil {
			add(d.Node)
		}
	case fsm.ReplicationBroken:
		var d fsm.ReplicationData
		if ev.Payload(&d) == nil {
			add(d.Node)
			add(d.Source)
		}
	case fsm.VIPConflictSeen:
		var d fsm.VIPConflictData
		if ev.Payload(&d) == nil {
			add(d.Node)
		}
	}
	return out
}

// Record is a journal record as raftctl prints it in JSON: the record's own fields plus
// Time, its event's time as an RFC 3339 string with milliseconds in the local zone.
type Record struct {
	fsm.Record
	Time string `json:"time"`
}

// NewRecord wraps r for JSON output.
func NewRecord(r fsm.Record, loc *time.Location) Record {
	return Record{Record: r, Time: FormatTime(r.Event.At, loc)}
}
