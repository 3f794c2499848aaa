package testenv

import (
	"testing"
	"time"
)

// waitPoll is how often [WaitFor] re-checks its condition.
const waitPoll = 20 * time.Millisecond

// WaitFor polls cond until it reports true or timeout passes, then fails tb with what and
// the last detail cond returned. Tests wait with it instead of sleeping.
func WaitFor(tb testing.TB, what string, timeout time.Duration, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, info := cond()
		if ok {
			return
		}
		last = info
		time.Sleep(waitPoll)
	}
	tb.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, last)
}
