// Package boottime reads CLOCK_BOOTTIME, the clock keepraft's leases run on.
package boottime

import (
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Now reads CLOCK_BOOTTIME: monotonic, and unlike Go's monotonic clock it keeps counting
// while the host is suspended, so a lease can never outlive a suspend.
//
// It is a raw system call: clock_gettime never blocks, and the runtime's system-call
// entry (which unix.ClockGettime goes through) wakes the runtime's monitor thread
// whenever it sleeps, which made the clock, read a few hundred times a second by an idle
// keepraftd, its most frequent cause of wakeups.
func Now() time.Duration {
	var ts unix.Timespec
	if _, _, errno := unix.RawSyscall(unix.SYS_CLOCK_GETTIME, unix.CLOCK_BOOTTIME, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		panic("CLOCK_BOOTTIME unavailable: " + errno.Error())
	}
	return time.Duration(ts.Nano())
}
