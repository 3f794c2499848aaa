package opsview

import (
	"fmt"
	"slices"
	"strings"

	"github.com/keepraft/keepraft/api"
)

// ConfigField is one setting raftctl config-check compares, with each node's value.
type ConfigField struct {
	Key string `json:"key"`
	// Values maps node id to its value ("" when the node has none, e.g. a witness's VIPs).
	Values map[string]string `json:"values"`
	// Differs is true when the nodes the setting applies to disagree.
	Differs bool `json:"differs"`
	// Note explains a difference that is not an error (versions during an upgrade).
	Note string `json:"note,omitempty"`
}

// CompareConfigs lines up the nodes' settings: cluster-wide ones (peers, TLS, failover)
// across every node, a database node's (VIPs, VRRP, MySQL flavor, semi-sync) across the
// database nodes. A different build version is reported but is not a difference.
func CompareConfigs(ds []api.ConfigDigest) []ConfigField {
	type getter struct {
		key string
		db  bool // database nodes only
		get func(api.ConfigDigest) string
	}
	getters := []getter{
		{"cluster.peers", false, func(d api.ConfigDigest) string { return strings.Join(d.Peers, "; ") }},
		{"cluster.tls", false, func(d api.ConfigDigest) string { return fmt.Sprint(d.TLS) }},
		{"failover.lease", false, func(d api.ConfigDigest) string { return fmt.Sprintf("%dms", d.LeaseMS) }},
		{"failover.catchup_timeout", false, func(d api.ConfigDigest) string { return fmt.Sprintf("%dms", d.CatchupTimeoutMS) }},
		{"failover.on_catchup_timeout", false, func(d api.ConfigDigest) string { return d.OnCatchupTimeout }},
		{"failover.nopreempt", false, func(d api.ConfigDigest) string { return fmt.Sprint(d.Nopreempt) }},
		{"vip.addresses", true, func(d api.ConfigDigest) string { return strings.Join(d.VIPs, ",") }},
		{"vip.fence", true, func(d api.ConfigDigest) string { return d.Fence }},
		{"vip.kernel_lease", true, func(d api.ConfigDigest) string { return fmt.Sprintf("%dms", d.KernelLeaseMS) }},
		{"vrrp.enabled", true, func(d api.ConfigDigest) string { return fmt.Sprint(d.VRRP) }},
		{"vrrp.version", true, func(d api.ConfigDigest) string { return fmt.Sprint(d.VRRPVersion) }},
		{"vrrp.virtual_router_id", true, func(d api.ConfigDigest) string { return fmt.Sprint(d.VRID) }},
		{"vrrp.advert_int", true, func(d api.ConfigDigest) string { return fmt.Sprintf("%dms", d.AdvertIntMS) }},
		{"vrrp.auth_pass (digest)", true, func(d api.ConfigDigest) string { return d.AuthDigest }},
		{"mysql.flavor", true, func(d api.ConfigDigest) string { return d.Flavor }},
		{"mysql.semi_sync", true, func(d api.ConfigDigest) string { return fmt.Sprint(d.SemiSync) }},
	}
	var out []ConfigField
	for _, g := range getters {
		f := ConfigField{Key: g.key, Values: map[string]string{}}
		var seen []string
		for _, d := range ds {
			if g.db && d.Role != "database" {
				continue
			}
			v := g.get(d)
			f.Values[d.Node] = v
			if !slices.Contains(seen, v) {
				seen = append(seen, v)
			}
		}
		f.Differs = len(seen) > 1
		out = append(out, f)
	}
	v := ConfigField{Key: "version", Values: map[string]string{}}
	var seen []string
	for _, d := range ds {
		v.Values[d.Node] = d.Version
		if !slices.Contains(seen, d.Version) {
			seen = append(seen, d.Version)
		}
	}
	if len(seen) > 1 {
		v.Note = "different builds (fine during a rolling upgrade)"
	}
	return append(out, v)
}
