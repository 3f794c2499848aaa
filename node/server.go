package node

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
)

// HTTP limits of the admin API.
const (
	readHeaderTimeout = 5 * time.Second
	shutdownGrace     = 2 * time.Second
	maxBody           = 1 << 20
	maxJournalWait    = time.Minute
	forwardTimeout    = 5 * time.Second
)

// server serves the admin HTTP/JSON API under /v1/ and Prometheus metrics on /metrics.
type server struct {
	n   *Node
	srv *http.Server
	ln  net.Listener
}

func newServer(n *Node) (*server, error) {
	ln, err := net.Listen("tcp", n.cfg.Cluster.APIAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on cluster.api_addr %s: %w", n.cfg.Cluster.APIAddr, err)
	}
	a := &server{n: n, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.PathStatus, a.status)
	mux.HandleFunc("GET "+api.PathMembers, a.members)
	mux.HandleFunc("GET "+api.PathJournal, a.journal)
	mux.HandleFunc("GET "+api.PathNode, a.node)
	mux.HandleFunc("POST "+api.PathPropose, a.auth(a.propose))
	mux.HandleFunc("POST "+api.PathRenew, a.auth(a.renew))
	mux.HandleFunc("POST "+api.PathSwitchover, a.auth(a.switchover))
	mux.HandleFunc("POST "+api.PathMaintenance, a.auth(a.maintenance))
	mux.HandleFunc("POST "+api.PathGoodbye, a.auth(a.goodbye))
	mux.Handle("GET "+api.PathMetrics, promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{}))
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout}
	return a, nil
}

// Run serves until ctx ends.
func (a *server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- a.srv.Serve(a.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin API: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		defer cancel()
		err := a.srv.Shutdown(sctx)
		<-errc
		if err != nil {
			return fmt.Errorf("admin API shutdown: %w", err)
		}
		return nil
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client went away; nothing to do
}

func writeErr(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, api.ErrorResponse{Error: fmt.Sprintf(format, args...)})
}

// auth requires the cluster bearer token; a wrong or missing token gets 401 and the
// handler never runs.
func (a *server) auth(h http.HandlerFunc) http.HandlerFunc {
	want := []byte("Bearer " + a.n.token)
	return func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="keepraft"`)
			writeErr(w, http.StatusUnauthorized, "missing or wrong bearer token (see cluster.token_file)")
			return
		}
		h(w, r)
	}
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeErr(w, http.StatusRequestEntityTooLarge, "request body larger than %d bytes", maxBody)
			return err
		}
		writeErr(w, http.StatusBadRequest, "decode request body: %v", err)
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		writeErr(w, http.StatusBadRequest, "decode request body: trailing data after the JSON value")
		return errors.New("trailing data")
	}
	return nil
}

func (a *server) status(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.n.Status())
}

func (a *server) members(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.n.Status().Members)
}

func (a *server) node(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.n.Report())
}

// journal answers GET /v1/journal?since=N[&wait=DURATION]. With wait it long-polls until
// a record newer than since exists or the wait ends.
func (a *server) journal(w http.ResponseWriter, r *http.Request) {
	var since uint64
	if s := r.URL.Query().Get("since"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeErr(w, http.StatusBadRequest, "since: %q is not a log index", s)
			return
		}
		since = v
	}
	var wait time.Duration
	if s := r.URL.Query().Get("wait"); s != "" {
		v, err := time.ParseDuration(s)
		if err != nil || v < 0 || v > maxJournalWait {
			writeErr(w, http.StatusBadRequest, "wait: %q is not a duration up to %v", s, maxJournalWait)
			return
		}
		wait = v
	}
	f := a.n.fsm
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		ch := f.Watch()
		recs := f.Journal(since)
		if len(recs) > 0 || wait == 0 {
			last := since
			if len(recs) > 0 {
				last = recs[len(recs)-1].Index
			}
			writeJSON(w, http.StatusOK, api.JournalResponse{Records: recs, Last: last})
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			wait = 0
		case <-r.Context().Done():
			return
		}
	}
}

// propose commits a forwarded event. Only the leader accepts; a follower answers 421 so
// the sender retries against the new leader.
func (a *server) propose(w http.ResponseWriter, r *http.Request) {
	var ev fsm.Event
	if err := decodeBody(w, r, &ev); err != nil {
		return
	}
	if ev.Type == "" || ev.By == "" {
		writeErr(w, http.StatusBadRequest, "event needs type and by")
		return
	}
	if !slices.Contains(peerIDs(a.n.cfg), ev.By) {
		writeErr(w, http.StatusBadRequest, "by: %q is not a cluster member", ev.By)
		return
	}
	if !a.n.IsLeader() {
		writeErr(w, http.StatusMisdirectedRequest, "not the leader (leader is %q)", a.n.leader())
		return
	}
	resp, err := a.n.Apply(ev, forwardTimeout)
	if err != nil {
		code := http.StatusServiceUnavailable
		if !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) {
			code = http.StatusInternalServerError
		}
		writeErr(w, code, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *server) renew(w http.ResponseWriter, r *http.Request) {
	var req api.RenewRequest
	if err := decodeBody(w, r, &req); err != nil {
		return
	}
	writeJSON(w, http.StatusOK, a.n.promiser.Grant(req))
}

// conflict answers 409 for a request the state refuses, 200 with a note for a no-op.
func checkFailed(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, fsm.ErrNoChange):
		writeJSON(w, http.StatusOK, api.ProposeResponse{Result: fsm.ResultSkipped, Error: err.Error()})
	case errors.Is(err, fsm.ErrUnknownMember), errors.Is(err, fsm.ErrNotDatabase):
		writeErr(w, http.StatusBadRequest, "%v", err)
	default:
		writeErr(w, http.StatusConflict, "%v", err)
	}
}

// switchover answers POST /v1/switchover {"to": "db2"}: a planned, lossless move. A
// request that would leave no eligible owner is refused with 409 and changes nothing.
func (a *server) switchover(w http.ResponseWriter, r *http.Request) {
	var req fsm.SwitchoverData
	if err := decodeBody(w, r, &req); err != nil {
		return
	}
	if _, err := a.n.fsm.State().CheckSwitchover(req.To, a.n.unreachable()); err != nil {
		checkFailed(w, err)
		return
	}
	a.proposeFromAPI(w, r, fsm.SwitchoverRequested, req)
}

// maintenance answers POST /v1/maintenance {"node": "db1", "on": true}. Taking the owner
// out when no other node could take over is refused with 409.
func (a *server) maintenance(w http.ResponseWriter, r *http.Request) {
	var req fsm.MaintenanceData
	if err := decodeBody(w, r, &req); err != nil {
		return
	}
	if err := a.n.fsm.State().CheckMaintenance(req.Node, req.On, a.n.unreachable()); err != nil {
		checkFailed(w, err)
		return
	}
	a.proposeFromAPI(w, r, fsm.MaintenanceChanged, req)
}

// goodbye records that a peer is stopping gracefully.
func (a *server) goodbye(w http.ResponseWriter, r *http.Request) {
	var req api.GoodbyeRequest
	if err := decodeBody(w, r, &req); err != nil {
		return
	}
	if !slices.Contains(peerIDs(a.n.cfg), req.Node) {
		writeErr(w, http.StatusBadRequest, "node: %q is not a cluster member", req.Node)
		return
	}
	a.n.log.Info("peer is stopping", zap.String("peer", req.Node))
	a.n.poll.markLeft(req.Node)
	w.WriteHeader(http.StatusNoContent)
}

func (a *server) proposeFromAPI(w http.ResponseWriter, r *http.Request, t fsm.Type, p any) {
	ev, err := a.n.event(t, p)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "%v", err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), forwardTimeout)
	defer cancel()
	resp, err := a.n.Propose(ctx, ev)
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, "%v", err)
		return
	}
	a.n.log.Info("operator request committed", zap.String("type", string(t)), zap.Uint64("index", resp.Index), zap.String("result", string(resp.Result)))
	code := http.StatusOK
	if resp.Result != fsm.ResultApplied {
		code = http.StatusConflict
	}
	writeJSON(w, code, resp)
}
