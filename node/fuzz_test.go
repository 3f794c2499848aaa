package node

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/config"
)

// fuzzServer runs a single-voter witness (plaintext, token "t0ken") for the life of the
// fuzz target and returns its API handler.
func fuzzServer(f *testing.F) http.Handler {
	f.Helper()
	dir := f.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("t0ken\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	l := freeAddrs(f, 2)
	yaml := fmt.Sprintf(`node: {id: witness, role: witness, data_dir: %q}
cluster:
  raft_addr: %q
  api_addr: %q
  token_file: %q
  peers:
    - {id: witness, raft_addr: %q, api_addr: %q}
  raft: {heartbeat_timeout: 300ms, election_timeout: 300ms, leader_lease_timeout: 150ms}
`, filepath.Join(dir, "data"), l[0], l[1], token, l[0], l[1])
	cfg, err := config.Parse(strings.NewReader(yaml), config.AllowSingleVoter())
	if err != nil {
		f.Fatal(err)
	}
	n, err := New(cfg, zap.NewNop(), Options{})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	f.Cleanup(func() {
		cancel()
		<-done
	})
	deadline := time.Now().Add(10 * time.Second)
	for !n.IsLeader() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return (&server{n: n, reads: make(chan struct{}, maxReads)}).routes()
}

// fuzzBody posts body to path through the handler and fails on a 5xx other than the
// documented 503 (no leader, busy) or a panic (which the fuzzer reports itself).
func fuzzBody(f *testing.F, path string, seeds ...string) {
	h := fuzzServer(f)
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer t0ken")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("POST %s %q: %d %s", path, body, rec.Code, rec.Body.String())
		}
	})
}

func FuzzProposeBody(f *testing.F) {
	fuzzBody(f, api.PathPropose,
		`{"v":1,"type":"HealthChanged","by":"witness","epoch":0,"data":{"node":"witness","healthy":true}}`,
		`{"v":1,"type":"OwnerReleased","by":"witness","epoch":3,"data":{"owner":"witness"}}`,
		`{"v":99,"type":"Nope","by":"witness"}`, `{}`, `[]`, `{"type":"MemberJoined","by":"witness","data":{"member":{"id":""}}}`,
		`{"v":3,"type":"PauseChanged","by":"witness","data":{"paused":true,"operator":"x","from":"1.2.3.4:5"}}`,
		`{"v":3,"type":"FailoverRequested","by":"witness","data":{"to":"witness","operator":"x"}}`,
		`{"v":1,"type":"SwitchoverRequested","by":"witness","data":{"to":""}}`,
		`{"v":3,"type":"RejoinResumed","by":"witness","data":{"node":"witness","accept":"0-1-1"}}`,
		`{"v":1,"type":"ForeignVRRPMasterSeen","by":"witness","data":{"source":"10.0.0.9","vrid":51}}`)
}

func FuzzRenewBody(f *testing.F) {
	fuzzBody(f, api.PathRenew, `{"owner":"db1","epoch":1}`, `{"owner":"","epoch":18446744073709551615}`, `{"owner":1}`)
}

func FuzzSwitchoverBody(f *testing.F) {
	fuzzBody(f, api.PathSwitchover, `{}`, `{"to":"db2"}`, `{"to":"witness","operator":"x"}`, `{"to":null}`)
}

func FuzzMaintenanceBody(f *testing.F) {
	fuzzBody(f, api.PathMaintenance, `{"node":"witness","on":true}`, `{"node":"db1","on":false}`, `{"node":""}`)
}

func FuzzGoodbyeBody(f *testing.F) {
	fuzzBody(f, api.PathGoodbye, `{"node":"witness"}`, `{"node":"nobody"}`, `{"node":[1]}`)
}

func FuzzPauseBody(f *testing.F) {
	fuzzBody(f, api.PathPause, `{"paused":true,"reason":"upgrade"}`, `{"paused":false}`, `{"paused":"yes"}`, `{"reason":null,"operator":"x","from":"y"}`)
}

func FuzzFailoverBody(f *testing.F) {
	fuzzBody(f, api.PathFailover, `{"to":"witness"}`, `{"to":"db2","yes":true}`, `{"to":"","yes":true}`, `{"yes":1}`)
}

func FuzzRejoinBody(f *testing.F) {
	fuzzBody(f, api.PathRejoin, `{"node":"witness"}`, `{"node":"db1","accept":"0-1-230"}`, `{"node":"witness","accept":""}`, `{"accept":[]}`)
}
