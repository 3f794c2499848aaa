package mtls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
)

const (
	// HandshakeTimeout bounds the TLS handshake of an inbound connection; a peer that
	// has not finished by then is dropped.
	HandshakeTimeout = 5 * time.Second
	// maxPendingHandshakes bounds the inbound handshakes in flight; past it, new
	// connections wait in the kernel's backlog.
	maxPendingHandshakes = 64
	// maxAcceptBackoff caps the pause after a failing listener Accept.
	maxAcceptBackoff = time.Second
	// resolveTimeout bounds the lookup of a member's configured raft host when it is a
	// name (once per member, on its first inbound connection).
	resolveTimeout = 2 * time.Second
)

// ErrPeerAddress is returned (and logged) for an inbound Raft connection whose certificate
// names a member but whose source IP is not the one that member's configured raft address
// names: a holder of db2's key cannot connect as db1, nor as db2 from another host.
var ErrPeerAddress = errors.New("connection does not come from the member's configured raft address")

// source is what the stream layer knows of a member's configured raft address.
type source struct {
	host string // the configured host (an IP or a name)
	any  bool   // a wildcard or unspecified host: any source IP is accepted

	mu  sync.Mutex
	ips []net.IP // the IPs it names; nil until a name is resolved
}

// StreamLayer is a raft.StreamLayer over mutual TLS 1.3: Accept returns only connections
// whose handshake completed with a client certificate from the CA that has one of the
// cluster's node ids as a DNS SAN, and that come from the IP of that node's configured
// raft address; everything else (plain TCP, another CA, an unknown id, a node's
// certificate used from another host) is closed before raft reads a byte. Dial verifies
// that the server at address has the id that address belongs to, and sends from the
// advertised IP so that the peer's source check holds on a host with several addresses.
type StreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	bundle    *Bundle
	peers     map[string]string // raft address → node id
	serverCfg *tls.Config
	log       *zap.Logger
	hsTimeout time.Duration
	sources   map[string]*source // node id → its configured raft host; read-only

	ready chan net.Conn // handshaken conns, handed to Accept
	done  chan struct{} // closed by Close
	slots chan struct{} // semaphore of pending handshakes

	mu      sync.Mutex
	pending map[net.Conn]struct{} // conns in handshake, closed by Close
	closed  bool

	wg        sync.WaitGroup // acceptor and handshake goroutines
	closeOnce sync.Once
	closeErr  error
}

var _ raft.StreamLayer = (*StreamLayer)(nil)

// NewStreamLayer listens on bindAddr and returns a StreamLayer that admits the nodes
// of peers (raft address → node id), each only from the IP its raft address names (a
// wildcard host admits any), and advertises advertise (nil = the listener's
// address, which must then not be unspecified). It owns a goroutine accepting
// connections and one per pending handshake; Close stops and waits for them all. log
// may be nil.
func NewStreamLayer(bindAddr string, advertise net.Addr, b *Bundle, peers map[string]string, log *zap.Logger) (*StreamLayer, error) {
	return newStreamLayer(bindAddr, advertise, b, peers, log, HandshakeTimeout)
}

func newStreamLayer(bindAddr string, advertise net.Addr, b *Bundle, peers map[string]string, log *zap.Logger, hsTimeout time.Duration) (*StreamLayer, error) {
	if b == nil {
		return nil, errors.New("stream layer on " + bindAddr + ": nil bundle")
	}
	if log == nil {
		log = zap.NewNop()
	}
	ids := make(map[string]bool, len(peers))
	cp := make(map[string]string, len(peers))
	sources := make(map[string]*source, len(peers))
	for addr, id := range peers {
		cp[addr] = id
		ids[id] = true
		sources[id] = newSource(addr)
	}
	ln, err := net.Listen("tcp", bindAddr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", bindAddr, err)
	}
	addr := advertise
	if addr == nil {
		addr = ln.Addr()
	}
	if tcp, ok := addr.(*net.TCPAddr); !ok || tcp.IP == nil || tcp.IP.IsUnspecified() {
		_ = ln.Close()
		return nil, fmt.Errorf("listen %s: advertise address %v is not advertisable", bindAddr, addr)
	}
	s := &StreamLayer{
		ln:        ln,
		advertise: addr,
		bundle:    b,
		peers:     cp,
		serverCfg: b.ServerConfig(true, func(id string) bool { return ids[id] }),
		log:       log.With(zap.String("listen", ln.Addr().String())),
		hsTimeout: hsTimeout,
		sources:   sources,
		ready:     make(chan net.Conn),
		done:      make(chan struct{}),
		slots:     make(chan struct{}, maxPendingHandshakes),
		pending:   make(map[net.Conn]struct{}),
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// acceptLoop accepts TCP connections and starts one handshake goroutine for each,
// until Close.
func (s *StreamLayer) acceptLoop() {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		select {
		case s.slots <- struct{}{}:
		case <-s.done:
			return
		}
		conn, err := s.ln.Accept()
		if err != nil {
			<-s.slots
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), maxAcceptBackoff)
			s.log.Warn("accept", zap.Error(err), zap.Duration("retry_in", backoff))
			select {
			case <-time.After(backoff):
				continue
			case <-s.done:
				return
			}
		}
		backoff = 0
		if !s.track(conn) {
			<-s.slots
			_ = conn.Close()
			return
		}
		s.wg.Add(1)
		go s.handshake(conn)
	}
}

// track records conn as pending, or reports false once the layer is closed.
func (s *StreamLayer) track(conn net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.pending[conn] = struct{}{}
	return true
}

func (s *StreamLayer) untrack(conn net.Conn) {
	s.mu.Lock()
	delete(s.pending, conn)
	s.mu.Unlock()
}

// handshake runs the server handshake of conn and hands the result to Accept, or
// closes conn when the handshake fails or the layer closes.
func (s *StreamLayer) handshake(conn net.Conn) {
	defer s.wg.Done()
	defer func() { <-s.slots }()
	defer s.untrack(conn)

	remote := conn.RemoteAddr().String()
	tconn := tls.Server(conn, s.serverCfg)
	ctx, cancel := context.WithTimeout(context.Background(), s.hsTimeout)
	err := tconn.HandshakeContext(ctx)
	cancel()
	if err != nil {
		_ = conn.Close()
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no handshake within %s: %w", s.hsTimeout, err)
		}
		level := zap.WarnLevel
		if errors.Is(err, io.EOF) || s.isClosed() {
			// Port probes and health checks connect and leave; so does everything
			// when we shut down.
			level = zap.DebugLevel
		}
		s.log.Log(level, "refused raft connection", zap.String("remote", remote), zap.Error(err))
		return
	}
	id, err := s.checkPeer(tconn.ConnectionState(), conn.RemoteAddr())
	if err != nil {
		s.log.Warn("refused raft connection", zap.String("peer", id), zap.String("remote", remote), zap.Error(err))
		_ = conn.Close()
		return
	}
	select {
	case s.ready <- tconn:
		s.log.Debug("accepted raft connection", zap.String("remote", remote), zap.String("peer", id))
	case <-s.done:
		_ = conn.Close()
	}
}

// newSource parses a member's configured raft address.
func newSource(addr string) *source {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return &source{host: addr} // never resolves: every connection is refused
	}
	if host == "" {
		return &source{any: true}
	}
	if ip := net.ParseIP(host); ip != nil {
		return &source{host: host, any: ip.IsUnspecified(), ips: []net.IP{ip}}
	}
	return &source{host: host}
}

// checkPeer returns the member id the verified client certificate of cs names (its first
// DNS SAN that is a member id) and checks that remote is an IP of that member's
// configured raft address.
func (s *StreamLayer) checkPeer(cs tls.ConnectionState, remote net.Addr) (string, error) {
	leaf := peerLeaf(cs)
	if leaf == nil {
		return "", ErrNoPeerCertificate
	}
	id, ok := pickIdentity(leaf, s.isMember)
	if !ok {
		return id, fmt.Errorf("client %s: %w", strings.Join(leaf.DNSNames, ","), ErrPeerNotAllowed)
	}
	return id, s.checkSource(id, remote)
}

func (s *StreamLayer) isMember(id string) bool {
	_, ok := s.sources[id]
	return ok
}

// checkSource checks that remote's IP is one that id's configured raft host names. A
// name is resolved on the first connection of its member and the answer kept; a wildcard
// host accepts any source (logged at debug).
func (s *StreamLayer) checkSource(id string, remote net.Addr) error {
	tcp, ok := remote.(*net.TCPAddr)
	if !ok {
		return fmt.Errorf("peer %s from %v (not TCP): %w", id, remote, ErrPeerAddress)
	}
	src := s.sources[id]
	if src.any {
		s.log.Debug("raft address of peer is a wildcard: source IP not checked", zap.String("peer", id), zap.String("remote", remote.String()))
		return nil
	}
	ips, err := s.resolve(src)
	if err != nil {
		return fmt.Errorf("peer %s from %s: %w: %w", id, tcp.IP, ErrPeerAddress, err)
	}
	for _, ip := range ips {
		if ip.Equal(tcp.IP) {
			return nil
		}
	}
	return fmt.Errorf("peer %s from %s, configured at %s %v: %w", id, tcp.IP, src.host, ips, ErrPeerAddress)
}

// resolve returns the IPs of src, looking its host up the first time it is needed.
func (s *StreamLayer) resolve(src *source) ([]net.IP, error) {
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.ips != nil {
		return src.ips, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", src.host)
	if err != nil {
		return nil, fmt.Errorf("resolve configured raft host %q: %w", src.host, err)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("resolve configured raft host %q: no address", src.host)
	}
	src.ips = ips
	s.log.Debug("resolved the raft host of a peer", zap.String("host", src.host), zap.Any("ips", ips))
	return ips, nil
}

func (s *StreamLayer) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Accept returns the next connection whose mutual TLS handshake completed with a
// cluster node, or net.ErrClosed once the layer is closed. Failed handshakes are
// logged and never returned.
func (s *StreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.ready:
		return c, nil
	case <-s.done:
		return nil, fmt.Errorf("accept on %s: %w", s.ln.Addr(), net.ErrClosed)
	}
}

// Close stops listening, aborts the pending handshakes and waits for the goroutines
// of the layer. Connections already returned by Accept or Dial stay open. Close is
// idempotent.
func (s *StreamLayer) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		for c := range s.pending {
			_ = c.Close()
		}
		s.mu.Unlock()
		close(s.done)
		if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			s.closeErr = fmt.Errorf("close listener %s: %w", s.ln.Addr(), err)
		}
		s.wg.Wait()
	})
	return s.closeErr
}

// Addr returns the advertised address.
func (s *StreamLayer) Addr() net.Addr { return s.advertise }

// Dial connects to address and completes a mutual TLS handshake with it within
// timeout, requiring the server to have the node id that address belongs to.
func (s *StreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	id, ok := s.peers[string(address)]
	if !ok {
		return nil, fmt.Errorf("dial %s: %w", address, ErrUnknownPeer)
	}
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	conn, err := s.dialFromAdvertised(ctx, string(address))
	if err != nil {
		return nil, fmt.Errorf("dial %s (%s): %w", address, id, err)
	}
	tconn := tls.Client(conn, s.bundle.ClientConfig(id))
	if err := tconn.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("handshake with %s (%s): %w", address, id, err)
	}
	return tconn, nil
}

// dialFromAdvertised connects to address from the advertised IP, which is what the
// peer's source check expects; when that IP is not local (an address behind NAT) it
// dials from whatever address the kernel picks.
func (s *StreamLayer) dialFromAdvertised(ctx context.Context, address string) (net.Conn, error) {
	var d net.Dialer
	if tcp, ok := s.advertise.(*net.TCPAddr); ok && sameFamily(tcp.IP, address) {
		d.LocalAddr = &net.TCPAddr{IP: tcp.IP}
	}
	conn, err := d.DialContext(ctx, "tcp", address)
	if err != nil && d.LocalAddr != nil && errors.Is(err, syscall.EADDRNOTAVAIL) {
		s.log.Debug("advertised raft IP is not local: dialing from any address", zap.String("advertise", s.advertise.String()), zap.String("to", address))
		d.LocalAddr = nil
		conn, err = d.DialContext(ctx, "tcp", address)
	}
	return conn, err
}

// sameFamily reports whether address (host:port) may be dialed from local: false only
// when its host is an IP literal of the other address family.
func sameFamily(local net.IP, address string) bool {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || (ip.To4() == nil) == (local.To4() == nil)
}
