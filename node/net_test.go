package node

import (
	"net"
	"testing"
)

// freeAddrs returns n distinct free loopback addresses: every listener is open at once,
// so the kernel cannot hand out a port twice.
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
