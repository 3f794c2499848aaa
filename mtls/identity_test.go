package mtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// rpcTimeout bounds one raft RPC of the source tests.
const rpcTimeout = 2 * time.Second

// issue writes file.pem and file-key.pem into p's dir: a certificate from p's CA with
// the given DNS SANs, in order.
func (p pki) issue(t *testing.T, file string, dnsNames ...string) {
	t.Helper()
	ca, caKey, err := loadCA(p.dir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := newSerial()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: dnsNames[0]},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := writePair(p.dir, file, der, key); err != nil {
		t.Fatal(err)
	}
}

// TestIdentityAnySAN: a certificate with SANs [db1.example.com, db1] is db1's wherever an
// expected id is compared (server allow, client server check, Bundle.Has, PeerIdentity);
// without a member to match, its identity stays the first SAN.
func TestIdentityAnySAN(t *testing.T) {
	cluster := newPKI(t, "db2", "witness")
	cluster.issue(t, "db1-fqdn", "db1.example.com", "db1")
	db1 := cluster.bundle(t, "db1-fqdn")
	db2 := cluster.bundle(t, "db2")
	members := map[string]bool{"db1": true, "db2": true, "witness": true}
	isMember := func(id string) bool { return members[id] }

	if !db1.Has("db1") || !db1.Has("db1.example.com") || db1.Has("db2") || db1.Has("") {
		t.Errorf("Has: db1 %v, fqdn %v, db2 %v, empty %v; want true, true, false, false", db1.Has("db1"), db1.Has("db1.example.com"), db1.Has("db2"), db1.Has(""))
	}
	if db1.ID() != "db1.example.com" {
		t.Errorf("ID() = %q, want the first SAN", db1.ID())
	}

	tests := []struct {
		name         string
		server       *tls.Config
		client       *tls.Config
		wantOK       bool
		wantErr      error
		serverSees   string // PeerIdentity with the members, on the server side
		serverSeesNo string // PeerID (no members) on the server side
	}{
		{name: "client matched on its second SAN", server: db2.ServerConfig(true, isMember), client: db1.ClientConfig("db2"), wantOK: true, serverSees: "db1", serverSeesNo: "db1.example.com"},
		{name: "server matched on its second SAN", server: db1.ServerConfig(true, isMember), client: db2.ClientConfig("db1"), wantOK: true, serverSees: "db2", serverSeesNo: "db2"},
		{name: "server has neither SAN", server: db1.ServerConfig(true, nil), client: db2.ClientConfig("db3"), wantErr: ErrPeerIdentity},
		{name: "client allowed on no SAN", server: db2.ServerConfig(true, func(id string) bool { return id == "witness" }), client: db1.ClientConfig(""), wantErr: ErrPeerNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := handshake(t, tt.server, tt.client)
			if !tt.wantOK {
				if !errors.Is(r.serverErr, tt.wantErr) && !errors.Is(r.clientErr, tt.wantErr) {
					t.Fatalf("handshake: server %v, client %v; want %v", r.serverErr, r.clientErr, tt.wantErr)
				}
				return
			}
			if r.serverErr != nil || r.clientErr != nil {
				t.Fatalf("handshake: server %v, client %v", r.serverErr, r.clientErr)
			}
			if id, ok := PeerIdentity(r.server, isMember); !ok || id != tt.serverSees {
				t.Errorf("PeerIdentity(server side) = %q, %v; want %q", id, ok, tt.serverSees)
			}
			if id, _ := PeerID(r.server); id != tt.serverSeesNo {
				t.Errorf("PeerID(server side) = %q, want %q", id, tt.serverSeesNo)
			}
		})
	}
}

// fromLayer is an attacker's (or a peer's) raft.StreamLayer: it dials from a chosen
// loopback IP with a chosen client certificate, and never accepts.
type fromLayer struct {
	net.Listener
	local net.IP
	conf  *tls.Config
}

func (l fromLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: l.local}}
	return tls.DialWithDialer(d, "tcp", string(addr), l.conf)
}

// raftServer is a NetworkTransport over a stream layer that answers every
// AppendEntries and counts them.
type raftServer struct {
	trans *raft.NetworkTransport
	mu    sync.Mutex
	rpcs  int
}

func serveRaft(t *testing.T, l *StreamLayer) *raftServer {
	t.Helper()
	s := &raftServer{trans: raft.NewNetworkTransport(l, 3, rpcTimeout, io.Discard)}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case rpc := <-s.trans.Consumer():
				s.mu.Lock()
				s.rpcs++
				s.mu.Unlock()
				rpc.Respond(&raft.AppendEntriesResponse{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax}, Term: 1, Success: true}, nil)
			case <-stop:
				return
			}
		}
	})
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
		_ = s.trans.Close()
	})
	return s
}

func (s *raftServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rpcs
}

// TestStreamLayerSourceIP: a certificate naming a member is admitted only from the IP of
// that member's configured raft address (a name is resolved; a wildcard admits any
// source). A holder of db2's key connecting from another address — db1's, to pose as
// db1 — gets no RPC answered, and the refusal is logged with the peer id and remote.
// 127.0.0.2 is loopback on Linux, so the "other host" dials from there.
func TestStreamLayerSourceIP(t *testing.T) {
	cluster := newPKI(t, "witness", "db2")
	cluster.issue(t, "db1-fqdn", "db1.example.com", "db1")
	witness := cluster.bundle(t, "witness")
	certOf := map[string]*Bundle{"db2": cluster.bundle(t, "db2"), "db1": cluster.bundle(t, "db1-fqdn")}
	here, there := net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2)

	tests := []struct {
		name     string
		db2Addr  string // db2's configured raft address (db1's is 127.0.0.2)
		cert     string
		from     net.IP
		answered bool
	}{
		{name: "db2 from its configured IP", db2Addr: "127.0.0.1:7002", cert: "db2", from: here, answered: true},
		{name: "db2's key from db1's IP", db2Addr: "127.0.0.1:7002", cert: "db2", from: there},
		{name: "db2 configured by name, right IP", db2Addr: "localhost:7002", cert: "db2", from: here, answered: true},
		{name: "db2 configured by name, other IP", db2Addr: "localhost:7002", cert: "db2", from: there},
		{name: "db2 configured on a wildcard", db2Addr: "0.0.0.0:7002", cert: "db2", from: there, answered: true},
		{name: "db1 matched on its second SAN", db2Addr: "127.0.0.1:7002", cert: "db1", from: there, answered: true},
		{name: "db1 matched on its second SAN, wrong IP", db2Addr: "127.0.0.1:7002", cert: "db1", from: here},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			peers := map[string]string{"127.0.0.2:7001": "db1", tt.db2Addr: "db2"}
			l, err := newStreamLayer("127.0.0.1:0", nil, witness, peers, zap.New(core), testHandshakeTimeout)
			if err != nil {
				t.Fatal(err)
			}
			srv := serveRaft(t, l)

			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			conf := certOf[tt.cert].ClientConfig("witness")
			client := raft.NewNetworkTransport(fromLayer{Listener: ln, local: tt.from, conf: conf}, 1, rpcTimeout, io.Discard)
			defer client.Close()
			req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("db1"), Addr: []byte("127.0.0.2:7001")}, Term: 1000}
			var resp raft.AppendEntriesResponse
			err = client.AppendEntries("witness", raft.ServerAddress(l.Addr().String()), req, &resp)
			if tt.answered {
				if err != nil || srv.count() != 1 {
					t.Fatalf("AppendEntries = %v, %d RPCs reached raft; want answered", err, srv.count())
				}
				return
			}
			if err == nil {
				t.Fatalf("AppendEntries from %s with %s's certificate answered: %+v", tt.from, tt.cert, resp)
			}
			if n := srv.count(); n != 0 {
				t.Fatalf("%d RPCs reached raft", n)
			}
			var refused []observer.LoggedEntry
			for deadline := time.Now().Add(rpcTimeout); len(refused) == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				refused = logs.FilterMessage("refused raft connection").FilterFieldKey("peer").All()
			}
			if len(refused) != 1 {
				t.Fatalf("refusals logged with a peer: %d, want 1 (all: %v)", len(refused), logs.All())
			}
			f := refused[0].ContextMap()
			if f["peer"] != tt.cert || f["remote"] == nil || f["error"] == nil {
				t.Errorf("refusal logged with %v; want peer %s, remote and error", f, tt.cert)
			}
			if msg, _ := f["error"].(string); msg == "" {
				t.Errorf("refusal error %v is not a string", f["error"])
			}
		})
	}
}

// TestCheckSourceErrors: the refusal wraps ErrPeerAddress, also for an unresolvable name.
func TestCheckSourceErrors(t *testing.T) {
	cluster := newPKI(t, "witness")
	peers := map[string]string{"127.0.0.1:7001": "db1", "no-such-host.invalid:7002": "db2", "[::]:7003": "db3"}
	l, err := newStreamLayer("127.0.0.1:0", nil, cluster.bundle(t, "witness"), peers, zap.NewNop(), testHandshakeTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	tests := []struct {
		id     string
		remote net.Addr
		ok     bool
	}{
		{"db1", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5}, true},
		{"db1", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3), Port: 5}, false},
		{"db1", &net.UnixAddr{Name: "x", Net: "unix"}, false},
		{"db2", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5}, false},
		{"db3", &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5}, true},
	}
	for _, tt := range tests {
		t.Run(tt.id+" from "+tt.remote.String(), func(t *testing.T) {
			err := l.checkSource(tt.id, tt.remote)
			if (err == nil) != tt.ok {
				t.Fatalf("checkSource = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrPeerAddress) {
				t.Fatalf("checkSource = %v, not ErrPeerAddress", err)
			}
		})
	}
}

// TestSameFamily: a raft connection is sent from the advertised IP only to an address of
// the same family (or a name, which the dialer resolves to one).
func TestSameFamily(t *testing.T) {
	v4, v6 := net.IPv4(10, 0, 0, 1), net.ParseIP("fd00::1")
	tests := []struct {
		local   net.IP
		address string
		want    bool
	}{
		{v4, "10.0.0.2:7000", true},
		{v4, "[fd00::2]:7000", false},
		{v6, "[fd00::2]:7000", true},
		{v6, "10.0.0.2:7000", false},
		{v4, "db2.example.com:7000", true},
		{v4, "no port", false},
	}
	for _, tt := range tests {
		if got := sameFamily(tt.local, tt.address); got != tt.want {
			t.Errorf("sameFamily(%s, %q) = %v, want %v", tt.local, tt.address, got, tt.want)
		}
	}
}

// TestDialFromAdvertised: a layer sends its connections from its advertised IP, so that
// a peer which knows it at that address admits it (the kernel would pick 127.0.0.1 to
// reach 127.0.0.1).
func TestDialFromAdvertised(t *testing.T) {
	cluster := newPKI(t, "db1", "db2")
	b, err := newStreamLayer("127.0.0.2:0", nil, cluster.bundle(t, "db2"), nil, testLogger(t), testHandshakeTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a := startLayer(t, cluster.bundle(t, "db1"), map[string]string{b.Addr().String(): "db2"}, testHandshakeTimeout)
	b.peers = map[string]string{a.addr(): "db1"}
	c, err := b.Dial(raft.ServerAddress(a.addr()), rpcTimeout)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	s := a.next(t)
	defer s.Close()
	if got := s.RemoteAddr().(*net.TCPAddr).IP; !got.Equal(net.IPv4(127, 0, 0, 2)) {
		t.Errorf("server sees the connection from %s, want 127.0.0.2", got)
	}
	roundTrip(t, c, s, "ping")
}
