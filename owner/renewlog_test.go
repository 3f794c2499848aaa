package owner

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
)

// TestRenewalAnswersLogged: a peer's refusal is logged once with its reason, a failed
// request once with its error, and a peer that promises again once; rounds that repeat
// the last answer log nothing.
func TestRenewalAnswersLogged(t *testing.T) {
	type round struct {
		refuse bool
		err    error
	}
	refused, failed, promised := round{refuse: true}, round{err: errors.New("connection refused")}, round{}
	cases := []struct {
		name   string
		rounds []round
		// want counts the log lines by message.
		want map[string]int
	}{
		{"steady promises", []round{promised, promised, promised}, map[string]int{}},
		{"refusals", []round{promised, refused, refused, refused}, map[string]int{"peer refused to renew the lease": 1}},
		{"refused then back", []round{refused, refused, promised, promised}, map[string]int{"peer refused to renew the lease": 1, "peer promises the lease again": 1}},
		{"failures then refusal", []round{failed, failed, refused, promised}, map[string]int{"lease renewal failed": 1, "peer refused to renew the lease": 1, "peer promises the lease again": 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			epoch := r.serve(t)
			core, logs := observer.New(zapcore.InfoLevel)
			r.o.log = zap.New(core)
			for _, rd := range tc.rounds {
				r.renew.mu.Lock()
				r.renew.refuse, r.renew.reason, r.renew.err = rd.refuse, "applied state (index 3) is behind the commit index learned from the leader", rd.err
				r.renew.mu.Unlock()
				r.o.renewOne(context.Background(), "witness", epoch, r.clock.now())
			}
			requireLogLines(t, logs, "peer refused to renew the lease", func(e observer.LoggedEntry) string { return e.Message }, tc.want)
		})
	}
}

// TestPromiserAnswersLogged: the voter's side logs each change of its answer to an owner
// once (a refusal with its reason), not every renewal, and not a first promise.
func TestPromiserAnswersLogged(t *testing.T) {
	type step struct {
		advance time.Duration // lease clock, before the renewal
		caught  bool
		epoch   uint64
	}
	quiet, promise, behind, old := step{0, true, 4}, step{time.Second, true, 4}, step{0, false, 4}, step{0, true, 3}
	cases := []struct {
		name  string
		steps []step
		want  map[string]int // log lines by message and level
	}{
		{"steady promises", []step{promise, promise, promise}, map[string]int{}},
		{"quiet after a start, then promises", []step{quiet, quiet, promise, promise},
			map[string]int{"info refusing lease promises": 1, "info promising the lease again": 1}},
		{"behind the leader", []step{promise, behind, behind, promise},
			map[string]int{"warn refusing lease promises": 1, "info promising the lease again": 1}},
		{"an old epoch, twice", []step{promise, old, old},
			map[string]int{"info refusing lease promises": 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := newFakeNode(&trace{}, at(cluster(t), "db1", 4, fsm.PhaseActive))
			c := &clock{t: time.Hour}
			core, logs := observer.New(zapcore.InfoLevel)
			p := NewPromiser("witness", n, 500*time.Millisecond, c.now, zap.New(core))
			for _, st := range tc.steps {
				c.advance(st.advance)
				n.caught = st.caught
				p.Grant(api.RenewRequest{Owner: "db1", Epoch: st.epoch})
			}
			requireLogLines(t, logs, "refusing lease promises", func(e observer.LoggedEntry) string { return e.Level.String() + " " + e.Message }, tc.want)
		})
	}
}

// requireLogLines checks that the log lines, counted by key, are exactly want, and that
// every line with message refusal carries a reason.
func requireLogLines(t *testing.T, logs *observer.ObservedLogs, refusal string, key func(observer.LoggedEntry) string, want map[string]int) {
	t.Helper()
	got := map[string]int{}
	for _, e := range logs.All() {
		got[key(e)]++
		if e.Message == refusal && e.ContextMap()["reason"] == "" {
			t.Errorf("refusal logged without its reason: %v", e.ContextMap())
		}
	}
	if !maps.Equal(got, want) {
		t.Fatalf("log lines %v, want %v", got, want)
	}
}
