package timerslack

import (
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestSet raises the slack of every thread of the test process, including threads the
// runtime creates afterwards, and leaves a larger slack alone.
func TestSet(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("setting other threads' timer slack needs CAP_SYS_NICE (root)")
	}
	const d = 2 * time.Millisecond
	if _, err := Set(d); err != nil {
		t.Fatal(err)
	}
	// Threads created now (goroutines locked to their own threads) inherit it.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			runtime.LockOSThread()
			time.Sleep(20 * time.Millisecond)
		})
	}
	time.Sleep(10 * time.Millisecond)
	tids, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range tids {
		got, err := Of(e.Name())
		if err != nil {
			continue // exited meanwhile
		}
		if got < d {
			t.Errorf("thread %s: slack %v, want at least %v", e.Name(), got, d)
		}
	}
	wg.Wait()
	if n, err := Set(time.Millisecond); err != nil || n != 0 {
		t.Fatalf("Set to a smaller slack changed %d threads (err %v), want none", n, err)
	}
}
