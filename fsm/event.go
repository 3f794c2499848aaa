package fsm

import (
	"encoding/json"
	"fmt"
	"time"
)

// Version is the newest event schema version this build understands. Events are proposed
// at version 1 unless a newer one is needed and every voter advertises it ([State.Supported]):
//   - 2: an OwnerAssigned that is stale when the journal, at apply time, has its assignee
//     unhealthy or in maintenance (a health change can commit between the decision and
//     the assignment).
//   - 3: the operator verbs PauseChanged, FailoverRequested and RejoinResumed (a build
//     that lacks them would skip them and its state would differ), proposed only when
//     every member supports 3.
const Version = 3

// Versions lists every event schema version this build applies, for MemberJoined.
var Versions = []int{1, 2, 3}

// Type names an event kind in the journal.
type Type string

// The event types. Apply skips (and journals) any type it does not know.
const (
	Bootstrapped          Type = "Bootstrapped"
	MemberJoined          Type = "MemberJoined"
	MemberRemoved         Type = "MemberRemoved"
	HealthChanged         Type = "HealthChanged"
	OwnerRevoked          Type = "OwnerRevoked"
	OwnerReleased         Type = "OwnerReleased"
	OwnerAssigned         Type = "OwnerAssigned"
	OwnerPromoted         Type = "OwnerPromoted"
	SwitchoverRequested   Type = "SwitchoverRequested"
	MaintenanceChanged    Type = "MaintenanceChanged"
	ForeignVRRPMasterSeen Type = "ForeignVRRPMasterSeen"
	PromotionFailed       Type = "PromotionFailed"
	RejoinChecked         Type = "RejoinChecked"
	SemiSyncChanged       Type = "SemiSyncChanged"
	VIPConflictSeen       Type = "VIPConflictSeen"
	PauseChanged          Type = "PauseChanged"
	FailoverRequested     Type = "FailoverRequested"
	RejoinResumed         Type = "RejoinResumed"
	HookFailed            Type = "HookFailed"
	ReplicationBroken     Type = "ReplicationBroken"
)

// Types lists every event type this build applies, in the order they were introduced.
var Types = []Type{
	Bootstrapped, MemberJoined, MemberRemoved, HealthChanged, OwnerRevoked, OwnerReleased,
	OwnerAssigned, OwnerPromoted, SwitchoverRequested, MaintenanceChanged, ForeignVRRPMasterSeen,
	PromotionFailed, RejoinChecked, SemiSyncChanged, VIPConflictSeen, PauseChanged,
	FailoverRequested, RejoinResumed, HookFailed, ReplicationBroken,
}

// Event is one journal entry: a versioned envelope plus a type-specific payload. At is
// stamped by the proposer, so Apply never reads a clock. Epoch and Phase are the
// ownership state the event was decided from; Apply compares them with the current state
// for the ownership events and journals the event as stale when they no longer hold.
type Event struct {
	V     int             `json:"v"`
	Type  Type            `json:"type"`
	At    time.Time       `json:"at"`
	By    string          `json:"by"`
	Epoch uint64          `json:"epoch"`
	Phase Phase           `json:"phase,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
}

// NewEvent builds an event of type t with payload p, decided from epoch and phase.
func NewEvent(t Type, by string, at time.Time, epoch uint64, phase Phase, p any) (Event, error) {
	ev := Event{V: 1, Type: t, At: at.UTC(), By: by, Epoch: epoch, Phase: phase}
	if p != nil {
		b, err := json.Marshal(p)
		if err != nil {
			return Event{}, fmt.Errorf("encode %s payload: %w", t, err)
		}
		ev.Data = b
	}
	return ev, nil
}

// Encode returns the event's wire form as stored in the Raft log.
func (e Event) Encode() ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode %s event: %w", e.Type, err)
	}
	return b, nil
}

// Decode parses an event from its wire form.
func Decode(b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	if e.Type == "" {
		return Event{}, fmt.Errorf("decode event: %w", ErrNoType)
	}
	return e, nil
}

// Payload decodes the event's data into v.
func (e Event) Payload(v any) error {
	if len(e.Data) == 0 {
		return nil
	}
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("decode %s payload: %w", e.Type, err)
	}
	return nil
}

// Member describes one voter as the cluster knows it.
type Member struct {
	ID       string `json:"id"`
	Role     Role   `json:"role"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
	Priority int    `json:"priority,omitempty"`
	// Versions lists the event schema versions the member's build understands.
	Versions []int `json:"versions,omitempty"`
	// KernelFence: the member's VIPs are behind a millisecond kernel fence (nftables),
	// so a handover from it waits for the lease only, not for the address's valid_lft.
	// A member holds the VIP only while this is not claimed beyond what it has.
	KernelFence bool `json:"kernel_fence,omitempty"`
}

// Role is a node's part in the cluster.
type Role string

// The roles.
const (
	RoleDatabase Role = "database"
	RoleWitness  Role = "witness"
)

// BootstrappedData is the payload of [Bootstrapped].
type BootstrappedData struct {
	Members []Member `json:"members"`
}

// MemberData is the payload of [MemberJoined] and [MemberRemoved].
type MemberData struct {
	Member Member `json:"member"`
}

// HealthData is the payload of [HealthChanged]: a rise/fall transition of a node's own
// MySQL, or a remote observation when Observer differs from Node.
type HealthData struct {
	Node     string `json:"node"`
	Healthy  bool   `json:"healthy"`
	Detail   string `json:"detail,omitempty"`
	GTID     string `json:"gtid,omitempty"`
	ReadOnly bool   `json:"read_only,omitempty"`
	Replica  string `json:"replica,omitempty"`
	// Lost: the node's server lacks these transactions, which its earlier reports (the
	// node's GTID in the state) said it had: its binlog lost them. Healthy is false, GTID
	// is empty so the state keeps the earlier set, and the node stays unfit until an
	// operator repairs it in maintenance.
	Lost string `json:"lost,omitempty"`
}

// RevokeData is the payload of [OwnerRevoked].
type RevokeData struct {
	Owner  string `json:"owner"`
	Reason string `json:"reason"`
}

// ReleaseData is the payload of [OwnerReleased]: the old owner's acknowledgement that it
// dropped the VIP, with the GTID set it read after fencing MySQL.
type ReleaseData struct {
	Owner  string `json:"owner"`
	Reason string `json:"reason"`
	GTID   string `json:"gtid,omitempty"`
	Fenced bool   `json:"fenced"`
	Domain uint32 `json:"domain,omitempty"`
}

// AssignData is the payload of [OwnerAssigned].
type AssignData struct {
	Owner      string      `json:"owner"`
	Reason     string      `json:"reason"`
	Candidates []Candidate `json:"candidates"`
	// CatchupTarget is the GTID set the new owner must apply before it opens writes; empty
	// when the old owner did not release, in which case Loss says what may be lost.
	CatchupTarget string `json:"catchup_target,omitempty"`
	CatchupDomain uint32 `json:"catchup_domain,omitempty"`
	Loss          string `json:"loss,omitempty"`
	// Force is set on the assignment an operator's failover asked for (FailoverRequested):
	// the new owner opens writes even when its catch-up is incomplete under
	// on_catchup_timeout hold, the loss the operator accepted.
	Force bool `json:"force,omitempty"`
}

// Candidate is one database node the controller considered for ownership.
type Candidate struct {
	Node     string `json:"node"`
	Eligible bool   `json:"eligible"`
	Why      string `json:"why,omitempty"`
	Priority int    `json:"priority"`
}

// PromotedData is the payload of [OwnerPromoted]: the result of the new owner's catch-up.
type PromotedData struct {
	Owner     string `json:"owner"`
	Reached   bool   `json:"reached"`
	Target    string `json:"target,omitempty"`
	Applied   string `json:"applied,omitempty"`
	Missing   string `json:"missing,omitempty"`
	WaitedMS  int64  `json:"waited_ms"`
	Policy    string `json:"policy,omitempty"`
	LossNotes string `json:"loss_notes,omitempty"`
	// Received is what the new owner's replication channel had received (Gtid_IO_Pos,
	// Retrieved_Gtid_Set) when it stopped the channel, RelayAppliedSet what it had
	// applied by then; RelayApplied says whether all of the first was in the second,
	// after waiting RelayWaitedMS. They are set only on a handover from another node.
	Received        string `json:"received,omitempty"`
	RelayAppliedSet string `json:"relay_applied_set,omitempty"`
	RelayApplied    *bool  `json:"relay_applied,omitempty"`
	RelayWaitedMS   int64  `json:"relay_waited_ms,omitempty"`
	// PrevOwner and PrevFence say whether the new owner fenced the previous owner's MySQL
	// remotely before opening writes: "fenced", "already read-only" or the error.
	PrevOwner string `json:"prev_owner,omitempty"`
	PrevFence string `json:"prev_fence,omitempty"`
}

// PromotionFailedData is the payload of [PromotionFailed].
type PromotionFailedData struct {
	Owner  string `json:"owner"`
	Reason string `json:"reason"`
}

// SwitchoverData is the payload of [SwitchoverRequested].
type SwitchoverData struct {
	To string `json:"to,omitempty"`
	// Operator and From are the caller's identity (its certificate, or "token") and
	// address, stamped by the API node that took the request.
	Operator string `json:"operator,omitempty"`
	From     string `json:"from,omitempty"`
}

// PauseData is the payload of [PauseChanged]: while paused the controller starts no
// failover or handover on its own; the owner keeps serving under its lease, and an
// operator's switchover or failover still runs.
type PauseData struct {
	Paused   bool   `json:"paused"`
	Reason   string `json:"reason,omitempty"`
	Operator string `json:"operator,omitempty"`
	From     string `json:"from,omitempty"`
}

// FailoverData is the payload of [FailoverRequested]: the operator moves ownership to To
// when the cluster cannot decide by itself (paused, a promotion held by
// on_catchup_timeout hold, an owner that will not come back). Loss is the note the
// operator was shown and accepted.
type FailoverData struct {
	To       string `json:"to"`
	Loss     string `json:"loss,omitempty"`
	Operator string `json:"operator,omitempty"`
	From     string `json:"from,omitempty"`
}

// RejoinResumeData is the payload of [RejoinResumed]: the operator asks the owner to
// check a blocked rejoin of Node again now; Accept, when set, is the set of extra
// transactions the operator lets flow from Node into the owner (it must equal the
// journaled extra set, so transactions that appear later still block).
type RejoinResumeData struct {
	Node     string `json:"node"`
	Accept   string `json:"accept,omitempty"`
	Operator string `json:"operator,omitempty"`
	From     string `json:"from,omitempty"`
}

// MaintenanceData is the payload of [MaintenanceChanged].
type MaintenanceData struct {
	Node     string `json:"node"`
	On       bool   `json:"on"`
	Operator string `json:"operator,omitempty"`
	From     string `json:"from,omitempty"`
}

// ForeignData is the payload of [ForeignVRRPMasterSeen].
type ForeignData struct {
	Source   string `json:"source"`
	VRID     int    `json:"vrid"`
	Priority int    `json:"priority"`
	Version  int    `json:"version"`
}

// RejoinData is the payload of [RejoinChecked]: a former owner compared with the owner.
type RejoinData struct {
	Node  string `json:"node"`
	Extra string `json:"extra,omitempty"`
	// Blocked is true when Node has own-domain transactions the owner lacks, so its
	// replication channel from the owner stays stopped until an operator decides.
	Blocked bool `json:"blocked"`
	// Detail says why a clean rejoin did not restart the channel yet, or what was found
	// after it restarted.
	Detail string `json:"detail,omitempty"`
}

// VIPConflictData is the payload of [VIPConflictSeen]: before acquiring the VIP, Node
// sent an ARP probe and another host (MAC) answered for VIP, so Node did not add it.
type VIPConflictData struct {
	Node string `json:"node"`
	VIP  string `json:"vip"`
	MAC  string `json:"mac"`
}

// HookFailedData is the payload of [HookFailed]: a notify hook of Node could not start,
// exited non-zero or was killed at its timeout. It is journaled only; it changes no state.
type HookFailedData struct {
	Node     string   `json:"node"`
	Hook     string   `json:"hook"`  // the config key: notify.master, ...
	State    string   `json:"state"` // MASTER, BACKUP or FAULT
	Command  []string `json:"command,omitempty"`
	ExitCode int      `json:"exit_code"`
	TimedOut bool     `json:"timed_out,omitempty"`
	Error    string   `json:"error,omitempty"`
	Stderr   string   `json:"stderr,omitempty"`
}

// ReplicationData is the payload of [ReplicationBroken]. Broken: the replication channel of
// Node from Source stopped with the same IO error at the same position of Source's binlog
// on Failures consecutive restarts, so it will not get past that position without an
// operator (a damaged or purged binlog on Source); Node misses every later write of
// Source meanwhile. Not Broken: the channel runs again. It is journaled only; it changes
// no state.
type ReplicationData struct {
	Node      string `json:"node"`
	Source    string `json:"source"`
	Broken    bool   `json:"broken"`
	IOErrno   int    `json:"io_errno,omitempty"`
	IOError   string `json:"io_error,omitempty"`
	SourcePos string `json:"source_pos,omitempty"` // binlog file:offset where the IO thread stopped
	Failures  int    `json:"failures,omitempty"`
	Hint      string `json:"hint,omitempty"`
}

// SemiSyncData is the payload of [SemiSyncChanged]: the owner's
// Rpl_semi_sync_master_status changed. OFF after ON means acknowledged writes are no
// longer guaranteed to be on the peer (MariaDB falls back to async silently after
// rpl_semi_sync_master_timeout).
type SemiSyncData struct {
	Node   string `json:"node"`
	Status string `json:"status"`
}
