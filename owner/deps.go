package owner

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/probe"
	"github.com/keepraft/keepraft/vip"
)

// Node is what the runtime needs from the keepraftd node it runs in.
type Node interface {
	// State returns the applied state.
	State() fsm.State
	// Watch returns a channel closed at the next applied change.
	Watch() <-chan struct{}
	// CaughtUp reports whether the applied state is at least as new as the commit index
	// learned from a current leader, heard within the lease.
	CaughtUp() bool
	// Propose commits ev through the leader and reports what Apply made of it.
	Propose(ctx context.Context, ev fsm.Event) (api.ProposeResponse, error)
	// Peers returns the latest poll of every peer.
	Peers() map[string]api.Peer
}

// MySQL is the local server.
type MySQL interface {
	Check(ctx context.Context) (probe.Health, error)
	// Fence sets read_only=1, kills application connections and returns the final GTID set.
	Fence(ctx context.Context) (string, error)
	// Promote sets read_only=0.
	Promote(ctx context.Context) error
	// SemiSyncMaster switches the server's semi-sync master side and reports whether it
	// changed; switching it off first kills client commits waiting for an acknowledgement
	// (probe.SetSemiSyncMaster).
	SemiSyncMaster(ctx context.Context, on bool) (changed bool, err error)
	StopReplication(ctx context.Context) error
	StartReplication(ctx context.Context) error
	// ReplicaChannel reads the replication channel: its threads, their last errors with
	// their numbers (Last_IO_Errno) and whether it positions by GTID. It changes nothing.
	ReplicaChannel(ctx context.Context) (probe.ReplicaChannel, error)
	// ResetRelayLog discards the channel's relay logs and fetches them again from the
	// source's GTID position (STOP REPLICA; RESET REPLICA; START REPLICA, probe.ResetRelayLog).
	// It refuses a channel that does not position by GTID or whose SQL thread has an error,
	// and returns the channel as it found it.
	ResetRelayLog(ctx context.Context) (probe.ReplicaChannel, error)
	WaitCatchUp(ctx context.Context, target string, domain uint32, timeout time.Duration) (probe.CatchUp, error)
	// WaitRelayApplied waits until everything the replication channel received is applied.
	WaitRelayApplied(ctx context.Context, timeout time.Duration) (probe.RelayCatchUp, error)
	// WaitExit returns nil once the server's process exits (it must run on this host),
	// an error wrapping probe.ErrNotLocal when it cannot be watched, or ctx's error.
	WaitExit(ctx context.Context) error
	// Process reports the state of the server's process (probe.ProcessRunning, ...):
	// probe.ProcessUnknown when it is not watched.
	Process() int
	// KillStopped SIGKILLs the server's process if it is stopped by a signal (a frozen
	// server cannot be fenced but resumes writable) and reports whether it did.
	KillStopped() (bool, error)
}

// Remote reaches the other database nodes' servers.
type Remote interface {
	// Ping connects to peer's server and runs SELECT 1.
	Ping(ctx context.Context, peer string) error
	// Fence fences peer's server (read_only=1, applications killed; idempotent) and
	// returns its GTID set read after the fence.
	Fence(ctx context.Context, peer string) (string, error)
	// Executed reads peer's executed GTID set and changes nothing.
	Executed(ctx context.Context, peer string) (string, error)
	// ReadOnly reads peer's read_only (super_read_only on MySQL).
	ReadOnly(ctx context.Context, peer string) (bool, error)
}

// VIP adds, renews and removes the managed addresses; Set is idempotent.
type VIP interface {
	Set(ctx context.Context, desired []netip.Prefix) (vip.Result, error)
	Held(ctx context.Context) ([]netip.Prefix, error)
	ProbeConflict(ctx context.Context, addr netip.Addr) (net.HardwareAddr, bool, error)
}

// Renewer sends a Renew to one peer.
type Renewer interface {
	Renew(ctx context.Context, peer string, req api.RenewRequest) (api.RenewResponse, error)
}

// Fence is the millisecond kernel lease of the VIPs' traffic (package nftfence): traffic
// to and from the VIPs passes only while it is open, and it closes by itself when the
// time given to Open runs out, whatever this process does meanwhile.
type Fence interface {
	// OpenUntilBoot lets the VIPs' traffic through until deadline on the runtime's clock
	// (CLOCK_BOOTTIME). The time left is measured inside the call, right before the
	// kernel is told, so a stall before or during the call cannot lengthen the lease.
	OpenUntilBoot(deadline time.Duration) error
	// Shut drops the VIPs' traffic at once.
	Shut() error
	// Watch calls gone when the fence stops holding (its table was removed), until ctx ends.
	Watch(ctx context.Context, gone func(reason string)) error
	// Reinstall puts a lost fence back, closed.
	Reinstall() error
}

// Watchdog fences the local server at the lease's expiry when this process cannot: it
// runs apart from keepraftd (package watchdog). Deadlines are on the runtime's clock
// (CLOCK_BOOTTIME). Arm returns once the deadline is delivered.
type Watchdog interface {
	Arm(deadline time.Duration) error
	Disarm() error
}

// Resigner sends the priority-0 VRRP advert that lets keepalived backups take over at once.
type Resigner interface {
	Resign(ctx context.Context) error
}

var (
	_ VIP = (*vip.Manager)(nil)
)
