package node

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/config"
	"github.com/keepraft/keepraft/internal/boottime"
)

// countingPeer serves /v1/node and counts the polls.
type countingPeer struct {
	srv   *httptest.Server
	polls atomic.Int64
}

func newCountingPeer(t *testing.T, id string) *countingPeer {
	t.Helper()
	p := &countingPeer{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.polls.Add(1)
		_ = json.NewEncoder(w).Encode(api.NodeReport{Node: id})
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// newTestPoller is db1's poller of a leader (witness) and another peer (db2), both
// counting the polls they get, with the given lease and steadiness.
func newTestPoller(t *testing.T, lease time.Duration, steady bool) (p *poller, leader, other *countingPeer) {
	t.Helper()
	leader, other = newCountingPeer(t, "witness"), newCountingPeer(t, "db2")
	cfg := &config.Config{}
	cfg.Node.ID = "db1"
	cfg.Failover.Lease = lease
	cfg.Cluster.Peers = []config.Peer{{ID: "db1"}, {ID: "witness", APIAddr: strings.TrimPrefix(leader.srv.URL, "http://")},
		{ID: "db2", APIAddr: strings.TrimPrefix(other.srv.URL, "http://")}}
	p = newPoller(cfg, api.NewClient("", nil), boottime.Now, zap.NewNop())
	p.leader = func() string { return "witness" }
	p.steady = func() bool { return steady }
	return p, leader, other
}

// startPoller runs p until the returned stop is called (which waits for it).
func startPoller(t *testing.T, p *poller) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := p.Run(ctx); err != nil {
			t.Error(err)
		}
	})
	return func() { cancel(); wg.Wait() }
}

// TestPollerPace: in the steady state the raft leader polls every peer every lease/2; a
// database follower polls the leader every 0.6 lease (the leader's own polls, which
// carry its report, come first) and a witness every lease; followers poll each other
// every lease. Not steady, every peer is polled every lease/4 (at most 100 ms).
func TestPollerPace(t *testing.T) {
	const lease = 800 * time.Millisecond // every 100 ms, idle 400 ms, leader from a database 480 ms, else 800 ms
	const window = 2 * time.Second
	tests := []struct {
		name     string
		database bool
		leader   string // the raft leader: "witness" (a peer) or "db1" (this node)
		steady   bool
		// polls of the witness and of db2 within the window: [min, max]
		witness, other [2]int64
	}{
		{"database follower: the leader every 0.6 lease, the other every lease", true, "witness", true, [2]int64{4, 6}, [2]int64{2, 4}},
		{"witness-like follower: the leader and the other every lease", false, "witness", true, [2]int64{2, 4}, [2]int64{2, 4}},
		{"leader: every peer every lease/2", true, "db1", true, [2]int64{4, 7}, [2]int64{4, 7}},
		{"not steady: both every 100 ms", true, "witness", false, [2]int64{12, 21}, [2]int64{12, 21}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, witness, other := newTestPoller(t, lease, tt.steady)
			if tt.database {
				cfg := &config.Config{}
				cfg.Node.Role, cfg.Failover.Lease = "database", lease
				p.leaderIdle = leaderIdle(cfg)
			}
			p.leader = func() string { return tt.leader }
			stop := startPoller(t, p)
			time.Sleep(window)
			stop()
			w, o := witness.polls.Load(), other.polls.Load()
			if w < tt.witness[0] || w > tt.witness[1] || o < tt.other[0] || o > tt.other[1] {
				t.Fatalf("in %v: witness polled %d times, db2 %d; want %v and %v", window, w, o, tt.witness, tt.other)
			}
		})
	}
}

// TestPollerSleepsWhileReportsArrive: on a steady owner, whose renewals carry every peer's
// report several times a lease, the poller neither polls nor wakes on its own timer: each
// report pushes its check back. When the reports stop, it polls again at its pace.
func TestPollerSleepsWhileReportsArrive(t *testing.T) {
	const lease = 800 * time.Millisecond // leader 480 ms (database), the other 800 ms
	p, witness, other := newTestPoller(t, lease, true)
	cfg := &config.Config{}
	cfg.Node.Role, cfg.Failover.Lease = "database", lease
	p.leaderIdle = leaderIdle(cfg)
	p.leader = func() string { return "witness" }
	for _, id := range []string{"witness", "db2"} {
		p.record(id, api.NodeReport{Node: id})
	}
	stop := startPoller(t, p)
	defer stop()
	// The leader is polled at once at start (a leader it has not polled yet).
	waitFor(t, time.Second, "the first poll of the leader", func() bool { return witness.polls.Load() == 1 })
	w0, wakes0 := witness.polls.Load(), p.timerWakes.Load()
	end := time.Now().Add(2 * time.Second)
	for time.Now().Before(end) { // a renewal every lease/3
		time.Sleep(lease / 3)
		for _, id := range []string{"witness", "db2"} {
			p.record(id, api.NodeReport{Node: id})
		}
	}
	if w, o, wakes := witness.polls.Load()-w0, other.polls.Load(), p.timerWakes.Load()-wakes0; w != 0 || o != 0 || wakes > 1 {
		t.Fatalf("reports every %v for 2 s: witness polled %d times, db2 %d, %d wakes by the timer; want none, none and at most 1", lease/3, w, o, wakes)
	}
	waitFor(t, 2*lease, "the leader polled once the reports stopped", func() bool { return witness.polls.Load() > w0 })
}

// TestPollerKick: in the steady state a kick polls every peer at once and keeps them at
// the fast pace for the busy window.
func TestPollerKick(t *testing.T) {
	const lease = 2 * time.Second // every = 100 ms, idle = 1 s, busy window 4 s
	p, _, other := newTestPoller(t, lease, true)
	defer startPoller(t, p)()
	waitFor(t, time.Second, "first poll of db2", func() bool { return other.polls.Load() == 1 })
	time.Sleep(300 * time.Millisecond)
	if n := other.polls.Load(); n != 1 {
		t.Fatalf("steady: db2 polled %d times within 300 ms of the first poll, want 1 (idle pace 1 s)", n)
	}
	p.kick()
	waitFor(t, 200*time.Millisecond, "db2 polled right after the kick", func() bool { return other.polls.Load() >= 2 })
	time.Sleep(time.Second)
	if n := other.polls.Load(); n < 6 {
		t.Fatalf("busy window: db2 polled %d times in the second after the kick, want the fast pace (about 10)", n)
	}
}

// TestPollerLeaderChange: a new raft leader is polled as soon as raft reports it, not
// at its idle pace nor at the next tick of a timer.
func TestPollerLeaderChange(t *testing.T) {
	const lease = 2 * time.Second // every = 100 ms, leader 667 ms, idle 1 s
	p, _, other := newTestPoller(t, lease, true)
	var leader atomic.Value
	leader.Store("witness")
	p.leader = func() string { return leader.Load().(string) }
	defer startPoller(t, p)()
	waitFor(t, time.Second, "first poll of db2", func() bool { return other.polls.Load() == 1 })
	time.Sleep(150 * time.Millisecond)
	leader.Store("db2")
	p.leaderChanged()
	waitFor(t, 30*time.Millisecond, "db2 polled right after it became the leader", func() bool { return other.polls.Load() >= 2 })
}

// TestPollerLeft: a peer that said goodbye stays left while it reports stopping and for a
// report it sent before the goodbye that arrives after it; a report from a peer started
// after the goodbye brings it back.
func TestPollerLeft(t *testing.T) {
	var now time.Duration = time.Hour
	p, _, _ := newTestPoller(t, time.Second, true)
	p.now = func() time.Duration { return now }
	steps := []struct {
		name     string
		report   api.NodeReport
		wantLeft bool
	}{
		{"stopping", api.NodeReport{Node: "db2", Stopping: true, UptimeMS: 60_000}, true},
		{"sent before the goodbye, arrived after it", api.NodeReport{Node: "db2", UptimeMS: 59_990}, true},
		{"started after the goodbye", api.NodeReport{Node: "db2", UptimeMS: 500}, false},
		{"running again, no goodbye since", api.NodeReport{Node: "db2", UptimeMS: 1_500}, false},
	}
	p.record("db2", api.NodeReport{Node: "db2", UptimeMS: 59_000})
	p.markLeft("db2")
	for _, s := range steps {
		now += time.Second
		p.record("db2", s.report)
		if got := p.snapshot()["db2"].Left; got != s.wantLeft {
			t.Fatalf("%s: left = %v, want %v", s.name, got, s.wantLeft)
		}
	}
}

// TestPollerSlowPeer: a peer whose polls wait out their timeout delays no other peer's
// polls (a cut-off owner must not slow the controller's view of the other voters).
func TestPollerSlowPeer(t *testing.T) {
	const lease = 400 * time.Millisecond // every 100 ms, poll timeout 200 ms
	p, leader, _ := newTestPoller(t, lease, false)
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hang }))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(hang) })
	p.peers[2].APIAddr = strings.TrimPrefix(slow.URL, "http://") // db2 never answers
	stop := startPoller(t, p)
	const window = 2 * time.Second
	time.Sleep(window)
	stop()
	// Every 100 ms: about 20; waiting for db2's 200 ms timeout each round would give 10.
	if n := leader.polls.Load(); n < 15 {
		t.Fatalf("in %v the leader was polled %d times beside a peer that never answers, want about 20", window, n)
	}
	if v := p.snapshot()["db2"]; v.OK {
		t.Fatalf("db2 never answered but its view is %+v", v)
	}
}

// TestPollerFailureKeepsNewerReport: a poll that fails after a renewal recorded the peer's
// report (while the poll was under way) leaves the view OK: the peer reached this node after
// the poll began. A failure with no newer report marks the peer unreachable.
func TestPollerFailureKeepsNewerReport(t *testing.T) {
	p, _, _ := newTestPoller(t, 400*time.Millisecond, false)
	hang, entered := make(chan struct{}), make(chan struct{}, 1)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		entered <- struct{}{}
		<-hang
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(slow.Close)
	peer := config.Peer{ID: "db2", APIAddr: strings.TrimPrefix(slow.URL, "http://")}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.pollOne(context.Background(), peer)
	}()
	<-entered
	p.record("db2", api.NodeReport{Node: "db2", Applied: 77})
	close(hang)
	<-done
	if v := p.snapshot()["db2"]; !v.OK || v.Report.Applied != 77 {
		t.Fatalf("after a poll that failed under a newer report: %+v, want OK with applied 77", v)
	}
	// A report recorded within the fast poll period outweighs a single failure; an older
	// one does not.
	slow.Close()
	p.pollOne(context.Background(), peer)
	if v := p.snapshot()["db2"]; !v.OK {
		t.Fatalf("after a failed poll right after a report: %+v, want still OK", v)
	}
	time.Sleep(p.every)
	p.pollOne(context.Background(), peer)
	if v := p.snapshot()["db2"]; v.OK {
		t.Fatalf("after a failed poll with nothing newer within %v: %+v, want not OK", p.every, v)
	}
}

// TestPollerExchange: a poll carries this node's report (POST /v1/node), so the peer
// need not poll back; a peer that answers 405 (an older version) is polled with GET from
// then on.
func TestPollerExchange(t *testing.T) {
	var mu sync.Mutex
	got := map[string][]string{} // peer → methods seen, and the reports' nodes
	requests := map[string]int{} // peer → requests of any kind
	serve := func(id string, exchange bool) *httptest.Server {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /v1/node", func(w http.ResponseWriter, _ *http.Request) {
			mu.Lock()
			got[id] = append(got[id], "GET")
			mu.Unlock()
			_ = json.NewEncoder(w).Encode(api.NodeReport{Node: id})
		})
		if exchange {
			mux.HandleFunc("POST /v1/node", func(w http.ResponseWriter, r *http.Request) {
				var rep api.NodeReport
				if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
					t.Error(err)
				}
				mu.Lock()
				got[id] = append(got[id], "POST from "+rep.Node)
				mu.Unlock()
				_ = json.NewEncoder(w).Encode(api.NodeReport{Node: id})
			})
		}
		// Every request, the 405s the mux answers by itself included.
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			requests[id]++
			mu.Unlock()
			mux.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	current, old := serve("witness", true), serve("db2", false)
	cfg := &config.Config{}
	cfg.Node.ID = "db1"
	cfg.Failover.Lease = 400 * time.Millisecond
	cfg.Cluster.Peers = []config.Peer{{ID: "db1"}, {ID: "witness", APIAddr: strings.TrimPrefix(current.URL, "http://")},
		{ID: "db2", APIAddr: strings.TrimPrefix(old.URL, "http://")}}
	p := newPoller(cfg, api.NewClient("", nil), boottime.Now, zap.NewNop())
	p.report = func() api.NodeReport { return api.NodeReport{Node: "db1", Applied: 5} }
	for range 2 {
		for _, peer := range cfg.Cluster.Peers[1:] {
			p.pollOne(context.Background(), peer)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string][]string{"witness": {"POST from db1", "POST from db1"}, "db2": {"GET", "GET"}}
	for id, w := range want {
		if strings.Join(got[id], ",") != strings.Join(w, ",") {
			t.Errorf("%s saw %v, want %v", id, got[id], w)
		}
	}
	// One refused exchange, then GET only: the 405 is remembered.
	if requests["db2"] != 3 || requests["witness"] != 2 {
		t.Errorf("requests: db2 %d (want 3: a refused exchange and two GETs), witness %d (want 2)", requests["db2"], requests["witness"])
	}
	for _, id := range []string{"witness", "db2"} {
		if v := p.snapshot()[id]; !v.OK || v.Report.Node != id {
			t.Errorf("view of %s = %+v, want its report", id, v)
		}
	}
}

// TestPollerExchangeAfterUpgrade: a peer that refused an exchange (405) is polled with
// GET while it runs; once its report shows it started after the refusal (an upgrade
// restarts it), the exchange is tried again.
func TestPollerExchangeAfterUpgrade(t *testing.T) {
	var upgraded atomic.Bool
	var uptime atomic.Int64 // the peer's, in ms
	uptime.Store(int64(time.Hour / time.Millisecond))
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method)
		mu.Unlock()
		if r.Method == http.MethodPost && !upgraded.Load() {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		_ = json.NewEncoder(w).Encode(api.NodeReport{Node: "db2", UptimeMS: uptime.Load()})
	}))
	t.Cleanup(srv.Close)
	cfg := &config.Config{}
	cfg.Node.ID = "db1"
	cfg.Failover.Lease = 400 * time.Millisecond
	peer := config.Peer{ID: "db2", APIAddr: strings.TrimPrefix(srv.URL, "http://")}
	cfg.Cluster.Peers = []config.Peer{{ID: "db1"}, peer}
	var clock atomic.Int64 // this node's boot clock, moved by hand
	clock.Store(int64(2 * time.Hour))
	p := newPoller(cfg, api.NewClient("", nil), func() time.Duration { return time.Duration(clock.Load()) }, zap.NewNop())
	p.report = func() api.NodeReport { return api.NodeReport{Node: "db1"} }
	steps := []struct {
		name    string
		restart bool
		want    string // methods the peer saw in three polls
	}{
		{"old version refuses the exchange", false, "POST,GET,GET,GET"},
		{"upgraded and restarted", true, "GET,POST,POST"},
	}
	for _, st := range steps {
		if st.restart {
			// A minute after the refusal, the peer runs the new version, started 10 ms ago.
			clock.Add(int64(time.Minute))
			upgraded.Store(true)
			uptime.Store(10)
		}
		mu.Lock()
		seen = nil
		mu.Unlock()
		for range 3 {
			p.pollOne(context.Background(), peer)
		}
		mu.Lock()
		got := strings.Join(seen, ",")
		mu.Unlock()
		if got != st.want {
			t.Fatalf("%s: the peer saw %s, want %s", st.name, got, st.want)
		}
		if v := p.snapshot()["db2"]; !v.OK || v.Report.Node != "db2" {
			t.Fatalf("%s: view %+v, want db2's report", st.name, v)
		}
	}
}
