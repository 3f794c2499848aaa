package node

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/config"
	"github.com/keepraft/keepraft/mtls"
)

// loadTLS loads cluster.tls and checks that one of the certificate's DNS SANs is node.id.
func loadTLS(cfg *config.Config) (*mtls.Bundle, error) {
	t := cfg.Cluster.TLS
	b, err := mtls.Load(mtls.Files{CA: t.CAFile, Cert: t.CertFile, Key: t.KeyFile})
	if err != nil {
		return nil, fmt.Errorf("cluster.tls: %w", err)
	}
	if !b.Has(cfg.Node.ID) {
		return nil, fmt.Errorf("cluster.tls.cert_file: %s is the certificate of %q, not of node.id %q", t.CertFile, strings.Join(b.Names(), ", "), cfg.Node.ID)
	}
	return b, nil
}

// tlsClient is the API client of a node under mutual TLS: every peer's API server must
// present the certificate of the node id that its address belongs to.
func tlsClient(cfg *config.Config, b *mtls.Bundle, token string) *api.Client {
	ids := map[string]string{}
	for _, p := range cfg.Cluster.Peers {
		ids[p.APIAddr] = p.ID
	}
	tr := &http.Transport{MaxIdleConnsPerHost: apiIdlePerHost, IdleConnTimeout: apiIdleTimeout, DisableCompression: true,
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			id, ok := ids[addr]
			if !ok {
				return nil, fmt.Errorf("dial %s: %w", addr, mtls.ErrUnknownPeer)
			}
			d := tls.Dialer{Config: b.ClientConfig(id)}
			return d.DialContext(ctx, network, addr)
		}}
	return api.NewTLSClient(token, &http.Client{Transport: tr})
}

// tlsTransport is the Raft transport over mutual TLS 1.3.
func tlsTransport(cfg *config.Config, b *mtls.Bundle, n *Node, rlog hclog.Logger) (*raft.NetworkTransport, error) {
	peers := map[string]string{}
	for _, p := range cfg.Cluster.Peers {
		peers[p.RaftAddr] = p.ID
	}
	adv, err := net.ResolveTCPAddr("tcp", cfg.Cluster.RaftAddr)
	if err != nil {
		return nil, fmt.Errorf("cluster.raft_addr: %w", err)
	}
	sl, err := mtls.NewStreamLayer(cfg.Cluster.RaftAddr, adv, b, peers, n.log.Named("raft-tls"))
	if err != nil {
		return nil, fmt.Errorf("listen on cluster.raft_addr %s: %w", cfg.Cluster.RaftAddr, err)
	}
	return raft.NewNetworkTransportWithLogger(sl, tcpPool, tcpTimeout, rlog), nil
}
