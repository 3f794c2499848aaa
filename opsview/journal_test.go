package opsview

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keepraft/keepraft/fsm"
)

func TestParseTypes(t *testing.T) {
	got, err := ParseTypes([]string{"OwnerPromoted,healthchanged", " PromotionFailed ", "OwnerPromoted"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []fsm.Type{fsm.OwnerPromoted, fsm.HealthChanged, fsm.PromotionFailed}; !slices.Equal(got, want) {
		t.Errorf("ParseTypes = %v, want %v", got, want)
	}
	_, err = ParseTypes([]string{"OwnerPromoted,MaintenanceSet"})
	if err == nil || !strings.Contains(err.Error(), `"MaintenanceSet"`) || !strings.Contains(err.Error(), "MaintenanceChanged") {
		t.Errorf("unknown type: %v, want an error naming it and listing the valid ones", err)
	}
}

func TestFilter(t *testing.T) {
	recs := fullStory().recs
	idx := func(rs []fsm.Record) []uint64 {
		var out []uint64
		for _, r := range rs {
			out = append(out, r.Index)
		}
		return out
	}
	tests := []struct {
		name string
		f    Filter
		want []uint64
	}{
		{"all", Filter{}, idx(recs)},
		{"types", Filter{Types: []fsm.Type{fsm.OwnerPromoted, fsm.PromotionFailed}}, []uint64{5, 9, 14, 19, 21}},
		{"node as author or subject", Filter{Node: "alice"}, nil},
		{"witness", Filter{Node: "witness", Types: []fsm.Type{fsm.Bootstrapped, fsm.HealthChanged, fsm.MaintenanceChanged}}, []uint64{1, 15}},
		{"db2 promotions include the previous owner's", Filter{Node: "db2", Types: []fsm.Type{fsm.OwnerPromoted}}, []uint64{9, 14, 21}},
		{"db1 maintenance and switchover target", Filter{Node: "db1", Types: []fsm.Type{fsm.SwitchoverRequested, fsm.MaintenanceChanged}}, []uint64{11, 15}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := idx(tt.f.Apply(recs)); !slices.Equal(got, tt.want) {
				t.Errorf("indexes %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRecordJSON(t *testing.T) {
	r := fullStory().recs[4]
	b, err := json.Marshal(NewRecord(r, time.FixedZone("CET", 3600)))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["time"] != "2026-03-01T11:00:00.080+01:00" {
		t.Errorf("time = %v, want the local RFC 3339 time with ms", m["time"])
	}
	if m["index"] != float64(5) || m["result"] != "applied" {
		t.Errorf("record fields lost: %s", b)
	}
	ev, _ := m["event"].(map[string]any)
	if ev["epoch"] != float64(1) || ev["type"] != "OwnerPromoted" {
		t.Errorf("event fields lost: %s", b)
	}
}
