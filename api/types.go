package api

import (
	"strconv"
	"strings"
	"time"

	"github.com/keepraft/keepraft/fsm"
)

// Status is the body of GET /v1/status.
type Status struct {
	Node        string            `json:"node"`
	Role        fsm.Role          `json:"role"`
	RaftState   string            `json:"raft_state"`
	Leader      string            `json:"leader"`
	Term        uint64            `json:"term"`
	CommitIndex uint64            `json:"commit_index"`
	Applied     uint64            `json:"applied_index"`
	LastLog     uint64            `json:"last_log_index"`
	Owner       string            `json:"owner"`
	Epoch       uint64            `json:"epoch"`
	Phase       fsm.Phase         `json:"phase"`
	PhaseSince  time.Time         `json:"phase_since,omitzero"`
	Members     []MemberStatus    `json:"members"`
	Local       LocalStatus       `json:"local"`
	Foreign     []fsm.ForeignData `json:"foreign_vrrp,omitempty"`
	// ControlPlane is "mutual TLS" or "plaintext" (no cluster.tls).
	ControlPlane string `json:"control_plane"`
	StaleEvents  uint64 `json:"stale_events"`
	// NoWriterSince is set while no owner is promoted (phase none, revoked, released or
	// assigned): when the last promoted owner's ownership ended, from the journal (the
	// phase's start when the journal no longer reaches back that far).
	NoWriterSince time.Time `json:"no_writer_since,omitzero"`
	// Paused is true while the cluster's automatic decisions are paused by an operator.
	Paused bool `json:"paused"`
}

// MemberStatus is one member's line in [Status] and the body of GET /v1/members.
type MemberStatus struct {
	ID          string   `json:"id"`
	Role        fsm.Role `json:"role"`
	Suffrage    string   `json:"suffrage"`
	RaftAddr    string   `json:"raft_addr"`
	APIAddr     string   `json:"api_addr"`
	RaftState   string   `json:"raft_state"`
	Reachable   bool     `json:"reachable"`
	LastContact string   `json:"last_contact"`
	Applied     uint64   `json:"applied_index"`
	Priority    int      `json:"priority,omitempty"`
	Healthy     *bool    `json:"healthy,omitempty"`
	Detail      string   `json:"detail,omitempty"`
	Maintenance bool     `json:"maintenance"`
	Owner       bool     `json:"owner"`
	Replication string   `json:"replication,omitempty"`
	// SemiSync is the member's journaled semi-sync master status.
	SemiSync string `json:"semi_sync,omitempty"`
	// PeerView is the second opinion of the other database nodes' remote probes of this
	// member's MySQL ("db2: up"). It annotates only; failover follows the member's own probe.
	PeerView string `json:"peer_view,omitempty"`

	// The typed fields below are for machines; LastContact and Replication above are
	// their display forms.

	// LastContactMS is how long ago the answering node last heard this member's report (0
	// for the answering node itself, null when never).
	LastContactMS *int64 `json:"last_contact_ms"`
	// Stale is true when the member's polled values (applied index, read_only, GTID,
	// replication) are from its last good report, not a current one: it is unreachable.
	Stale bool `json:"stale"`
	// ReadOnly is the member's MySQL read_only from its last good probe (null: unknown or
	// a witness).
	ReadOnly *bool `json:"read_only,omitempty"`
	// GTID is the member's gtid_executed from its last good probe.
	GTID string `json:"gtid,omitempty"`
	// Replica is the member's replication channel, typed.
	Replica *Replica `json:"replica,omitempty"`
	// RejoinBlocked is the journal's verdict that the member came back with transactions
	// the owner lacks (RejoinExtra); its channel stays stopped until an operator decides.
	RejoinBlocked bool   `json:"rejoin_blocked"`
	RejoinExtra   string `json:"rejoin_extra,omitempty"`
}

// Replica is a replication channel's state as numbers and booleans.
type Replica struct {
	// Configured is false when the server has no default replication channel.
	Configured bool   `json:"configured"`
	Source     string `json:"source,omitempty"`
	IORunning  bool   `json:"io_running"`
	SQLRunning bool   `json:"sql_running"`
	// LagSeconds is Seconds_Behind_Master (null when unknown).
	LagSeconds *int64 `json:"lag_seconds"`
	LastError  string `json:"last_error,omitempty"`
	// Held says why keepraft holds the channel stopped after a rejoin check.
	Held string `json:"held,omitempty"`
}

// LocalStatus is what a node knows only about itself.
type LocalStatus struct {
	Holding      bool   `json:"holding_vip"`
	LeaseValid   bool   `json:"lease_valid"`
	LeaseLeftMS  int64  `json:"lease_left_ms"`
	Promoted     bool   `json:"promoted"`
	MySQLHealthy *bool  `json:"mysql_healthy,omitempty"`
	MySQLDetail  string `json:"mysql_detail,omitempty"`
	ReadOnly     *bool  `json:"read_only,omitempty"`
	GTID         string `json:"gtid,omitempty"`
	Replication  string `json:"replication,omitempty"`
	// Replica is Replication, typed.
	Replica  *Replica `json:"replica,omitempty"`
	VIPs     []string `json:"vips,omitempty"`
	UptimeMS int64    `json:"uptime_ms"`
	// Runtime is the database node's own phase and epoch ("serving@3").
	Runtime string `json:"runtime,omitempty"`
}

// NodeReport is the body of GET /v1/node: what the controller polls from every peer to
// decide whether an owner is silent and whether its promises have expired.
type NodeReport struct {
	Node    string    `json:"node"`
	Applied uint64    `json:"applied_index"`
	Epoch   uint64    `json:"epoch"`
	Phase   fsm.Phase `json:"phase"`
	// RenewAgeMS is how long ago this node last received a Renew from the current owner
	// (-1: never since start).
	RenewAgeMS int64 `json:"renew_age_ms"`
	// PromiseLeftMS is how long this node's promise to Owner still binds it (≤ 0: none).
	PromiseOwner  string `json:"promise_owner,omitempty"`
	PromiseEpoch  uint64 `json:"promise_epoch,omitempty"`
	PromiseLeftMS int64  `json:"promise_left_ms"`
	// LastGrantAgeMS is how long ago this node last promised PromiseOwner (-1: never).
	LastGrantAgeMS int64 `json:"last_grant_age_ms"`
	// UptimeMS lets the controller treat a freshly restarted voter as promising until
	// boot + lease.
	UptimeMS  int64  `json:"uptime_ms"`
	RaftState string `json:"raft_state"`
	// Term is the node's raft term. LeaderApplied is set only by a leader that completed
	// a Barrier in its current term: its applied index, which covers every entry committed
	// so far. Peers act on their own state only once they have applied at least that much.
	Term          uint64 `json:"term"`
	LeaderApplied uint64 `json:"leader_applied,omitempty"`
	// ReadOnly is the node's MySQL read_only from its last good probe.
	ReadOnly *bool `json:"read_only,omitempty"`
	// Fresh is true while the node's data dir holds no Raft state and was never
	// bootstrapped: it waits for every peer to be fresh too before bootstrapping.
	Fresh bool `json:"fresh,omitempty"`
	// Heard lists, while a node that bootstrapped jointly still reports Fresh, the peers
	// whose Raft traffic reached it since: a peer that finds itself in the list took part
	// in the cluster and must not bootstrap again.
	Heard       []string `json:"heard,omitempty"`
	Healthy     *bool    `json:"healthy,omitempty"`
	Detail      string   `json:"detail,omitempty"`
	Replication string   `json:"replication,omitempty"`
	// Replica is Replication, typed (set by builds that fill it; see [ParseReplication]).
	Replica *Replica `json:"replica,omitempty"`
	GTID    string   `json:"gtid,omitempty"`
	// Domain is the node's own gtid_domain_id (MariaDB).
	Domain uint32 `json:"domain,omitempty"`
	// Stopping is true once the node began a graceful shutdown.
	Stopping bool `json:"stopping,omitempty"`
	// Remote is this node's remote probe of each other database node's MySQL: "up" or
	// "down: <error>".
	Remote map[string]string `json:"remote,omitempty"`
}

// RenewRequest is the body of POST /v1/renew.
type RenewRequest struct {
	Owner string `json:"owner"`
	Epoch uint64 `json:"epoch"`
	// Report is the owner's own /v1/node report, sent along so the voter need not poll
	// the owner while it renews (ignored unless it names Owner).
	Report *NodeReport `json:"report,omitempty"`
}

// RenewResponse answers a [RenewRequest].
type RenewResponse struct {
	Node     string `json:"node"`
	Promised bool   `json:"promised"`
	Reason   string `json:"reason,omitempty"`
	// Report is the voter's /v1/node report, so the owner need not poll it (ignored
	// unless it names Node).
	Report *NodeReport `json:"report,omitempty"`
}

// ProposeResponse is the answer to POST /v1/propose and to the operator verbs.
type ProposeResponse struct {
	Index  uint64     `json:"index"`
	Result fsm.Result `json:"result"`
	Error  string     `json:"error,omitempty"`
}

// JournalResponse is the body of GET /v1/journal.
type JournalResponse struct {
	Records []fsm.Record `json:"records"`
	// Last is the newest index in this response (or the since value when empty); pass it
	// back as since to follow.
	Last uint64 `json:"last"`
}

// ErrorResponse is the body of every non-2xx answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

// GoodbyeRequest is the body of POST /v1/goodbye: node is stopping gracefully.
type GoodbyeRequest struct {
	Node string `json:"node"`
}

// Peer is a node's latest poll of one peer's [NodeReport].
type Peer struct {
	Report NodeReport
	// OK is true when the last poll answered.
	OK bool
	// At is when the last good report arrived, on the boot clock (0: never).
	At time.Duration
	// Err is the last poll's error.
	Err string
	// Left is true when the peer said goodbye (a graceful stop) and was not heard since.
	Left bool
}

// ParseReplication reads the display form of a replication channel ("not configured", or
// "from HOST io=yes sql=no lag=3s error=TEXT", optionally followed by " (channel from X
// held: WHY)") into a [Replica]. It returns nil for an empty or unrecognised string.
func ParseReplication(s string) *Replica {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	held := ""
	if i := strings.Index(s, " (channel from "); i >= 0 && strings.HasSuffix(s, ")") {
		s, held = s[:i], s[i+2:len(s)-1]
	}
	if strings.HasPrefix(s, "not configured") {
		return &Replica{Held: held}
	}
	rest, ok := strings.CutPrefix(s, "from ")
	if !ok {
		return nil
	}
	r := &Replica{Configured: true, Held: held}
	if before, after, ok := strings.Cut(rest, " error="); ok {
		rest, r.LastError = before, after
	}
	for _, f := range strings.Fields(rest) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			r.Source = f
			continue
		}
		switch k {
		case "io":
			r.IORunning = v == "yes"
		case "sql":
			r.SQLRunning = v == "yes"
		case "lag":
			if n, err := strconv.ParseInt(strings.TrimSuffix(v, "s"), 10, 64); err == nil {
				r.LagSeconds = &n
			}
		}
	}
	return r
}

// FailoverRequest is the body of POST /v1/failover. Yes confirms the loss note; without it
// the answer is 412 with the note and nothing is committed.
type FailoverRequest struct {
	To  string `json:"to"`
	Yes bool   `json:"yes,omitempty"`
}

// ConfigDigest is the body of GET /v1/config: the settings of one node that must agree
// across the cluster (raftctl config-check compares them). Secrets appear only as a short
// SHA-256 digest.
type ConfigDigest struct {
	Node    string `json:"node"`
	Role    string `json:"role"`
	Version string `json:"version,omitempty"`
	// Peers is cluster.peers as "id raft_addr api_addr", sorted.
	Peers []string `json:"peers"`
	TLS   bool     `json:"tls"`
	// LeaseMS, CatchupTimeoutMS, OnCatchupTimeout and Nopreempt are the failover section.
	LeaseMS          int64  `json:"lease_ms"`
	CatchupTimeoutMS int64  `json:"catchup_timeout_ms"`
	OnCatchupTimeout string `json:"on_catchup_timeout"`
	Nopreempt        bool   `json:"nopreempt"`
	// The rest is a database node's: VIPs, interface-independent VRRP settings, MySQL.
	VIPs          []string `json:"vips,omitempty"`
	Fence         string   `json:"fence,omitempty"`
	KernelLeaseMS int64    `json:"kernel_lease_ms,omitempty"`
	VRRP          bool     `json:"vrrp"`
	VRRPVersion   int      `json:"vrrp_version,omitempty"`
	VRID          int      `json:"vrid,omitempty"`
	AdvertIntMS   int64    `json:"advert_int_ms,omitempty"`
	AuthDigest    string   `json:"auth_digest,omitempty"`
	Flavor        string   `json:"flavor,omitempty"`
	SemiSync      bool     `json:"semi_sync,omitempty"`
}
