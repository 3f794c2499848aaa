package main

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
)

// deadAddr is an address nothing listens on.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

func TestStatusExitCodes(t *testing.T) {
	tests := []struct {
		name   string
		mod    func(*api.Status)
		code   int
		banner string
		lines  []string
	}{
		{"healthy", func(*api.Status) {}, 0, "HEALTHY: db1 serves (epoch 4); 3/3 voters reachable", nil},
		{"no writer", func(s *api.Status) {
			s.Phase, s.NoWriterSince = fsm.PhaseReleased, t0.Add(-time.Minute)
			s.Members[0].ReadOnly, s.Members[0].Owner = ptr(true), false
		}, 2, "CRITICAL: NO WRITER since 2026-03-01T09:59:00.000Z", []string{"phase released (owner db1, epoch 4)"}},
		{"non-owner writable", func(s *api.Status) { s.Members[1].ReadOnly = ptr(false) }, 2, "CRITICAL: NON-OWNER WRITABLE db2", nil},
		{"voter unreachable, values stale", func(s *api.Status) {
			s.Members[1].Reachable, s.Members[1].Stale, s.Members[1].RaftState = false, true, "unreachable"
		}, 1, "DEGRADED: VOTER UNREACHABLE db2", []string{"70 (stale)", "true (stale)", "from db1 io=yes sql=yes lag=0s (stale)"}},
		{"rejoin blocked", func(s *api.Status) { s.Members[1].RejoinBlocked, s.Members[1].RejoinExtra = true, "0-2-3" }, 1, "DEGRADED: REJOIN BLOCKED db2", []string{"0-2-3"}},
		{"paused", func(s *api.Status) { s.Paused = true }, 1, "DEGRADED: PAUSED", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			owner := newFake(t, api.Status{Node: "db1", Local: api.LocalStatus{Holding: true, LeaseValid: true, LeaseLeftMS: 450, Promoted: true, MySQLHealthy: ptr(true), ReadOnly: ptr(false), GTID: "0-1-70", Replication: "not configured", VIPs: []string{"10.0.0.100/24"}}})
			st := clusterStatus(owner.addr(), "")
			tt.mod(&st)
			if st.Phase != fsm.PhaseActive {
				owner.status.Local.Promoted, owner.status.Local.Holding = false, false
			}
			w := newFake(t, st)
			out, code, _ := raftctl(t, "--addr", w.addr(), "status")
			if code != tt.code {
				t.Errorf("exit code %d, want %d\n%s", code, tt.code, out)
			}
			if first, _, _ := strings.Cut(out, "\n"); !strings.HasPrefix(first, tt.banner) {
				t.Errorf("first line %q, want %q", first, tt.banner)
			}
			for _, l := range tt.lines {
				if !strings.Contains(out, l) {
					t.Errorf("output lacks %q:\n%s", l, out)
				}
			}
			// The owner's block comes from the owner's API although --addr is the witness.
			want := "owner (db1): holding VIP true, lease valid true (450 ms left)"
			if st.Phase != fsm.PhaseActive {
				want = "last owner (db1): holding VIP false"
			}
			if !strings.Contains(out, want) || !strings.Contains(out, "gtid 0-1-70") {
				t.Errorf("no owner block from db1's API:\n%s", out)
			}
		})
	}
	t.Run("no address answers", func(t *testing.T) {
		_, code, errOut := raftctl(t, "--addr", deadAddr(t), "status")
		if code != 3 || !strings.Contains(errOut, "connection refused") {
			t.Fatalf("exit %d, stderr %q; want 3 and the reason", code, errOut)
		}
	})
}

// TestStatusControlPlane: status says whether the control plane is plaintext.
func TestStatusControlPlane(t *testing.T) {
	tests := []struct {
		plane string
		want  string
	}{
		{"plaintext", "control plane: plaintext\n"},
		{"mutual TLS", "control plane: mutual TLS\n"},
	}
	for _, tt := range tests {
		t.Run(tt.plane, func(t *testing.T) {
			owner := newFake(t, api.Status{Node: "db1", Local: api.LocalStatus{Holding: true, LeaseValid: true, Promoted: true}})
			st := clusterStatus(owner.addr(), "")
			st.ControlPlane = tt.plane
			w := newFake(t, st)
			out, _, errOut := raftctl(t, "--addr", w.addr(), "status")
			if !strings.Contains(out, tt.want) {
				t.Fatalf("status lacks %q:\n%s%s", tt.want, out, errOut)
			}
		})
	}
}

func TestStatusJSON(t *testing.T) {
	owner := newFake(t, api.Status{Node: "db1", Local: api.LocalStatus{Holding: true, Promoted: true, GTID: "0-1-70"}})
	st := clusterStatus(owner.addr(), "")
	st.Members[1].Reachable, st.Members[1].Stale = false, true
	w := newFake(t, st)
	out, code, _ := raftctl(t, "--addr", w.addr(), "-o", "json", "status")
	if code != 1 {
		t.Errorf("exit %d, want 1 (db2 unreachable)", code)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	h, _ := m["health"].(map[string]any)
	if h["exit_code"] != float64(1) || h["state"] != "degraded" {
		t.Errorf("health = %v", h)
	}
	ms, _ := m["members"].([]any)
	db2, _ := ms[1].(map[string]any)
	rep, _ := db2["replica"].(map[string]any)
	if db2["stale"] != true || db2["last_contact_ms"] != float64(30) || db2["read_only"] != true || db2["gtid"] != "0-1-70" || rep["io_running"] != true || rep["lag_seconds"] != float64(0) {
		t.Errorf("db2 = %v, want typed values", db2)
	}
	o, _ := m["owner_status"].(map[string]any)
	if l, _ := o["local"].(map[string]any); l["gtid"] != "0-1-70" || o["node"] != "db1" {
		t.Errorf("owner_status = %v", o)
	}
	if m["owner"] != "db1" || m["epoch"] != float64(4) {
		t.Errorf("status fields not at the top level: %v", m)
	}
}

func TestAddrList(t *testing.T) {
	w := newFake(t, clusterStatus("", ""))
	w.status.Owner, w.status.Members[0].Owner = "", false
	w.status.Phase = fsm.PhaseNone
	dead := deadAddr(t)
	t.Run("flag", func(t *testing.T) {
		out, _, errOut := raftctl(t, "--addr", dead+", "+w.addr(), "members")
		if !strings.Contains(out, "db2") {
			t.Fatalf("members through the second address: %q %q", out, errOut)
		}
	})
	t.Run("env", func(t *testing.T) {
		t.Setenv("KEEPRAFT_ADDR", dead+","+w.addr())
		out, _, errOut := raftctl(t, "journal")
		if !strings.HasPrefix(out, "INDEX") {
			t.Fatalf("journal through the second address: %q %q", out, errOut)
		}
	})
	t.Run("an answer is not skipped", func(t *testing.T) {
		other := newFake(t, clusterStatus("", ""))
		_, code, errOut := raftctl(t, "--addr", w.addr()+","+other.addr(), "--token-file", "/nonexistent", "switchover", "--no-wait")
		if code == 0 || !strings.Contains(errOut, "token-file") || other.postCount() != 0 {
			t.Fatalf("exit %d %q; the error must not move on", code, errOut)
		}
	})
	t.Run("a verb moves on only when no connection was made", func(t *testing.T) {
		out, code, errOut := raftctl(t, "--addr", dead+","+w.addr(), "switchover", "--no-wait")
		if code != 0 || w.postCount() != 1 || !strings.Contains(out, "--addr "+w.addr()+","+dead+" journal --since 0 --follow") {
			t.Fatalf("exit %d posts %d out %q err %q", code, w.postCount(), out, errOut)
		}
	})
}

func journalFake(t *testing.T) *fakeAPI {
	f := newFake(t, clusterStatus("", ""))
	f.add(0, fsm.HealthChanged, "db1", 1, fsm.HealthData{Node: "db1", Healthy: true})
	f.add(10, fsm.HealthChanged, "db2", 1, fsm.HealthData{Node: "db2", Healthy: false, Detail: "refused"})
	f.add(20, fsm.SemiSyncChanged, "db1", 1, fsm.SemiSyncData{Node: "db1", Status: "ON"})
	f.add(30, fsm.MaintenanceChanged, "witness", 1, fsm.MaintenanceData{Node: "db2", On: true})
	return f
}

func indexes(out string) []string {
	var idx []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		idx = append(idx, strings.Fields(l)[0])
	}
	return idx
}

func TestJournalFilters(t *testing.T) {
	f := journalFake(t)
	tests := []struct {
		args []string
		want string
	}{
		{nil, "1 2 3 4"},
		{[]string{"--type", "HealthChanged"}, "1 2"},
		{[]string{"--type", "SemiSyncChanged,MaintenanceChanged", "--type", "healthchanged"}, "1 2 3 4"},
		{[]string{"--node", "db2"}, "2 4"},
		{[]string{"--node", "witness"}, "4"},
		{[]string{"--node", "db1", "--type", "HealthChanged", "--since", "0"}, "1"},
		{[]string{"--since", "2", "--node", "db2"}, "4"},
	}
	for _, tt := range tests {
		out, code, errOut := raftctl(t, append([]string{"--addr", f.addr(), "journal"}, tt.args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d %s", tt.args, code, errOut)
		}
		if got := strings.Join(indexes(out), " "); got != tt.want {
			t.Errorf("%v: indexes %q, want %q\n%s", tt.args, got, tt.want, out)
		}
	}
	if out, _, _ := raftctl(t, "--addr", f.addr(), "journal"); !strings.Contains(out, "2026-03-01T10:00:00.010Z") {
		t.Errorf("no RFC 3339 time with ms:\n%s", out)
	}
	_, code, errOut := raftctl(t, "--addr", f.addr(), "journal", "--type", "MaintenanceSet")
	if code == 0 || !strings.Contains(errOut, "valid: Bootstrapped") || !strings.Contains(errOut, "MaintenanceChanged") {
		t.Errorf("unknown type: exit %d %q", code, errOut)
	}
	out, _, _ := raftctl(t, "--addr", f.addr(), "-o", "json", "journal", "--node", "db2")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("json: %q", out)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["time"] != "2026-03-01T10:00:00.010Z" || rec["index"] != float64(2) {
		t.Errorf("json record %v, want time and index", rec)
	}
}

func TestJournalFollowFilters(t *testing.T) {
	f := journalFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out string
	done := make(chan struct{})
	go func() {
		defer close(done)
		out, _, _ = raftctlCtx(ctx, t, "--addr", f.addr(), "journal", "--follow", "--type", "OwnerPromoted")
	}()
	time.Sleep(100 * time.Millisecond)
	f.add(40, fsm.HealthChanged, "db1", 1, fsm.HealthData{Node: "db1", Healthy: false})
	f.add(50, fsm.OwnerPromoted, "db2", 2, fsm.PromotedData{Owner: "db2", Reached: true})
	time.Sleep(200 * time.Millisecond)
	cancel()
	<-done
	if got := strings.Join(indexes(out), " "); got != "6" {
		t.Errorf("followed %q, want only the promotion (6):\n%s", got, out)
	}
}

func TestHistoryCmd(t *testing.T) {
	f := newFake(t, clusterStatus("", ""))
	f.add(0, fsm.OwnerAssigned, "witness", 0, fsm.AssignData{Owner: "db1", Reason: "initial assignment"})
	f.add(60, fsm.OwnerPromoted, "db1", 1, fsm.PromotedData{Owner: "db1", Reached: true})
	f.add(1000, fsm.OwnerRevoked, "witness", 1, fsm.RevokeData{Owner: "db1", Reason: "owner db1 unreachable: no lease renewal seen by any reachable voter"})
	f.add(2000, fsm.OwnerAssigned, "witness", 1, fsm.AssignData{Owner: "db2", Reason: "db1 revoked and its lease expired", Loss: `loss unknown after "0-1-9": db1 never released epoch 1`})
	f.add(2142, fsm.OwnerPromoted, "db2", 2, fsm.PromotedData{Owner: "db2", Reached: true, Target: "", WaitedMS: 0})
	out, code, errOut := raftctl(t, "--addr", f.addr(), "history")
	if code != 0 {
		t.Fatalf("exit %d %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("history:\n%s", out)
	}
	for _, want := range []string{"2026-03-01T10:00:02.142Z", "db1 → db2", "failover", "1142 ms", "owner db1 unreachable", `loss unknown after "0-1-9"`} {
		if !strings.Contains(lines[2], want) {
			t.Errorf("line %q lacks %q", lines[2], want)
		}
	}
	out, _, _ = raftctl(t, "--addr", f.addr(), "-o", "json", "history", "--last", "1")
	var cs []map[string]any
	if err := json.Unmarshal([]byte(out), &cs); err != nil || len(cs) != 1 {
		t.Fatalf("json history %v: %s", err, out)
	}
	if cs[0]["duration_ms"] != float64(1142) || cs[0]["from"] != "db1" || cs[0]["time"] != "2026-03-01T10:00:02.142Z" {
		t.Errorf("json change %v", cs[0])
	}
}
