package opsview

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
)

// The exit codes of raftctl status, for monitoring checks.
const (
	CodeHealthy  = 0 // a promoted owner, every voter reachable, nothing blocked
	CodeDegraded = 1 // it serves, but with less margin or needs an operator
	CodeCritical = 2 // no writer, or a server that is writable without ownership
	CodeUnknown  = 3 // the status could not be read
)

// The condition names.
const (
	NoWriter          = "NO WRITER"
	NonOwnerWritable  = "NON-OWNER WRITABLE"
	VoterUnreachable  = "VOTER UNREACHABLE"
	RejoinBlocked     = "REJOIN BLOCKED"
	Paused            = "PAUSED"
	NoLeader          = "NO LEADER"
	OwnerStatusFailed = "OWNER STATUS UNREADABLE"
)

// Condition is one thing wrong with the cluster.
type Condition struct {
	Name string `json:"name"`
	// Node is the member it is about, if one.
	Node string `json:"node,omitempty"`
	// Code is the exit code it alone would give (1 degraded, 2 critical).
	Code   int    `json:"code"`
	Detail string `json:"detail"`
	// Since is when it began, when known.
	Since time.Time `json:"since,omitzero"`
	// SinceText is Since in the local zone (RFC 3339, milliseconds).
	SinceText string `json:"since_text,omitempty"`
}

// Health is the verdict on a status: the exit code and every condition behind it.
type Health struct {
	Code       int         `json:"exit_code"`
	State      string      `json:"state"`
	Conditions []Condition `json:"conditions"`
}

// OwnerLocal is the owner's own local block (lease, VIP, read_only, GTIDs, replication),
// read from the owner's API when the answering node is not the owner.
type OwnerLocal struct {
	Node  string          `json:"node"`
	Local api.LocalStatus `json:"local"`
	// Err is set when the owner's API did not answer; Local is then empty.
	Err string `json:"error,omitempty"`
}

// Assess judges a status. owner is the owner's local block (nil when there is no owner
// or it was not read).
func Assess(st api.Status, owner *OwnerLocal, loc *time.Location) Health {
	h := Health{Conditions: []Condition{}}
	add := func(name string, code int, node string, since time.Time, format string, args ...any) {
		c := Condition{Name: name, Node: node, Code: code, Detail: fmt.Sprintf(format, args...), Since: since}
		if !since.IsZero() {
			c.SinceText = FormatTime(since, loc)
		}
		h.Conditions = append(h.Conditions, c)
		h.Code = max(h.Code, code)
	}
	holding := st.Owner != "" && (st.Phase == fsm.PhaseAssigned || st.Phase == fsm.PhaseActive)
	switch {
	case st.Phase != fsm.PhaseActive:
		since := st.NoWriterSince
		if since.IsZero() {
			since = st.PhaseSince
		}
		owner := st.Owner
		if owner == "" {
			owner = "none"
		}
		add(NoWriter, CodeCritical, "", since, "phase %s (owner %s, epoch %d): no promoted owner accepts writes", st.Phase, owner, st.Epoch)
	case owner != nil && owner.Err == "" && !owner.Local.Promoted:
		add(NoWriter, CodeCritical, owner.Node, time.Time{}, "owner %s has not opened writes (holding VIP %v, lease valid %v)", owner.Node, owner.Local.Holding, owner.Local.LeaseValid)
	}
	for _, m := range st.Members {
		if m.ReadOnly != nil && !*m.ReadOnly && !m.Stale && !(holding && m.ID == st.Owner) {
			add(NonOwnerWritable, CodeCritical, m.ID, time.Time{}, "%s reports read_only=0 but is not the owner", m.ID)
		}
	}
	for _, m := range st.Members {
		if !m.Reachable && m.Suffrage != "Nonvoter" {
			add(VoterUnreachable, CodeDegraded, m.ID, time.Time{}, "%s is unreachable from %s (last contact %s): one more failure loses the quorum", m.ID, st.Node, orDash(m.LastContact))
		}
	}
	for _, m := range st.Members {
		if m.RejoinBlocked {
			add(RejoinBlocked, CodeDegraded, m.ID, time.Time{}, "%s holds transactions the owner lacks (%s); its replication stays stopped until an operator decides", m.ID, orDash(m.RejoinExtra))
		}
	}
	if IsPaused(st) {
		add(Paused, CodeDegraded, "", time.Time{}, "automatic failover is paused")
	}
	if st.Leader == "" {
		add(NoLeader, CodeDegraded, "", time.Time{}, "%s sees no raft leader: no failover can be decided", st.Node)
	}
	ownerReachable := slices.ContainsFunc(st.Members, func(m api.MemberStatus) bool { return m.ID == st.Owner && m.Reachable })
	if owner != nil && owner.Err != "" && ownerReachable {
		add(OwnerStatusFailed, CodeDegraded, owner.Node, time.Time{}, "the owner %s's API did not answer: %s", owner.Node, owner.Err)
	}
	h.State = stateName(h.Code)
	return h
}

// IsPaused is the hook for a paused cluster: it reads api.Status.Paused, which the
// node fills once fsm.State carries a paused flag.
func IsPaused(st api.Status) bool { return st.Paused }

func stateName(code int) string {
	switch code {
	case CodeHealthy:
		return "healthy"
	case CodeDegraded:
		return "degraded"
	case CodeCritical:
		return "critical"
	}
	return "unknown"
}

// Banner is the status's first line: the verdict and the conditions' names, or for a
// healthy cluster who serves.
func (h Health) Banner(st api.Status) string {
	if len(h.Conditions) == 0 {
		voters := 0
		for _, m := range st.Members {
			if m.Suffrage != "Nonvoter" {
				voters++
			}
		}
		return fmt.Sprintf("HEALTHY: %s serves (epoch %d); %d/%d voters reachable", st.Owner, st.Epoch, voters, voters)
	}
	var parts []string
	for _, c := range h.Conditions {
		p := c.Name
		if c.Node != "" && c.Name != NoWriter {
			p += " " + c.Node
		}
		if c.SinceText != "" {
			p += " since " + c.SinceText
		}
		if !slices.Contains(parts, p) {
			parts = append(parts, p)
		}
	}
	return strings.ToUpper(h.State) + ": " + strings.Join(parts, "; ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
