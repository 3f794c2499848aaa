// Package sdnotifytest provides a fake systemd notify socket for tests of code that uses
// package sdnotify, in process or in a child started with NOTIFY_SOCKET=[Socket.Path].
package sdnotifytest

import (
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// pollEvery is how often [Socket.WaitFor] re-checks its condition.
const pollEvery = 5 * time.Millisecond

// Socket is a fake systemd notify socket: a unixgram listener that collects every datagram
// with the time it arrived. It is closed when the test ends.
type Socket struct {
	// Path is the socket's file name, the value for NOTIFY_SOCKET.
	Path string

	conn *net.UnixConn
	mu   sync.Mutex
	msgs []message
	done chan struct{}
}

type message struct {
	state string
	at    time.Time
}

// NewSocket listens on a fresh socket in a short temporary directory (sun_path holds 108
// bytes, and t.TempDir() can be longer).
func NewSocket(t testing.TB) *Socket {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &Socket{Path: filepath.Join(dir, "notify"), done: make(chan struct{})}
	s.conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: s.Path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(s.done)
		buf := make([]byte, 4096)
		for {
			n, _, err := s.conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, message{string(buf[:n]), time.Now()})
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		s.conn.Close()
		<-s.done
	})
	return s
}

// States returns every state received so far, in order.
func (s *Socket) States() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, m := range s.msgs {
		out = append(out, m.state)
	}
	return out
}

// Count returns how many times state was received.
func (s *Socket) Count(state string) int {
	n := 0
	for _, st := range s.States() {
		if st == state {
			n++
		}
	}
	return n
}

// Times returns when each message carrying state arrived, in order.
func (s *Socket) Times(state string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var at []time.Time
	for _, m := range s.msgs {
		if m.state == state {
			at = append(at, m.at)
		}
	}
	return at
}

// WaitFor polls until cond holds, and fails the test, naming what and listing the messages
// received, if it does not within bound.
func (s *Socket) WaitFor(t testing.TB, what string, bound time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; messages so far: %q", what, bound, s.States())
		}
		time.Sleep(pollEvery)
	}
}
