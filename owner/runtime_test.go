package owner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/probe"
)

func before(t *testing.T, tr *trace, first, second string) {
	t.Helper()
	i, j := tr.index(first), tr.index(second)
	if i < 0 || j < 0 || i > j {
		t.Fatalf("want %q before %q; trace:\n%s", first, second, tr)
	}
}

func TestUnhealthyDropsVIPBeforeRelease(t *testing.T) {
	tests := []struct {
		name   string
		sicken func(r *rig)
		fenced bool // the local fence is in the trace before the release
	}{
		{"server down", func(r *rig) {
			r.db.mu.Lock()
			r.db.up = false
			r.db.mu.Unlock()
		}, true},
		{"server up but failing its checks", func(*rig) {}, true},
		{"server down and its fence fails", func(r *rig) {
			r.db.mu.Lock()
			r.db.up, r.db.fenceErr = false, errors.New("connection refused")
			r.db.mu.Unlock()
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			epoch := r.serve(t)
			r.tr.reset()
			tt.sicken(r)
			r.healthy(false)
			r.settle(t)
			before(t, r.tr, "vip drop", "propose OwnerReleased")
			if tt.fenced {
				before(t, r.tr, "mysql fence", "propose OwnerReleased")
			}
			if s := r.node.State(); s.Phase != fsm.PhaseReleased || s.Epoch != epoch {
				t.Fatalf("state after release = %s@%d, want released@%d; trace:\n%s", s.Phase, s.Epoch, epoch, r.tr)
			}
			if p, _ := r.o.Machine(); p != Standby {
				t.Fatalf("machine = %s, want standby", p)
			}
		})
	}
}

func TestEveryAddOrRenewRechecksTheConjunction(t *testing.T) {
	tests := []struct {
		name    string
		perturb func(t *testing.T, r *rig) (sent time.Duration)
		want    bool
	}{
		{"all holds: renewed", func(_ *testing.T, r *rig) time.Duration { return r.clock.now() }, true},
		{"revoked in the journal", func(t *testing.T, r *rig) time.Duration {
			r.node.apply(t, ev(t, r.node.State(), fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: "db1", Reason: "test"}))
			return r.clock.now()
		}, false},
		{"lease expired", func(_ *testing.T, r *rig) time.Duration {
			r.clock.advance(time.Second)
			return r.clock.now()
		}, false},
		{"promise older than δ", func(_ *testing.T, r *rig) time.Duration {
			sent := r.clock.now()
			r.clock.advance(RenewDelta(r.o.cfg.Lease) + time.Millisecond)
			return sent
		}, false},
		{"writes not open", func(_ *testing.T, r *rig) time.Duration {
			r.o.mu.Lock()
			r.o.writesOpen = false
			r.o.mu.Unlock()
			return r.clock.now()
		}, false},
		{"mysqld unhealthy", func(_ *testing.T, r *rig) time.Duration {
			r.healthy(false)
			return r.clock.now()
		}, false},
		{"machine not serving", func(_ *testing.T, r *rig) time.Duration {
			r.o.mu.Lock()
			r.o.m.Phase = Releasing
			r.o.mu.Unlock()
			return r.clock.now()
		}, false},
	}
	// Each case on a held VIP (a renewal) and on a VIP not held yet (an acquisition).
	for _, held := range []bool{true, false} {
		op := map[bool]string{true: "vip renew", false: "vip add"}[held]
		for _, tt := range tests {
			t.Run(op+": "+tt.name, func(t *testing.T) {
				r := newRig(t)
				r.serve(t)
				if !held {
					if err := r.o.dropVIP(context.Background(), "test"); err != nil {
						t.Fatal(err)
					}
				}
				r.tr.reset()
				sent := tt.perturb(t, r)
				r.o.acquireOrRenew(context.Background(), sent)
				if got := r.tr.count(op) == 1; got != tt.want {
					t.Fatalf("%s = %v, want %v; trace:\n%s", op, got, tt.want, r.tr)
				}
			})
		}
	}
	// An acquisition probes ARP first; the conjunction is checked again after the probe.
	breaks := []struct {
		name    string
		perturb func(t *testing.T, r *rig)
	}{
		{"revoked during the ARP probe", func(t *testing.T, r *rig) {
			r.node.apply(t, ev(t, r.node.State(), fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: "db1", Reason: "test"}))
		}},
		{"lease lapsed during the ARP probe", func(_ *testing.T, r *rig) { r.clock.advance(r.o.cfg.Lease + time.Millisecond) }},
		{"promise older than δ after the ARP probe", func(_ *testing.T, r *rig) { r.clock.advance(RenewDelta(r.o.cfg.Lease) + time.Millisecond) }},
	}
	for _, tt := range breaks {
		t.Run("vip add: "+tt.name, func(t *testing.T) {
			r := newRig(t)
			r.serve(t)
			if err := r.o.dropVIP(context.Background(), "test"); err != nil {
				t.Fatal(err)
			}
			r.tr.reset()
			r.vip.onProbe = func() { tt.perturb(t, r) }
			r.o.acquireOrRenew(context.Background(), r.clock.now())
			if r.tr.index("vip arp probe") < 0 || r.tr.index("vip add") >= 0 {
				t.Fatalf("want a probe and no add; trace:\n%s", r.tr)
			}
		})
	}
}

// TestAcquisitionBlockedByARPAnswer: the probe a promotion starts blocks the acquisition
// that follows it when another host answered, and is journaled once; the next
// acquisition probes again and adds the VIP once nobody answers.
func TestAcquisitionBlockedByARPAnswer(t *testing.T) {
	r := newRig(t)
	r.vip.conflict = net.HardwareAddr{2, 0, 0, 0, 0, 9}
	assign(t, r.node, "db1", false)
	r.healthy(true)
	r.grantLease(r.node.State().Epoch)
	r.settle(t)
	r.o.acquireOrRenew(context.Background(), r.clock.now())
	r.o.bg.Wait()
	if r.vip.isHeld() {
		t.Fatalf("VIP added although another host answered ARP; trace:\n%s", r.tr)
	}
	if r.tr.count("propose VIPConflictSeen") != 1 || r.tr.count("vip arp probe") != 1 {
		t.Fatalf("want one probe (the promotion's), its conflict journaled; trace:\n%s", r.tr)
	}
	r.vip.conflict = nil
	r.o.acquireOrRenew(context.Background(), r.clock.now())
	if !r.vip.isHeld() || r.tr.count("vip arp probe") != 2 {
		t.Fatalf("want a second probe and the VIP once nobody answers; trace:\n%s", r.tr)
	}
}

// TestPromotionProbesARPAhead: the acquisition after a promotion takes the probe the
// promotion started instead of probing again, unless that probe is older than
// preProbeFresh or was for another epoch.
func TestPromotionProbesARPAhead(t *testing.T) {
	tests := []struct {
		name       string
		age        time.Duration
		otherEpoch bool
		wantProbes int
	}{
		{"fresh probe of this epoch", 0, false, 1},
		{"probe older than preProbeFresh", preProbeFresh, false, 2},
		{"probe of another epoch", 0, true, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			assign(t, r.node, "db1", false)
			r.healthy(true)
			r.grantLease(r.node.State().Epoch)
			r.settle(t)
			r.o.bg.Wait()
			if n := r.tr.count("vip arp probe"); n != 1 {
				t.Fatalf("promotion probed %d times, want 1; trace:\n%s", n, r.tr)
			}
			if tt.otherEpoch {
				r.o.mu.Lock()
				r.o.pre.epoch++
				r.o.mu.Unlock()
			}
			r.clock.advance(tt.age)
			r.grantLease(r.node.State().Epoch)
			r.o.acquireOrRenew(context.Background(), r.clock.now())
			if !r.vip.isHeld() || r.tr.count("vip arp probe") != tt.wantProbes {
				t.Fatalf("held %v after %d probes, want held after %d; trace:\n%s", r.vip.isHeld(), r.tr.count("vip arp probe"), tt.wantProbes, r.tr)
			}
		})
	}
}

func TestPromotionRechecksOwnership(t *testing.T) {
	t.Run("before stopping replication", func(t *testing.T) {
		r := newRig(t)
		assign(t, r.node, "db2", true) // db2 owned epoch 1
		r.node.apply(t, ev(t, r.node.State(), fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: "db2"}))
		assign(t, r.node, "db1", false) // db1 assigned epoch 2, previous owner db2
		r.healthy(true)
		r.db.onCatchUp = func() { // the epoch moves on while db1 catches up
			r.node.apply(t, ev(t, r.node.State(), fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: "db1"}))
		}
		r.node.mu.Lock()
		r.node.s.Target = "0-2-5"
		r.node.mu.Unlock()
		r.settle(t)
		if r.tr.index("mysql stop replication") >= 0 || r.tr.index("mysql read_only=0") >= 0 {
			t.Fatalf("acted on a lost ownership; trace:\n%s", r.tr)
		}
	})
	// Right before read_only=0: whatever moves while openWrites prepares (the watchdog's
	// arm, the semi-sync switch) is seen by a check after it.
	revoke := func(t *testing.T, r *rig) func() {
		return func() {
			r.node.apply(t, ev(t, r.node.State(), fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: "db1", Reason: "test"}))
		}
	}
	lapse := func(_ *testing.T, r *rig) func() {
		return func() { r.clock.advance(r.o.cfg.Lease + time.Millisecond) }
	}
	tests := []struct {
		name     string
		semiSync bool
		setup    func(t *testing.T, r *rig)
		want     bool // writes opened
	}{
		{"all holds: opened", false, func(*testing.T, *rig) {}, true},
		{"all holds with semi-sync: opened", true, func(*testing.T, *rig) {}, true},
		{"state not caught up (a restart replay)", false, func(_ *testing.T, r *rig) { r.node.setCaughtUp(false) }, false},
		{"revoked while the watchdog is armed", false, func(t *testing.T, r *rig) { r.wd.onArm = revoke(t, r) }, false},
		{"lease lapsed while the watchdog is armed", false, func(t *testing.T, r *rig) { r.wd.onArm = lapse(t, r) }, false},
		{"revoked while semi-sync is switched on", true, func(t *testing.T, r *rig) { r.db.onSemiSync = revoke(t, r) }, false},
		{"lease lapsed while semi-sync is switched on", true, func(t *testing.T, r *rig) { r.db.onSemiSync = lapse(t, r) }, false},
	}
	for _, tt := range tests {
		t.Run("right before read_only=0: "+tt.name, func(t *testing.T) {
			r := newRig(t, func(c *Config) { c.SemiSync = tt.semiSync })
			assign(t, r.node, "db1", false)
			r.healthy(true)
			epoch := r.node.State().Epoch
			r.grantLease(epoch)
			r.o.mu.Lock()
			r.o.m = machine{Serving, epoch}
			r.o.mu.Unlock()
			tt.setup(t, r)
			r.o.openWrites(context.Background(), epoch)
			if got := r.tr.index("mysql read_only=0") >= 0; got != tt.want {
				t.Fatalf("writes opened = %v, want %v; trace:\n%s", got, tt.want, r.tr)
			}
			if tt.want && r.db.isReadOnly() {
				t.Fatalf("server still read-only; trace:\n%s", r.tr)
			}
		})
	}
}

func TestRestartReplayNeverOpensWrites(t *testing.T) {
	// A restarted node replays an old OwnerAssigned naming itself while the real owner
	// is db2; its server was left writable by the crash.
	r := newRig(t)
	assign(t, r.node, "db1", false)
	r.node.setCaughtUp(false)
	r.db.readOnly = false
	r.db.replica = true
	r.healthy(true)
	r.grantLease(r.node.State().Epoch)
	ctx := context.Background()
	for range 5 {
		r.o.reconcile(ctx)
		r.o.sweep(ctx)
	}
	r.o.bg.Wait()
	if !r.db.isReadOnly() || r.tr.index("mysql read_only=0") >= 0 || r.tr.index("mysql stop replication") >= 0 {
		t.Fatalf("a node not caught up must fence and never open writes or stop replication; trace:\n%s", r.tr)
	}
}

func TestDeposedOwnerFences(t *testing.T) {
	tests := []struct {
		name   string
		depose func(t *testing.T, r *rig)
	}{
		{"revoked and reassigned in one batch", func(t *testing.T, r *rig) {
			r.node.apply(t, ev(t, r.node.State(), fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: "db1"}))
			assign(t, r.node, "db2", false)
		}},
		{"lease lapsed (cut off)", func(_ *testing.T, r *rig) {
			r.clock.advance(r.o.cfg.Lease + time.Millisecond)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.serve(t)
			tt.depose(t, r)
			r.o.reconcile(context.Background())
			if !r.db.isReadOnly() || r.vip.isHeld() {
				t.Fatalf("read_only=%v vip held=%v, want fenced and dropped; trace:\n%s", r.db.isReadOnly(), r.vip.isHeld(), r.tr)
			}
		})
	}
}

func TestReleaseWaitsForVIPDrop(t *testing.T) {
	r := newRig(t)
	r.serve(t)
	r.vip.mu.Lock()
	r.vip.setErr = errors.New("netlink: device busy")
	r.vip.mu.Unlock()
	r.healthy(false)
	r.o.reconcile(context.Background())
	if r.tr.index("propose OwnerReleased") >= 0 {
		t.Fatalf("released while the VIP could not be dropped; trace:\n%s", r.tr)
	}
	r.vip.mu.Lock()
	r.vip.setErr = nil
	r.vip.mu.Unlock()
	r.clock.advance(retryEvery)
	r.o.reconcile(context.Background())
	if r.tr.index("propose OwnerReleased") < 0 || r.node.State().Phase != fsm.PhaseReleased {
		t.Fatalf("release not retried once the drop worked; trace:\n%s", r.tr)
	}
}

func TestOwnerPromotedRetriedUntilApplied(t *testing.T) {
	r := newRig(t)
	assign(t, r.node, "db1", false)
	r.healthy(true)
	r.grantLease(r.node.State().Epoch)
	r.node.failPropose = 2
	r.settle(t)
	r.o.acquireOrRenew(context.Background(), r.clock.now())
	for i := 0; i < 5 && r.node.State().Phase != fsm.PhaseActive; i++ {
		r.o.reconcile(context.Background())
		r.o.bg.Wait()
		r.clock.advance(retryEvery)
		r.grantLease(r.node.State().Epoch)
	}
	if r.node.State().Phase != fsm.PhaseActive || r.tr.count("propose OwnerPromoted") != 3 {
		t.Fatalf("phase %s after %d proposals, want active after 3; trace:\n%s", r.node.State().Phase, r.tr.count("propose OwnerPromoted"), r.tr)
	}
}

func TestHandoverAppliesRelayAndFencesPrevious(t *testing.T) {
	r := newRig(t)
	assign(t, r.node, "db2", true)
	r.node.apply(t, ev(t, r.node.State(), fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: "db2"}))
	assign(t, r.node, "db1", false)
	r.healthy(true)
	r.db.relay = probe.RelayCatchUp{Reached: true, Received: "0-2-7", Applied: "0-2-7,1-1-10"}
	r.settle(t)
	before(t, r.tr, "remote fence db2", "mysql stop replication")
	before(t, r.tr, "mysql relay applied", "mysql stop replication")
	if p, _ := r.o.Machine(); p != Serving {
		t.Fatalf("machine %s, want serving; trace:\n%s", p, r.tr)
	}
	r.o.mu.Lock()
	d := r.o.promoted
	r.o.mu.Unlock()
	if d.PrevOwner != "db2" || d.PrevFence != "fenced" || d.RelayApplied == nil || !*d.RelayApplied || d.Received != "0-2-7" || d.RelayAppliedSet != "0-2-7,1-1-10" {
		t.Fatalf("OwnerPromoted data = %+v, want previous owner fenced and relay applied, received and applied journaled", d)
	}
}

func TestRejoin(t *testing.T) {
	yes := true
	tests := []struct {
		name      string
		fenceErr  error
		gtids     []string
		wantStart bool
		wantBlock bool
		wantStop  bool
	}{
		{"fenced, nothing extra: channel restarts", nil, []string{"0-2-5"}, true, false, false},
		{"cannot fence the former owner: channel stays stopped", errors.New("connection refused"), nil, false, false, false},
		{"extra transactions: blocked", nil, []string{"0-2-5,2-2-3"}, false, true, false},
		{"a write lands during the rejoin: stopped again", nil, []string{"0-2-5", "0-2-5,2-2-1"}, true, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			assign(t, r.node, "db2", true)
			r.node.apply(t, ev(t, r.node.State(), fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: "db2"}))
			epoch := r.serve(t) // also promoted: epoch active
			if r.node.State().Phase != fsm.PhaseActive {
				t.Fatalf("setup: phase %s", r.node.State().Phase)
			}
			r.remote.fenceErr, r.remote.gtids = tt.fenceErr, tt.gtids
			r.node.peers["db2"] = api.Peer{OK: true, Report: api.NodeReport{Healthy: &yes, GTID: "0-2-5", Domain: 2}}
			r.tr.reset()
			r.clock.advance(rejoinEvery)
			r.grantLease(epoch)
			r.o.checkRejoin(context.Background(), r.node.State())
			r.o.bg.Wait()
			got := []bool{r.tr.index("mysql start replication") >= 0, r.tr.index("propose RejoinChecked") >= 0 && r.node.State().Members["db2"].RejoinBlocked, r.tr.index("mysql stop replication") >= 0}
			want := []bool{tt.wantStart, tt.wantBlock, tt.wantStop}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("start/blocked/stop = %v, want %v; trace:\n%s", got, want, r.tr)
				}
			}
			if tt.fenceErr == nil && r.tr.index("remote fence db2") < 0 {
				t.Fatalf("former owner not fenced before the comparison; trace:\n%s", r.tr)
			}
			if start := r.tr.index("mysql start replication"); start >= 0 && r.tr.count("remote fence db2") != 1 {
				t.Fatalf("fenced again after restarting replication (that kills our own replication connection); trace:\n%s", r.tr)
			}
		})
	}
}

func TestSweepRemovesStrayVIPAndFences(t *testing.T) {
	r := newRig(t)
	assign(t, r.node, "db2", true)
	r.healthy(true)
	r.vip.held = true // left by keepalived during a migration
	r.db.readOnly = false
	r.healthy(true)
	r.o.enforce(context.Background()) // fences a writable server at once
	r.o.sweep(context.Background())   // reads the interface back every second
	if r.vip.isHeld() || !r.db.isReadOnly() {
		t.Fatalf("stray VIP %v, read_only %v; trace:\n%s", r.vip.isHeld(), r.db.isReadOnly(), r.tr)
	}
}

func TestShutdownHandsOver(t *testing.T) {
	r := newRig(t)
	r.serve(t)
	yes := true
	r.node.peers["db2"] = api.Peer{OK: true, Report: api.NodeReport{Healthy: &yes}}
	r.o.shutdown()
	before(t, r.tr, "vip drop", "propose OwnerReleased")
	if r.node.State().Phase != fsm.PhaseReleased || !r.db.isReadOnly() {
		t.Fatalf("phase %s read_only %v; trace:\n%s", r.node.State().Phase, r.db.isReadOnly(), r.tr)
	}
}

func TestRenewCadenceAndLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		start := time.Now()
		r.o.now = func() time.Duration { return time.Hour + time.Since(start) }
		assign(t, r.node, "db1", false)
		r.healthy(true)
		r.o.mu.Lock()
		r.o.m = machine{Promoting, r.node.State().Epoch}
		r.o.mu.Unlock()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- r.o.renewLoop(ctx) }()
		time.Sleep(time.Second)
		synctest.Wait()
		r.renew.mu.Lock()
		calls := r.renew.calls
		r.renew.mu.Unlock()
		// lease 500ms: a round every 166.7ms to 2 peers → 6 rounds in 1s.
		if calls != 12 {
			t.Errorf("renew calls in 1s = %d, want 12 (2 peers × 6 rounds)", calls)
		}
		r.o.mu.Lock()
		valid := r.o.lease.Valid(r.o.now())
		left := r.o.lease.Expiry() - r.o.now()
		r.o.mu.Unlock()
		if !valid || left > r.o.cfg.Lease {
			t.Errorf("lease valid=%v left=%v, want valid with at most %v left", valid, left, r.o.cfg.Lease)
		}
		r.renew.mu.Lock()
		r.renew.refuse = true
		r.renew.mu.Unlock()
		time.Sleep(r.o.cfg.Lease)
		synctest.Wait()
		r.o.mu.Lock()
		valid = r.o.lease.Valid(r.o.now())
		r.o.mu.Unlock()
		if valid {
			t.Errorf("lease still valid %v after the peers stopped promising", r.o.cfg.Lease)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestPromiser(t *testing.T) {
	base := cluster(t)
	owned := at(base, "db1", 4, fsm.PhaseActive)
	tests := []struct {
		name    string
		state   fsm.State
		caught  bool
		uptime  time.Duration
		req     api.RenewRequest
		want    bool
		because string
	}{
		{"promises the applied owner", owned, true, time.Minute, api.RenewRequest{Owner: "db1", Epoch: 4}, true, ""},
		{"refuses right after a start", owned, true, 400 * time.Millisecond, api.RenewRequest{Owner: "db1", Epoch: 4}, false, "started"},
		{"refuses while behind the leader", owned, false, time.Minute, api.RenewRequest{Owner: "db1", Epoch: 4}, false, "behind"},
		{"refuses an old epoch", owned, true, time.Minute, api.RenewRequest{Owner: "db1", Epoch: 3}, false, "applied state"},
		{"refuses a revoked owner", at(base, "db1", 4, fsm.PhaseRevoked), true, time.Minute, api.RenewRequest{Owner: "db1", Epoch: 4}, false, "applied state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newFakeNode(&trace{}, tt.state)
			n.caught = tt.caught
			c := &clock{t: time.Hour}
			p := NewPromiser("witness", n, 500*time.Millisecond, c.now, zap.NewNop())
			c.advance(tt.uptime)
			got := p.Grant(tt.req)
			if got.Promised != tt.want || !strings.Contains(got.Reason, tt.because) {
				t.Fatalf("Grant = %+v, want promised=%v with reason containing %q", got, tt.want, tt.because)
			}
			var rep api.NodeReport
			p.Fill(&rep, "db1")
			if rep.UptimeMS != tt.uptime.Milliseconds() || (tt.want && rep.PromiseOwner != "db1") {
				t.Fatalf("report %+v after grant", rep)
			}
		})
	}
}

// TestRunOnFakes runs the whole runtime (probe, renew, reconcile loops) on fakes in a
// synctest bubble: db1 is assigned, promotes, serves; its mysqld dies; it releases with
// the VIP dropped first; at the end Run returns and nothing is left running.
func TestRunOnFakes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		start := time.Now()
		r.o.now = func() time.Duration { return time.Hour + time.Since(start) }
		assign(t, r.node, "db1", false)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- r.o.Run(ctx) }()
		deadline := time.Now().Add(5 * time.Second)
		for r.node.State().Phase != fsm.PhaseActive && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		l := r.o.Local()
		if r.node.State().Phase != fsm.PhaseActive || !l.Holding || !l.LeaseValid || !l.Promoted || r.db.isReadOnly() {
			t.Fatalf("not serving: phase %s local %+v; trace:\n%s", r.node.State().Phase, l, r.tr)
		}
		if !r.o.Holding() || !strings.HasPrefix(l.Runtime, "serving@") {
			t.Fatalf("Holding()=%v runtime %q", r.o.Holding(), l.Runtime)
		}
		r.tr.reset()
		r.db.mu.Lock()
		r.db.up = false
		r.db.mu.Unlock()
		deadline = time.Now().Add(2 * time.Second)
		for r.node.State().Phase != fsm.PhaseReleased && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		before(t, r.tr, "vip drop", "propose OwnerReleased")
		if m := r.node.State().Members["db1"]; m.Healthy {
			t.Errorf("HealthChanged(unhealthy) not journaled")
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestServerBackReadOnlyIsReopened: the owner's mysqld restarts faster than fall×interval
// (no health transition) and comes back read_only=1 from my.cnf; the serving owner must
// open writes again rather than keep the VIP over a read-only server.
func TestServerBackReadOnlyIsReopened(t *testing.T) {
	r := newRig(t)
	r.serve(t)
	r.db.mu.Lock()
	r.db.readOnly = true // restarted
	r.db.mu.Unlock()
	time.Sleep(time.Millisecond) // the probe starts after writes were opened
	r.healthy(true)
	r.grantLease(r.node.State().Epoch)
	r.o.reconcile(context.Background())
	if r.db.isReadOnly() {
		t.Fatalf("serving owner left its server read-only; trace:\n%s", r.tr)
	}
}

// TestStandbyResumesReplication: db1 was assigned, stopped replication while promoting,
// and lost the epoch before serving; once db2 serves, db1's channel from it runs again.
func TestStandbyResumesReplication(t *testing.T) {
	tests := []struct {
		name   string
		err    probe.ReplicaStatus
		resume bool
	}{
		{"no error", probe.ReplicaStatus{}, true},
		// Seen in the chaos run: the channel's last IO error (the owner's mysqld was down
		// when it last ran) kept a standby's channel stopped for good.
		{"stale IO error", probe.ReplicaStatus{LastError: "error reconnecting to master: Connection refused"}, true},
		{"SQL error", probe.ReplicaStatus{LastError: "Duplicate entry", LastSQLError: "Duplicate entry"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testStandbyResumes(t, tt.err, tt.resume) })
	}
}

func testStandbyResumes(t *testing.T, replErr probe.ReplicaStatus, resume bool) {
	r := newRig(t)
	r.db.replErr = replErr
	assign(t, r.node, "db2", true)
	r.node.apply(t, ev(t, r.node.State(), fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: "db2"}))
	assign(t, r.node, "db1", false)
	r.healthy(true)
	r.settle(t) // promoting stopped the channel from db2
	if r.db.replica {
		t.Fatalf("setup: replication still runs; trace:\n%s", r.tr)
	}
	r.node.apply(t, ev(t, r.node.State(), fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: "db1"}))
	r.node.apply(t, ev(t, r.node.State(), fsm.OwnerReleased, "db1", fsm.ReleaseData{Owner: "db1"}))
	assign(t, r.node, "db2", true)
	r.settle(t)
	r.healthy(true)
	r.o.sweep(context.Background())
	if r.db.replica != resume {
		t.Fatalf("channel running=%v after the sweep, want %v; trace:\n%s", r.db.replica, resume, r.tr)
	}
}

// TestStandbyRestartsFailedIOThread: a standby's IO thread that stopped with an error the
// server does not retry (1236 from the owner) is started again, at most every
// ioRetryEvery; one an operator stopped (no error) and an SQL error are left alone.
func TestStandbyRestartsFailedIOThread(t *testing.T) {
	const fatal = "Got fatal error 1236 from master when reading data from binary log: 'binlog truncated in the middle of event'"
	tests := []struct {
		name    string
		replErr probe.ReplicaStatus
		restart bool
	}{
		{"fatal IO error: restarted", probe.ReplicaStatus{LastError: fatal}, true},
		{"stopped by an operator: left alone", probe.ReplicaStatus{}, false},
		{"SQL error: left alone", probe.ReplicaStatus{LastError: "Duplicate entry", LastSQLError: "Duplicate entry"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			assign(t, r.node, "db2", true) // db1 is the standby
			r.db.replErr, r.db.ioDown = tt.replErr, true
			r.healthy(true)
			r.settle(t)
			r.o.sweep(context.Background())
			if got := r.tr.count("mysql start replication"); (got == 1) != tt.restart {
				t.Fatalf("%d restarts, want restart=%v; trace:\n%s", got, tt.restart, r.tr)
			}
			if !tt.restart {
				return
			}
			r.db.ioDown = true // it fails again at once
			r.healthy(true)
			r.o.sweep(context.Background())
			if got := r.tr.count("mysql start replication"); got != 1 {
				t.Fatalf("restarted %d times within ioRetryEvery, want once; trace:\n%s", got, r.tr)
			}
		})
	}
}

// TestProcessExitReleasesWithoutWaitingForProbes: the mysqld process exits while its
// port still answered the last probe; the owner releases at once, not after fall failed
// probes.
func TestProcessExitReleasesWithoutWaitingForProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		start := time.Now()
		r.o.now = func() time.Duration { return time.Hour + time.Since(start) }
		r.db.exit = make(chan struct{})
		assign(t, r.node, "db1", false)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- r.o.Run(ctx) }()
		for r.node.State().Phase != fsm.PhaseActive {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Second) // the watcher is armed once healthy
		r.tr.reset()
		died := time.Now()
		close(r.db.exit) // the probe still sees the server up
		for r.node.State().Phase != fsm.PhaseReleased && time.Since(died) < 5*time.Second {
			time.Sleep(time.Millisecond)
		}
		if took := time.Since(died); r.node.State().Phase != fsm.PhaseReleased || took >= 100*time.Millisecond {
			t.Fatalf("released after %v (phase %s), want within 100ms of the exit; trace:\n%s", took, r.node.State().Phase, r.tr)
		}
		before(t, r.tr, "vip drop", "propose OwnerReleased")
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestReleaseWaitsForFence: an owner whose server answers but cannot be fenced (a full
// disk blocks SET GLOBAL read_only) does not release; one whose server is down releases
// unfenced (nothing can write to it).
func TestReleaseWaitsForFence(t *testing.T) {
	tests := []struct {
		name        string
		up          bool
		process     int
		wantRelease bool
	}{
		{"alive but unfenceable: no release", true, probe.ProcessRunning, false},
		{"unreachable from here but its process runs: no release", false, probe.ProcessRunning, false},
		{"process stopped (SIGSTOP): release unfenced", false, probe.ProcessStopped, true},
		{"down: release unfenced", false, probe.ProcessGone, true},
		{"down, process not watched: release unfenced", false, probe.ProcessUnknown, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.serve(t)
			r.db.mu.Lock()
			r.db.fenceErr = errors.New("set global read_only = 1: context deadline exceeded")
			r.db.up, r.db.process = tt.up, tt.process
			r.db.mu.Unlock()
			r.node.apply(t, ev(t, r.node.State(), fsm.SwitchoverRequested, "witness", fsm.SwitchoverData{To: "db2"}))
			r.o.reconcile(context.Background())
			if got := r.node.State().Phase == fsm.PhaseReleased; got != tt.wantRelease {
				t.Fatalf("released = %v, want %v; trace:\n%s", got, tt.wantRelease, r.tr)
			}
			if tt.wantRelease {
				return
			}
			r.db.mu.Lock()
			r.db.fenceErr = nil
			r.db.mu.Unlock()
			r.clock.advance(retryEvery)
			r.o.reconcile(context.Background())
			if r.node.State().Phase != fsm.PhaseReleased || !r.db.isReadOnly() {
				t.Fatalf("not released once fencing works; trace:\n%s", r.tr)
			}
		})
	}
}

// TestPromotionWaitsForWritablePrevious: the previous owner's server answers with
// read_only=0 and cannot be fenced: the new owner must not stop replication or open
// writes until it is read-only.
func TestPromotionWaitsForWritablePrevious(t *testing.T) {
	r := newRig(t)
	assign(t, r.node, "db2", true)
	r.node.apply(t, ev(t, r.node.State(), fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: "db2"}))
	assign(t, r.node, "db1", false)
	r.healthy(true)
	r.remote.mu.Lock()
	r.remote.fenceErr = errors.New("set global read_only = 1: context deadline exceeded")
	r.remote.mu.Unlock()
	r.o.reconcile(context.Background()) // starts the promotion
	time.Sleep(300 * time.Millisecond)
	if p, _ := r.o.Machine(); p != Promoting || r.tr.index("mysql stop replication") >= 0 {
		t.Fatalf("promotion went on beside a writable previous owner: machine %s; trace:\n%s", p, r.tr)
	}
	r.remote.mu.Lock()
	r.remote.readOnly = true // fenced by its own daemon meanwhile
	r.remote.mu.Unlock()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		r.o.reconcile(context.Background())
		if p, _ := r.o.Machine(); p == Serving {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p, _ := r.o.Machine(); p != Serving {
		t.Fatalf("promotion did not go on once the previous owner was read-only; trace:\n%s", r.tr)
	}
	r.o.mu.Lock()
	d := r.o.promoted
	r.o.mu.Unlock()
	if !strings.HasPrefix(d.PrevFence, "already read-only") {
		t.Fatalf("prev_fence = %q", d.PrevFence)
	}
}

// TestServingOwnerKeepsFencingPrevious: the previous owner's server could not be fenced at
// promotion (unreachable); the serving owner keeps trying until it is read-only.
func TestServingOwnerKeepsFencingPrevious(t *testing.T) {
	r := newRig(t)
	assign(t, r.node, "db2", true)
	r.node.apply(t, ev(t, r.node.State(), fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: "db2"}))
	r.remote.mu.Lock()
	r.remote.fenceErr, r.remote.readErr = errors.New("connect: no route to host"), errors.New("connect: no route to host")
	r.remote.mu.Unlock()
	epoch := r.serve(t)
	if r.o.prevFenced {
		t.Fatal("setup: previous owner counted as fenced")
	}
	r.remote.mu.Lock()
	r.remote.fenceErr, r.remote.readErr = nil, nil // reachable again
	r.remote.mu.Unlock()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		r.grantLease(epoch)
		r.o.enforce(context.Background())
		r.o.bg.Wait()
		r.o.mu.Lock()
		done := r.o.prevFenced
		r.o.mu.Unlock()
		if done {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("previous owner never fenced after it became reachable; trace:\n%s", r.tr)
}

// TestStandbyLeavesOperatorStoppedChannel: a channel stopped by an operator (not by a
// promotion of this runtime) stays stopped.
func TestStandbyLeavesOperatorStoppedChannel(t *testing.T) {
	r := newRig(t)
	assign(t, r.node, "db2", true)
	r.db.mu.Lock()
	r.db.replica = false // STOP SLAVE by hand
	r.db.mu.Unlock()
	r.healthy(true)
	r.settle(t)
	r.o.sweep(context.Background())
	if r.tr.index("mysql start replication") >= 0 {
		t.Fatalf("restarted a channel an operator stopped; trace:\n%s", r.tr)
	}
}

// TestPromotionSkipsReadOnlyCheckOfUnreachablePrevious: a previous owner's server that
// cannot even be dialed (host loss) costs one connect timeout, not two.
func TestPromotionSkipsReadOnlyCheckOfUnreachablePrevious(t *testing.T) {
	r := newRig(t)
	assign(t, r.node, "db2", true)
	r.node.apply(t, ev(t, r.node.State(), fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: "db2"}))
	r.remote.mu.Lock()
	r.remote.fenceErr = fmt.Errorf("fence db2: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("i/o timeout")})
	r.remote.mu.Unlock()
	r.serve(t)
	if r.tr.index("remote read_only db2") >= 0 {
		t.Fatalf("read read_only of a server that could not be dialed; trace:\n%s", r.tr)
	}
}

// TestStoppedChannelRecordedBeforeStop: a keepraftd killed right after its promotion's
// STOP REPLICA (before it could write anything more) must still find, after its restart,
// that it stopped the channel, or its standby misses every write of the real owner
// (seen in the restart drill: SIGKILL just after a switchover's OwnerAssigned).
func TestStoppedChannelRecordedBeforeStop(t *testing.T) {
	dir := t.TempDir()
	r := newRig(t, func(c *Config) { c.StateDir = dir })
	recorded := false
	r.db.onStop = func() {
		_, err := os.Stat(filepath.Join(dir, replStoppedFile))
		recorded = err == nil
	}
	assign(t, r.node, "db2", true)
	r.node.apply(t, ev(t, r.node.State(), fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: "db2"}))
	assign(t, r.node, "db1", false)
	r.healthy(true)
	r.settle(t)
	if r.tr.index("mysql stop replication") < 0 {
		t.Fatalf("setup: the promotion did not stop replication; trace:\n%s", r.tr)
	}
	if !recorded {
		t.Fatal("the channel was stopped before the record that this runtime stopped it reached disk: a crash in between leaves it stopped for good")
	}
	// The restarted runtime reads the record back and resumes once another node serves.
	r2 := newRig(t, func(c *Config) { c.StateDir = dir })
	r2.db.replica = false
	assign(t, r2.node, "db2", true)
	r2.healthy(true)
	r2.settle(t)
	r2.o.sweep(context.Background())
	if !r2.db.replica {
		t.Fatalf("restarted standby left the channel its promotion stopped; trace:\n%s", r2.tr)
	}
}

// TestFailedStopKeepsRecord: a STOP REPLICA that returns an error (its context was
// cancelled by a SIGTERM mid-promotion) may still have stopped the channel: the record
// stays and the standby resumes the channel; a standby that sees it running (in a probe
// taken well after the stop) clears the record, so an operator's later STOP is respected.
// Seen in the restart drill: SIGTERM right after a switchover's OwnerAssigned.
func TestFailedStopKeepsRecord(t *testing.T) {
	for _, stopped := range []bool{true, false} {
		t.Run(fmt.Sprintf("channel stopped anyway=%v", stopped), func(t *testing.T) {
			dir := t.TempDir()
			r := newRig(t, func(c *Config) { c.StateDir = dir })
			r.db.stopErr = context.Canceled
			r.db.stopAnyway = stopped
			assign(t, r.node, "db2", true)
			r.node.apply(t, ev(t, r.node.State(), fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: "db2"}))
			assign(t, r.node, "db1", false)
			r.healthy(true)
			r.o.reconcile(context.Background())
			r.o.bg.Wait()
			if r.tr.index("mysql stop replication") < 0 {
				t.Fatalf("setup: the promotion did not try to stop replication; trace:\n%s", r.tr)
			}
			// Deposed while promoting: db2 serves again.
			r.node.apply(t, ev(t, r.node.State(), fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: "db1"}))
			r.node.apply(t, ev(t, r.node.State(), fsm.OwnerReleased, "db1", fsm.ReleaseData{Owner: "db1"}))
			assign(t, r.node, "db2", true)
			r.settle(t)
			r.o.mu.Lock()
			r.o.replStopTried = time.Now().Add(-2 * stopSettle) // the stop is long over
			r.o.mu.Unlock()
			r.healthy(true)
			r.o.sweep(context.Background())
			if !r.db.replica {
				t.Fatalf("standby left the channel a cancelled STOP REPLICA stopped; trace:\n%s", r.tr)
			}
			r.healthy(true)
			r.o.sweep(context.Background())
			if _, err := os.Stat(filepath.Join(dir, replStoppedFile)); err == nil {
				t.Fatal("record left behind while the channel runs: an operator's later STOP would be undone")
			}
		})
	}
}

// TestWatchdogArmedBeforeWritesOpen: the watchdog holds the lease's expiry before
// read_only=0, is disarmed once the server is fenced, and an owner whose watchdog cannot
// be armed does not open writes (a frozen keepraftd would leave them open for good).
func TestWatchdogArmedBeforeWritesOpen(t *testing.T) {
	t.Run("armed first, disarmed after the fence", func(t *testing.T) {
		r := newRig(t)
		r.serve(t)
		before(t, r.tr, "watchdog arm", "mysql read_only=0")
		armed, ds := r.wd.state()
		r.o.mu.Lock()
		exp := r.o.lease.Expiry()
		r.o.mu.Unlock()
		if !armed || len(ds) == 0 || ds[len(ds)-1] != exp {
			t.Fatalf("watchdog armed=%v deadlines=%v, want armed at the lease's expiry %v", armed, ds, exp)
		}
		r.clock.advance(r.o.cfg.Lease + time.Millisecond) // cut off: the lease lapses
		r.o.reconcile(context.Background())
		before(t, r.tr, "mysql fence", "watchdog disarm")
		if armed, _ := r.wd.state(); armed {
			t.Fatalf("watchdog still armed after the fence; trace:\n%s", r.tr)
		}
	})
	t.Run("arm fails: writes stay closed", func(t *testing.T) {
		r := newRig(t)
		r.wd.err = errors.New("watchdog: not running")
		assign(t, r.node, "db1", false)
		r.healthy(true)
		r.grantLease(r.node.State().Epoch)
		r.settle(t)
		r.o.reconcile(context.Background())
		if !r.db.isReadOnly() || r.tr.index("mysql read_only=0") >= 0 {
			t.Fatalf("writes opened without an armed watchdog; trace:\n%s", r.tr)
		}
	})
}

// TestWatchdogFollowsRenewals: every renewal while writes are open moves the watchdog's
// deadline with the lease, never backwards.
func TestWatchdogFollowsRenewals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		start := time.Now()
		r.o.now = func() time.Duration { return time.Hour + time.Since(start) }
		r.clock.t = time.Hour
		r.serve(t)
		_, before := r.wd.state()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- r.o.renewLoop(ctx) }()
		time.Sleep(time.Second)
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		_, ds := r.wd.state()
		if len(ds) < len(before)+5 {
			t.Fatalf("watchdog armed %d times in 1 s of renewals (6 rounds), want at least 5 more than %d", len(ds), len(before))
		}
		for i := 1; i < len(ds); i++ {
			if ds[i] < ds[i-1] {
				t.Fatalf("deadline moved backwards: %v", ds)
			}
		}
		if last := ds[len(ds)-1]; last < r.o.now() {
			t.Fatalf("last deadline %v already past at %v", last, r.o.now())
		}
	})
}

// TestVIPFence: the fence opens before the address is added, for what remains of the
// lease less the guard; it is shut before the address is removed; an opening that fails
// drops the VIP; too little lease left renews nothing.
func TestVIPFence(t *testing.T) {
	t.Run("open before add, for the rest of the lease", func(t *testing.T) {
		r := newRig(t)
		r.serve(t)
		before(t, r.tr, "fence open", "vip add")
		open, d := r.fence.state()
		r.o.mu.Lock()
		want := r.o.lease.Expiry() - r.o.now() - fenceGuard
		r.o.mu.Unlock()
		if !open || d != want {
			t.Fatalf("fence open=%v for %v, want open for %v (lease left less the guard)", open, d, want)
		}
	})
	t.Run("a stall while opening does not carry the fence past the lease", func(t *testing.T) {
		r := newRig(t)
		r.serve(t)
		r.fence.mu.Lock()
		r.fence.onOpen = func() { r.clock.advance(150 * time.Millisecond) } // frozen before the kernel is told
		r.fence.mu.Unlock()
		r.grantLease(r.node.State().Epoch)
		r.o.acquireOrRenew(context.Background(), r.clock.now())
		r.o.mu.Lock()
		end := r.o.lease.Expiry() - fenceGuard
		r.o.mu.Unlock()
		r.fence.mu.Lock()
		until, last := r.fence.until, r.fence.last
		r.fence.mu.Unlock()
		if until != end || r.clock.now()+last != end {
			t.Fatalf("fence open until %v (%v from the stalled call), want the lease's end less the guard, %v", until, last, end)
		}
	})
	t.Run("shut before the address goes", func(t *testing.T) {
		r := newRig(t)
		r.serve(t)
		r.tr.reset()
		if err := r.o.dropVIP(context.Background(), "test"); err != nil {
			t.Fatal(err)
		}
		before(t, r.tr, "fence shut", "vip drop")
		if open, _ := r.fence.state(); open {
			t.Fatal("fence still open after the drop")
		}
	})
	t.Run("open fails: VIP dropped", func(t *testing.T) {
		r := newRig(t)
		r.serve(t)
		r.fence.mu.Lock()
		r.fence.openErr = errors.New("VIP fence table gone")
		r.fence.mu.Unlock()
		r.grantLease(r.node.State().Epoch)
		r.o.acquireOrRenew(context.Background(), r.clock.now())
		if r.vip.isHeld() {
			t.Fatalf("VIP kept after the fence could not be opened; trace:\n%s", r.tr)
		}
	})
	t.Run("journal claims a fence this node lacks: no VIP", func(t *testing.T) {
		r := newRig(t)
		r.o.d.Fence = nil // restarted with vip.fence off; the old MemberJoined still says fenced
		r.node.apply(t, ev(t, r.node.State(), fsm.MemberJoined, "db1", fsm.MemberData{Member: fsm.Member{ID: "db1", Role: fsm.RoleDatabase, Priority: 100, KernelFence: true}}))
		assign(t, r.node, "db1", false)
		r.healthy(true)
		r.grantLease(r.node.State().Epoch)
		r.settle(t)
		r.o.acquireOrRenew(context.Background(), r.clock.now())
		if r.vip.isHeld() {
			t.Fatalf("VIP taken while the journal claims a fence this node does not have; trace:\n%s", r.tr)
		}
	})
	t.Run("a late promise still moves the fence with the lease", func(t *testing.T) {
		r := newRig(t)
		r.serve(t)
		_, before := r.fence.state()
		r.tr.reset()
		r.clock.advance(100 * time.Millisecond)
		sent := r.clock.now()
		r.renew.slow = func() { r.clock.advance(r.o.delta + 10*time.Millisecond) } // later than δ
		if r.o.renewOne(context.Background(), "db2", r.node.State().Epoch, sent) {
			t.Fatal("a late answer reported a timely quorum")
		}
		if r.tr.index("vip renew") >= 0 {
			t.Fatalf("valid_lft renewed on a late answer; trace:\n%s", r.tr)
		}
		open, d := r.fence.state()
		r.o.mu.Lock()
		want := r.o.lease.Expiry() - r.o.now() - fenceGuard
		r.o.mu.Unlock()
		if r.tr.index("fence open") < 0 || !open || d != want {
			t.Fatalf("fence open=%v for %v (before %v), want reopened for %v; trace:\n%s", open, d, before, want, r.tr)
		}
	})
	t.Run("too little lease left: nothing renewed", func(t *testing.T) {
		r := newRig(t)
		r.serve(t)
		r.tr.reset()
		sent := r.clock.now()
		r.clock.advance(r.o.cfg.Lease - fenceGuard - minFenceOpen + time.Millisecond)
		r.o.acquireOrRenew(context.Background(), sent)
		if r.tr.index("fence open") >= 0 || r.tr.index("vip renew") >= 0 {
			t.Fatalf("renewed with %v of lease left; trace:\n%s", r.o.cfg.Lease-(r.clock.now()-sent), r.tr)
		}
	})
}

// TestVIPFenceLost: when the fence's table disappears the VIP is dropped at once and not
// taken again until the table is reinstalled.
func TestVIPFenceLost(t *testing.T) {
	r := newRig(t)
	r.serve(t)
	r.fence.mu.Lock()
	r.fence.reinstall = 0
	r.fence.mu.Unlock()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.o.fenceLoop(ctx) }()
	<-r.fence.watching
	r.fence.gone <- "table netdev keepraft_eth0 deleted"
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.fence.mu.Lock()
		n := r.fence.reinstall
		r.fence.mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	before(t, r.tr, "vip drop", "fence reinstall")
	if r.vip.isHeld() {
		t.Fatalf("VIP held after its fence was lost; trace:\n%s", r.tr)
	}
	r.o.mu.Lock()
	lost := r.o.fenceLost
	r.o.mu.Unlock()
	if lost {
		t.Fatal("fence still marked lost after the reinstall")
	}
	r.grantLease(r.node.State().Epoch)
	r.o.acquireOrRenew(context.Background(), r.clock.now())
	if !r.vip.isHeld() {
		t.Fatalf("VIP not taken again after the fence was reinstalled; trace:\n%s", r.tr)
	}
}

// TestVIPFenceBrokenReleases: an owner whose VIP fence cannot be reinstalled serves no
// VIP; past fenceGiveUp it releases ownership so the other node can serve.
func TestVIPFenceBrokenReleases(t *testing.T) {
	r := newRig(t)
	r.serve(t)
	r.fence.mu.Lock()
	r.fence.reinstErr = errors.New("netlink: operation not supported")
	r.fence.mu.Unlock()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.o.fenceLoop(ctx) }()
	<-r.fence.watching
	r.fence.gone <- "table netdev keepraft_eth0 deleted"
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		r.fence.mu.Lock()
		n := r.fence.reinstall
		r.fence.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no reinstall attempt within 5s")
		}
	}
	r.o.reconcile(context.Background())
	if r.tr.index("propose OwnerReleased") >= 0 {
		t.Fatalf("released at once, before fenceGiveUp; trace:\n%s", r.tr)
	}
	r.clock.advance(fenceGiveUp)
	r.grantLease(r.node.State().Epoch)
	r.o.reconcile(context.Background())
	r.o.bg.Wait()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r.tr.index("propose OwnerReleased") < 0 || r.node.State().Phase != fsm.PhaseReleased || !r.db.isReadOnly() {
		t.Fatalf("phase %s read_only %v: the owner with a broken fence kept ownership; trace:\n%s", r.node.State().Phase, r.db.isReadOnly(), r.tr)
	}
}

// TestPromotionAsksForTheLeaseAtOnce: starting a promotion wakes the renew loop, so the
// lease is gathered during the catch-up instead of at the next tick (lease/3 later).
func TestPromotionAsksForTheLeaseAtOnce(t *testing.T) {
	r := newRig(t)
	r.node.apply(t, ev(t, r.node.State(), fsm.OwnerAssigned, "witness", fsm.AssignData{Owner: "db1", Reason: "test", CatchupTarget: "1-1-10"}))
	r.healthy(true)
	woken := false
	r.db.onCatchUp = func() { // inside the promotion, before it finishes
		select {
		case <-r.o.renewKick:
			woken = true
		default:
		}
	}
	r.o.reconcile(context.Background())
	r.o.bg.Wait()
	if r.tr.index("mysql catch-up") < 0 {
		t.Fatalf("setup: no catch-up; trace:\n%s", r.tr)
	}
	if !woken {
		t.Fatal("the promotion did not wake the renew loop before it finished")
	}
}

// TestWatchdogNotDisarmedWhileWritesOpen: a disarm from a fence that lost the race with a
// reopening must not leave open writes without a watchdog.
func TestWatchdogNotDisarmedWhileWritesOpen(t *testing.T) {
	r := newRig(t)
	r.serve(t)
	r.o.disarmWatchdog() // a late disarm, writes open again
	if armed, _ := r.wd.state(); !armed {
		t.Fatalf("watchdog disarmed while writes are open; trace:\n%s", r.tr)
	}
}

// TestFrozenWritableServerKilled: an owner's mysqld frozen by SIGSTOP cannot be fenced and
// would resume writable beside the next owner, so the releasing owner kills it and then
// releases; a read-only server that is frozen is left alone.
func TestFrozenWritableServerKilled(t *testing.T) {
	t.Run("writable owner frozen: killed, then released", func(t *testing.T) {
		r := newRig(t)
		r.serve(t)
		r.db.mu.Lock()
		r.db.process, r.db.fenceErr = probe.ProcessStopped, errors.New("fence: context deadline exceeded")
		r.db.mu.Unlock()
		r.node.apply(t, ev(t, r.node.State(), fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: "db1", Reason: "owner db1 unhealthy"}))
		r.settle(t)
		r.o.reconcile(context.Background())
		r.o.bg.Wait()
		before(t, r.tr, "mysql kill stopped", "propose OwnerReleased")
		rel := r.node.State().LastRelease
		if rel == nil || rel.Owner != "db1" || rel.Fenced {
			t.Fatalf("release %+v, want db1's, not fenced (the server was killed, not fenced)", rel)
		}
	})
	t.Run("read-only standby frozen: left alone", func(t *testing.T) {
		r := newRig(t)
		assign(t, r.node, "db2", true)
		r.healthy(true)
		r.db.mu.Lock()
		r.db.process, r.db.fenceErr = probe.ProcessStopped, errors.New("fence: context deadline exceeded")
		r.db.mu.Unlock()
		r.o.fence(context.Background(), "test")
		if r.tr.index("mysql kill stopped") >= 0 {
			t.Fatalf("a frozen read-only server was killed; trace:\n%s", r.tr)
		}
	})
}

// TestHoldingChangedSignalsEachFlip: the VRRP speaker sleeps on HoldingChanged, so every
// acquire and drop of the VIP must leave a value in it, and a renewal (no flip) none.
func TestHoldingChangedSignalsEachFlip(t *testing.T) {
	r := newRig(t)
	ch := r.o.HoldingChanged()
	pending := func() bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	if pending() {
		t.Fatal("a value before any change")
	}
	r.serve(t)
	if !r.o.Holding() || !pending() {
		t.Fatalf("after the VIP was acquired: Holding()=%v, no value on HoldingChanged", r.o.Holding())
	}
	r.grantLease(r.node.State().Epoch)
	r.o.acquireOrRenew(t.Context(), r.clock.now())
	if pending() {
		t.Error("a renewal while holding signalled a change")
	}
	if err := r.o.dropVIP(t.Context(), "test"); err != nil {
		t.Fatal(err)
	}
	if r.o.Holding() || !pending() {
		t.Fatalf("after the drop: Holding()=%v, no value on HoldingChanged", r.o.Holding())
	}
}

// TestRenewLoopSleepsUntilOwner: the renew loop of a node that owns nothing does not tick
// (it read the journal every lease/3 before); once the runtime serves, it renews every
// lease/3 without waiting for a tick it no longer has.
func TestRenewLoopSleepsUntilOwner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- r.o.renewLoop(ctx) }()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		r.node.mu.Lock()
		reads := r.node.reads
		r.node.mu.Unlock()
		r.renew.mu.Lock()
		calls := r.renew.calls
		r.renew.mu.Unlock()
		if reads > 2 || calls != 0 {
			t.Errorf("not the owner for 10 s: %d journal reads, %d renewals; want at most 2 and none", reads, calls)
		}
		r.serve(t) // enters Serving through reconcile, which kicks the loop
		r.renew.mu.Lock()
		calls = r.renew.calls
		r.renew.mu.Unlock()
		time.Sleep(time.Second)
		synctest.Wait()
		r.renew.mu.Lock()
		calls = r.renew.calls - calls
		r.renew.mu.Unlock()
		// Two peers, every 500 ms/3 for a second: 12, and one round from the kick.
		if calls < 12 {
			t.Errorf("serving for 1 s: %d renewals, want at least 12", calls)
		}
		// While renewing, journal changes add no rounds of their own.
		r.renew.mu.Lock()
		calls = r.renew.calls
		r.renew.mu.Unlock()
		for range 10 {
			r.node.apply(t, ev(t, r.node.State(), fsm.HealthChanged, "db2", fsm.HealthData{Node: "db2", Healthy: true, GTID: "1-1-10"}))
			time.Sleep(100 * time.Millisecond)
		}
		synctest.Wait()
		r.renew.mu.Lock()
		calls = r.renew.calls - calls
		r.renew.mu.Unlock()
		if calls > 14 {
			t.Errorf("serving for 1 s with 10 journal changes: %d renewals, want the pace's 12 (a round per change is work done twice)", calls)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestHungStartReplicaBounded: a START REPLICA that hangs (the server holds its replication
// lock) ends after replCmdTimeout, so the sweep that issued it returns and the runtime's
// loop goes on; it is tried again later. Run on the bubble's clock.
func TestHungStartReplicaBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		assign(t, r.node, "db2", true) // db1 is the standby
		r.db.replErr = probe.ReplicaStatus{LastError: "Got fatal error 1236 from master when reading data from binary log"}
		r.db.ioDown, r.db.startHangs = true, true
		r.healthy(true)
		r.settle(t)
		start := time.Now()
		r.o.sweep(context.Background()) // the bubble reports a deadlock if nothing bounds it
		if took := time.Since(start); took != replCmdTimeout {
			t.Fatalf("sweep returned after %v, want replCmdTimeout %v; trace:\n%s", took, replCmdTimeout, r.tr)
		}
		if r.tr.index("mysql start replication: context deadline exceeded") < 0 {
			t.Fatalf("START REPLICA not bounded by a deadline; trace:\n%s", r.tr)
		}
	})
}

// TestPromotionRetriedAfterTransientLag: the check right before STOP REPLICA finds the
// node's state not caught up for a moment (its view of the leader is a poll too old, a new
// leader not polled yet) while the journal still names it the owner of the epoch. The
// promotion is tried again once it is caught up; it must not end without a result and leave
// the runtime promoting with no writer until the epoch changes.
func TestPromotionRetriedAfterTransientLag(t *testing.T) {
	r := newRig(t)
	assign(t, r.node, "db2", true)
	r.node.apply(t, ev(t, r.node.State(), fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: "db2"}))
	assign(t, r.node, "db1", false) // a handover from db2: the promotion stops the channel
	epoch := r.node.State().Epoch
	r.healthy(true)
	r.grantLease(epoch)
	r.db.mu.Lock()
	r.db.onRelay = func() { r.node.setCaughtUp(false) } // lags right before the check
	r.db.mu.Unlock()
	r.settle(t)
	if m, _ := r.o.Machine(); m != Promoting || r.tr.index("mysql stop replication") >= 0 {
		t.Fatalf("setup: runtime %v, want promoting without STOP REPLICA; trace:\n%s", m, r.tr)
	}
	r.db.mu.Lock()
	r.db.onRelay = nil
	r.db.mu.Unlock()
	r.node.setCaughtUp(true)
	r.grantLease(epoch)
	r.settle(t)
	r.settle(t)
	if m, _ := r.o.Machine(); m != Serving || r.tr.index("mysql stop replication") < 0 {
		t.Fatalf("runtime %v after the node caught up again, want serving with the channel stopped; trace:\n%s", m, r.tr)
	}
}
