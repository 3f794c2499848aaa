package node

import (
	"strings"
	"testing"

	"github.com/keepraft/keepraft/config"
	"github.com/keepraft/keepraft/nftfence"
	"github.com/keepraft/keepraft/owner"
)

// TestDigestConfig: the settings raftctl config-check compares, with the VRRP password
// only as a digest, and no database settings for a witness.
func TestDigestConfig(t *testing.T) {
	cfg := config.Default()
	cfg.Node.ID, cfg.Node.Role = "db1", "database"
	cfg.Cluster.Peers = []config.Peer{{ID: "witness", RaftAddr: "w:1", APIAddr: "w:2"}, {ID: "db1", RaftAddr: "a:1", APIAddr: "a:2"}}
	cfg.VRRP.Enabled, cfg.VRRP.AuthPass, cfg.VRRP.VirtualRouterID = true, "s3cret", 51
	d := digestConfig(&cfg, "v1")
	if d.VRID != 51 || d.AuthDigest == "" || strings.Contains(d.AuthDigest, "s3cret") || d.Peers[0] != "db1 a:1 a:2" || d.Version != "v1" {
		t.Fatalf("digest %+v", d)
	}
	cfg.Node.Role = "witness"
	if w := digestConfig(&cfg, "v1"); w.VRID != 0 || w.AuthDigest != "" || len(w.VIPs) != 0 || len(w.Peers) != 2 {
		t.Fatalf("witness digest %+v", w)
	}
}

// TestFenceGuardCoversOpenSlack: the owner opens the VIP fence FenceGuard short of its
// lease; a batch that the fence tolerates as not slow (up to OpenSlack) shifts the
// element's end by that much, so the guard must be larger, or the fence could outlive
// the lease.
func TestFenceGuardCoversOpenSlack(t *testing.T) {
	if owner.FenceGuard <= nftfence.OpenSlack {
		t.Fatalf("owner.FenceGuard %v must exceed nftfence.OpenSlack %v", owner.FenceGuard, nftfence.OpenSlack)
	}
}
