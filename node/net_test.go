package node

import (
	"net"
	"testing"
	"time"
)

const (
	// listenWait bounds how long a test waits for a node's API to listen.
	listenWait = 10 * time.Second
	// listenRetry is the pause between two dials of waitListening.
	listenRetry = 10 * time.Millisecond
)

// freeAddrs returns n distinct free loopback addresses: every listener is open at once,
// so the kernel cannot hand out a port twice. The ports are free again when it returns;
// a node binds its API only once Run has started, so a test that talks to it must
// waitListening first.
func freeAddrs(tb testing.TB, n int) []string {
	tb.Helper()
	out := make([]string, n)
	for i := range out {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		defer l.Close()
		out[i] = l.Addr().String()
	}
	return out
}

// waitListening dials addr until something accepts, and fails the test when nothing
// does within listenWait: a node's API listens only once its Run goroutine has started,
// so a request sent right after `go n.Run(ctx)` may find the port closed.
func waitListening(tb testing.TB, addr string) {
	tb.Helper()
	deadline := time.Now().Add(listenWait)
	for {
		c, err := net.DialTimeout("tcp", addr, listenWait)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("nothing listens on %s after %v: %v", addr, listenWait, err)
		}
		time.Sleep(listenRetry)
	}
}
