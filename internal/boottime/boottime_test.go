package boottime

import "testing"

func TestNowAdvances(t *testing.T) {
	a := Now()
	b := Now()
	if a <= 0 || b < a {
		t.Fatalf("Now() = %v then %v, want positive and monotonic", a, b)
	}
}
