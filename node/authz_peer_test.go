package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/config"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/mtls"
)

// callTimeout bounds one API call of the authorization tests.
const callTimeout = 5 * time.Second

// issueCert writes file.pem and file-key.pem into certs (a dir made by mtls.Generate): a
// certificate from its CA with the given DNS SANs, in order.
func issueCert(t *testing.T, certs, file string, dnsNames ...string) {
	t.Helper()
	ca, err := tls.LoadX509KeyPair(filepath.Join(certs, mtls.CAFile), filepath.Join(certs, mtls.CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: dnsNames[0]},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), ca.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certs, file+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certs, file+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// certClient is an API client presenting certs/file.pem over a new connection per call;
// it records the local address of its last connection, which the server sees as the
// caller's address.
type certClient struct {
	*api.Client
	mu    sync.Mutex
	local string
}

func newCertClient(t *testing.T, certs, file string) *certClient {
	t.Helper()
	b, err := mtls.Load(mtls.Files{CA: filepath.Join(certs, mtls.CAFile), Cert: filepath.Join(certs, file+".pem"), Key: filepath.Join(certs, file+"-key.pem")})
	if err != nil {
		t.Fatal(err)
	}
	cc := &certClient{}
	tr := &http.Transport{TLSClientConfig: b.ClientConfig(""), DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				cc.mu.Lock()
				cc.local = c.LocalAddr().String()
				cc.mu.Unlock()
			}
			return c, err
		}}
	t.Cleanup(tr.CloseIdleConnections)
	cc.Client = api.NewTLSClient("", &http.Client{Transport: tr})
	return cc
}

// lastLocal is the local address of the client's last connection.
func (c *certClient) lastLocal() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.local
}

// mkEvent builds an event or fails the test.
func mkEvent(t *testing.T, typ fsm.Type, by string, epoch uint64, phase fsm.Phase, p any) fsm.Event {
	t.Helper()
	ev, err := fsm.NewEvent(typ, by, time.Now(), epoch, phase, p)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// feed applies evs to n's FSM directly, as raft would, at the next indexes. Only for a
// node whose raft applies nothing (a lone member of a cluster that never bootstrapped).
func feed(t *testing.T, n *Node, evs ...fsm.Event) {
	t.Helper()
	for _, ev := range evs {
		b, err := ev.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.fsm.ApplyEvent(n.fsm.State().Index+1, 1, b); err != nil {
			t.Fatalf("apply %s: %v", ev.Type, err)
		}
	}
}

// frozenWitness is the witness of db1, db2 and witness under mutual TLS, running alone
// (its cluster never bootstraps, so raft applies nothing), with a state fed by hand in
// which db1 owns at epoch 1; certs also holds db1-fqdn, a certificate for db1 whose SANs
// are [db1.example.com, db1].
func frozenWitness(t *testing.T) (*Node, string, string) {
	t.Helper()
	n, certs, _, addrs := tlsNode(t, "witness", []string{"db1", "db2", "witness"})
	issueCert(t, certs, "db1-fqdn", "db1.example.com", "db1")
	all := []int{1, 2, fsm.Version}
	feed(t, n,
		mkEvent(t, fsm.Bootstrapped, "witness", 0, "", fsm.BootstrappedData{Members: []fsm.Member{
			{ID: "db1", Role: fsm.RoleDatabase, Priority: 100, Versions: all},
			{ID: "db2", Role: fsm.RoleDatabase, Priority: 90, Versions: all},
			{ID: "witness", Role: fsm.RoleWitness, Versions: all},
		}}),
		mkEvent(t, fsm.HealthChanged, "db1", 0, "", fsm.HealthData{Node: "db1", Healthy: true}),
		mkEvent(t, fsm.OwnerAssigned, "witness", 0, fsm.PhaseNone, fsm.AssignData{Owner: "db1", Reason: "test"}),
		mkEvent(t, fsm.OwnerPromoted, "db1", 1, fsm.PhaseAssigned, fsm.PromotedData{Owner: "db1", Reached: true}),
	)
	if s := n.State(); !s.Holding("db1") || s.Phase != fsm.PhaseActive {
		t.Fatalf("fed state: owner %q phase %s", s.Owner, s.Phase)
	}
	return n, certs, addrs["witness/api"]
}

// TestRenewOnlyByTheOwner: under TLS a lease renewal is answered only for the owner its
// certificate names; db2's certificate renewing db1's lease gets 403 and touches neither
// the promiser (db1's last renewal stays unknown) nor the state.
func TestRenewOnlyByTheOwner(t *testing.T) {
	n, certs, apiAddr := frozenWitness(t)
	tests := []struct {
		name    string
		cert    string
		code    int
		touched bool // the promiser recorded a renewal of db1
	}{
		{"db2 renews db1's lease", "db2", http.StatusForbidden, false},
		{"the witness renews db1's lease", "witness", http.StatusForbidden, false},
		{"raftctl renews db1's lease", "raftctl", http.StatusForbidden, false},
		{"db1 renews its own lease (SANs db1.example.com, db1)", "db1-fqdn", http.StatusOK, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := n.State()
			_, err := newCertClient(t, certs, tt.cert).Renew(context.Background(), apiAddr, api.RenewRequest{Owner: "db1", Epoch: before.Epoch}, callTimeout)
			if got := api.StatusCode(err); (err == nil && tt.code != http.StatusOK) || (err != nil && got != tt.code) {
				t.Errorf("renew = %v, want %d", err, tt.code)
			}
			r := n.Report()
			if touched := r.RenewAgeMS >= 0; touched != tt.touched {
				t.Errorf("renewal of db1 recorded %v (age %d ms), want %v", touched, r.RenewAgeMS, tt.touched)
			}
			if !tt.touched && r.PromiseOwner != "" {
				t.Errorf("a refused renewal left a promise to %q", r.PromiseOwner)
			}
			if s := n.State(); s.Index != before.Index || s.Epoch != before.Epoch || s.Owner != before.Owner {
				t.Errorf("state moved: index %d → %d, epoch %d → %d", before.Index, s.Index, before.Epoch, s.Epoch)
			}
		})
	}
}

// TestGoodbyeOnlyByTheNode: under TLS a goodbye is taken only from the node it names;
// db2's certificate announcing db1's stop gets 403 and db1 is not marked as left.
func TestGoodbyeOnlyByTheNode(t *testing.T) {
	n, certs, apiAddr := frozenWitness(t)
	tests := []struct {
		name string
		cert string
		code int
		left bool
	}{
		{"db2 says db1's goodbye", "db2", http.StatusForbidden, false},
		{"raftctl says db1's goodbye", "raftctl", http.StatusForbidden, false},
		{"db1 says its own goodbye (SANs db1.example.com, db1)", "db1-fqdn", http.StatusNoContent, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := newCertClient(t, certs, tt.cert).Goodbye(context.Background(), apiAddr, "db1", callTimeout)
			if got := api.StatusCode(err); (err == nil && tt.code != http.StatusNoContent) || (err != nil && got != tt.code) {
				t.Errorf("goodbye = %v, want %d", err, tt.code)
			}
			if left := n.poll.snapshot()["db1"].Left; left != tt.left {
				t.Errorf("db1 marked as left: %v, want %v", left, tt.left)
			}
		})
	}
}

// TestLoadTLSAnySAN: a node's certificate may carry its id as any of its DNS SANs; one
// that does not carry it is refused with the names it has.
func TestLoadTLSAnySAN(t *testing.T) {
	certs := filepath.Join(t.TempDir(), "tls")
	if _, err := mtls.Generate(certs, []string{"db2"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	issueCert(t, certs, "db1-fqdn", "db1.example.com", "db1")
	tests := []struct {
		node, cert string
		ok         bool
	}{
		{"db1", "db1-fqdn", true},
		{"db1.example.com", "db1-fqdn", true},
		{"db2", "db1-fqdn", false},
		{"db2", "db2", true},
	}
	for _, tt := range tests {
		t.Run(tt.node+" with "+tt.cert, func(t *testing.T) {
			cfg := &config.Config{}
			cfg.Node.ID = tt.node
			cfg.Cluster.TLS = &config.TLS{CAFile: filepath.Join(certs, mtls.CAFile), CertFile: filepath.Join(certs, tt.cert+".pem"), KeyFile: filepath.Join(certs, tt.cert+"-key.pem")}
			_, err := loadTLS(cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("loadTLS = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "db1.example.com, db1") {
				t.Errorf("error %q does not name the certificate's SANs", err)
			}
		})
	}
}

// TestRenewCarriesReports: a renewal carries the owner's report to the voter, which
// records it as its view of the owner (so it need not poll it), and the answer carries
// the voter's report; a carried report naming another node than the owner is ignored.
func TestRenewCarriesReports(t *testing.T) {
	n, certs, apiAddr := frozenWitness(t)
	c := newCertClient(t, certs, "db1-fqdn")
	tests := []struct {
		name     string
		report   api.NodeReport
		wantView map[string]uint64 // peer → Applied its view must show (0: not the carried report)
	}{
		{"the owner's own report", api.NodeReport{Node: "db1", Applied: 77}, map[string]uint64{"db1": 77}},
		{"a report naming db2", api.NodeReport{Node: "db2", Applied: 99}, map[string]uint64{"db1": 77, "db2": 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.Renew(context.Background(), apiAddr, api.RenewRequest{Owner: "db1", Epoch: n.State().Epoch, Report: &tt.report}, callTimeout)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Report == nil || resp.Report.Node != "witness" || resp.Report.Applied != n.State().Index {
				t.Fatalf("answer carries report %+v, want the witness's (applied %d)", resp.Report, n.State().Index)
			}
			views := n.poll.snapshot()
			for id, want := range tt.wantView {
				v, ok := views[id]
				if want == 0 {
					if ok && v.OK && v.Report.Applied == tt.report.Applied {
						t.Errorf("view of %s = %+v: the carried report was recorded", id, v)
					}
					continue
				}
				if !ok || !v.OK || v.Report.Applied != want {
					t.Errorf("view of %s = %+v, want OK with applied %d", id, v, want)
				}
			}
		})
	}
}

// TestExchangeCarriesReports: a poll that carries the caller's report (POST /v1/node) is
// answered with this node's report and records the caller's as this node's view of it;
// under TLS a report naming another node than the certificate's is refused with 403 and
// not recorded.
func TestExchangeCarriesReports(t *testing.T) {
	n, certs, apiAddr := frozenWitness(t)
	tests := []struct {
		name   string
		cert   string
		report api.NodeReport
		code   int
		// recorded is the Applied the witness's view of report.Node must show (0: none).
		recorded uint64
	}{
		{"db2 sends its own report", "db2", api.NodeReport{Node: "db2", Applied: 41}, http.StatusOK, 41},
		{"db2 sends a report naming db1", "db2", api.NodeReport{Node: "db1", Applied: 42}, http.StatusForbidden, 0},
		{"raftctl sends a report naming db1", "raftctl", api.NodeReport{Node: "db1", Applied: 43}, http.StatusForbidden, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := newCertClient(t, certs, tt.cert).ExchangeNode(context.Background(), apiAddr, tt.report, callTimeout)
			if code := api.StatusCode(err); (err == nil && tt.code != http.StatusOK) || (err != nil && code != tt.code) {
				t.Fatalf("exchange = %v, want %d", err, tt.code)
			}
			if err == nil && (got.Node != "witness" || got.Applied != n.State().Index) {
				t.Fatalf("answer %+v, want the witness's report (applied %d)", got, n.State().Index)
			}
			v, ok := n.poll.snapshot()[tt.report.Node]
			recorded := ok && v.OK && v.Report.Applied == tt.report.Applied
			if recorded != (tt.recorded != 0) {
				t.Fatalf("view of %s = %+v, want the carried report recorded: %v", tt.report.Node, v, tt.recorded != 0)
			}
		})
	}
}
