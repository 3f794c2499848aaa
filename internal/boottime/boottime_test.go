package boottime

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestNowAdvances(t *testing.T) {
	a := Now()
	b := Now()
	if a <= 0 || b < a {
		t.Fatalf("Now() = %v then %v, want positive and monotonic", a, b)
	}
}

// TestNowIsBoottime compares Now with the clock read through x/sys/unix.
func TestNowIsBoottime(t *testing.T) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		t.Fatal(err)
	}
	ref := time.Duration(ts.Nano())
	got := Now()
	if d := got - ref; d < 0 || d > time.Second {
		t.Fatalf("Now() = %v, CLOCK_BOOTTIME read just before = %v", got, ref)
	}
}
