package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/config"
)

// peerClient calls other nodes' admin APIs with the cluster token.
type peerClient struct {
	token string
	http  *http.Client
}

func newPeerClient(token string) *peerClient {
	tr := &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second, DisableCompression: true}
	return &peerClient{token: token, http: &http.Client{Transport: tr}}
}

func (c *peerClient) do(ctx context.Context, method, addr, path string, body io.Reader, out any, timeout time.Duration) error {
	if addr == "" {
		return fmt.Errorf("%s %s: no API address", method, path)
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, body)
	if err != nil {
		return fmt.Errorf("%s %s%s: %w", method, addr, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s%s: %w", method, addr, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e api.ErrorResponse
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
		return fmt.Errorf("%s %s%s: %s: %s", method, addr, path, resp.Status, e.Error)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s%s: decode: %w", method, addr, path, err)
	}
	return nil
}

// peerView is the latest poll of one peer.
type peerView struct {
	report api.NodeReport
	// at is when the report arrived, on the boot clock; zero when never.
	at     time.Duration
	ok     bool
	err    string
	lastOK time.Time
}

// poller reads every peer's /v1/node report at a fixed pace. The controller decides from
// these reports, and status shows each member's last contact from them.
type poller struct {
	cfg    *config.Config
	client *peerClient
	log    *zap.Logger
	every  time.Duration

	// onReachable is called with a peer that answered and is not stopping.
	onReachable func(peer string)

	mu    sync.Mutex
	views map[string]peerView
}

func newPoller(cfg *config.Config, client *peerClient, log *zap.Logger) *poller {
	return &poller{cfg: cfg, client: client, log: log.Named("poller"), every: min(cfg.Failover.Lease/4, 100*time.Millisecond), views: map[string]peerView{}}
}

func (p *poller) Run(ctx context.Context) error {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		var wg sync.WaitGroup
		for _, peer := range p.cfg.Cluster.Peers {
			if peer.ID == p.cfg.Node.ID {
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
	var r api.NodeReport
	err := p.client.do(ctx, http.MethodGet, peer.APIAddr, "/v1/node", nil, &r, p.every*2)
	p.mu.Lock()
	defer p.mu.Unlock()
	v := p.views[peer.ID]
	if err != nil {
		if v.ok {
			p.log.Info("peer unreachable", zap.String("peer", peer.ID), zap.Error(err))
		}
		v.ok, v.err = false, err.Error()
	} else {
		if !v.ok && !v.lastOK.IsZero() {
			p.log.Info("peer reachable again", zap.String("peer", peer.ID))
		}
		v = peerView{report: r, at: bootNow(), ok: true, lastOK: time.Now()}
		if !r.Stopping && p.onReachable != nil {
			p.onReachable(peer.ID)
		}
	}
	p.views[peer.ID] = v
}

// snapshot returns a copy of every peer's latest view.
func (p *poller) snapshot() map[string]peerView {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.views)
}
