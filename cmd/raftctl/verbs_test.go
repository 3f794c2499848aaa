package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
)

// switchoverStory answers the switchover with its journal index and plays the handover
// after delay: release, assignment, then end(f) (a promotion or a failure).
func switchoverStory(delay time.Duration, end func(f *fakeAPI)) func(f *fakeAPI, path string, body []byte) (int, any) {
	return func(f *fakeAPI, path string, body []byte) (int, any) {
		var d fsm.SwitchoverData
		_ = json.Unmarshal(body, &d)
		idx := f.add(1000, fsm.SwitchoverRequested, "witness", 4, d)
		go func() {
			time.Sleep(delay)
			f.add(1050, fsm.OwnerReleased, "db1", 4, fsm.ReleaseData{Owner: "db1", Reason: "switchover requested", GTID: "0-1-70", Fenced: true})
			f.add(1060, fsm.OwnerAssigned, "witness", 4, fsm.AssignData{Owner: "db2", Reason: "switchover", CatchupTarget: "0-1-70"})
			if end != nil {
				end(f)
			}
		}()
		return 200, api.ProposeResponse{Index: idx, Result: fsm.ResultApplied}
	}
}

func promoted(f *fakeAPI) {
	f.add(1142, fsm.OwnerPromoted, "db2", 5, fsm.PromotedData{Owner: "db2", Reached: true, Target: "0-1-70", WaitedMS: 0})
}

func TestSwitchoverWaits(t *testing.T) {
	t.Run("promoted", func(t *testing.T) {
		f := newFake(t, clusterStatus("", ""))
		f.onPost = switchoverStory(50*time.Millisecond, promoted)
		out, code, errOut := raftctl(t, "--addr", f.addr(), "switchover", "--to", "db2")
		if code != 0 || !strings.Contains(out, "switchover: db1 → db2 in 142 ms (catch-up 0 ms, nothing missing)") {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
	})
	t.Run("json", func(t *testing.T) {
		f := newFake(t, clusterStatus("", ""))
		f.onPost = switchoverStory(0, promoted)
		out, code, _ := raftctl(t, "--addr", f.addr(), "-o", "json", "switchover")
		var res map[string]any
		if err := json.Unmarshal([]byte(out), &res); err != nil || code != 0 {
			t.Fatalf("exit %d %v: %s", code, err, out)
		}
		ch, _ := res["change"].(map[string]any)
		if res["done"] != true || ch["duration_ms"] != float64(142) || ch["to"] != "db2" {
			t.Errorf("json result %v", res)
		}
	})
	t.Run("promotion failed", func(t *testing.T) {
		f := newFake(t, clusterStatus("", ""))
		f.onPost = switchoverStory(0, func(f *fakeAPI) {
			f.add(9000, fsm.PromotionFailed, "witness", 5, fsm.PromotionFailedData{Owner: "db2", Reason: "promotion did not finish within catchup_timeout"})
		})
		_, code, errOut := raftctl(t, "--addr", f.addr(), "switchover")
		if code == 0 || !strings.Contains(errOut, "promotion of db2 failed in epoch 5") || !strings.Contains(errOut, "--addr "+f.addr()+" history") {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
	})
	t.Run("refused", func(t *testing.T) {
		f := newFake(t, clusterStatus("", ""))
		f.onPost = func(*fakeAPI, string, []byte) (int, any) {
			return 409, api.ErrorResponse{Error: "no eligible owner: db2 in maintenance"}
		}
		_, code, errOut := raftctl(t, "--addr", f.addr(), "switchover")
		if code == 0 || !strings.Contains(errOut, "db2 in maintenance") {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		f := newFake(t, clusterStatus("", ""))
		f.onPost = switchoverStory(0, nil) // never promoted
		start := time.Now()
		_, code, errOut := raftctl(t, "--addr", f.addr(), "switchover", "--wait-timeout", "400ms")
		if code == 0 || !strings.Contains(errOut, "still pending after 400ms: waiting for db2's promotion in epoch 5") || !strings.Contains(errOut, "raftctl --addr "+f.addr()+" journal --since 0 --follow") {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("timeout of 400ms took %v", d)
		}
	})
	t.Run("no wait", func(t *testing.T) {
		f := newFake(t, clusterStatus("", ""))
		f.onPost = switchoverStory(0, nil)
		out, code, _ := raftctl(t, "--addr", f.addr(), "switchover", "--no-wait")
		if code != 0 || !strings.Contains(out, "follow it with: raftctl --addr "+f.addr()+" journal --since 0 --follow") {
			t.Fatalf("exit %d: %s", code, out)
		}
	})
}

func TestMaintenance(t *testing.T) {
	handover := func(f *fakeAPI, path string, body []byte) (int, any) {
		var d fsm.MaintenanceData
		_ = json.Unmarshal(body, &d)
		idx := f.add(1000, fsm.MaintenanceChanged, "witness", 4, d)
		if d.Node == "db1" && d.On {
			go func() {
				time.Sleep(30 * time.Millisecond)
				f.add(1010, fsm.OwnerReleased, "db1", 4, fsm.ReleaseData{Owner: "db1", Reason: "maintenance", Fenced: true, GTID: "0-1-70"})
				f.add(1020, fsm.OwnerAssigned, "witness", 4, fsm.AssignData{Owner: "db2", Reason: "db1 released: maintenance", CatchupTarget: "0-1-70"})
				f.add(1200, fsm.OwnerPromoted, "db2", 5, fsm.PromotedData{Owner: "db2", Reached: true, Target: "0-1-70", WaitedMS: 3})
			}()
		}
		return 200, api.ProposeResponse{Index: idx, Result: fsm.ResultApplied}
	}
	tests := []struct {
		name  string
		args  []string
		mod   func(*api.Status)
		code  int
		posts int
		out   string
		err   string
	}{
		{"witness refused", []string{"witness", "on"}, nil, 1, 0, "", "witness has role witness"},
		{"unknown node", []string{"db9", "on"}, nil, 1, 0, "", `"db9" is not a member (members: db1, db2, witness)`},
		{"already on", []string{"db2", "on"}, func(s *api.Status) { s.Members[1].Maintenance = true }, 0, 0, "maintenance of db2 is already on: nothing changed", ""},
		{"already off", []string{"db2", "off"}, nil, 0, 0, "maintenance of db2 is already off: nothing changed", ""},
		{"not the owner", []string{"db2", "on"}, nil, 0, 1, "maintenance on for db2 applied (journal index 1)", ""},
		{"the owner hands over", []string{"db1", "on"}, nil, 0, 1, "handover: db1 → db2 in 200 ms (catch-up 3 ms, nothing missing)", ""},
		{"no wait", []string{"db1", "on", "--no-wait"}, nil, 0, 1, "it owns the VIP and hands over; follow it with: raftctl --addr ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := clusterStatus("", "")
			if tt.mod != nil {
				tt.mod(&st)
			}
			f := newFake(t, st)
			f.onPost = handover
			out, code, errOut := raftctl(t, append([]string{"--addr", f.addr(), "maintenance"}, tt.args...)...)
			if code != tt.code || f.postCount() != tt.posts {
				t.Errorf("exit %d posts %d, want %d and %d (%s %s)", code, f.postCount(), tt.code, tt.posts, out, errOut)
			}
			if !strings.Contains(out, tt.out) || !strings.Contains(errOut, tt.err) {
				t.Errorf("stdout %q stderr %q, want %q / %q", out, errOut, tt.out, tt.err)
			}
		})
	}
}
