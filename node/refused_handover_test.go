package node

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
)

// TestHandoverWithoutCandidateRefused: over the real API of an in-process cluster, a
// switchover or a maintenance that would leave no eligible owner (the only other database
// node's MySQL is down, or it is in maintenance) is refused with 409, nothing is
// journaled, and the owner keeps serving in its epoch.
func TestHandoverWithoutCandidateRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("in-process cluster runs for several seconds")
	}
	c := newMemCluster(t)
	for _, id := range memIDs {
		c.start(id)
	}
	owner := c.waitServing("db1", formWithin)
	peer := otherDB(owner)
	client := api.NewClient("t0ken", &http.Client{Timeout: 5 * time.Second})
	leader := c.waitLeader("", failoverWithin)
	addr := c.cfgs[leader].Cluster.APIAddr

	// The peer's MySQL goes down; wait until the cluster has journaled it unhealthy.
	c.w.mu.Lock()
	c.w.up[peer] = false
	c.w.mu.Unlock()
	deadline := time.Now().Add(failoverWithin)
	for {
		m, ok := c.nodes[leader].State().Members[peer]
		if ok && m.HealthKnown && !m.Healthy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never journaled unhealthy", peer)
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := c.nodes[leader].State()

	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"switchover to the dead peer", func(ctx context.Context) error {
			_, err := client.Switchover(ctx, addr, fsm.SwitchoverData{To: peer}, 0)
			return err
		}},
		{"switchover to anyone", func(ctx context.Context) error {
			_, err := client.Switchover(ctx, addr, fsm.SwitchoverData{}, 0)
			return err
		}},
		{"maintenance on the owner", func(ctx context.Context) error {
			_, err := client.Maintenance(ctx, addr, fsm.MaintenanceData{Node: owner, On: true}, 0)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := tt.call(ctx)
			var ae *api.Error
			if !errors.As(err, &ae) || ae.Code != http.StatusConflict {
				t.Fatalf("got %v, want HTTP 409", err)
			}
		})
	}
	time.Sleep(500 * time.Millisecond) // a controller that acted on a request would have by now
	after := c.nodes[leader].State()
	if after.Owner != owner || after.Epoch != before.Epoch || after.Phase != fsm.PhaseActive || after.Switchover != nil {
		t.Fatalf("state moved: owner %s epoch %d phase %s switchover %+v, want %s still active in epoch %d", after.Owner, after.Epoch, after.Phase, after.Switchover, owner, before.Epoch)
	}
	if m := after.Members[owner]; m.Maintenance {
		t.Fatalf("maintenance was applied to %s", owner)
	}
	c.waitServing(owner, failoverWithin)
	c.checkViolations()
}
