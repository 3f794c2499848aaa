package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap/zaptest"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/config"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/mtls"
)

// tlsNode starts one node of cfgYAML with mutual TLS on loopback and returns it with the
// cluster's cert dir and a foreign CA's dir.
func tlsNode(t *testing.T, id string, peers []string) (*Node, string, string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	certs, foreign := filepath.Join(dir, "tls"), filepath.Join(dir, "evil")
	if _, err := mtls.Generate(certs, append(append([]string{}, peers...), "raftctl"), nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := mtls.Generate(foreign, append(append([]string{}, peers...), "raftctl"), nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs := map[string]string{}
	var b strings.Builder
	free := freeAddrs(t, 2*len(peers))
	for i, p := range peers {
		raftAddr, apiAddr := free[2*i], free[2*i+1]
		addrs[p], addrs[p+"/api"] = raftAddr, apiAddr
		fmt.Fprintf(&b, "    - {id: %s, raft_addr: %q, api_addr: %q}\n", p, raftAddr, apiAddr)
	}
	yaml := fmt.Sprintf(`node: {id: %s, role: witness, data_dir: %q}
cluster:
  raft_addr: %q
  api_addr: %q
  token_file: %q
  tls: {ca_file: %s/ca.pem, cert_file: %s/%s.pem, key_file: %s/%s-key.pem}
  peers:
%s  raft: {heartbeat_timeout: 300ms, election_timeout: 300ms, leader_lease_timeout: 150ms}
`, id, filepath.Join(dir, "data"), addrs[id], addrs[id+"/api"], token, certs, certs, id, certs, id, b.String())
	cfg, err := config.Parse(strings.NewReader(yaml), config.AllowSingleVoter())
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(cfg, zaptest.NewLogger(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	waitListening(t, addrs[id+"/api"])
	return n, certs, foreign, addrs
}

// insecureLayer dials raft peers over TLS with any certificate and no server check: an
// attacker's stream layer.
type insecureLayer struct {
	net.Listener
	conf *tls.Config // nil: plain TCP
}

func (l insecureLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	if l.conf == nil {
		return d.Dial("tcp", string(addr))
	}
	return tls.DialWithDialer(d, "tcp", string(addr), l.conf)
}

func foreignCert(t *testing.T, dir, name string) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRaftOverTLSRefusesOutsiders: a plain-TCP Raft client and a TLS client whose
// certificate comes from another CA get no RPC answered and change neither the term nor
// the state (the first version's review forged an InstallSnapshot this way).
func TestRaftOverTLSRefusesOutsiders(t *testing.T) {
	n, _, foreign, addrs := tlsNode(t, "witness", []string{"witness"})
	deadline := time.Now().Add(10 * time.Second)
	for (!n.IsLeader() || !n.State().Bootstrapped) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !n.IsLeader() {
		t.Fatal("single voter did not become leader")
	}
	term, state := n.Term(), n.State()
	conf := n.raft.GetConfiguration()
	if err := conf.Error(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		conf *tls.Config
	}{
		{"plain TCP", nil},
		{"certificate from another CA", &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{foreignCert(t, foreign, "witness")}, MinVersion: tls.VersionTLS13}},
		{"no certificate", &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			attacker := raft.NewNetworkTransport(insecureLayer{ln, tt.conf}, 1, time.Second, io.Discard)
			defer attacker.Close()
			target := raft.ServerAddress(addrs["witness"])
			var ar raft.AppendEntriesResponse
			err = attacker.AppendEntries("witness", target, &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("evil"), Addr: []byte("evil")}, Term: 1000, PrevLogEntry: 0}, &ar)
			if err == nil {
				t.Fatalf("AppendEntries term 1000 answered: %+v", ar)
			}
			var sr raft.InstallSnapshotResponse
			snap := strings.NewReader(`{"owner":"evil"}`)
			err = attacker.InstallSnapshot("witness", target, &raft.InstallSnapshotRequest{RPCHeader: raft.RPCHeader{ID: []byte("evil"), Addr: []byte("evil")}, SnapshotVersion: 1, Term: 1000, Leader: []byte("evil"), LastLogIndex: 999, LastLogTerm: 1000, Size: int64(snap.Len())}, &sr, snap)
			if err == nil {
				t.Fatalf("InstallSnapshot term 1000 answered: %+v", sr)
			}
			if got := n.Term(); got != term || !n.IsLeader() {
				t.Fatalf("term %d → %d, leader %v: an outsider moved raft", term, got, n.IsLeader())
			}
			if s := n.State(); s.Owner != state.Owner || s.Epoch != state.Epoch {
				t.Fatalf("state changed by an outsider: owner %q epoch %d", s.Owner, s.Epoch)
			}
			now := n.raft.GetConfiguration()
			if err := now.Error(); err != nil || len(now.Configuration().Servers) != len(conf.Configuration().Servers) {
				t.Fatalf("raft configuration changed: %+v (%v)", now.Configuration(), err)
			}
		})
	}
}

// TestAPIOverTLS: plain HTTP gets no 2xx; reads need a certificate or the token; a
// certificate for db2 cannot author db1's release; controller decisions are never
// accepted from the API.
func TestAPIOverTLS(t *testing.T) {
	n, certs, foreign, addrs := tlsNode(t, "witness", []string{"db1", "db2", "witness"})
	apiAddr := addrs["witness/api"]
	client := func(dir, name string) *api.Client {
		b, err := mtls.Load(mtls.Files{CA: filepath.Join(certs, "ca.pem"), Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem")})
		if err != nil {
			t.Fatal(err)
		}
		return api.NewTLSClient("", &http.Client{Transport: &http.Transport{TLSClientConfig: b.ClientConfig("witness")}})
	}
	ctx := context.Background()

	resp, err := http.Get("http://" + apiAddr + api.PathStatus)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			t.Fatalf("plain HTTP status answered %s", resp.Status)
		}
	}
	anon := api.NewTLSClient("", &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}})
	if _, err := anon.Status(ctx, apiAddr, time.Second); api.StatusCode(err) != http.StatusUnauthorized {
		t.Fatalf("status without certificate or token: %v, want 401", err)
	}
	withToken := api.NewTLSClient("t0ken", &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}})
	st, err := withToken.Status(ctx, apiAddr, time.Second)
	if err != nil || st.ControlPlane != "mutual TLS" {
		t.Fatalf("status with the token: %+v, %v", st.ControlPlane, err)
	}
	if _, err := client(certs, "raftctl").Status(ctx, apiAddr, time.Second); err != nil {
		t.Fatalf("status with raftctl's certificate: %v", err)
	}
	if _, err := withToken.Renew(ctx, apiAddr, api.RenewRequest{Owner: "db1", Epoch: 1}, time.Second); api.StatusCode(err) != http.StatusUnauthorized {
		t.Fatalf("renew with only the token: %v, want 401 (peer endpoints need a node certificate)", err)
	}
	if _, err := client(certs, "raftctl").Renew(ctx, apiAddr, api.RenewRequest{Owner: "db1", Epoch: 1}, time.Second); api.StatusCode(err) != http.StatusForbidden {
		t.Fatalf("renew with raftctl's certificate: %v, want 403", err)
	}
	evil := api.NewTLSClient("", &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{foreignCert(t, foreign, "db2")}}}})
	if _, err := evil.Renew(ctx, apiAddr, api.RenewRequest{Owner: "db1", Epoch: 1}, time.Second); err == nil || api.StatusCode(err)/100 == 2 {
		t.Fatalf("a certificate from another CA was accepted: %v", err)
	}

	release, err := fsm.NewEvent(fsm.OwnerReleased, "db1", time.Now(), 1, "", fsm.ReleaseData{Owner: "db1", Reason: "forged"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = client(certs, "db2").Propose(ctx, apiAddr, release, time.Second)
	if api.StatusCode(err) != http.StatusForbidden {
		t.Fatalf("db2 proposing db1's release: %v, want 403", err)
	}
	// db1 may author its own release (here the node is no leader: 421 after authority).
	_, err = client(certs, "db1").Propose(ctx, apiAddr, release, time.Second)
	if c := api.StatusCode(err); c == http.StatusForbidden || c == http.StatusUnauthorized {
		t.Fatalf("db1 proposing its own release refused: %v", err)
	}
	assign, err := fsm.NewEvent(fsm.OwnerAssigned, "db2", time.Now(), 1, fsm.PhaseReleased, fsm.AssignData{Owner: "db2"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client(certs, "db2").Propose(ctx, apiAddr, assign, time.Second); api.StatusCode(err) != http.StatusForbidden {
		t.Fatalf("a forwarded OwnerAssigned: %v, want 403", err)
	}
	_ = n
}

func TestAuthorize(t *testing.T) {
	s := fsm.NewState()
	s.Owner = "db2"
	for _, m := range []fsm.Member{{ID: "db1", Role: fsm.RoleDatabase}, {ID: "db2", Role: fsm.RoleDatabase}, {ID: "witness", Role: fsm.RoleWitness}} {
		s.Members[m.ID] = &fsm.NodeState{Member: m}
	}
	mk := func(typ fsm.Type, by string, p any) fsm.Event {
		ev, err := fsm.NewEvent(typ, by, time.Now(), 1, "", p)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	tests := []struct {
		name   string
		ev     fsm.Event
		sender string
		ok     bool
	}{
		{"own release", mk(fsm.OwnerReleased, "db1", fsm.ReleaseData{Owner: "db1"}), "db1", true},
		{"someone else's release", mk(fsm.OwnerReleased, "db2", fsm.ReleaseData{Owner: "db1"}), "db2", false},
		{"signed as another node", mk(fsm.OwnerReleased, "db1", fsm.ReleaseData{Owner: "db1"}), "db2", false},
		{"own health", mk(fsm.HealthChanged, "db1", fsm.HealthData{Node: "db1"}), "db1", true},
		{"another's health", mk(fsm.HealthChanged, "db1", fsm.HealthData{Node: "db2"}), "db1", false},
		{"own promotion", mk(fsm.OwnerPromoted, "db2", fsm.PromotedData{Owner: "db2"}), "db2", true},
		{"membership of another", mk(fsm.MemberJoined, "db1", fsm.MemberData{Member: fsm.Member{ID: "db2"}}), "db1", false},
		{"rejoin by the owner", mk(fsm.RejoinChecked, "db2", fsm.RejoinData{Node: "db1"}), "db2", true},
		{"rejoin by a non-owner", mk(fsm.RejoinChecked, "db1", fsm.RejoinData{Node: "db2"}), "db1", false},
		{"controller decision", mk(fsm.OwnerRevoked, "witness", fsm.RevokeData{Owner: "db2"}), "witness", false},
		{"operator request forwarded", mk(fsm.SwitchoverRequested, "witness", fsm.SwitchoverData{}), "witness", true},
		{"own hook failure", mk(fsm.HookFailed, "db1", fsm.HookFailedData{Node: "db1"}), "db1", true},
		{"another's hook failure", mk(fsm.HookFailed, "db1", fsm.HookFailedData{Node: "db2"}), "db1", false},
		{"own broken channel", mk(fsm.ReplicationBroken, "db1", fsm.ReplicationData{Node: "db1", Source: "db2", Broken: true}), "db1", true},
		{"another's broken channel", mk(fsm.ReplicationBroken, "db1", fsm.ReplicationData{Node: "db2", Source: "db1", Broken: true}), "db1", false},
		{"operator pause forwarded", mk(fsm.PauseChanged, "db1", fsm.PauseData{Paused: true}), "db1", true},
		{"operator failover forwarded", mk(fsm.FailoverRequested, "db1", fsm.FailoverData{To: "db2"}), "db1", true},
		{"bad payload", fsm.Event{V: 1, Type: fsm.HealthChanged, By: "db1", Data: []byte(`{"node":`)}, "db1", false},
		{"foreign VRRP master seen by a database node", mk(fsm.ForeignVRRPMasterSeen, "db1", fsm.ForeignData{Source: "10.0.0.9", VRID: 51}), "db1", true},
		{"foreign VRRP master seen by the witness", mk(fsm.ForeignVRRPMasterSeen, "witness", fsm.ForeignData{Source: "10.0.0.9", VRID: 51}), "witness", false},
		{"foreign VRRP master signed as another node", mk(fsm.ForeignVRRPMasterSeen, "db1", fsm.ForeignData{Source: "10.0.0.9"}), "db2", false},
		{"foreign VRRP master with a bad payload", fsm.Event{V: 1, Type: fsm.ForeignVRRPMasterSeen, By: "db1", Data: []byte(`{"vrid":"x"}`)}, "db1", false},
		{"foreign VRRP master by a stranger", mk(fsm.ForeignVRRPMasterSeen, "db9", fsm.ForeignData{Source: "10.0.0.9"}), "db9", false},
		{"maintenance forwarded", mk(fsm.MaintenanceChanged, "witness", fsm.MaintenanceData{Node: "db1", On: true}), "witness", true},
		{"rejoin resume forwarded", mk(fsm.RejoinResumed, "db1", fsm.RejoinResumeData{Node: "db2"}), "db1", true},
		{"semi-sync of another", mk(fsm.SemiSyncChanged, "db1", fsm.SemiSyncData{Node: "db2", Status: "OFF"}), "db1", false},
		{"VIP conflict of another", mk(fsm.VIPConflictSeen, "db1", fsm.VIPConflictData{Node: "db2"}), "db1", false},
		{"unknown type", fsm.Event{V: 1, Type: "FromTheFuture", By: "db1"}, "db1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := authorize(tt.ev, tt.sender, s)
			if (err == nil) != tt.ok {
				t.Fatalf("authorize = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, errForbidden) && !errors.Is(err, fsm.ErrInvalid) {
				t.Fatalf("error %v is neither forbidden nor invalid", err)
			}
		})
	}
}
