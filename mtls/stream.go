package mtls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
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
)

// StreamLayer is a raft.StreamLayer over mutual TLS 1.3: Accept returns only connections
// whose handshake completed with a client certificate from the CA whose identity is one of
// the cluster's node ids; everything else (plain TCP, another CA, an unknown id) is closed
// before raft reads a byte. Dial verifies that the server at address has the id that
// address belongs to.
type StreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	bundle    *Bundle
	peers     map[string]string // raft address → node id
	serverCfg *tls.Config
	log       *zap.Logger
	hsTimeout time.Duration

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
// of peers (raft address → node id) and advertises advertise (nil = the listener's
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
	for addr, id := range peers {
		cp[addr] = id
		ids[id] = true
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
	id, _ := PeerID(tconn.ConnectionState())
	select {
	case s.ready <- tconn:
		s.log.Debug("accepted raft connection", zap.String("remote", remote), zap.String("peer", id))
	case <-s.done:
		_ = conn.Close()
	}
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
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", string(address))
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
