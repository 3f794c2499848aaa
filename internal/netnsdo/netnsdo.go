// Package netnsdo runs code on an OS thread switched into a network namespace.
//
// A network namespace belongs to an OS thread, not to a goroutine, and sockets stay in the
// namespace they were created in. [Do] therefore runs its function on a fresh goroutine locked to
// its thread, switches that thread, and switches it back afterwards. When switching back fails
// the thread stays locked, so the Go runtime discards it when the goroutine ends instead of
// handing it, still in the wrong namespace, to other goroutines.
package netnsdo

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// The thread and namespace primitives; unit tests replace them.
var (
	lockOSThread   = runtime.LockOSThread
	unlockOSThread = runtime.UnlockOSThread
	getNS          = netns.Get
	setNS          = netns.Set
)

// Do runs fn on an OS thread switched into ns and returns fn's error. Sockets fn creates belong
// to ns and stay there. fn must not start goroutines that depend on the namespace (they run on
// other threads) and should not block long: it holds a thread. ns must be open.
func Do(ns netns.NsHandle, fn func() error) error {
	if !ns.IsOpen() {
		return fmt.Errorf("enter netns %s: not open", ns)
	}
	return OnThread(func() error {
		if err := setNS(ns); err != nil {
			return fmt.Errorf("enter netns %s: %w", ns, err)
		}
		return fn()
	})
}

// OnThread runs fn on a fresh goroutine locked to its OS thread and afterwards switches the
// thread back to the network namespace it was in before fn, whatever fn did to it (for example
// netns.NewNamed, which moves the calling thread into the new namespace). If the thread cannot be
// switched back it stays locked and the runtime discards it; the error then joins fn's error
// with the failure to switch back.
func OnThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		lockOSThread()
		orig, err := getNS()
		if err != nil {
			unlockOSThread()
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		ferr := fn()
		if err := setNS(orig); err != nil {
			// Leave the thread locked: it ends with this goroutine instead of serving others
			// from the wrong namespace.
			errc <- errors.Join(ferr, fmt.Errorf("restore netns %s: %w", orig, err))
			return
		}
		unlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
