package opsview

import (
	"testing"

	"github.com/keepraft/keepraft/api"
)

func TestCompareConfigs(t *testing.T) {
	db := func(id string) api.ConfigDigest {
		return api.ConfigDigest{Node: id, Role: "database", Version: "v1", Peers: []string{"db1 a b", "db2 c d", "witness e f"}, LeaseMS: 500,
			VIPs: []string{"10.0.0.100/32"}, VRRP: true, VRRPVersion: 2, VRID: 51, AdvertIntMS: 1000, AuthDigest: "abc", Flavor: "mariadb"}
	}
	w := api.ConfigDigest{Node: "witness", Role: "witness", Version: "v1", Peers: []string{"db1 a b", "db2 c d", "witness e f"}, LeaseMS: 500}
	tests := []struct {
		name   string
		change func(d1, d2, w *api.ConfigDigest)
		differ []string
		note   bool
	}{
		{"all agree; the witness has no VIP", func(_, _, _ *api.ConfigDigest) {}, nil, false},
		{"VRID and auth differ", func(_, d2, _ *api.ConfigDigest) { d2.VRID, d2.AuthDigest = 52, "xyz" }, []string{"vrrp.virtual_router_id", "vrrp.auth_pass (digest)"}, false},
		{"the witness has another lease", func(_, _, w *api.ConfigDigest) { w.LeaseMS = 400 }, []string{"failover.lease"}, false},
		{"peers differ", func(d1, _, _ *api.ConfigDigest) { d1.Peers = []string{"db1 a b"} }, []string{"cluster.peers"}, false},
		{"another build is a note", func(d1, _, _ *api.ConfigDigest) { d1.Version = "v2" }, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d1, d2, ww := db("db1"), db("db2"), w
			tt.change(&d1, &d2, &ww)
			var differ []string
			note := false
			for _, f := range CompareConfigs([]api.ConfigDigest{d1, d2, ww}) {
				if f.Differs {
					differ = append(differ, f.Key)
				}
				if f.Key == "version" && f.Note != "" {
					note = true
				}
				if f.Key == "vip.addresses" {
					if _, ok := f.Values["witness"]; ok {
						t.Fatalf("the witness is compared on vip.addresses: %+v", f)
					}
				}
			}
			if len(differ) != len(tt.differ) || note != tt.note {
				t.Fatalf("differ %v note %v, want %v %v", differ, note, tt.differ, tt.note)
			}
			for i := range differ {
				if differ[i] != tt.differ[i] {
					t.Fatalf("differ %v, want %v", differ, tt.differ)
				}
			}
		})
	}
}
