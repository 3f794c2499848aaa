package node

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
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
	"github.com/keepraft/keepraft/config"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/mtls"
)

// HTTP limits of the admin API.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	// writeTimeout must outlast the longest journal long-poll.
	writeTimeout   = maxJournalWait + 15*time.Second
	idleTimeout    = time.Minute
	shutdownGrace  = 2 * time.Second
	maxBody        = 1 << 20
	maxJournalWait = time.Minute
	forwardTimeout = 5 * time.Second
	// maxReads bounds the reads (status, members, journal, metrics) served at once, so
	// long polls and large journal copies never starve lease renewals and peer polls.
	maxReads = 16
)

// server serves the admin HTTP/JSON API under /v1/ and Prometheus metrics on /metrics.
// With cluster.tls it serves HTTPS only: the peer endpoints need a cluster node's
// certificate, operator verbs any certificate from the cluster CA, and reads a
// certificate or the token. Without it, the token guards everything but the reads.
type server struct {
	n     *Node
	srv   *http.Server
	ln    net.Listener
	reads chan struct{}
}

func newServer(n *Node) (*server, error) {
	ln, err := net.Listen("tcp", n.cfg.Cluster.APIAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on cluster.api_addr %s: %w", n.cfg.Cluster.APIAddr, err)
	}
	if n.tls != nil {
		ln = tls.NewListener(ln, n.tls.ServerConfig(false, nil))
	}
	a := &server{n: n, ln: ln, reads: make(chan struct{}, maxReads)}
	a.srv = &http.Server{Handler: a.routes(), ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout, WriteTimeout: writeTimeout, IdleTimeout: idleTimeout,
		ErrorLog: zap.NewStdLog(n.log.Named("http"))}
	return a, nil
}

func (a *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.PathStatus, a.reader(a.status))
	mux.HandleFunc("GET "+api.PathMembers, a.reader(a.members))
	mux.HandleFunc("GET "+api.PathJournal, a.reader(a.journal))
	mux.HandleFunc("GET "+api.PathMetrics, a.reader(promhttp.HandlerFor(a.n.metrics.reg, promhttp.HandlerOpts{}).ServeHTTP))
	mux.HandleFunc("GET "+api.PathNode, a.peer(a.node))
	mux.HandleFunc("POST "+api.PathNode, a.peer(a.exchange))
	mux.HandleFunc("GET "+api.PathConfig, a.reader(a.configDigest))
	mux.HandleFunc("POST "+api.PathPropose, a.peer(a.propose))
	mux.HandleFunc("POST "+api.PathRenew, a.peer(a.renew))
	mux.HandleFunc("POST "+api.PathGoodbye, a.peer(a.goodbye))
	mux.HandleFunc("POST "+api.PathSwitchover, a.operator(a.switchover))
	mux.HandleFunc("POST "+api.PathMaintenance, a.operator(a.maintenance))
	mux.HandleFunc("POST "+api.PathPause, a.operator(a.pause))
	mux.HandleFunc("POST "+api.PathFailover, a.operator(a.failover))
	mux.HandleFunc("POST "+api.PathRejoin, a.operator(a.rejoinResume))
	return logRefusals(mux, a.n.log.Named("api"))
}

// logRefusals logs every answer in the 4xx range (a bad token, a bad request, a refused
// operator request) with the caller's address, method and path; 412 (a failover that
// waits for --yes) and 409 (a request the state refuses) at info, the rest at warn.
func logRefusals(h http.Handler, log *zap.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		if rec.code < 400 || rec.code >= 500 {
			return
		}
		fields := []zap.Field{zap.Int("status", rec.code), zap.String("remote", r.RemoteAddr), zap.String("method", r.Method), zap.String("path", r.URL.Path)}
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			fields = append(fields, zap.String("certificate", r.TLS.PeerCertificates[0].Subject.CommonName))
		}
		switch rec.code {
		case http.StatusConflict, http.StatusPreconditionFailed:
			log.Info("request refused", fields...)
		default:
			log.Warn("request rejected", fields...)
		}
	})
}

// statusRecorder remembers the status code a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush passes a long poll's flushes through.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
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
		if err := a.srv.Shutdown(sctx); err != nil {
			// A request still running past the grace (a proposal waiting for a quorum
			// that is gone) is cut off: the process is stopping.
			a.n.log.Warn("admin API: requests still running at shutdown were cut off", zap.Error(err))
			if cerr := a.srv.Close(); cerr != nil {
				a.n.log.Warn("admin API close", zap.Error(cerr))
			}
		}
		<-errc
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

// identity is the verified identity of the request's client certificate ("" without):
// its first DNS SAN that is a member id (a node's certificate may carry other names
// before it), else its first DNS SAN (an operator's certificate).
func (a *server) identity(r *http.Request) string {
	if r.TLS == nil {
		return ""
	}
	id, _ := mtls.PeerIdentity(*r.TLS, a.isMember)
	return id
}

// isMember reports whether id is one of cluster.peers.
func (a *server) isMember(id string) bool { return slices.Contains(peerIDs(a.n.cfg), id) }

// hasToken reports whether the request carries the cluster bearer token.
func (a *server) hasToken(r *http.Request) bool {
	want := []byte("Bearer " + a.n.token)
	return subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) == 1
}

func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="keepraft"`)
	writeErr(w, http.StatusUnauthorized, "%s", msg)
}

// peer guards the endpoints only cluster nodes call: a node's certificate under TLS, the
// token without.
func (a *server) peer(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.n.tls == nil {
			if !a.hasToken(r) {
				unauthorized(w, "missing or wrong bearer token (see cluster.token_file)")
				return
			}
			h(w, r)
			return
		}
		id := a.identity(r)
		switch {
		case id == "":
			unauthorized(w, "a cluster node's client certificate is required")
		case !a.isMember(id):
			writeErr(w, http.StatusForbidden, "certificate %q is not a cluster node", id)
		default:
			h(w, r)
		}
	}
}

// operator guards the mutating operator verbs: any certificate from the cluster CA under
// TLS, the token without.
func (a *server) operator(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.n.tls == nil && !a.hasToken(r) {
			unauthorized(w, "missing or wrong bearer token (see cluster.token_file)")
			return
		}
		if a.n.tls != nil && a.identity(r) == "" {
			unauthorized(w, "a client certificate from the cluster CA is required (raftctl --cert/--key)")
			return
		}
		h(w, r)
	}
}

// reader guards the reads (a certificate or the token under TLS, open without) and
// bounds how many run at once.
func (a *server) reader(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.n.tls != nil && a.identity(r) == "" && !a.hasToken(r) {
			unauthorized(w, "a client certificate or the bearer token is required")
			return
		}
		select {
		case a.reads <- struct{}{}:
			defer func() { <-a.reads }()
			h(w, r)
		default:
			w.Header().Set("Retry-After", "1")
			writeErr(w, http.StatusServiceUnavailable, "too many reads in flight (%d); retry", maxReads)
		}
	}
}

// stamp returns who sent an operator request and from where, for the journal: the
// caller's certificate identity ("token" without one) and its address.
func (a *server) stamp(r *http.Request) (operator, from string) {
	operator = a.identity(r)
	if operator == "" {
		operator = "token"
	}
	return operator, r.RemoteAddr
}

// callerIs answers 403 under TLS unless the caller's certificate is node's: a node renews
// only its own lease and announces only its own goodbye. Without TLS the token is all
// there is to check.
func (a *server) callerIs(w http.ResponseWriter, r *http.Request, what, node string) bool {
	if a.n.tls == nil {
		return true
	}
	if id := a.identity(r); id != node {
		writeErr(w, http.StatusForbidden, "%s for %q: the certificate is %q's", what, node, id)
		return false
	}
	return true
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
	writeJSON(w, http.StatusOK, a.statusView())
}

func (a *server) members(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.statusView().Members)
}

// statusView is the node's status with the typed fields for machines filled in: each
// member's last contact in ms, whether its polled values are stale, its read_only, GTID
// and replication channel, a blocked rejoin, and since when the cluster has no writer.
func (a *server) statusView() api.Status {
	st := a.n.Status()
	s := a.n.fsm.State()
	views := a.n.poll.snapshot()
	now := a.n.now()
	st.Paused = clusterPaused(s)
	if st.Local.Replica == nil {
		st.Local.Replica = api.ParseReplication(st.Local.Replication)
	}
	for i := range st.Members {
		m := &st.Members[i]
		if m.ID == st.Node {
			zero := int64(0)
			m.LastContactMS, m.ReadOnly, m.GTID, m.Replica = &zero, st.Local.ReadOnly, st.Local.GTID, st.Local.Replica
		} else if v, ok := views[m.ID]; ok {
			fillPolled(m, v, now)
		}
		if ns, ok := s.Members[m.ID]; ok {
			m.RejoinBlocked, m.RejoinExtra = ns.RejoinBlocked, ns.RejoinExtra
		}
	}
	if s.Phase != fsm.PhaseActive {
		st.NoWriterSince = noWriterSince(a.n.fsm, s)
	}
	return st
}

// fillPolled sets a peer member's typed fields from the last poll of its report; the
// values are stale when that poll failed.
func fillPolled(m *api.MemberStatus, v api.Peer, now time.Duration) {
	m.Stale = !v.OK
	if v.At == 0 {
		return // never answered: nothing to show
	}
	ago := (now - v.At).Milliseconds()
	m.LastContactMS = &ago
	r := v.Report
	m.ReadOnly, m.GTID, m.Replica = r.ReadOnly, r.GTID, r.Replica
	if m.Replica == nil {
		m.Replica = api.ParseReplication(r.Replication)
	}
}

// clusterPaused is the hook for a paused cluster: fsm.State has no paused flag yet.
// Return it here once it does; raftctl status already reports api.Status.Paused.
func clusterPaused(s fsm.State) bool { return s.Paused }

// noWriterSince returns when the cluster lost its writer: the first ownership event
// after the last OwnerPromoted in the retained journal. It reads the journal backwards in
// growing windows from the current phase, so a status call copies only the tail. When
// the retained journal does not reach back to a promotion (or the start), it returns the
// current phase's start.
func noWriterSince(f *fsm.FSM, s fsm.State) time.Time {
	for window := uint64(64); ; window *= 8 {
		since := s.PhaseIndex - min(s.PhaseIndex, window)
		recs := f.Journal(since)
		if t, ok := writerLostAt(recs, since == 0); ok {
			return t
		}
		if since == 0 {
			return s.PhaseSince
		}
	}
}

// writerLostAt finds, in recs (ascending), the time the last promoted owner's
// ownership ended: the first applied OwnerRevoked or OwnerReleased after the last applied
// OwnerPromoted. Without any promotion in recs it answers only when complete (recs start
// at the journal's beginning): the cluster never had a writer, since its first record.
func writerLostAt(recs []fsm.Record, complete bool) (time.Time, bool) {
	var end time.Time
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if r.Result != fsm.ResultApplied {
			continue
		}
		switch r.Event.Type {
		case fsm.OwnerPromoted:
			return end, !end.IsZero()
		case fsm.OwnerRevoked, fsm.OwnerReleased:
			end = r.Event.At
		}
	}
	if complete && len(recs) > 0 && recs[0].Event.Type == fsm.Bootstrapped {
		return recs[0].Event.At, true
	}
	return time.Time{}, false
}

func (a *server) node(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.n.Report())
}

// exchange answers POST /v1/node: a peer's poll that carries its own report. The
// report is taken as a poll of that peer (under TLS only from the peer it names), so
// one round trip serves both sides' polls.
func (a *server) exchange(w http.ResponseWriter, r *http.Request) {
	var rep api.NodeReport
	if err := decodeBody(w, r, &rep); err != nil {
		return
	}
	if !a.callerIs(w, r, "report", rep.Node) {
		return
	}
	if rep.Node != a.n.cfg.Node.ID && a.n.hasPeer(rep.Node) {
		a.n.poll.record(rep.Node, rep)
	}
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
// the sender retries against the new leader. Operator events arrive here too: a node
// whose operator route took the call forwards them when it does not lead, so they cannot
// be refused; the leader re-checks them as the route did and journals the forwarding hop
// (forwardedOperator).
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
	sender := ev.By
	if a.n.tls != nil {
		sender = a.identity(r)
	}
	if err := authorize(ev, sender, a.n.fsm.State()); err != nil {
		code := http.StatusForbidden
		if errors.Is(err, fsm.ErrInvalid) {
			code = http.StatusBadRequest
		}
		a.n.log.Warn("refused a forwarded event", zap.String("type", string(ev.Type)), zap.String("by", ev.By), zap.String("sender", sender), zap.String("remote", r.RemoteAddr), zap.Error(err))
		writeErr(w, code, "%v", err)
		return
	}
	if !a.n.IsLeader() {
		writeErr(w, http.StatusMisdirectedRequest, "not the leader (leader is %q)", a.n.leader())
		return
	}
	if operatorEvents[ev.Type] {
		checked, err := forwardedOperator(ev, sender, r.RemoteAddr, a.n.fsm.State(), a.n.unreachable())
		if err != nil {
			a.n.log.Warn("refused a forwarded operator event", zap.String("type", string(ev.Type)), zap.String("sender", sender), zap.String("remote", r.RemoteAddr), zap.Error(err))
			operatorRefused(w, err)
			return
		}
		ev = checked
	}
	resp, err := a.n.Apply(ev, forwardTimeout)
	if err != nil {
		code := http.StatusServiceUnavailable
		switch {
		case errors.Is(err, ErrVersion):
			code = http.StatusBadRequest
		case !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost):
			code = http.StatusInternalServerError
		}
		writeErr(w, code, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// renew answers a lease renewal: under TLS only from the owner it names.
func (a *server) renew(w http.ResponseWriter, r *http.Request) {
	var req api.RenewRequest
	if err := decodeBody(w, r, &req); err != nil {
		return
	}
	if !a.callerIs(w, r, "renew", req.Owner) {
		return
	}
	if req.Report != nil && req.Report.Node == req.Owner && a.n.hasPeer(req.Owner) {
		a.n.poll.record(req.Owner, *req.Report)
	}
	resp := a.n.promiser.Grant(req)
	rep := a.n.Report()
	resp.Report = &rep
	writeJSON(w, http.StatusOK, resp)
}

// operatorRefused answers a refused forwarded operator event: 403 for a forgery, 412 for
// an unconfirmed failover, 400 for a bad event, 409 for a verb not every member applies,
// else as the operator route would (checkFailed).
func operatorRefused(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, errForbidden):
		writeErr(w, http.StatusForbidden, "%v", err)
	case errors.Is(err, errUnconfirmed):
		writeErr(w, http.StatusPreconditionFailed, "%v", err)
	case errors.Is(err, fsm.ErrInvalid):
		writeErr(w, http.StatusBadRequest, "%v", err)
	case errors.Is(err, errVerbUnsupported):
		writeErr(w, http.StatusConflict, "%v", err)
	default:
		checkFailed(w, err)
	}
}

// checkFailed answers 409 for a request the state refuses, 200 with a note for a no-op.
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
	req.Operator, req.From = a.stamp(r)
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
	req.Operator, req.From = a.stamp(r)
	if err := a.n.fsm.State().CheckMaintenance(req.Node, req.On, a.n.unreachable()); err != nil {
		checkFailed(w, err)
		return
	}
	a.proposeFromAPI(w, r, fsm.MaintenanceChanged, req)
}

// configDigest answers GET /v1/config: this node's settings that must agree across the
// cluster (raftctl config-check).
func (a *server) configDigest(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, digestConfig(a.n.cfg, a.n.version))
}

// digestConfig extracts cfg's cluster-wide settings; the VRRP password only as a digest.
func digestConfig(cfg *config.Config, version string) api.ConfigDigest {
	d := api.ConfigDigest{
		Node: cfg.Node.ID, Role: cfg.Node.Role, Version: version, TLS: cfg.Cluster.TLS != nil,
		LeaseMS: cfg.Failover.Lease.Milliseconds(), CatchupTimeoutMS: cfg.Failover.CatchupTimeout.Milliseconds(),
		OnCatchupTimeout: cfg.Failover.OnCatchupTimeout, Nopreempt: cfg.Failover.Nopreempt,
	}
	for _, p := range cfg.Cluster.Peers {
		d.Peers = append(d.Peers, p.ID+" "+p.RaftAddr+" "+p.APIAddr)
	}
	slices.Sort(d.Peers)
	if !cfg.IsDatabase() {
		return d
	}
	for _, v := range cfg.VIP.Addresses {
		d.VIPs = append(d.VIPs, v.String())
	}
	d.Fence, d.KernelLeaseMS = cfg.VIP.Fence, cfg.VIP.KernelLease.Milliseconds()
	d.VRRP, d.Flavor, d.SemiSync = cfg.VRRP.Enabled, cfg.MySQL.Flavor, cfg.MySQL.SemiSync
	if cfg.VRRP.Enabled {
		d.VRRPVersion, d.VRID, d.AdvertIntMS = cfg.VRRP.Version, cfg.VRRP.VirtualRouterID, cfg.VRRP.AdvertInt.Milliseconds()
		if cfg.VRRP.AuthPass != "" {
			sum := sha256.Sum256([]byte(cfg.VRRP.AuthPass))
			d.AuthDigest = hex.EncodeToString(sum[:6])
		}
	}
	return d
}

// operatorVerbVersion is the event schema version of pause, failover and rejoin resume.
const operatorVerbVersion = 3

// supportsVerbs answers 409 unless every member applies the operator verbs' events.
func (a *server) supportsVerbs(w http.ResponseWriter, s fsm.State, verb string) bool {
	if !s.Supported(operatorVerbVersion) {
		writeErr(w, http.StatusConflict, "%s: not every member runs a keepraftd that knows it (event schema %d); upgrade them first", verb, operatorVerbVersion)
		return false
	}
	return true
}

// pause answers POST /v1/pause {"paused": true, "reason": "..."}: no failover or handover
// starts on its own while paused; {"paused": false} resumes. Repeating the current state
// is a no-op (200, result skipped).
func (a *server) pause(w http.ResponseWriter, r *http.Request) {
	var req fsm.PauseData
	if err := decodeBody(w, r, &req); err != nil {
		return
	}
	req.Operator, req.From = a.stamp(r)
	s := a.n.fsm.State()
	if err := s.CheckPause(req.Paused); err != nil {
		checkFailed(w, err)
		return
	}
	if !a.supportsVerbs(w, s, "pause") {
		return
	}
	a.proposeVersioned(w, r, fsm.PauseChanged, operatorVerbVersion, req)
}

// failover answers POST /v1/failover {"to": "db2", "yes": true}: an operator's failover
// for a cluster that cannot decide by itself. Without yes it answers 412 with the loss
// note the operator must accept, and commits nothing.
func (a *server) failover(w http.ResponseWriter, r *http.Request) {
	var req api.FailoverRequest
	if err := decodeBody(w, r, &req); err != nil {
		return
	}
	s := a.n.fsm.State()
	note, err := s.CheckFailover(req.To, a.n.unreachable())
	if err != nil {
		checkFailed(w, err)
		return
	}
	if !a.supportsVerbs(w, s, "failover") {
		return
	}
	if !req.Yes {
		writeErr(w, http.StatusPreconditionFailed, "failover to %s needs confirmation: %s", req.To, note)
		return
	}
	d := fsm.FailoverData{To: req.To, Loss: note}
	d.Operator, d.From = a.stamp(r)
	a.proposeVersioned(w, r, fsm.FailoverRequested, operatorVerbVersion, d)
}

// rejoinResume answers POST /v1/rejoin {"node": "db1", "accept": "1-1-230"}: the owner
// checks node's blocked rejoin again now; accept (the journaled extra set, exactly) lets
// those transactions flow into the owner.
func (a *server) rejoinResume(w http.ResponseWriter, r *http.Request) {
	var req fsm.RejoinResumeData
	if err := decodeBody(w, r, &req); err != nil {
		return
	}
	req.Operator, req.From = a.stamp(r)
	s := a.n.fsm.State()
	if err := s.CheckRejoinResume(req.Node, req.Accept); err != nil {
		checkFailed(w, err)
		return
	}
	if !a.supportsVerbs(w, s, "rejoin resume") {
		return
	}
	a.proposeVersioned(w, r, fsm.RejoinResumed, operatorVerbVersion, req)
}

// goodbye records that a peer is stopping gracefully: under TLS only from that peer.
func (a *server) goodbye(w http.ResponseWriter, r *http.Request) {
	var req api.GoodbyeRequest
	if err := decodeBody(w, r, &req); err != nil {
		return
	}
	if !a.isMember(req.Node) {
		writeErr(w, http.StatusBadRequest, "node: %q is not a cluster member", req.Node)
		return
	}
	if !a.callerIs(w, r, "goodbye", req.Node) {
		return
	}
	a.n.log.Info("peer is stopping", zap.String("peer", req.Node))
	a.n.poll.markLeft(req.Node)
	w.WriteHeader(http.StatusNoContent)
}

func (a *server) proposeFromAPI(w http.ResponseWriter, r *http.Request, t fsm.Type, p any) {
	a.proposeVersioned(w, r, t, 1, p)
}

// proposeVersioned commits an operator's event at schema version v and answers with the
// result (409 when it was journaled but not applied).
func (a *server) proposeVersioned(w http.ResponseWriter, r *http.Request, t fsm.Type, v int, p any) {
	ev, err := a.n.event(t, p)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "%v", err)
		return
	}
	ev.V = max(ev.V, v)
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
