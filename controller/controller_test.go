package controller

import (
	"testing"
	"time"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
)

func members(ids ...string) []fsm.Member {
	var ms []fsm.Member
	for _, id := range ids {
		ms = append(ms, fsm.Member{ID: id})
	}
	return ms
}

func testController(node Node) *Controller {
	return New(Config{Self: "witness", Members: members("db1", "db2", "witness"), Lease: 500 * time.Millisecond, CatchupTimeout: 5 * time.Second, KernelLease: time.Second}, node, zapNop())
}

func TestPromisesExpired(t *testing.T) {
	const s = time.Second
	c := testController(nil)
	// HandoverWait with the defaults: max(505ms, 166ms + 1s + 1.1s) ≈ 2.27 s.
	wait := fsm.HandoverWait(500*time.Millisecond, fsm.DefaultRho, 500*time.Millisecond/3, time.Second, KernelSlack)
	state := fsm.State{Owner: "db1", Epoch: 3, Phase: fsm.PhaseRevoked, PhaseIndex: 40}
	if got := c.HandoverWait(state, "db1"); got != wait {
		t.Fatalf("HandoverWait() = %v, want %v", got, wait)
	}
	now := 100 * s
	rep := func(applied uint64, grantAge time.Duration, uptime time.Duration) report {
		return report{r: api.NodeReport{Applied: applied, PromiseOwner: "db1", PromiseEpoch: 3, LastGrantAgeMS: grantAge.Milliseconds(), UptimeMS: uptime.Milliseconds()}, at: now}
	}
	tests := []struct {
		name string
		give map[string]report
		want bool
	}{
		{"majority applied, grants old", map[string]report{"witness": rep(40, wait+s, time.Hour), "db2": rep(41, wait+s, time.Hour)}, true},
		{"a grant too recent", map[string]report{"witness": rep(40, wait+s, time.Hour), "db2": rep(41, wait-100*time.Millisecond, time.Hour)}, false},
		{"revoke not applied by db2", map[string]report{"witness": rep(40, wait+s, time.Hour), "db2": rep(39, wait+s, time.Hour)}, false},
		{"db2 unreachable: no majority without the owner", map[string]report{"witness": rep(40, wait+s, time.Hour)}, false},
		{"owner's own report does not count", map[string]report{"witness": rep(40, wait+s, time.Hour), "db1": rep(40, wait+s, time.Hour)}, false},
		{"restarted voter counts as promising since boot", map[string]report{"witness": rep(40, wait+s, time.Hour), "db2": rep(41, wait+s, s)}, false},
		{"never granted", map[string]report{"witness": {r: api.NodeReport{Applied: 40, LastGrantAgeMS: -1, UptimeMS: 3600000}, at: now}, "db2": rep(40, wait+s, time.Hour)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.promisesExpired(state, tt.give, now); got != tt.want {
				t.Fatalf("promisesExpired = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestHandoverWaitWithKernelFence: an old owner whose VIPs are behind a kernel fence is
// waited for its lease only (505 ms + a jiffy's slack instead of 2.27 s); one without, or
// not known, for the VIP's kernel lifetime as well.
func TestHandoverWaitWithKernelFence(t *testing.T) {
	c := testController(nil)
	full := fsm.HandoverWait(500*time.Millisecond, fsm.DefaultRho, 500*time.Millisecond/3, time.Second, KernelSlack)
	fenced := 505*time.Millisecond + fsm.FenceSlack
	tests := []struct {
		name    string
		members map[string]*fsm.NodeState
		want    time.Duration
	}{
		{"fenced owner", map[string]*fsm.NodeState{"db1": {Member: fsm.Member{ID: "db1", KernelFence: true}}}, fenced},
		{"unfenced owner", map[string]*fsm.NodeState{"db1": {Member: fsm.Member{ID: "db1"}}, "db2": {Member: fsm.Member{ID: "db2", KernelFence: true}}}, full},
		{"owner unknown", map[string]*fsm.NodeState{}, full},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fsm.State{Owner: "db1", Members: tt.members}
			if got := c.HandoverWait(s, "db1"); got != tt.want {
				t.Fatalf("HandoverWait = %v, want %v", got, tt.want)
			}
		})
	}
}
