package main

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

// api serves the admin HTTP/JSON API under /v1/ and Prometheus metrics on /metrics.
type apiServer struct {
	d   *daemon
	srv *http.Server
	ln  net.Listener
}

func newAPI(d *daemon) (*apiServer, error) {
	ln, err := net.Listen("tcp", d.cfg.Cluster.APIAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on cluster.api_addr %s: %w", d.cfg.Cluster.APIAddr, err)
	}
	a := &apiServer{d: d, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", a.status)
	mux.HandleFunc("GET /v1/members", a.members)
	mux.HandleFunc("GET /v1/journal", a.journal)
	mux.HandleFunc("GET /v1/node", a.node)
	mux.HandleFunc("POST /v1/propose", a.auth(a.propose))
	mux.HandleFunc("POST /v1/renew", a.auth(a.renew))
	mux.HandleFunc("POST /v1/switchover", a.auth(a.switchover))
	mux.HandleFunc("POST /v1/maintenance", a.auth(a.maintenance))
	mux.HandleFunc("POST /v1/goodbye", a.auth(a.goodbye))
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{}))
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return a, nil
}

// Run serves until ctx ends.
func (a *apiServer) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- a.srv.Serve(a.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin API: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = a.srv.Shutdown(sctx)
		<-errc
		return nil
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, api.ErrorResponse{Error: fmt.Sprintf(format, args...)})
}

// auth requires the cluster bearer token; a wrong or missing token gets 401 and the
// handler never runs.
func (a *apiServer) auth(h http.HandlerFunc) http.HandlerFunc {
	want := []byte("Bearer " + a.d.token)
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

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode request body: %w", err)
	}
	return nil
}

func (a *apiServer) status(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.d.status())
}

func (a *apiServer) members(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.d.status().Members)
}

func (a *apiServer) node(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.d.report())
}

// journal answers GET /v1/journal?since=N[&wait=DURATION]. With wait it long-polls until
// a record newer than since exists or the wait ends.
func (a *apiServer) journal(w http.ResponseWriter, r *http.Request) {
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
		if err != nil || v < 0 || v > time.Minute {
			writeErr(w, http.StatusBadRequest, "wait: %q is not a duration up to 1m", s)
			return
		}
		wait = v
	}
	f := a.d.node.fsm
	deadline := time.After(wait)
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
		case <-deadline:
			wait = 0
		case <-r.Context().Done():
			return
		}
	}
}

// propose commits a forwarded event. Only the leader accepts; a follower answers 421 so
// the sender retries against the new leader.
func (a *apiServer) propose(w http.ResponseWriter, r *http.Request) {
	var ev fsm.Event
	if err := decodeBody(r, &ev); err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	if ev.Type == "" || ev.By == "" {
		writeErr(w, http.StatusBadRequest, "event needs type and by")
		return
	}
	if !slices.Contains(peerIDs(a.d.cfg), ev.By) {
		writeErr(w, http.StatusBadRequest, "by: %q is not a cluster member", ev.By)
		return
	}
	if !a.d.node.isLeader() {
		writeErr(w, http.StatusMisdirectedRequest, "not the leader (leader is %q)", a.d.node.leader())
		return
	}
	resp, err := a.d.node.applyLocal(ev, 5*time.Second)
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

func (a *apiServer) renew(w http.ResponseWriter, r *http.Request) {
	var req api.RenewRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, a.d.grant(req))
}

// switchover answers POST /v1/switchover {"to": "db2"}: a planned, lossless move.
func (a *apiServer) switchover(w http.ResponseWriter, r *http.Request) {
	var req fsm.SwitchoverData
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	s := a.d.node.fsm.State()
	if s.Phase != fsm.PhaseActive {
		writeErr(w, http.StatusConflict, "no active owner to switch over from (phase %s)", s.Phase)
		return
	}
	if req.To != "" {
		m, ok := s.Members[req.To]
		switch {
		case !ok:
			writeErr(w, http.StatusBadRequest, "to: %q is not a member", req.To)
			return
		case m.Role != fsm.RoleDatabase:
			writeErr(w, http.StatusBadRequest, "to: %q is a %s and can never own the VIP", req.To, m.Role)
			return
		case req.To == s.Owner:
			writeErr(w, http.StatusBadRequest, "to: %q already owns the VIP", req.To)
			return
		case !m.Healthy:
			writeErr(w, http.StatusConflict, "to: %q is not healthy (%s)", req.To, m.Detail)
			return
		}
	}
	a.proposeFromAPI(w, r, fsm.SwitchoverRequested, req)
}

// goodbye records that a peer is stopping gracefully.
func (a *apiServer) goodbye(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Node string `json:"node"`
	}
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	if !slices.Contains(peerIDs(a.d.cfg), req.Node) {
		writeErr(w, http.StatusBadRequest, "node: %q is not a cluster member", req.Node)
		return
	}
	a.d.log.Info("peer is stopping", zap.String("peer", req.Node))
	a.d.markLeft(req.Node, true)
	w.WriteHeader(http.StatusNoContent)
}

func (a *apiServer) maintenance(w http.ResponseWriter, r *http.Request) {
	var req fsm.MaintenanceData
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	if _, ok := a.d.node.fsm.State().Members[req.Node]; !ok {
		writeErr(w, http.StatusBadRequest, "node: %q is not a member", req.Node)
		return
	}
	a.proposeFromAPI(w, r, fsm.MaintenanceChanged, req)
}

func (a *apiServer) proposeFromAPI(w http.ResponseWriter, r *http.Request, t fsm.Type, p any) {
	ev, err := a.d.node.event(t, p)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "%v", err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	resp, err := a.d.node.propose(ctx, ev)
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, "%v", err)
		return
	}
	a.d.log.Info("operator request committed", zap.String("type", string(t)), zap.Uint64("index", resp.Index), zap.String("result", string(resp.Result)))
	code := http.StatusOK
	if resp.Result != fsm.ResultApplied {
		code = http.StatusConflict
	}
	writeJSON(w, code, resp)
}
