package testenv

import (
	"net"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/keepraft/keepraft/internal/netnsdo"
)

// HoldingListener listens on addr (TCP) inside ns and accepts every connection without
// ever answering, as a server busy with a statement would; the listener and the accepted
// connections are closed when the test ends.
func HoldingListener(t testing.TB, ns netns.NsHandle, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := netnsdo.Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}()
	return ln
}
