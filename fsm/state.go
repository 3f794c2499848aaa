package fsm

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Sentinel errors returned by [State.Apply] and [Decode].
var (
	// ErrNoType is returned by Decode for an entry without a type.
	ErrNoType = errors.New("event has no type")
	// ErrStale is returned by Apply when an ownership event's epoch or phase precondition
	// no longer holds; the event is journaled as stale and not applied.
	ErrStale = errors.New("stale event")
	// ErrUnknownType is returned by Apply for a type this build does not know; the event is
	// journaled and skipped.
	ErrUnknownType = errors.New("unknown event type")
	// ErrInvalid is returned by Apply for an event whose payload breaks a rule (for
	// example a witness named as owner); the event is journaled and not applied.
	ErrInvalid = errors.New("invalid event")
)

// Phase is where the ownership of the VIP group stands.
type Phase string

// The ownership phases. Every change of phase is an event in the journal, so a new
// leader resumes a handover from the state alone.
const (
	// PhaseNone: no owner has been assigned yet.
	PhaseNone Phase = "none"
	// PhaseAssigned: the owner was named and is promoting (catch-up, read_only=0, VIP).
	PhaseAssigned Phase = "assigned"
	// PhaseActive: the owner finished promotion and serves the VIP.
	PhaseActive Phase = "active"
	// PhaseRevoked: the controller withdrew ownership; peers stop promising the owner.
	PhaseRevoked Phase = "revoked"
	// PhaseReleased: the owner acknowledged it dropped the VIP; the next owner may be assigned.
	PhaseReleased Phase = "released"
)

// NodeState is what the journal says about one member.
type NodeState struct {
	Member
	Healthy     bool      `json:"healthy"`
	HealthKnown bool      `json:"health_known"`
	HealthAt    time.Time `json:"health_at,omitzero"`
	Detail      string    `json:"detail,omitempty"`
	GTID        string    `json:"gtid,omitempty"`
	Maintenance bool      `json:"maintenance"`
	// FailedEpoch is the epoch in which this node last failed a promotion (0 = never).
	// It matters only while it equals the state's Epoch: the node then ranks after every
	// other eligible candidate but is still assigned when it is the only one (see
	// [Candidates]). A new health transition clears it.
	FailedEpoch uint64 `json:"failed_epoch,omitempty"`
	// SemiSync is the node's last journaled Rpl_semi_sync_master_status ("" = never ON).
	SemiSync string `json:"semi_sync,omitempty"`
	// RejoinBlocked is set when the node came back with transactions the owner lacks.
	RejoinBlocked bool   `json:"rejoin_blocked,omitempty"`
	RejoinExtra   string `json:"rejoin_extra,omitempty"`
	// RejoinAccept is the extra set an operator accepted (RejoinResumed); RejoinResumed
	// is the log index of the last resume request, so the owner re-checks at once.
	RejoinAccept  string `json:"rejoin_accept,omitempty"`
	RejoinResumed uint64 `json:"rejoin_resumed,omitempty"`
}

// Release remembers the last OwnerReleased, the catch-up target of the next assignment.
type Release struct {
	Epoch  uint64 `json:"epoch"`
	Owner  string `json:"owner"`
	GTID   string `json:"gtid,omitempty"`
	Domain uint32 `json:"domain,omitempty"`
	Fenced bool   `json:"fenced"`
	Reason string `json:"reason,omitempty"`
}

// State is the fold of the journal. It is a value: Apply returns a new State and never
// reads a clock, so replaying the same events always yields the same State.
type State struct {
	Index        uint64                `json:"index"`
	Bootstrapped bool                  `json:"bootstrapped"`
	Members      map[string]*NodeState `json:"members"`
	Owner        string                `json:"owner,omitempty"`
	Epoch        uint64                `json:"epoch"`
	Phase        Phase                 `json:"phase"`
	PhaseSince   time.Time             `json:"phase_since,omitzero"`
	// PhaseIndex is the log index of the event that entered Phase.
	PhaseIndex  uint64   `json:"phase_index"`
	LastRelease *Release `json:"last_release,omitempty"`
	// Target and TargetDomain are the catch-up target of the current assignment: the GTID
	// set the owner must apply before it opens writes ("" when none is known).
	Target string `json:"catchup_target,omitempty"`
	// PrevOwner is the owner before the current one: the node whose rejoin the current
	// owner checks for transactions it never shipped.
	PrevOwner    string          `json:"prev_owner,omitempty"`
	TargetDomain uint32          `json:"catchup_domain,omitempty"`
	Switchover   *SwitchoverData `json:"switchover,omitempty"`
	// Failover is a pending operator failover (FailoverRequested), until an assignment.
	Failover *FailoverData `json:"failover,omitempty"`
	// Force is the current assignment's AssignData.Force.
	Force bool `json:"force,omitempty"`
	// Paused and PausedSince: automatic failover is off (PauseChanged).
	Paused       bool          `json:"paused,omitempty"`
	PausedSince  time.Time     `json:"paused_since,omitzero"`
	Foreign      []ForeignData `json:"foreign,omitempty"`
	StaleCount   uint64        `json:"stale_count"`
	SkippedCount uint64        `json:"skipped_count"`
}

// NewState returns the empty state before any event.
func NewState() State {
	return State{Members: map[string]*NodeState{}, Phase: PhaseNone}
}

// Clone returns a deep copy, so a State can be handed to readers while Apply goes on.
func (s State) Clone() State {
	c := s
	c.Members = make(map[string]*NodeState, len(s.Members))
	for k, v := range s.Members {
		n := *v
		n.Versions = slices.Clone(v.Versions)
		c.Members[k] = &n
	}
	if s.LastRelease != nil {
		r := *s.LastRelease
		c.LastRelease = &r
	}
	if s.Switchover != nil {
		sw := *s.Switchover
		c.Switchover = &sw
	}
	if s.Failover != nil {
		f := *s.Failover
		c.Failover = &f
	}
	c.Foreign = slices.Clone(s.Foreign)
	return c
}

// MemberIDs returns the member ids in sorted order.
func (s State) MemberIDs() []string {
	ids := make([]string, 0, len(s.Members))
	for id := range s.Members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Supported reports whether every member advertises event schema version v, so that an
// event of that version applies the same way on every voter (mixed-version clusters during
// an upgrade). Members that have not announced their versions yet count as version 1.
func (s State) Supported(v int) bool {
	for _, m := range s.Members {
		vs := m.Versions
		if len(vs) == 0 {
			vs = []int{1}
		}
		if !slices.Contains(vs, v) {
			return false
		}
	}
	return true
}

// Holding reports whether the journal currently lets owner keep or seek the VIP: it is the
// named owner and ownership was not revoked or released. Holding the VIP additionally
// needs a valid quorum lease and a finished promotion, which the node checks locally.
func (s State) Holding(node string) bool {
	return node != "" && s.Owner == node && (s.Phase == PhaseAssigned || s.Phase == PhaseActive)
}

// Apply folds ev, committed at log index idx, into s and returns the new state. A
// non-nil error means ev was journaled but not applied (stale, unknown or invalid); the
// returned state then differs from s only in its counters and index.
func (s State) Apply(idx uint64, ev Event) (State, error) {
	n := s.Clone()
	n.Index = idx
	err := n.apply(idx, ev)
	if err != nil {
		c := s.Clone()
		c.Index = idx
		switch {
		case errors.Is(err, ErrStale):
			c.StaleCount++
		default:
			c.SkippedCount++
		}
		return c, err
	}
	return n, nil
}

func (s *State) member(id string) (*NodeState, error) {
	m, ok := s.Members[id]
	if !ok {
		return nil, fmt.Errorf("%w: unknown member %q", ErrInvalid, id)
	}
	return m, nil
}

func (s *State) enter(p Phase, idx uint64, at time.Time) {
	s.Phase, s.PhaseIndex, s.PhaseSince = p, idx, at
}

// precondition checks the compare-and-set part of an ownership event.
func (s *State) precondition(ev Event, phases ...Phase) error {
	if ev.Epoch != s.Epoch {
		return fmt.Errorf("%w: %s decided at epoch %d, state is at epoch %d", ErrStale, ev.Type, ev.Epoch, s.Epoch)
	}
	if ev.Phase != "" && ev.Phase != s.Phase {
		return fmt.Errorf("%w: %s decided in phase %s, state is in phase %s", ErrStale, ev.Type, ev.Phase, s.Phase)
	}
	if !slices.Contains(phases, s.Phase) {
		return fmt.Errorf("%w: %s not allowed in phase %s", ErrStale, ev.Type, s.Phase)
	}
	return nil
}

// payload decodes ev's data as a T; a payload that does not decode makes the event
// invalid, so the error wraps [ErrInvalid].
func payload[T any](ev Event) (T, error) {
	var d T
	if err := ev.Payload(&d); err != nil {
		return d, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return d, nil
}

// handler applies one event, committed at log index idx, to s.
type handler func(s *State, idx uint64, ev Event) error

// on makes the handler of an event type whose payload is a T: it decodes the payload, the
// one place every type does so, and passes it to apply. A payload that does not decode
// makes the event invalid before any rule of apply is checked.
func on[T any](apply func(s *State, idx uint64, ev Event, d T) error) handler {
	return func(s *State, idx uint64, ev Event) error {
		d, err := payload[T](ev)
		if err != nil {
			return err
		}
		return apply(s, idx, ev, d)
	}
}

// handlers maps every event type this build applies to its handler; [Types] lists the same
// types.
var handlers = map[Type]handler{
	Bootstrapped:          on((*State).bootstrap),
	MemberJoined:          on((*State).joinMember),
	MemberRemoved:         on((*State).removeMember),
	HealthChanged:         on((*State).changeHealth),
	MaintenanceChanged:    on((*State).changeMaintenance),
	SwitchoverRequested:   on((*State).requestSwitchover),
	OwnerAssigned:         on((*State).assignOwner),
	OwnerPromoted:         on((*State).promoteOwner),
	OwnerRevoked:          on((*State).revokeOwner),
	PromotionFailed:       on((*State).failPromotion),
	OwnerReleased:         on((*State).releaseOwner),
	ForeignVRRPMasterSeen: on((*State).seeForeignMaster),
	SemiSyncChanged:       on((*State).changeSemiSync),
	VIPConflictSeen:       on((*State).seeVIPConflict),
	HookFailed:            on((*State).failHook),
	ReplicationBroken:     on((*State).seeReplication),
	RejoinChecked:         on((*State).checkRejoin),
	PauseChanged:          on((*State).changePause),
	FailoverRequested:     on((*State).requestFailover),
	RejoinResumed:         on((*State).resumeRejoin),
}

func (s *State) apply(idx uint64, ev Event) error {
	if ev.V > Version {
		return fmt.Errorf("%w: %s version %d (this build knows %d)", ErrUnknownType, ev.Type, ev.V, Version)
	}
	h, ok := handlers[ev.Type]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownType, ev.Type)
	}
	return h(s, idx, ev)
}

func (s *State) bootstrap(_ uint64, _ Event, d BootstrappedData) error {
	if s.Bootstrapped {
		return fmt.Errorf("%w: cluster already bootstrapped", ErrStale)
	}
	s.Bootstrapped = true
	for _, m := range d.Members {
		s.Members[m.ID] = &NodeState{Member: m}
	}
	return nil
}

func (s *State) joinMember(_ uint64, _ Event, d MemberData) error {
	if d.Member.ID == "" {
		return fmt.Errorf("%w: member without id", ErrInvalid)
	}
	if m, ok := s.Members[d.Member.ID]; ok {
		m.Member = d.Member
	} else {
		s.Members[d.Member.ID] = &NodeState{Member: d.Member}
	}
	return nil
}

func (s *State) removeMember(_ uint64, _ Event, d MemberData) error {
	if d.Member.ID == s.Owner && s.Holding(s.Owner) {
		return fmt.Errorf("%w: cannot remove owner %s while it holds the VIP", ErrInvalid, d.Member.ID)
	}
	delete(s.Members, d.Member.ID)
	return nil
}

func (s *State) changeHealth(_ uint64, ev Event, d HealthData) error {
	m, err := s.member(d.Node)
	if err != nil {
		return err
	}
	m.Healthy, m.HealthKnown, m.HealthAt, m.Detail = d.Healthy, true, ev.At, d.Detail
	if d.GTID != "" {
		m.GTID = d.GTID
	}
	m.FailedEpoch = 0
	return nil
}

func (s *State) changeMaintenance(_ uint64, _ Event, d MaintenanceData) error {
	m, err := s.member(d.Node)
	if err != nil {
		return err
	}
	m.Maintenance = d.On
	return nil
}

func (s *State) requestSwitchover(_ uint64, ev Event, d SwitchoverData) error {
	if err := s.precondition(ev, PhaseActive); err != nil {
		return err
	}
	if d.To != "" {
		m, err := s.member(d.To)
		if err != nil {
			return err
		}
		if m.Role != RoleDatabase || d.To == s.Owner {
			return fmt.Errorf("%w: switchover target %s is not another database node", ErrInvalid, d.To)
		}
	}
	s.Switchover = &d
	return nil
}

func (s *State) assignOwner(idx uint64, ev Event, d AssignData) error {
	if err := s.precondition(ev, PhaseNone, PhaseReleased, PhaseRevoked); err != nil {
		return err
	}
	m, err := s.member(d.Owner)
	if err != nil {
		return err
	}
	if m.Role != RoleDatabase {
		return fmt.Errorf("%w: %s has role %s and can never own the VIP", ErrInvalid, d.Owner, m.Role)
	}
	if ev.V >= 2 && ((m.HealthKnown && !m.Healthy) || m.Maintenance) {
		return fmt.Errorf("%w: %s is unhealthy or in maintenance now (%s)", ErrStale, d.Owner, m.Detail)
	}
	if s.Owner != "" && s.Owner != d.Owner {
		s.PrevOwner = s.Owner
	}
	s.Owner = d.Owner
	s.Target, s.TargetDomain = d.CatchupTarget, d.CatchupDomain
	s.Epoch++
	s.Switchover, s.Failover, s.Force = nil, nil, d.Force
	s.enter(PhaseAssigned, idx, ev.At)
	return nil
}

func (s *State) promoteOwner(idx uint64, ev Event, d PromotedData) error {
	if err := s.precondition(ev, PhaseAssigned); err != nil {
		return err
	}
	if d.Owner != s.Owner {
		return fmt.Errorf("%w: %s reported promotion but owner is %s", ErrStale, d.Owner, s.Owner)
	}
	s.enter(PhaseActive, idx, ev.At)
	return nil
}

func (s *State) revokeOwner(idx uint64, ev Event, _ RevokeData) error {
	if err := s.precondition(ev, PhaseAssigned, PhaseActive); err != nil {
		return err
	}
	s.enter(PhaseRevoked, idx, ev.At)
	return nil
}

func (s *State) failPromotion(idx uint64, ev Event, _ PromotionFailedData) error {
	if err := s.precondition(ev, PhaseAssigned); err != nil {
		return err
	}
	if m, ok := s.Members[s.Owner]; ok {
		m.FailedEpoch = s.Epoch
	}
	s.enter(PhaseRevoked, idx, ev.At)
	return nil
}

func (s *State) releaseOwner(idx uint64, ev Event, d ReleaseData) error {
	if err := s.precondition(ev, PhaseAssigned, PhaseActive, PhaseRevoked); err != nil {
		return err
	}
	if d.Owner != s.Owner {
		return fmt.Errorf("%w: release by %s but owner is %s", ErrStale, d.Owner, s.Owner)
	}
	s.LastRelease = &Release{Epoch: s.Epoch, Owner: d.Owner, GTID: d.GTID, Domain: d.Domain, Fenced: d.Fenced, Reason: d.Reason}
	s.enter(PhaseReleased, idx, ev.At)
	return nil
}

// maxForeign is how many ForeignVRRPMasterSeen sightings the state keeps, the newest.
const maxForeign = 16

func (s *State) seeForeignMaster(_ uint64, _ Event, d ForeignData) error {
	s.Foreign = append(s.Foreign, d)
	if len(s.Foreign) > maxForeign {
		s.Foreign = s.Foreign[len(s.Foreign)-maxForeign:]
	}
	return nil
}

func (s *State) changeSemiSync(_ uint64, _ Event, d SemiSyncData) error {
	m, err := s.member(d.Node)
	if err != nil {
		return err
	}
	m.SemiSync = d.Status
	return nil
}

// seeVIPConflict only journals the conflict: a valid payload changes nothing.
func (*State) seeVIPConflict(uint64, Event, VIPConflictData) error { return nil }

func (s *State) failHook(_ uint64, _ Event, d HookFailedData) error {
	_, err := s.member(d.Node)
	return err
}

// seeReplication only journals a replication channel's state: it checks that Node is a
// member.
func (s *State) seeReplication(_ uint64, _ Event, d ReplicationData) error {
	_, err := s.member(d.Node)
	return err
}

func (s *State) checkRejoin(_ uint64, _ Event, d RejoinData) error {
	m, err := s.member(d.Node)
	if err != nil {
		return err
	}
	m.RejoinBlocked, m.RejoinExtra = d.Blocked, d.Extra
	if !d.Blocked {
		m.RejoinAccept = ""
	}
	return nil
}

func (s *State) changePause(_ uint64, ev Event, d PauseData) error {
	if s.Paused == d.Paused {
		return fmt.Errorf("%w: already %s", ErrStale, pausedWord(d.Paused))
	}
	s.Paused, s.PausedSince = d.Paused, ev.At
	if !d.Paused {
		s.PausedSince = time.Time{}
	}
	return nil
}

func (s *State) requestFailover(_ uint64, ev Event, d FailoverData) error {
	if err := s.precondition(ev, PhaseNone, PhaseAssigned, PhaseActive, PhaseRevoked, PhaseReleased); err != nil {
		return err
	}
	m, err := s.member(d.To)
	if err != nil {
		return err
	}
	if m.Role != RoleDatabase {
		return fmt.Errorf("%w: failover target %s is not a database node", ErrInvalid, d.To)
	}
	if s.Phase == PhaseActive && s.Owner == d.To {
		return fmt.Errorf("%w: %s already owns the VIP", ErrStale, d.To)
	}
	s.Failover = &d
	return nil
}

func (s *State) resumeRejoin(idx uint64, _ Event, d RejoinResumeData) error {
	m, err := s.member(d.Node)
	if err != nil {
		return err
	}
	if !m.RejoinBlocked {
		return fmt.Errorf("%w: the rejoin of %s is not blocked", ErrStale, d.Node)
	}
	if d.Accept != "" && d.Accept != m.RejoinExtra {
		return fmt.Errorf("%w: the extra transactions of %s are %q now, not %q", ErrStale, d.Node, m.RejoinExtra, d.Accept)
	}
	m.RejoinAccept, m.RejoinResumed = d.Accept, idx
	return nil
}

func pausedWord(p bool) string {
	if p {
		return "paused"
	}
	return "running (not paused)"
}
