package watchdog

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// LeaseFDEnv names the environment variable that tells a watchdog process which of its
// file descriptors is the shared lease page. A watchdog that does not know it (an older
// binary) never acknowledges the page, and keepraftd then sends it every renewal through
// the pipe, as before.
const LeaseFDEnv = "KEEPRAFT_WATCHDOG_LEASE_FD"

// leaseFD is the descriptor the page gets in the watchdog: after the pipe (3).
const leaseFD = 4

// sharedSize covers the two words of the page.
const sharedSize = 16

// Shared is a page of memory (a memfd) that keepraftd and its watchdog both map. The first
// word is the lease's expiry on CLOCK_BOOTTIME in nanoseconds while writes are open (0
// otherwise), stored by keepraftd after every renewal; the watchdog reads it only when its
// own deadline has passed, and sleeps again if the lease was renewed meanwhile. So a
// renewal costs keepraftd one atomic store and wakes nobody, where a message wakes the
// watchdog process six times a second. The second word is the PID of the watchdog that
// reads the first: keepraftd leaves messages out only for a watchdog that wrote it.
type Shared struct {
	f   *os.File
	mem []byte
}

// NewShared creates the page (keepraftd's side).
func NewShared() (*Shared, error) {
	fd, err := unix.MemfdCreate("keepraft-lease", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("watchdog lease page: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "keepraft-lease")
	if err := unix.Ftruncate(fd, sharedSize); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("watchdog lease page: ftruncate: %w", err)
	}
	return mapShared(f)
}

// OpenShared maps the page a watchdog process was given, when keepraftd said so in the
// environment; it returns nil, nil when it did not (an older keepraftd: messages only).
func OpenShared() (*Shared, error) {
	v := os.Getenv(LeaseFDEnv)
	if v == "" {
		return nil, nil
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 0 {
		return nil, fmt.Errorf("%s=%q: not a file descriptor", LeaseFDEnv, v)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("%s=%d: %w", LeaseFDEnv, fd, err)
	}
	if st.Size < sharedSize {
		return nil, fmt.Errorf("%s=%d: %d bytes, want %d", LeaseFDEnv, fd, st.Size, sharedSize)
	}
	return mapShared(os.NewFile(uintptr(fd), "keepraft-lease"))
}

func mapShared(f *os.File) (*Shared, error) {
	mem, err := unix.Mmap(int(f.Fd()), 0, sharedSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("watchdog lease page: mmap: %w", err)
	}
	return &Shared{f: f, mem: mem}, nil
}

// word returns the i-th 64-bit word; the mapping is page-aligned.
func (s *Shared) word(i int) *atomic.Int64 {
	return (*atomic.Int64)(unsafe.Pointer(&s.mem[8*i]))
}

// Store publishes the lease's expiry (0: none).
func (s *Shared) Store(deadline time.Duration) { s.word(0).Store(int64(deadline)) }

// Load reads the last expiry published.
func (s *Shared) Load() time.Duration { return time.Duration(s.word(0).Load()) }

// Ack records pid as the watchdog that reads the page.
func (s *Shared) Ack(pid int) { s.word(1).Store(int64(pid)) }

// Acked reports whether the watchdog pid acknowledged the page.
func (s *Shared) Acked(pid int) bool { return pid > 0 && s.word(1).Load() == int64(pid) }

// file is the descriptor to hand to the watchdog process.
func (s *Shared) file() *os.File { return s.f }

// Close unmaps the page and closes its descriptor.
func (s *Shared) Close() error {
	return errors.Join(unix.Munmap(s.mem), s.f.Close())
}
