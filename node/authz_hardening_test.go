package node

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/config"
	"github.com/keepraft/keepraft/mtls"
)

// TestOversizedBody: every request body larger than maxBody is answered 413 before the
// handler looks at it.
func TestOversizedBody(t *testing.T) {
	n := newIdleNode(t, "witness")
	h := (&server{n: n, reads: make(chan struct{}, maxReads)}).routes()
	huge := `{"node":"` + strings.Repeat("x", maxBody) + `"}`
	for _, path := range []string{api.PathPropose, api.PathRenew, api.PathGoodbye, api.PathSwitchover, api.PathMaintenance, api.PathPause, api.PathFailover, api.PathRejoin} {
		t.Run(path, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(huge))
			req.Header.Set("Authorization", "Bearer t0ken")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("POST %s with %d bytes: %d %s, want 413", path, len(huge), rec.Code, rec.Body.String())
			}
		})
	}
}

// TestControlPlaneReported: without cluster.tls keepraftd warns loudly at start and its
// status says the control plane is plaintext; with it, neither.
func TestControlPlaneReported(t *testing.T) {
	tests := []struct {
		name  string
		tls   bool
		plane string
		warns bool
	}{
		{"plaintext", false, "plaintext", true},
		{"mutual TLS", true, "mutual TLS", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := newMemCluster(t).cfgs["witness"]
			if tt.tls {
				certs := filepath.Join(t.TempDir(), "tls")
				if _, err := mtls.Generate(certs, []string{"witness"}, nil, time.Hour); err != nil {
					t.Fatal(err)
				}
				cfg.Cluster.TLS = &config.TLS{CAFile: filepath.Join(certs, mtls.CAFile), CertFile: filepath.Join(certs, "witness.pem"), KeyFile: filepath.Join(certs, "witness-key.pem")}
			}
			core, logs := observer.New(zapcore.InfoLevel)
			_, tr := raft.NewInmemTransport(raft.ServerAddress(cfg.Cluster.RaftAddr))
			n, err := New(cfg, zap.New(core), Options{Transport: tr})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := n.close(); err != nil {
					t.Errorf("close: %v", err)
				}
			})
			warned := logs.FilterLevelExact(zapcore.WarnLevel).Filter(func(e observer.LoggedEntry) bool {
				return strings.Contains(e.Message, "CONTROL PLANE IS PLAINTEXT")
			}).Len() == 1
			if warned != tt.warns {
				t.Errorf("plaintext warning logged: %v, want %v (log: %v)", warned, tt.warns, logs.All())
			}
			if got := n.Status().ControlPlane; got != tt.plane {
				t.Errorf("Status().ControlPlane = %q, want %q", got, tt.plane)
			}
			rec := httptest.NewRecorder()
			(&server{n: n, reads: make(chan struct{}, maxReads)}).routes().ServeHTTP(rec, withToken(httptest.NewRequest(http.MethodGet, api.PathStatus, nil)))
			var st api.Status
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.ControlPlane != tt.plane {
				t.Errorf("GET %s: control_plane %q (%v), want %q", api.PathStatus, st.ControlPlane, err, tt.plane)
			}
		})
	}
}

// withToken adds the in-process cluster's bearer token to r.
func withToken(r *http.Request) *http.Request {
	r.Header.Set("Authorization", "Bearer t0ken")
	return r
}

// TestServerTimeouts: the admin API's HTTP server bounds reading a request, writing an
// answer (longer than the longest journal long-poll) and keeping an idle connection.
func TestServerTimeouts(t *testing.T) {
	n := newIdleNode(t, "witness")
	a, err := newServer(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.ln.Close() })
	tests := []struct {
		name string
		got  time.Duration
		min  time.Duration
	}{
		{"ReadHeaderTimeout", a.srv.ReadHeaderTimeout, time.Nanosecond},
		{"ReadTimeout", a.srv.ReadTimeout, time.Nanosecond},
		{"WriteTimeout", a.srv.WriteTimeout, maxJournalWait + time.Nanosecond},
		{"IdleTimeout", a.srv.IdleTimeout, time.Nanosecond},
	}
	for _, tt := range tests {
		if tt.got < tt.min {
			t.Errorf("%s = %v, want ≥ %v", tt.name, tt.got, tt.min)
		}
	}
}
