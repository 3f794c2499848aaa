package owner

import (
	"context"
	"errors"
	"testing"

	"github.com/keepraft/keepraft/fsm"
)

// TestSemiSyncMasterOnOwnerOnly: with mysql.semi_sync the semi-sync master side is on on
// the owner before it opens writes, and off on a fenced standby (whose SQL thread would
// otherwise wait for acknowledgements of what it applies and leave acknowledged writes
// unapplied). Without the option nothing is touched.
func TestSemiSyncMasterOnOwnerOnly(t *testing.T) {
	semi := func(c *Config) { c.SemiSync = true }
	tests := []struct {
		name string
		opts []func(*Config)
		run  func(t *testing.T, r *rig)
	}{
		{"owner: on before read_only=0", []func(*Config){semi}, func(t *testing.T, r *rig) {
			r.serve(t)
			before(t, r.tr, "mysql semi-sync master on=true", "mysql read_only=0")
		}},
		{"owner: switch fails, writes stay shut", []func(*Config){semi}, func(t *testing.T, r *rig) {
			r.db.semiErr = errors.New("Access denied; you need the REPLICATION MASTER ADMIN privilege")
			assign(t, r.node, "db1", false)
			r.healthy(true)
			r.grantLease(r.node.State().Epoch)
			r.settle(t)
			r.o.reconcile(context.Background())
			if !r.db.isReadOnly() || r.tr.index("mysql read_only=0") >= 0 {
				t.Fatalf("writes opened without semi-sync; trace:\n%s", r.tr)
			}
		}},
		{"fenced standby: off", []func(*Config){semi}, func(t *testing.T, r *rig) {
			r.db.semiSync = true // my.cnf, or this node's time as owner
			assign(t, r.node, "db2", true)
			r.healthy(true)
			r.o.sweep(context.Background())
			if r.db.semiSync {
				t.Fatalf("semi-sync master still on on the standby; trace:\n%s", r.tr)
			}
		}},
		{"writable standby: fenced first, not switched", []func(*Config){semi}, func(t *testing.T, r *rig) {
			r.db.semiSync, r.db.readOnly = true, false
			assign(t, r.node, "db2", true)
			r.healthy(true)
			r.o.sweep(context.Background())
			if !r.db.semiSync {
				t.Fatalf("semi-sync switched off on a server not known to be fenced; trace:\n%s", r.tr)
			}
		}},
		{"owner then deposed: off after the fence", []func(*Config){semi}, func(t *testing.T, r *rig) {
			r.serve(t)
			r.node.apply(t, ev(t, r.node.State(), fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: "db1", Reason: "test"}))
			r.settle(t)
			r.o.reconcile(context.Background())
			r.healthy(true) // the next probe sees the fenced server
			r.o.sweep(context.Background())
			if r.db.semiSync {
				t.Fatalf("semi-sync master still on on the deposed owner; trace:\n%s", r.tr)
			}
			before(t, r.tr, "mysql fence", "mysql semi-sync master on=false")
		}},
		{"without mysql.semi_sync: untouched", nil, func(t *testing.T, r *rig) {
			r.serve(t)
			if r.db.semiSync || r.tr.index("mysql semi-sync master on=true") >= 0 {
				t.Fatalf("semi-sync switched without mysql.semi_sync; trace:\n%s", r.tr)
			}
			r.db.semiSync = true
			r.node.apply(t, ev(t, r.node.State(), fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: "db1", Reason: "test"}))
			r.settle(t)
			r.o.reconcile(context.Background())
			r.healthy(true)
			r.o.sweep(context.Background())
			if !r.db.semiSync {
				t.Fatalf("semi-sync switched off without mysql.semi_sync; trace:\n%s", r.tr)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, newRig(t, tt.opts...))
		})
	}
}
