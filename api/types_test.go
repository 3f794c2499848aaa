package api

import (
	"encoding/json"
	"testing"
)

func TestParseReplication(t *testing.T) {
	lag := func(n int64) *int64 { return &n }
	tests := []struct {
		in   string
		want *Replica
	}{
		{"", nil},
		{"garbage", nil},
		{"not configured", &Replica{}},
		{"from db1 io=yes sql=yes lag=0s", &Replica{Configured: true, Source: "db1", IORunning: true, SQLRunning: true, LagSeconds: lag(0)}},
		{"from 10.0.0.1 io=no sql=yes", &Replica{Configured: true, Source: "10.0.0.1", SQLRunning: true}},
		{"from db2 io=yes sql=no lag=12s error=Duplicate entry 'x' for key io=yes", &Replica{Configured: true, Source: "db2", IORunning: true, LagSeconds: lag(12), LastError: "Duplicate entry 'x' for key io=yes"}},
		{"from  io=no sql=no", &Replica{Configured: true}},
		{"from db1 io=no sql=no (channel from db1 held: extra 0-2-5)", &Replica{Configured: true, Source: "db1", Held: "channel from db1 held: extra 0-2-5"}},
		{"not configured (channel from db1 held: dial tcp: refused)", &Replica{Held: "channel from db1 held: dial tcp: refused"}},
	}
	for _, tt := range tests {
		got := ParseReplication(tt.in)
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(tt.want)
		if string(gb) != string(wb) {
			t.Errorf("ParseReplication(%q) = %s, want %s", tt.in, gb, wb)
		}
	}
}

// TestMemberStatusJSON: the typed member fields are numbers, booleans and null, never
// display strings.
func TestMemberStatusJSON(t *testing.T) {
	ms := 250 * int64(1)
	ro := false
	b, err := json.Marshal(MemberStatus{ID: "db2", LastContactMS: &ms, Stale: true, ReadOnly: &ro, Replica: ParseReplication("from db1 io=yes sql=no lag=3s")})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if v, ok := m["last_contact_ms"].(float64); !ok || v != 250 {
		t.Errorf("last_contact_ms = %#v, want the number 250", m["last_contact_ms"])
	}
	if v, ok := m["stale"].(bool); !ok || !v {
		t.Errorf("stale = %#v, want true", m["stale"])
	}
	if v, ok := m["read_only"].(bool); !ok || v {
		t.Errorf("read_only = %#v, want false", m["read_only"])
	}
	r, _ := m["replica"].(map[string]any)
	if r["io_running"] != true || r["sql_running"] != false || r["lag_seconds"] != float64(3) {
		t.Errorf("replica = %#v, want io true, sql false, lag 3", r)
	}
	b, _ = json.Marshal(MemberStatus{ID: "witness"})
	_ = json.Unmarshal(b, &m)
	if v, ok := m["last_contact_ms"]; !ok || v != nil {
		t.Errorf("never-contacted last_contact_ms = %#v, want null", v)
	}
}
