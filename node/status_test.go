package node

import (
	"context"
	"testing"
	"time"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
)

func TestWriterLostAt(t *testing.T) {
	at := func(s int) time.Time { return time.Date(2026, 3, 1, 10, 0, s, 0, time.UTC) }
	rec := func(i int, typ fsm.Type, res fsm.Result) fsm.Record {
		return fsm.Record{Index: uint64(i), Result: res, Event: fsm.Event{Type: typ, At: at(i)}}
	}
	ok := fsm.ResultApplied
	tests := []struct {
		name     string
		recs     []fsm.Record
		complete bool
		want     time.Time
		found    bool
	}{
		{"revoked after a promotion", []fsm.Record{rec(1, fsm.OwnerPromoted, ok), rec(2, fsm.HealthChanged, ok), rec(3, fsm.OwnerRevoked, ok), rec(4, fsm.OwnerReleased, ok), rec(5, fsm.OwnerAssigned, ok)}, false, at(3), true},
		{"released after a promotion", []fsm.Record{rec(1, fsm.OwnerPromoted, ok), rec(4, fsm.OwnerReleased, ok), rec(5, fsm.OwnerAssigned, ok)}, false, at(4), true},
		{"a stale revoke does not count", []fsm.Record{rec(1, fsm.OwnerPromoted, ok), rec(2, fsm.OwnerRevoked, fsm.ResultStale), rec(4, fsm.OwnerReleased, ok)}, false, at(4), true},
		{"the last promotion counts", []fsm.Record{rec(1, fsm.OwnerPromoted, ok), rec(2, fsm.OwnerReleased, ok), rec(3, fsm.OwnerPromoted, ok), rec(6, fsm.OwnerRevoked, ok)}, false, at(6), true},
		{"a stale promotion does not count", []fsm.Record{rec(1, fsm.OwnerPromoted, ok), rec(2, fsm.OwnerReleased, ok), rec(3, fsm.OwnerPromoted, fsm.ResultStale), rec(6, fsm.OwnerRevoked, ok)}, false, at(2), true},
		{"no promotion in a partial window", []fsm.Record{rec(7, fsm.OwnerRevoked, ok), rec(8, fsm.OwnerReleased, ok)}, false, time.Time{}, false},
		{"never promoted since the start", []fsm.Record{rec(1, fsm.Bootstrapped, ok), rec(2, fsm.HealthChanged, ok), rec(3, fsm.OwnerAssigned, ok)}, true, at(1), true},
		{"trimmed journal without a promotion", []fsm.Record{rec(9, fsm.HealthChanged, ok)}, true, time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found := writerLostAt(tt.recs, tt.complete)
			if found != tt.found || !got.Equal(tt.want) {
				t.Fatalf("writerLostAt = %v, %v; want %v, %v", got, found, tt.want, tt.found)
			}
		})
	}
}

func TestFillPolled(t *testing.T) {
	ro := true
	rep := api.NodeReport{ReadOnly: &ro, GTID: "0-1-9", Replication: "from db1 io=yes sql=yes lag=2s"}
	tests := []struct {
		name      string
		peer      api.Peer
		stale     bool
		contactMS int64 // -1: null
	}{
		{"fresh", api.Peer{Report: rep, OK: true, At: 9 * time.Second}, false, 1000},
		{"unreachable keeps the last values, stale", api.Peer{Report: rep, OK: false, At: 4 * time.Second}, true, 6000},
		{"never answered", api.Peer{OK: false, Err: "refused"}, true, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m api.MemberStatus
			fillPolled(&m, tt.peer, 10*time.Second)
			if m.Stale != tt.stale {
				t.Errorf("stale = %v, want %v", m.Stale, tt.stale)
			}
			if tt.contactMS < 0 {
				if m.LastContactMS != nil || m.ReadOnly != nil || m.Replica != nil {
					t.Errorf("never answered: got contact %v read_only %v replica %v, want none", m.LastContactMS, m.ReadOnly, m.Replica)
				}
				return
			}
			if m.LastContactMS == nil || *m.LastContactMS != tt.contactMS {
				t.Errorf("last contact = %v, want %d ms", m.LastContactMS, tt.contactMS)
			}
			if m.ReadOnly == nil || !*m.ReadOnly || m.GTID != "0-1-9" {
				t.Errorf("read_only %v gtid %q, want true 0-1-9", m.ReadOnly, m.GTID)
			}
			if m.Replica == nil || !m.Replica.IORunning || m.Replica.LagSeconds == nil || *m.Replica.LagSeconds != 2 {
				t.Errorf("replica = %+v, want io running, lag 2", m.Replica)
			}
		})
	}
}

// TestStatusTypedFields: GET /v1/status of a serving in-process cluster, asked of the
// witness, carries each member's read_only, GTID and last contact as typed values; a
// stopped member's values turn stale but stay.
func TestStatusTypedFields(t *testing.T) {
	if testing.Short() {
		t.Skip("in-process cluster runs for several seconds")
	}
	c := newMemCluster(t)
	for _, id := range memIDs {
		c.start(id)
	}
	owner := c.waitServing("db1", 15*time.Second)
	cl := api.NewClient("", nil)
	addr := c.cfgs["witness"].Cluster.APIAddr
	get := func() api.Status {
		t.Helper()
		st, err := cl.Status(context.Background(), addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	byID := func(st api.Status) map[string]api.MemberStatus {
		out := map[string]api.MemberStatus{}
		for _, m := range st.Members {
			out[m.ID] = m
		}
		return out
	}
	deadline := time.Now().Add(5 * time.Second)
	var ms map[string]api.MemberStatus
	for {
		st := get()
		ms = byID(st)
		if !st.NoWriterSince.IsZero() {
			t.Fatalf("no_writer_since = %v while %s serves", st.NoWriterSince, owner)
		}
		// The poll may carry a probe from before the promotion opened writes.
		settled := ms["db1"].ReadOnly != nil && !*ms["db1"].ReadOnly && ms["db2"].ReadOnly != nil
		if settled || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for id, wantRO := range map[string]bool{"db1": false, "db2": true} {
		m := ms[id]
		if m.ReadOnly == nil || *m.ReadOnly != wantRO || m.GTID != "0-1-1" || m.Stale || m.LastContactMS == nil {
			t.Errorf("%s: read_only %v gtid %q stale %v contact %v; want read_only %v, gtid 0-1-1, fresh, a contact", id, m.ReadOnly, m.GTID, m.Stale, m.LastContactMS, wantRO)
		}
		if m.Replica == nil || m.Replica.Configured {
			t.Errorf("%s: replica %+v, want a typed channel that is not configured", id, m.Replica)
		}
	}
	if w := ms["witness"]; w.LastContactMS == nil || *w.LastContactMS != 0 || w.ReadOnly != nil {
		t.Errorf("witness (self): contact %v read_only %v, want 0 ms and none", w.LastContactMS, w.ReadOnly)
	}

	c.stop("db2")
	deadline = time.Now().Add(5 * time.Second)
	for {
		m := byID(get())["db2"]
		if m.Stale {
			if m.ReadOnly == nil || !*m.ReadOnly || m.GTID != "0-1-1" {
				t.Errorf("stale db2 lost its last values: read_only %v gtid %q", m.ReadOnly, m.GTID)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("db2 stopped but its status never turned stale")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
