package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// fakeAPI is a node's admin API with canned answers: a status, a journal that
// long-polls, and operator verbs whose effect onPost decides.
type fakeAPI struct {
	mu      sync.Mutex
	status  api.Status
	records []fsm.Record
	changed chan struct{}
	posts   []string
	// onPost answers a verb (code, body) and may append records.
	onPost func(f *fakeAPI, path string, body []byte) (int, any)
	srv    *httptest.Server
}

func newFake(t *testing.T, st api.Status) *fakeAPI {
	f := &fakeAPI{status: st, changed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		writeTestJSON(w, 200, f.status)
	})
	mux.HandleFunc("GET /v1/members", func(w http.ResponseWriter, _ *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		writeTestJSON(w, 200, f.status.Members)
	})
	mux.HandleFunc("GET /v1/journal", f.journal)
	verb := func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			writeTestJSON(w, 401, api.ErrorResponse{Error: "missing or wrong bearer token"})
			return
		}
		f.mu.Lock()
		f.posts = append(f.posts, r.URL.Path+" "+string(bytes.TrimSpace(b)))
		on := f.onPost
		f.mu.Unlock()
		code, body := 200, any(api.ProposeResponse{Index: 1, Result: fsm.ResultApplied})
		if on != nil {
			code, body = on(f, r.URL.Path, b)
		}
		writeTestJSON(w, code, body)
	}
	mux.HandleFunc("POST /v1/switchover", verb)
	mux.HandleFunc("POST /v1/maintenance", verb)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

func (f *fakeAPI) postCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.posts)
}

// add appends an applied record at the next index and wakes long polls.
func (f *fakeAPI) add(ms int, typ fsm.Type, by string, epoch uint64, p any) uint64 {
	return f.addResult(ms, typ, by, epoch, p, fsm.ResultApplied)
}

func (f *fakeAPI) addResult(ms int, typ fsm.Type, by string, epoch uint64, p any, res fsm.Result) uint64 {
	b, _ := json.Marshal(p)
	f.mu.Lock()
	defer f.mu.Unlock()
	idx := uint64(len(f.records) + 1)
	f.records = append(f.records, fsm.Record{Index: idx, Result: res, Event: fsm.Event{V: 1, Type: typ, By: by, Epoch: epoch, At: t0.Add(time.Duration(ms) * time.Millisecond), Data: b}})
	close(f.changed)
	f.changed = make(chan struct{})
	return idx
}

func (f *fakeAPI) journal(w http.ResponseWriter, r *http.Request) {
	since, _ := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
	var wait time.Duration
	if s := r.URL.Query().Get("wait"); s != "" {
		wait, _ = time.ParseDuration(s)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		f.mu.Lock()
		var recs []fsm.Record
		for _, rec := range f.records {
			if rec.Index > since {
				recs = append(recs, rec)
			}
		}
		ch := f.changed
		f.mu.Unlock()
		if len(recs) > 0 || wait == 0 {
			last := since
			if len(recs) > 0 {
				last = recs[len(recs)-1].Index
			}
			writeTestJSON(w, 200, api.JournalResponse{Records: recs, Last: last})
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			wait = 0
		case <-r.Context().Done():
			return
		}
	}
}

func writeTestJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// raftctl runs the CLI with times in UTC and the test token; it returns stdout and the
// exit code main would give.
func raftctl(t *testing.T, args ...string) (string, int, string) {
	t.Helper()
	return raftctlCtx(context.Background(), t, args...)
}

func raftctlCtx(ctx context.Context, t *testing.T, args ...string) (string, int, string) {
	t.Helper()
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err := runIn(ctx, append([]string{"--token-file", tok}, args...), &out, time.UTC)
	code := exitCode(err, &errOut)
	return out.String(), code, errOut.String()
}

func ptr[T any](v T) *T { return &v }

// clusterStatus is a healthy cluster as seen from the witness: db1 owns and serves.
func clusterStatus(db1API, db2API string) api.Status {
	return api.Status{Node: "witness", Role: fsm.RoleWitness, RaftState: "Leader", Leader: "witness", Term: 3, Owner: "db1", Epoch: 4, Phase: fsm.PhaseActive, PhaseSince: t0,
		ControlPlane: "plaintext",
		Members: []api.MemberStatus{
			{ID: "db1", Role: fsm.RoleDatabase, Suffrage: "Voter", APIAddr: db1API, RaftState: "Follower", Reachable: true, LastContact: "40ms ago", LastContactMS: ptr(int64(40)), Applied: 70, Owner: true, Healthy: ptr(true), ReadOnly: ptr(false), GTID: "0-1-70", Replication: "not configured", Replica: &api.Replica{}},
			{ID: "db2", Role: fsm.RoleDatabase, Suffrage: "Voter", APIAddr: db2API, RaftState: "Follower", Reachable: true, LastContact: "30ms ago", LastContactMS: ptr(int64(30)), Applied: 70, Healthy: ptr(true), ReadOnly: ptr(true), GTID: "0-1-70",
				Replication: "from db1 io=yes sql=yes lag=0s", Replica: &api.Replica{Configured: true, Source: "db1", IORunning: true, SQLRunning: true, LagSeconds: ptr(int64(0))}},
			{ID: "witness", Role: fsm.RoleWitness, Suffrage: "Voter", RaftState: "Leader", Reachable: true, LastContact: "self", LastContactMS: ptr(int64(0)), Applied: 70},
		}}
}
