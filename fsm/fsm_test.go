package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func members() []Member {
	return []Member{
		{ID: "db1", Role: RoleDatabase, Priority: 100},
		{ID: "db2", Role: RoleDatabase, Priority: 90},
		{ID: "witness", Role: RoleWitness},
	}
}

func mustEvent(t *testing.T, typ Type, by string, epoch uint64, phase Phase, p any) Event {
	t.Helper()
	ev, err := NewEvent(typ, by, t0.Add(time.Duration(epoch)*time.Second), epoch, phase, p)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// history is a full failover story: bootstrap, db1 owner, db1's mysqld dies, fast path
// release, db2 assigned and promoted, plus a stale duplicate assignment and an unknown type.
func history(t *testing.T) [][]byte {
	t.Helper()
	evs := []Event{
		mustEvent(t, Bootstrapped, "db1", 0, "", BootstrappedData{Members: members()}),
		mustEvent(t, HealthChanged, "db1", 0, "", HealthData{Node: "db1", Healthy: true, GTID: "1-11-5"}),
		mustEvent(t, HealthChanged, "db2", 0, "", HealthData{Node: "db2", Healthy: true}),
		mustEvent(t, OwnerAssigned, "witness", 0, PhaseNone, AssignData{Owner: "db1", Reason: "initial assignment"}),
		mustEvent(t, OwnerPromoted, "db1", 1, PhaseAssigned, PromotedData{Owner: "db1", Reached: true}),
		mustEvent(t, HealthChanged, "db1", 1, "", HealthData{Node: "db1", Healthy: false, Detail: "connection refused"}),
		mustEvent(t, OwnerRevoked, "witness", 1, PhaseActive, RevokeData{Owner: "db1", Reason: "unhealthy"}),
		mustEvent(t, OwnerReleased, "db1", 1, PhaseRevoked, ReleaseData{Owner: "db1", Reason: "mysqld down", GTID: "1-11-9", Domain: 1}),
		mustEvent(t, OwnerAssigned, "witness", 1, PhaseReleased, AssignData{Owner: "db2", Reason: "db1 released"}),
		// A second leader's duplicate decision from the same epoch: must be stale.
		mustEvent(t, OwnerAssigned, "db2", 1, PhaseReleased, AssignData{Owner: "db1", Reason: "dup"}),
		{V: Version, Type: "FromTheFuture", At: t0, By: "db9"},
		{V: Version + 1, Type: HealthChanged, At: t0, By: "db9"},
		mustEvent(t, OwnerPromoted, "db2", 2, PhaseAssigned, PromotedData{Owner: "db2", Reached: true}),
	}
	var out [][]byte
	for _, ev := range evs {
		b, err := ev.Encode()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return append(out, []byte("{not json"))
}

func replay(t *testing.T, f *FSM, entries [][]byte) {
	t.Helper()
	for i, b := range entries {
		f.Apply(&raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: b})
	}
}

func TestReplayDeterminism(t *testing.T) {
	entries := history(t)
	a, b := New(0), New(0)
	replay(t, a, entries)
	replay(t, b, entries)
	if !reflect.DeepEqual(a.State(), b.State()) {
		t.Fatalf("same events, different states:\n%+v\n%+v", a.State(), b.State())
	}
	if !reflect.DeepEqual(a.Journal(0), b.Journal(0)) {
		t.Fatal("same events, different journals")
	}
	s := a.State()
	if s.Owner != "db2" || s.Epoch != 2 || s.Phase != PhaseActive {
		t.Fatalf("owner=%s epoch=%d phase=%s, want db2/2/active", s.Owner, s.Epoch, s.Phase)
	}
	if s.StaleCount != 1 || s.SkippedCount != 3 {
		t.Fatalf("stale=%d skipped=%d, want 1 and 3", s.StaleCount, s.SkippedCount)
	}
	if s.LastRelease == nil || s.LastRelease.GTID != "1-11-9" {
		t.Fatalf("last release = %+v", s.LastRelease)
	}
}

func TestJournalResults(t *testing.T) {
	f := New(0)
	replay(t, f, history(t))
	want := map[uint64]Result{1: ResultApplied, 10: ResultStale, 11: ResultSkipped, 12: ResultSkipped, 14: ResultInvalid}
	for _, r := range f.Journal(0) {
		if w, ok := want[r.Index]; ok && r.Result != w {
			t.Errorf("index %d (%s): result %s, want %s (%s)", r.Index, r.Event.Type, r.Result, w, r.Error)
		}
	}
	if got := len(f.Journal(12)); got != 2 {
		t.Errorf("Journal(12) has %d records, want 2", got)
	}
}

func TestSnapshotRestoreEquivalence(t *testing.T) {
	entries := history(t)
	for cut := 0; cut <= len(entries); cut++ {
		full := New(0)
		replay(t, full, entries)

		head := New(0)
		replay(t, head, entries[:cut])
		snap, err := head.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		sink := &memSink{}
		if err := snap.Persist(sink); err != nil {
			t.Fatal(err)
		}
		restored := New(0)
		if err := restored.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
			t.Fatal(err)
		}
		for i, b := range entries[cut:] {
			restored.Apply(&raft.Log{Index: uint64(cut + i + 1), Term: 1, Type: raft.LogCommand, Data: b})
		}
		if !reflect.DeepEqual(jsonOf(t, full.State()), jsonOf(t, restored.State())) {
			t.Fatalf("cut %d: restored state differs\n%s\n%s", cut, jsonOf(t, full.State()), jsonOf(t, restored.State()))
		}
		if !reflect.DeepEqual(jsonOf(t, full.Journal(0)), jsonOf(t, restored.Journal(0))) {
			t.Fatalf("cut %d: restored journal differs", cut)
		}
	}
}

func TestJournalRetention(t *testing.T) {
	f := New(3)
	replay(t, f, history(t))
	j := f.Journal(0)
	if len(j) != 3 || j[0].Index != uint64(len(history(t))-2) {
		t.Fatalf("retained %d records starting at %d", len(j), j[0].Index)
	}
}

func TestApplyPreconditions(t *testing.T) {
	base := NewState()
	base, err := base.Apply(1, mustEvent(t, Bootstrapped, "db1", 0, "", BootstrappedData{Members: members()}))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		give Event
		want error
	}{
		{"assign witness", mustEvent(t, OwnerAssigned, "w", 0, PhaseNone, AssignData{Owner: "witness"}), ErrInvalid},
		{"assign unknown", mustEvent(t, OwnerAssigned, "w", 0, PhaseNone, AssignData{Owner: "db7"}), ErrInvalid},
		{"assign wrong epoch", mustEvent(t, OwnerAssigned, "w", 3, PhaseNone, AssignData{Owner: "db1"}), ErrStale},
		{"assign wrong phase", mustEvent(t, OwnerAssigned, "w", 0, PhaseActive, AssignData{Owner: "db1"}), ErrStale},
		{"revoke without owner", mustEvent(t, OwnerRevoked, "w", 0, PhaseNone, RevokeData{Owner: "db1"}), ErrStale},
		{"release without owner", mustEvent(t, OwnerReleased, "db1", 0, PhaseNone, ReleaseData{Owner: "db1"}), ErrStale},
		{"promote without owner", mustEvent(t, OwnerPromoted, "db1", 0, PhaseNone, PromotedData{Owner: "db1"}), ErrStale},
		{"switchover without owner", mustEvent(t, SwitchoverRequested, "x", 0, PhaseNone, SwitchoverData{}), ErrStale},
		{"health of stranger", mustEvent(t, HealthChanged, "x", 0, "", HealthData{Node: "db9"}), ErrInvalid},
		{"bootstrap twice", mustEvent(t, Bootstrapped, "x", 0, "", BootstrappedData{}), ErrStale},
		{"assign db1", mustEvent(t, OwnerAssigned, "w", 0, PhaseNone, AssignData{Owner: "db1"}), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := base.Apply(2, tt.give)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if tt.want != nil && (got.Owner != base.Owner || got.Epoch != base.Epoch || got.Phase != base.Phase) {
				t.Fatalf("rejected event changed ownership: %s/%d/%s", got.Owner, got.Epoch, got.Phase)
			}
		})
	}
}

type memSink struct{ bytes.Buffer }

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { return nil }
func (m *memSink) Close() error  { return nil }

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSupported(t *testing.T) {
	tests := []struct {
		name     string
		versions [][]int
		give     int
		want     bool
	}{
		{"all advertise it", [][]int{{1}, {1, 2}, {1}}, 1, true},
		{"one lacks it", [][]int{{1, 2}, {1}, {1, 2}}, 2, false},
		{"unannounced counts as 1", [][]int{nil, {1, 2}}, 1, true},
		{"unannounced lacks 2", [][]int{nil, {1, 2}}, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewState()
			for i, vs := range tt.versions {
				id := string(rune('a' + i))
				s.Members[id] = &NodeState{Member: Member{ID: id, Versions: vs}}
			}
			if got := s.Supported(tt.give); got != tt.want {
				t.Fatalf("Supported(%d) = %v, want %v", tt.give, got, tt.want)
			}
		})
	}
}

func TestJournalRetentionLongRun(t *testing.T) {
	const retain = 5
	f := New(retain)
	ev, err := NewEvent("FromTheFuture", "x", t0, 0, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ev.Encode()
	for i := uint64(1); i <= 23; i++ {
		f.Apply(&raft.Log{Index: i, Type: raft.LogCommand, Data: b})
		j := f.Journal(0)
		if want := min(int(i), retain); len(j) != want || j[len(j)-1].Index != i || j[0].Index != i-uint64(want)+1 {
			t.Fatalf("after %d applies: %d records from %d to %d", i, len(j), j[0].Index, j[len(j)-1].Index)
		}
		if got := f.Journal(i - 2); i > 2 && (len(got) != 2 || got[0].Index != i-1) {
			t.Fatalf("Journal(%d) after %d applies: %+v", i-2, i, got)
		}
	}
	if f.Journal(23) != nil {
		t.Fatal("Journal(last) is not empty")
	}
}
