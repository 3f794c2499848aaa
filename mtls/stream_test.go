package mtls

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

const (
	testHandshakeTimeout = 500 * time.Millisecond
	// quiet is how long Accept must stay silent for a refused client.
	quiet = 300 * time.Millisecond
)

// acceptor runs Accept on a layer in a goroutine that the test owns.
type acceptor struct {
	layer    *StreamLayer
	accepted chan net.Conn
	wg       sync.WaitGroup
}

// startLayer listens on loopback as b, admitting the ids of peers, and accepts in
// the background; the cleanup closes the layer, waits for the acceptor and closes
// what it accepted.
func startLayer(t *testing.T, b *Bundle, peers map[string]string, hsTimeout time.Duration) *acceptor {
	t.Helper()
	l, err := newStreamLayer("127.0.0.1:0", nil, b, peers, testLogger(t), hsTimeout)
	if err != nil {
		t.Fatalf("newStreamLayer: %v", err)
	}
	a := &acceptor{layer: l, accepted: make(chan net.Conn, 16)}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer close(a.accepted)
		for {
			c, err := l.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("Accept: %v", err)
				}
				return
			}
			a.accepted <- c
		}
	}()
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		a.wg.Wait()
		for c := range a.accepted {
			_ = c.Close()
		}
	})
	return a
}

func testLogger(t *testing.T) *zap.Logger {
	return zaptest.NewLogger(t, zaptest.Level(zap.DebugLevel))
}

func (a *acceptor) addr() string { return a.layer.Addr().String() }

// next returns the next accepted conn, failing after a while.
func (a *acceptor) next(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-a.accepted:
		return c
	case <-time.After(3 * time.Second):
		t.Fatal("Accept did not return a connection")
		return nil
	}
}

// none asserts that Accept returns nothing for a while.
func (a *acceptor) none(t *testing.T) {
	t.Helper()
	select {
	case c := <-a.accepted:
		_ = c.Close()
		t.Fatalf("Accept returned a connection from %s", c.RemoteAddr())
	case <-time.After(quiet):
	}
}

// refusedRead reads from c until an error and fails the test if the server left
// the connection open.
func refusedRead(t *testing.T, c net.Conn) error {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if err == nil {
		err = io.EOF
	}
	if isTimeout(err) {
		t.Fatal("server kept the connection open")
	}
	return err
}

func TestStreamLayer(t *testing.T) {
	cluster := newPKI(t, "db1", "db2", "raftctl")
	other := newPKI(t, "db2")
	db1 := cluster.bundle(t, "db1")
	db2 := cluster.bundle(t, "db2")
	ctl := cluster.bundle(t, "raftctl")
	stranger := other.bundle(t, "db2")

	// db1 serves; db2 is its peer (its address does not matter for Accept).
	a := startLayer(t, db1, map[string]string{"127.0.0.1:1": "db2"}, testHandshakeTimeout)
	b := startLayer(t, db2, map[string]string{a.addr(): "db1"}, testHandshakeTimeout)

	exchange := func(t *testing.T) {
		t.Helper()
		c, err := b.layer.Dial(raft.ServerAddress(a.addr()), 2*time.Second)
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		defer c.Close()
		s := a.next(t)
		defer s.Close()
		if id, ok := PeerID(s.(*tls.Conn).ConnectionState()); !ok || id != "db2" {
			t.Errorf("server sees peer %q, %v; want db2", id, ok)
		}
		if id, ok := PeerID(c.(*tls.Conn).ConnectionState()); !ok || id != "db1" {
			t.Errorf("client sees peer %q, %v; want db1", id, ok)
		}
		roundTrip(t, c, s, "ping")
		roundTrip(t, s, c, "pong")
	}
	t.Run("good peer", exchange)

	tlsClient := func(cfg *tls.Config) func(t *testing.T, addr string) error {
		return func(t *testing.T, addr string) error {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, cfg)
			if err != nil {
				return err
			}
			defer c.Close()
			return refusedRead(t, c)
		}
	}
	anyServer := func(certs []tls.Certificate) *tls.Config {
		return &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, Certificates: certs}
	}
	refused := []struct {
		name   string
		client func(t *testing.T, addr string) error
	}{
		{name: "plain TCP", client: func(t *testing.T, addr string) error {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			if _, err := c.Write([]byte("\x00garbage that is not TLS\r\n\r\n")); err != nil {
				return err
			}
			return refusedRead(t, c)
		}},
		{name: "silent TCP", client: func(t *testing.T, addr string) error {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			return refusedRead(t, c) // closed after the handshake timeout
		}},
		{name: "other CA", client: tlsClient(anyServer(stranger.ClientConfig("").Certificates))},
		{name: "no certificate", client: tlsClient(anyServer(nil))},
		{name: "not a cluster node", client: tlsClient(ctl.ClientConfig("db1"))},
		{name: "TLS 1.2", client: tlsClient(&tls.Config{MaxVersion: tls.VersionTLS12, InsecureSkipVerify: true, Certificates: db2.ClientConfig("").Certificates})},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.client(t, a.addr()); err == nil {
				t.Error("client saw no error")
			} else {
				t.Logf("client saw: %v", err)
			}
			a.none(t)
		})
	}

	// Accept goes on after all of the refusals.
	t.Run("good peer again", exchange)
}

func roundTrip(t *testing.T, from, to net.Conn, msg string) {
	t.Helper()
	_ = to.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := from.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(to, buf); err != nil {
		t.Fatalf("read %q: %v", msg, err)
	}
	if string(buf) != msg {
		t.Fatalf("read %q, want %q", buf, msg)
	}
}

// TestStreamLayerSlowHandshake checks that a client stuck in its handshake does not
// hold up another one.
func TestStreamLayerSlowHandshake(t *testing.T) {
	cluster := newPKI(t, "db1", "db2")
	a := startLayer(t, cluster.bundle(t, "db1"), map[string]string{"127.0.0.1:1": "db2"}, 10*time.Second)
	b := startLayer(t, cluster.bundle(t, "db2"), map[string]string{a.addr(): "db1"}, 10*time.Second)

	silent, err := net.DialTimeout("tcp", a.addr(), 2*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer silent.Close()

	start := time.Now()
	c, err := b.layer.Dial(raft.ServerAddress(a.addr()), 2*time.Second)
	if err != nil {
		t.Fatalf("Dial behind a silent client: %v", err)
	}
	defer c.Close()
	a.next(t).Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("accepted after %s", d)
	}
}

func TestStreamLayerDial(t *testing.T) {
	cluster := newPKI(t, "db1", "db2")
	a := startLayer(t, cluster.bundle(t, "db1"), map[string]string{"127.0.0.1:1": "db2"}, testHandshakeTimeout)
	db2 := cluster.bundle(t, "db2")

	tests := []struct {
		name    string
		peers   map[string]string
		addr    string
		wantErr error
	}{
		{name: "server has another id", peers: map[string]string{a.addr(): "db3"}, addr: a.addr(), wantErr: ErrPeerIdentity},
		{name: "unknown address", peers: map[string]string{a.addr(): "db1"}, addr: "127.0.0.1:1", wantErr: ErrUnknownPeer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := startLayer(t, db2, tt.peers, testHandshakeTimeout)
			c, err := l.layer.Dial(raft.ServerAddress(tt.addr), 2*time.Second)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Dial error = %v, want %v", err, tt.wantErr)
			}
			if tt.addr == a.addr() {
				a.none(t)
			}
		})
	}
}

func TestStreamLayerClose(t *testing.T) {
	cluster := newPKI(t, "db1")
	l, err := NewStreamLayer("127.0.0.1:0", nil, cluster.bundle(t, "db1"), nil, nil)
	if err != nil {
		t.Fatalf("NewStreamLayer: %v", err)
	}
	pending, err := net.DialTimeout("tcp", l.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer pending.Close()
	time.Sleep(50 * time.Millisecond) // let the handshake goroutine start
	start := time.Now()
	for i := range 2 {
		if err := l.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %s despite a pending handshake", d)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
	}
	if err := refusedRead(t, pending); err == nil {
		t.Error("pending conn not closed")
	}
}

func TestNewStreamLayerAdvertise(t *testing.T) {
	cluster := newPKI(t, "db1")
	b := cluster.bundle(t, "db1")
	tests := []struct {
		name      string
		bind      string
		advertise net.Addr
		want      string // "" = the listener's address
		wantErr   bool
	}{
		{name: "listener address", bind: "127.0.0.1:0"},
		{name: "explicit", bind: "127.0.0.1:0", advertise: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 7000}, want: "127.0.0.2:7000"},
		{name: "unspecified", bind: "0.0.0.0:0", wantErr: true},
		{name: "unspecified advertise", bind: "127.0.0.1:0", advertise: &net.TCPAddr{IP: net.IPv4zero, Port: 7000}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := NewStreamLayer(tt.bind, tt.advertise, b, nil, nil)
			if tt.wantErr {
				if err == nil {
					l.Close()
					t.Fatal("NewStreamLayer accepted an unspecified advertise address")
				}
				return
			}
			if err != nil {
				t.Fatalf("NewStreamLayer: %v", err)
			}
			defer l.Close()
			want := tt.want
			if want == "" {
				want = l.ln.Addr().String()
			}
			if got := l.Addr().String(); got != want {
				t.Errorf("Addr() = %s, want %s", got, want)
			}
		})
	}
}

// TestRaftTransport runs raft's NetworkTransport over two stream layers: a peer's
// AppendEntries is answered, a plain TCP client's garbage reaches no consumer.
func TestRaftTransport(t *testing.T) {
	cluster := newPKI(t, "db1", "db2")
	la, err := NewStreamLayer("127.0.0.1:0", nil, cluster.bundle(t, "db1"), map[string]string{"127.0.0.1:1": "db2"}, testLogger(t))
	if err != nil {
		t.Fatalf("NewStreamLayer db1: %v", err)
	}
	lb, err := NewStreamLayer("127.0.0.1:0", nil, cluster.bundle(t, "db2"), map[string]string{la.Addr().String(): "db1"}, testLogger(t))
	if err != nil {
		la.Close()
		t.Fatalf("NewStreamLayer db2: %v", err)
	}
	ta := raft.NewNetworkTransport(la, 3, 2*time.Second, io.Discard)
	tb := raft.NewNetworkTransport(lb, 3, 2*time.Second, io.Discard)

	got := make(chan any, 4)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case rpc := <-ta.Consumer():
				got <- rpc.Command
				rpc.Respond(&raft.AppendEntriesResponse{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax}, Term: 1, Success: true}, nil)
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
		_ = tb.Close()
		_ = ta.Close()
	})

	req := &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("db2"), Addr: []byte(lb.Addr().String())},
		Term:      1,
		Entries:   []*raft.Log{{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("hello")}},
	}
	var resp raft.AppendEntriesResponse
	if err := tb.AppendEntries("db1", ta.LocalAddr(), req, &resp); err != nil {
		t.Fatalf("AppendEntries: %v", err)
	}
	if !resp.Success || resp.Term != 1 {
		t.Errorf("response = %+v, want success in term 1", resp)
	}
	select {
	case cmd := <-got:
		ae, ok := cmd.(*raft.AppendEntriesRequest)
		if !ok || len(ae.Entries) != 1 || !bytes.Equal(ae.Entries[0].Data, []byte("hello")) {
			t.Errorf("consumer got %#v", cmd)
		}
	default:
		t.Fatal("consumer saw no RPC")
	}

	// A plain TCP client speaking raft's wire format without TLS: rpcAppendEntries
	// (0) followed by a msgpack map.
	c, err := net.DialTimeout("tcp", string(ta.LocalAddr()), 2*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{0x00, 0x81, 0xa4, 'T', 'e', 'r', 'm', 0x01}); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := refusedRead(t, c); err == nil {
		t.Error("plain client saw no error")
	}
	select {
	case cmd := <-got:
		t.Fatalf("consumer got an RPC from the plain client: %#v", cmd)
	case <-time.After(quiet):
	}
}
