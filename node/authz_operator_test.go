package node

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/config"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/mtls"
)

// settleWithin bounds how long the in-process cluster may take to serve again after an
// operator's failover or switchover.
const settleWithin = 15 * time.Second

// operatorFields are the fields every operator payload journals about its caller.
type operatorFields struct {
	Operator string `json:"operator"`
	From     string `json:"from"`
	Loss     string `json:"loss"`
}

func payloadOf(t *testing.T, ev fsm.Event) operatorFields {
	t.Helper()
	var f operatorFields
	if err := json.Unmarshal(ev.Data, &f); err != nil {
		t.Fatalf("payload of %s: %v", ev.Type, err)
	}
	return f
}

// TestAuthorizeCoversEveryType: authorize names every event type this build applies;
// only a type it does not know falls through to "unknown".
func TestAuthorizeCoversEveryType(t *testing.T) {
	for _, typ := range fsm.Types {
		t.Run(string(typ), func(t *testing.T) {
			err := authorize(fsm.Event{V: 1, Type: typ, By: "db1", Data: []byte(`{}`)}, "db1", fsm.NewState())
			if errors.Is(err, errUnknownEvent) {
				t.Fatalf("authorize has no rule for %s: %v", typ, err)
			}
		})
	}
	if err := authorize(fsm.Event{V: 1, Type: "FromTheFuture", By: "db1"}, "db1", fsm.NewState()); !errors.Is(err, errUnknownEvent) || !errors.Is(err, errForbidden) {
		t.Fatalf("authorize of an unknown type = %v, want forbidden as unknown", err)
	}
}

// operatorState is db1 owning at epoch 1 with db2 healthy beside it, db2's rejoin
// blocked on 0-2-9 when blocked; versions says which schema versions db2 applies.
func operatorState(t *testing.T, versions []int, blocked bool) fsm.State {
	t.Helper()
	all := []int{1, 2, fsm.Version}
	s := fsm.NewState()
	for i, ev := range []fsm.Event{
		mkEvent(t, fsm.Bootstrapped, "witness", 0, "", fsm.BootstrappedData{Members: []fsm.Member{
			{ID: "db1", Role: fsm.RoleDatabase, Priority: 100, Versions: all},
			{ID: "db2", Role: fsm.RoleDatabase, Priority: 90, Versions: versions},
			{ID: "witness", Role: fsm.RoleWitness, Versions: all},
		}}),
		mkEvent(t, fsm.HealthChanged, "db1", 0, "", fsm.HealthData{Node: "db1", Healthy: true, GTID: "0-1-10"}),
		mkEvent(t, fsm.HealthChanged, "db2", 0, "", fsm.HealthData{Node: "db2", Healthy: true, GTID: "0-1-10"}),
		mkEvent(t, fsm.OwnerAssigned, "witness", 0, fsm.PhaseNone, fsm.AssignData{Owner: "db1"}),
		mkEvent(t, fsm.OwnerPromoted, "db1", 1, fsm.PhaseAssigned, fsm.PromotedData{Owner: "db1", Reached: true}),
		mkEvent(t, fsm.RejoinChecked, "db1", 1, "", fsm.RejoinData{Node: "db2", Blocked: blocked, Extra: "0-2-9"}),
	} {
		var err error
		if s, err = s.Apply(uint64(i+1), ev); err != nil {
			t.Fatalf("apply %s: %v", ev.Type, err)
		}
	}
	return s
}

// TestForwardedOperator: the leader re-runs an operator route's checks on a forwarded
// operator event and journals the hop it authenticated after the claimed address.
func TestForwardedOperator(t *testing.T) {
	const remote = "127.0.0.1:5555"
	s := operatorState(t, []int{1, 2, fsm.Version}, false)
	blocked := operatorState(t, []int{1, 2, fsm.Version}, true)
	old := operatorState(t, []int{1, 2}, false)
	mk := func(typ fsm.Type, v int, p any) fsm.Event {
		ev := mkEvent(t, typ, "db2", 1, fsm.PhaseActive, p)
		ev.V = v
		return ev
	}
	const claimed = "10.0.0.9:40000"
	via := claimed + " via db2 (" + remote + ")"
	tests := []struct {
		name     string
		ev       fsm.Event
		s        fsm.State
		wantErr  error // nil: accepted
		wantFrom string
	}{
		{"switchover", mk(fsm.SwitchoverRequested, 1, fsm.SwitchoverData{To: "db2", Operator: "raftctl", From: claimed}), s, nil, via},
		{"switchover without an operator (the controller's)", mk(fsm.SwitchoverRequested, 1, fsm.SwitchoverData{To: "db2"}), s, errForbidden, ""},
		{"switchover to a witness", mk(fsm.SwitchoverRequested, 1, fsm.SwitchoverData{To: "witness", Operator: "raftctl"}), s, fsm.ErrNotDatabase, ""},
		{"maintenance", mk(fsm.MaintenanceChanged, 1, fsm.MaintenanceData{Node: "db2", On: true, Operator: "raftctl", From: claimed}), s, nil, via},
		{"maintenance of a stranger", mk(fsm.MaintenanceChanged, 1, fsm.MaintenanceData{Node: "db9", On: true, Operator: "raftctl"}), s, fsm.ErrUnknownMember, ""},
		{"pause", mk(fsm.PauseChanged, operatorVerbVersion, fsm.PauseData{Paused: true, Operator: "raftctl", From: claimed}), s, nil, via},
		{"pause without an address", mk(fsm.PauseChanged, operatorVerbVersion, fsm.PauseData{Paused: true, Operator: "raftctl"}), s, nil, "? via db2 (" + remote + ")"},
		{"pause at schema 1", mk(fsm.PauseChanged, 1, fsm.PauseData{Paused: true, Operator: "raftctl"}), s, fsm.ErrInvalid, ""},
		{"pause while a member lacks schema 3", mk(fsm.PauseChanged, operatorVerbVersion, fsm.PauseData{Paused: true, Operator: "raftctl"}), old, errVerbUnsupported, ""},
		{"resume when not paused", mk(fsm.PauseChanged, operatorVerbVersion, fsm.PauseData{Paused: false, Operator: "raftctl"}), s, fsm.ErrNoChange, ""},
		{"failover", mk(fsm.FailoverRequested, operatorVerbVersion, fsm.FailoverData{To: "db2", Loss: "nothing, trust me", Operator: "raftctl", From: claimed}), s, nil, via},
		{"failover without the confirmed note", mk(fsm.FailoverRequested, operatorVerbVersion, fsm.FailoverData{To: "db2", Operator: "raftctl"}), s, errUnconfirmed, ""},
		{"rejoin resume", mk(fsm.RejoinResumed, operatorVerbVersion, fsm.RejoinResumeData{Node: "db2", Accept: "0-2-9", Operator: "raftctl", From: claimed}), blocked, nil, via},
		{"rejoin resume accepting another set", mk(fsm.RejoinResumed, operatorVerbVersion, fsm.RejoinResumeData{Node: "db2", Accept: "0-2-8", Operator: "raftctl"}), blocked, errors.New("any"), ""},
		{"rejoin resume when not blocked", mk(fsm.RejoinResumed, operatorVerbVersion, fsm.RejoinResumeData{Node: "db2", Operator: "raftctl"}), s, fsm.ErrNoChange, ""},
		{"bad payload", fsm.Event{V: operatorVerbVersion, Type: fsm.PauseChanged, By: "db2", Data: []byte(`{"paused":`)}, s, fsm.ErrInvalid, ""},
		{"not an operator event", mk(fsm.HealthChanged, 1, fsm.HealthData{Node: "db2"}), s, errForbidden, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := forwardedOperator(tt.ev, "db2", remote, tt.s, nil)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("accepted: %s", got.Data)
				}
				if tt.wantErr.Error() != "any" && !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			f := payloadOf(t, got)
			if f.Operator != "raftctl" || f.From != tt.wantFrom {
				t.Errorf("operator %q from %q, want raftctl from %q", f.Operator, f.From, tt.wantFrom)
			}
			if tt.ev.Type == fsm.FailoverRequested {
				note, _ := tt.s.CheckFailover("db2", nil)
				if f.Loss != note {
					t.Errorf("journaled loss %q, want the leader's note %q", f.Loss, note)
				}
			}
		})
	}
}

// tlsMemCluster is the in-process cluster (in-memory raft, fake MySQL and VIPs) with
// cluster.tls on every node, so the admin API between the nodes and from the test is
// mutual TLS. The certificate dir also holds raftctl's and alice's, and db1-fqdn.
func tlsMemCluster(t *testing.T) (*memCluster, string) {
	t.Helper()
	c := newMemCluster(t)
	certs := filepath.Join(t.TempDir(), "tls")
	if _, err := mtls.Generate(certs, append([]string{"raftctl", "alice"}, memIDs...), nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	issueCert(t, certs, "db1-fqdn", "db1.example.com", "db1")
	for id, cfg := range c.cfgs {
		cfg.Cluster.TLS = &config.TLS{CAFile: filepath.Join(certs, mtls.CAFile), CertFile: filepath.Join(certs, id+".pem"), KeyFile: filepath.Join(certs, id+"-key.pem")}
	}
	for _, id := range memIDs {
		c.start(id)
	}
	for _, id := range memIDs {
		waitListening(t, c.cfgs[id].Cluster.APIAddr)
	}
	return c, certs
}

// leaderSteady is how long the raft leader must stay the same for leaderOf.
const leaderSteady = 300 * time.Millisecond

// leaderOf returns the id of the cluster's raft leader and of one follower, once the
// leader is not the VIP owner (the controller moves leadership off it) and has stayed
// the leader for leaderSteady.
func leaderOf(t *testing.T, c *memCluster) (string, string) {
	t.Helper()
	deadline := time.Now().Add(settleWithin)
	last, since := "", time.Now()
	for time.Now().Before(deadline) {
		leader, follower := "", ""
		for _, id := range memIDs {
			if n, ok := c.nodes[id]; ok && n.IsLeader() {
				leader = id
			} else if ok {
				follower = id
			}
		}
		if leader != last {
			last, since = leader, time.Now()
		}
		if leader != "" && follower != "" && leader != c.nodes[leader].State().Owner && time.Since(since) >= leaderSteady {
			return leader, follower
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no steady raft leader off the owner (last %q)", last)
	return "", ""
}

// record returns the journal record at index on node n.
func record(t *testing.T, n *Node, index uint64) fsm.Record {
	t.Helper()
	for _, r := range n.fsm.Journal(index - 1) {
		if r.Index == index {
			return r
		}
	}
	t.Fatalf("no journal record %d", index)
	return fsm.Record{}
}

// TestOperatorJournal: under TLS, every operator route journals the caller's certificate
// identity as operator and its address as from; a call taken by a follower is forwarded
// to the leader, which appends the hop it authenticated. A node's certificate proposing
// operator events directly skips none of the routes' checks, and cannot hide that it
// forged the operator and address it claims.
func TestOperatorJournal(t *testing.T) {
	if testing.Short() {
		t.Skip("in-process cluster runs for several seconds")
	}
	c, certs := tlsMemCluster(t)
	c.waitServing("db1", settleWithin)
	ctx := context.Background()
	// apply commits ev on the leader, as the owner runtime would propose it.
	apply := func(t *testing.T, ev fsm.Event) {
		t.Helper()
		leaderID, _ := leaderOf(t, c)
		if _, err := c.nodes[leaderID].Apply(ev, callTimeout); err != nil {
			t.Fatal(err)
		}
	}

	// db2's rejoin blocked on extra transactions, as its owner would journal it.
	s := c.nodes["db1"].State()
	apply(t, mkEvent(t, fsm.RejoinChecked, "db1", s.Epoch, "", fsm.RejoinData{Node: "db2", Blocked: true, Extra: "0-2-9"}))

	steps := []struct {
		name     string
		cert     string
		operator string // the identity journaled
		follower bool   // a follower's API takes the call (else the leader's)
		call     func(cl *api.Client, addr string) (api.ProposeResponse, error)
		typ      fsm.Type
		serving  string // wait for this owner afterwards ("" = no change)
		then     func(t *testing.T)
	}{
		{"rejoin resume", "raftctl", "raftctl", false, func(cl *api.Client, addr string) (api.ProposeResponse, error) {
			return cl.RejoinResume(ctx, addr, fsm.RejoinResumeData{Node: "db2", Accept: "0-2-9"}, callTimeout)
		}, fsm.RejoinResumed, "", func(t *testing.T) {
			// The owner's next check finds nothing extra any more: db2 may own again.
			apply(t, mkEvent(t, fsm.RejoinChecked, "db1", c.nodes["db1"].State().Epoch, "", fsm.RejoinData{Node: "db2"}))
		}},
		{"maintenance on", "alice", "alice", false, func(cl *api.Client, addr string) (api.ProposeResponse, error) {
			return cl.Maintenance(ctx, addr, fsm.MaintenanceData{Node: "db2", On: true}, callTimeout)
		}, fsm.MaintenanceChanged, "", nil},
		{"maintenance off by a node certificate", "db1-fqdn", "db1", false, func(cl *api.Client, addr string) (api.ProposeResponse, error) {
			return cl.Maintenance(ctx, addr, fsm.MaintenanceData{Node: "db2", On: false}, callTimeout)
		}, fsm.MaintenanceChanged, "", nil},
		{"pause through a follower", "raftctl", "raftctl", true, func(cl *api.Client, addr string) (api.ProposeResponse, error) {
			return cl.Pause(ctx, addr, fsm.PauseData{Paused: true, Reason: "test"}, callTimeout)
		}, fsm.PauseChanged, "", nil},
		{"resume through a follower", "alice", "alice", true, func(cl *api.Client, addr string) (api.ProposeResponse, error) {
			return cl.Pause(ctx, addr, fsm.PauseData{Paused: false}, callTimeout)
		}, fsm.PauseChanged, "", nil},
		{"failover", "raftctl", "raftctl", false, func(cl *api.Client, addr string) (api.ProposeResponse, error) {
			return cl.Failover(ctx, addr, api.FailoverRequest{To: "db2", Yes: true}, callTimeout)
		}, fsm.FailoverRequested, "db2", nil},
		{"switchover", "alice", "alice", false, func(cl *api.Client, addr string) (api.ProposeResponse, error) {
			return cl.Switchover(ctx, addr, fsm.SwitchoverData{To: "db1"}, callTimeout)
		}, fsm.SwitchoverRequested, "db1", nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			cl := newCertClient(t, certs, st.cert)
			node, follower := leaderOf(t, c)
			if st.follower {
				node = follower
			}
			resp, err := st.call(cl.Client, c.cfgs[node].Cluster.APIAddr)
			if err != nil || resp.Result != fsm.ResultApplied {
				t.Fatalf("%s = %+v, %v", st.name, resp, err)
			}
			waitApplied(t, c, resp.Index)
			rec := record(t, c.nodes[node], resp.Index)
			if rec.Event.Type != st.typ {
				t.Fatalf("record %d is %s, want %s", resp.Index, rec.Event.Type, st.typ)
			}
			f := payloadOf(t, rec.Event)
			wantFrom := cl.lastLocal()
			if st.follower {
				wantFrom += " via " + node + " (127.0.0.1:"
			}
			if f.Operator != st.operator || !strings.HasPrefix(f.From, wantFrom) || (!st.follower && f.From != wantFrom) {
				t.Errorf("journaled operator %q from %q, want %q from %q", f.Operator, f.From, st.operator, wantFrom)
			}
			if st.serving != "" {
				c.waitServing(st.serving, settleWithin)
			}
			if st.then != nil {
				st.then(t)
			}
		})
	}

	t.Run("forged proposals", func(t *testing.T) {
		db2 := newCertClient(t, certs, "db2")
		tests := []struct {
			name     string
			typ      fsm.Type
			v        int
			payload  any
			code     int    // the answer
			wantFrom string // the journaled from when applied
		}{
			{"failover skipping the confirmation", fsm.FailoverRequested, operatorVerbVersion, fsm.FailoverData{To: "db2", Operator: "raftctl", From: "198.51.100.7:4242"}, http.StatusPreconditionFailed, ""},
			{"switchover to the witness", fsm.SwitchoverRequested, 1, fsm.SwitchoverData{To: "witness", Operator: "raftctl"}, http.StatusBadRequest, ""},
			{"the controller's switchover", fsm.SwitchoverRequested, 1, fsm.SwitchoverData{To: "db2"}, http.StatusForbidden, ""},
			{"pause at schema 1", fsm.PauseChanged, 1, fsm.PauseData{Paused: true, Operator: "raftctl"}, http.StatusBadRequest, ""},
			{"pause with a forged operator and address", fsm.PauseChanged, operatorVerbVersion, fsm.PauseData{Paused: true, Operator: "alice", From: "198.51.100.7:4242"}, http.StatusOK, "198.51.100.7:4242 via db2 ("},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				leaderID, _ := leaderOf(t, c)
				leader := c.nodes[leaderID]
				s := leader.State()
				ev := mkEvent(t, tt.typ, "db2", s.Epoch, s.Phase, tt.payload)
				ev.V = tt.v
				before := countType(leader, tt.typ)
				resp, err := db2.Propose(ctx, c.cfgs[leaderID].Cluster.APIAddr, ev, callTimeout)
				if tt.code != http.StatusOK {
					if got := api.StatusCode(err); got != tt.code {
						t.Errorf("propose = %+v, %v; want %d", resp, err, tt.code)
					}
					if after := countType(leader, tt.typ); after != before {
						t.Errorf("%d %s records journaled by a refused proposal", after-before, tt.typ)
					}
					return
				}
				if err != nil || resp.Result != fsm.ResultApplied {
					t.Fatalf("propose = %+v, %v", resp, err)
				}
				f := payloadOf(t, record(t, leader, resp.Index).Event)
				if want := tt.wantFrom + db2.lastLocal() + ")"; f.From != want {
					t.Errorf("journaled from %q, want %q: the forwarding hop is not recorded", f.From, want)
				}
			})
		}
	})
	c.checkViolations()
}

// waitApplied waits until every running node applied index, so the next call sees it
// whichever node takes it.
func waitApplied(t *testing.T, c *memCluster, index uint64) {
	t.Helper()
	deadline := time.Now().Add(settleWithin)
	for _, id := range memIDs {
		for c.nodes[id].State().Index < index {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not apply index %d", id, index)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// countType counts the records of type typ in n's journal.
func countType(n *Node, typ fsm.Type) int {
	k := 0
	for _, r := range n.fsm.Journal(0) {
		if r.Event.Type == typ {
			k++
		}
	}
	return k
}
