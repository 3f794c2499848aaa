package owner

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
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
			got := map[string]int{}
			for _, e := range logs.All() {
				got[e.Message]++
				if e.Message == "peer refused to renew the lease" && e.ContextMap()["reason"] == "" {
					t.Errorf("refusal logged without the peer's reason: %v", e.ContextMap())
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("log lines %v, want %v", got, tc.want)
			}
			for m, n := range tc.want {
				if got[m] != n {
					t.Fatalf("log lines %v, want %v", got, tc.want)
				}
			}
		})
	}
}
