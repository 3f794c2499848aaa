package node

import (
	"context"
	"maps"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/config"
)

// pollEveryMax caps the poll period (which is otherwise lease/4).
const pollEveryMax = 100 * time.Millisecond

// poller reads every peer's /v1/node report at a fixed pace. The controller decides from
// these reports, followers learn the leader's applied index from them, and status shows
// each member's last contact.
type poller struct {
	self   string
	peers  []config.Peer
	client *api.Client
	log    *zap.Logger
	every  time.Duration
	now    func() time.Duration

	mu    sync.Mutex
	views map[string]api.Peer
	// maxLeader is the highest LeaderApplied any peer reported since start.
	maxLeader uint64
}

func newPoller(cfg *config.Config, client *api.Client, now func() time.Duration, log *zap.Logger) *poller {
	return &poller{self: cfg.Node.ID, peers: cfg.Cluster.Peers, client: client, log: log.Named("poller"), every: min(cfg.Failover.Lease/4, pollEveryMax), now: now, views: map[string]api.Peer{}}
}

func (p *poller) Run(ctx context.Context) error {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		var wg sync.WaitGroup
		for _, peer := range p.peers {
			if peer.ID == p.self {
				continue
			}
			wg.Go(func() { p.pollOne(ctx, peer) })
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (p *poller) pollOne(ctx context.Context, peer config.Peer) {
	r, err := p.client.Node(ctx, peer.APIAddr, p.every*2)
	p.mu.Lock()
	defer p.mu.Unlock()
	v := p.views[peer.ID]
	if err != nil {
		if v.OK {
			p.log.Info("peer unreachable", zap.String("peer", peer.ID), zap.Error(err))
		}
		v.OK, v.Err = false, err.Error()
	} else {
		if !v.OK && v.At != 0 {
			p.log.Info("peer reachable again", zap.String("peer", peer.ID))
		}
		p.maxLeader = max(p.maxLeader, r.LeaderApplied)
		left := v.Left && r.Stopping
		v = api.Peer{Report: r, At: p.now(), OK: true, Left: left}
	}
	p.views[peer.ID] = v
}

// learned returns the highest applied index a leader reported since start (0: none).
func (p *poller) learned() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.maxLeader
}

// markLeft records that peer said goodbye (a graceful stop).
func (p *poller) markLeft(peer string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v := p.views[peer]
	v.Left = true
	p.views[peer] = v
}

// snapshot returns a copy of every peer's latest view.
func (p *poller) snapshot() map[string]api.Peer {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.views)
}
