package owner

import (
	"context"
	"testing"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/probe"
)

// TestRejoinResume: an operator's resume re-checks a blocked rejoin at once; accepting the
// journaled extra set lets the channel from the former owner restart, and a set that grew
// since is still blocked.
func TestRejoinResume(t *testing.T) {
	yes := true
	tests := []struct {
		name      string
		accept    string
		gtids     []string // the former owner's set, read at each remote call
		wantStart bool
		wantBlock bool
	}{
		{"resume without accepting: checked again, still blocked", "", []string{"0-2-5,2-2-3"}, false, true},
		{"accepting the extra set: the channel restarts", "2-2-3", []string{"0-2-5,2-2-3"}, true, false},
		{"accepting a set that grew since: blocked", "2-2-3", []string{"0-2-5,2-2-4"}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			assign(t, r.node, "db2", true)
			r.node.apply(t, ev(t, r.node.State(), fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: "db2"}))
			epoch := r.serve(t)
			r.remote.gtids = []string{"0-2-5,2-2-3"}
			r.node.peers["db2"] = api.Peer{OK: true, Report: api.NodeReport{Healthy: &yes, GTID: "0-2-5", Domain: 2}}
			r.clock.advance(rejoinEvery)
			r.grantLease(epoch)
			r.o.checkRejoin(context.Background(), r.node.State())
			r.o.bg.Wait()
			if !r.node.State().Members["db2"].RejoinBlocked {
				t.Fatalf("setup: rejoin not blocked; trace:\n%s", r.tr)
			}
			r.tr.reset()
			r.remote.gtids = tt.gtids
			r.node.apply(t, ev(t, r.node.State(), fsm.RejoinResumed, "db1", fsm.RejoinResumeData{Node: "db2", Accept: tt.accept}))
			// No clock advance: a resume does not wait for rejoinBlockedEvery.
			r.o.checkRejoin(context.Background(), r.node.State())
			r.o.bg.Wait()
			if got := r.tr.index("remote fence db2") >= 0; !got {
				t.Fatalf("the resume did not re-check at once; trace:\n%s", r.tr)
			}
			started := r.tr.index("mysql start replication") >= 0
			blocked := r.node.State().Members["db2"].RejoinBlocked
			if started != tt.wantStart || blocked != tt.wantBlock {
				t.Fatalf("started=%v blocked=%v, want %v %v; trace:\n%s", started, blocked, tt.wantStart, tt.wantBlock, r.tr)
			}
			if tt.wantBlock && r.tr.count("propose RejoinChecked") != 1 {
				t.Fatalf("a still-blocked rejoin after a resume was not journaled again; trace:\n%s", r.tr)
			}
		})
	}
}

// TestForcedAssignmentOpensWrites: under on_catchup_timeout hold, an incomplete catch-up
// keeps writes shut, unless the assignment came from an operator's failover (Force).
func TestForcedAssignmentOpensWrites(t *testing.T) {
	for _, force := range []bool{false, true} {
		r := newRig(t, func(c *Config) { c.OnCatchupTimeout = "hold" })
		r.db.catchUp = probe.CatchUp{Reached: false, Reason: "timeout"}
		r.node.apply(t, ev(t, r.node.State(), fsm.OwnerAssigned, "witness", fsm.AssignData{Owner: "db1", Reason: "test", CatchupTarget: "1-1-20", Force: force}))
		r.healthy(true)
		r.grantLease(r.node.State().Epoch)
		r.settle(t)
		r.o.reconcile(context.Background())
		if opened := !r.db.isReadOnly(); opened != force {
			t.Fatalf("force=%v: writes open=%v; trace:\n%s", force, opened, r.tr)
		}
	}
}
