// Package boottime reads CLOCK_BOOTTIME, the clock keepraft's leases run on.
package boottime

import (
	"time"

	"golang.org/x/sys/unix"
)

// Now reads CLOCK_BOOTTIME: monotonic, and unlike Go's monotonic clock it keeps counting
// while the host is suspended, so a lease can never outlive a suspend.
func Now() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		panic("CLOCK_BOOTTIME unavailable: " + err.Error())
	}
	return time.Duration(ts.Nano())
}
