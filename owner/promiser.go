package owner

import (
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
)

// PromiserNode is what the peer side of the lease needs from its node.
type PromiserNode interface {
	State() fsm.State
	// CaughtUpSinceStart reports whether the node learned a leader's applied index since
	// it started and applied at least the highest one learned.
	CaughtUpSinceStart() bool
}

// Promiser is a voter's side of the quorum lease: it answers Renew requests. It promises
// only what its applied state supports, and only once that state can be trusted: not
// within lease·(1+ρ) of its own start (a restarted voter may have promised someone else
// just before it stopped, and may be restored from an older snapshot), and not while its
// applied state is behind the highest commit index learned from a leader since it started.
type Promiser struct {
	self  string
	node  PromiserNode
	lease time.Duration
	rho   float64
	now   func() time.Duration
	boot  time.Duration
	log   *zap.Logger

	mu        sync.Mutex
	promise   fsm.Promise
	lastRenew map[string]time.Duration // owner → when it last asked
	answers   map[string]string        // owner → the kind of the last answer, for the log
}

// NewPromiser returns the promiser of node self; now reads the lease clock and its first
// reading is taken as the boot time. It logs each change of its answer to an owner.
func NewPromiser(self string, node PromiserNode, lease time.Duration, now func() time.Duration, log *zap.Logger) *Promiser {
	return &Promiser{self: self, node: node, lease: lease, rho: fsm.DefaultRho, now: now, boot: now(), log: log,
		lastRenew: map[string]time.Duration{}, answers: map[string]string{}}
}

// Quiet is how long after boot a voter refuses every promise.
func (p *Promiser) Quiet() time.Duration { return time.Duration(float64(p.lease) * (1 + p.rho)) }

// Grant answers one Renew.
func (p *Promiser) Grant(req api.RenewRequest) api.RenewResponse {
	resp, kind, prev := p.grant(req)
	if kind == prev || (prev == "" && kind == "promised") {
		return resp
	}
	// Once per change of answer to this owner, not every renewal.
	log := p.log.With(zap.String("owner", req.Owner), zap.Uint64("epoch", req.Epoch))
	switch kind {
	case "promised":
		log.Info("promising the lease again", zap.String("after", prev))
	case "behind":
		log.Warn("refusing lease promises", zap.String("reason", resp.Reason))
	default:
		log.Info("refusing lease promises", zap.String("reason", resp.Reason))
	}
	return resp
}

// grant answers one Renew and returns the kind of the answer and of the last answer to
// the same owner ("" for none).
func (p *Promiser) grant(req api.RenewRequest) (resp api.RenewResponse, kind, prev string) {
	s := p.node.State()
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.Owner == req.Owner {
		p.lastRenew[req.Owner] = now
	}
	resp, kind = p.answerLocked(s, now, req)
	prev, p.answers[req.Owner] = p.answers[req.Owner], kind
	return resp, kind, prev
}

// answerLocked decides one Renew on applied state s; the kind of the answer is quiet
// (just started), behind (not caught up), state (s does not support it) or promised.
func (p *Promiser) answerLocked(s fsm.State, now time.Duration, req api.RenewRequest) (api.RenewResponse, string) {
	resp := api.RenewResponse{Node: p.self}
	switch up := now - p.boot; {
	case up < p.Quiet():
		resp.Reason = fmt.Sprintf("started %v ago: no promises within lease·(1+ρ) = %v of a start", up.Round(time.Millisecond), p.Quiet())
		return resp, "quiet"
	case !p.node.CaughtUpSinceStart():
		resp.Reason = fmt.Sprintf("applied state (index %d) is behind the commit index learned from the leader", s.Index)
		return resp, "behind"
	}
	np, ok := p.promise.Grant(s, req.Owner, req.Epoch, now, p.lease, p.rho)
	p.promise = np
	resp.Promised = ok
	if !ok {
		resp.Reason = fmt.Sprintf("applied state: owner %q epoch %d phase %s", s.Owner, s.Epoch, s.Phase)
		return resp, "state"
	}
	return resp, "promised"
}

// Fill adds the lease part of this node's report: the age of the owner's last Renew,
// the current promise, and the uptime (the controller counts a freshly started voter as
// promising until boot + lease).
func (p *Promiser) Fill(r *api.NodeReport, owner string) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	r.RenewAgeMS, r.LastGrantAgeMS = -1, -1
	if t, ok := p.lastRenew[owner]; ok && owner != "" {
		r.RenewAgeMS = (now - t).Milliseconds()
	}
	if p.promise.Owner != "" {
		r.PromiseOwner, r.PromiseEpoch = p.promise.Owner, p.promise.Epoch
		r.PromiseLeftMS = (p.promise.Until - now).Milliseconds()
		r.LastGrantAgeMS = (now - p.promise.Last).Milliseconds()
	}
	r.UptimeMS = (now - p.boot).Milliseconds()
}
