package node

import (
	"context"
	"database/sql"
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keepraft/keepraft/probe"
)

// fakeServer speaks just enough of the MySQL protocol for a client to log in and ping;
// once silenced it stops answering on the connections it holds (a host cut off: no
// answer, no reset) and refuses new ones.
type fakeServer struct {
	ln     net.Listener
	silent atomic.Bool
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{ln: ln}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Go(func() { s.serve(c) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// silence makes the server a cut-off host: held connections hear nothing, new ones are refused.
func (s *fakeServer) silence() {
	s.silent.Store(true)
	_ = s.ln.Close()
}

func writePacket(c net.Conn, seq byte, payload []byte) error {
	h := []byte{byte(len(payload)), byte(len(payload) >> 8), byte(len(payload) >> 16), seq}
	_, err := c.Write(append(h, payload...))
	return err
}

func readPacket(c net.Conn) (byte, []byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return 0, nil, err
	}
	p := make([]byte, int(h[0])|int(h[1])<<8|int(h[2])<<16)
	_, err := io.ReadFull(c, p)
	return h[3], p, err
}

var okPacket = []byte{0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00}

func (s *fakeServer) serve(c net.Conn) {
	// HandshakeV10 with mysql_native_password; capabilities: long password, protocol
	// 4.1, transactions, secure connection, plugin auth.
	const caps = 0x0001 | 0x0200 | 0x2000 | 0x8000 | 0x80000
	hs := []byte{0x0a}
	hs = append(hs, "5.7.0-fake\x00"...)
	hs = binary.LittleEndian.AppendUint32(hs, 1)
	hs = append(hs, "abcdefgh"...)
	hs = append(hs, 0x00)
	hs = binary.LittleEndian.AppendUint16(hs, caps&0xffff)
	hs = append(hs, 0x21)
	hs = binary.LittleEndian.AppendUint16(hs, 0x0002)
	hs = binary.LittleEndian.AppendUint16(hs, caps>>16)
	hs = append(hs, 21)
	hs = append(hs, make([]byte, 10)...)
	hs = append(hs, "ijklmnopqrst\x00"...)
	hs = append(hs, "mysql_native_password\x00"...)
	if writePacket(c, 0, hs) != nil {
		return
	}
	if _, _, err := readPacket(c); err != nil { // the login
		return
	}
	if writePacket(c, 2, okPacket) != nil {
		return
	}
	for {
		seq, _, err := readPacket(c)
		if err != nil {
			return
		}
		if s.silent.Load() {
			continue // a host cut off: the command is never answered
		}
		if writePacket(c, seq+1, okPacket) != nil {
			return
		}
	}
}

// TestPeerFenceSkipsDeadPooledConnection: connections used while the peer's host was up
// must cost nothing once the host is cut off. A fence's statement that went out on a pooled
// connection waited its whole deadline (a promotion after a host loss waited 3 s); pinging
// the pooled connection first waited a timeout of its own before the dial (a host loss
// took one connect timeout longer). The failover statements' pool keeps no connection, so
// the fence dials at once; the fake server refuses the dial, so the fence fails at once
// (on a real cut-off host it fails within one connect timeout).
func TestPeerFenceSkipsDeadPooledConnection(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failover bool // the pool the connections were used on
		pooled   int
	}{
		{"1 used by the remote probe", false, 1},
		{"2 used by the remote probe", false, 2},
		{"1 used by an earlier fence", true, 1},
		{"2 used by an earlier fence", true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer(t)
			host, port, _ := net.SplitHostPort(srv.ln.Addr().String())
			portN, _ := strconv.Atoi(port)
			timeout := 200 * time.Millisecond
			p := &PeerServers{Hosts: map[string]string{"db1": host}, Port: portN, User: "keepraft", Password: "x",
				Timeout: timeout, Flavor: probe.FlavorMariaDB}
			t.Cleanup(func() { _ = p.Close() })
			db, err := p.db("db1", tc.failover)
			if err != nil {
				t.Fatal(err)
			}
			// Use connections at once while the host is up, then give them back.
			var conns []*sql.Conn
			for range tc.pooled {
				c, err := db.Conn(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if err := c.PingContext(t.Context()); err != nil {
					t.Fatalf("ping while the host is up: %v", err)
				}
				conns = append(conns, c)
			}
			for _, c := range conns {
				_ = c.Close()
			}
			srv.silence()
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			start := time.Now()
			_, err = p.Fence(ctx, "db1")
			took := time.Since(start)
			if err == nil {
				t.Fatal("fence of a cut-off host succeeded")
			}
			if took > timeout/2 {
				t.Fatalf("fence of a cut-off host took %v (%v), want a refused dial at once, no wait on a pooled connection", took, err)
			}
			t.Logf("fence of a cut-off host failed after %v: %v", took, err)
		})
	}
}
