package node

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keepraft/keepraft/owner"
	"github.com/keepraft/keepraft/probe"
)

// LocalMySQL is the real [owner.MySQL]: the local server through database/sql and package probe.
type LocalMySQL struct {
	DB       *sql.DB
	Prober   *probe.Prober
	Flavor   probe.Flavor
	AppUsers []string

	pid atomic.Int64 // the server process WaitExit last watched
}

var _ owner.MySQL = (*LocalMySQL)(nil)

// Check probes the server.
func (l *LocalMySQL) Check(ctx context.Context) (probe.Health, error) { return l.Prober.Check(ctx) }

// Fence sets read_only=1 and kills application connections.
func (l *LocalMySQL) Fence(ctx context.Context) (string, error) {
	return l.Prober.Fence(ctx)
}

// Promote sets read_only=0.
func (l *LocalMySQL) Promote(ctx context.Context) error { return probe.Promote(ctx, l.DB, l.Flavor) }

// SemiSyncMaster switches the semi-sync master side (see probe.SetSemiSyncMaster).
func (l *LocalMySQL) SemiSyncMaster(ctx context.Context, on bool) (bool, error) {
	return probe.SetSemiSyncMaster(ctx, l.DB, on)
}

// StopReplication stops the replication channel.
func (l *LocalMySQL) StopReplication(ctx context.Context) error {
	return probe.StopReplication(ctx, l.DB)
}

// StartReplication starts the replication channel.
func (l *LocalMySQL) StartReplication(ctx context.Context) error {
	return probe.StartReplication(ctx, l.DB)
}

// ReplicaChannel reads the replication channel's threads, errors and positioning.
func (l *LocalMySQL) ReplicaChannel(ctx context.Context) (probe.ReplicaChannel, error) {
	return probe.ReadReplicaChannel(ctx, l.DB, l.Flavor)
}

// ResetRelayLog discards the channel's relay logs and fetches them again (probe.ResetRelayLog).
func (l *LocalMySQL) ResetRelayLog(ctx context.Context) (probe.ReplicaChannel, error) {
	return probe.ResetRelayLog(ctx, l.DB, l.Flavor)
}

// WaitCatchUp waits until target (restricted to domain) is applied.
func (l *LocalMySQL) WaitCatchUp(ctx context.Context, target string, domain uint32, timeout time.Duration) (probe.CatchUp, error) {
	return probe.WaitCatchUp(ctx, l.DB, l.Flavor, target, domain, timeout)
}

// WaitRelayApplied waits until what the channel received is applied.
func (l *LocalMySQL) WaitRelayApplied(ctx context.Context, timeout time.Duration) (probe.RelayCatchUp, error) {
	return probe.WaitRelayApplied(ctx, l.DB, l.Flavor, timeout)
}

// WaitExit waits for the local server's process to exit (pidfd).
func (l *LocalMySQL) WaitExit(ctx context.Context) error {
	pid, err := probe.ServerPID(ctx, l.DB)
	if err != nil {
		return err
	}
	l.pid.Store(int64(pid))
	return probe.WatchProcess(ctx, pid)
}

// KillStopped kills the watched server process if it is stopped by a signal.
func (l *LocalMySQL) KillStopped() (bool, error) { return probe.KillStopped(int(l.pid.Load())) }

// Process reports the state of the server's process last watched by WaitExit.
func (l *LocalMySQL) Process() int { return probe.ProcessState(int(l.pid.Load())) }

// PeerServers is the real [owner.Remote]: this node's account on each other database node's
// server, at that node's host and mysql.port.
type PeerServers struct {
	Hosts    map[string]string // peer id → host
	Port     int
	User     string
	Password string
	Timeout  time.Duration
	Flavor   probe.Flavor
	AppUsers []string

	mu  sync.Mutex
	dbs map[string]*sql.DB
}

var _ owner.Remote = (*PeerServers)(nil)

func (p *PeerServers) db(peer string) (*sql.DB, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if db := p.dbs[peer]; db != nil {
		return db, nil
	}
	host, ok := p.Hosts[peer]
	if !ok {
		return nil, fmt.Errorf("peer %q: no database host known", peer)
	}
	db, err := sql.Open("mysql", probe.DSN(host, p.Port, p.User, p.Password, p.Timeout))
	if err != nil {
		return nil, fmt.Errorf("peer %s mysql at %s: %w", peer, net.JoinHostPort(host, fmt.Sprint(p.Port)), err)
	}
	db.SetMaxOpenConns(2)
	// One idle connection at most: live pings the one it finds, and a second pooled from
	// before a host was cut off would take the caller's statement and its whole deadline.
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(mysqlIdleTime)
	if p.dbs == nil {
		p.dbs = map[string]*sql.DB{}
	}
	p.dbs[peer] = db
	return db, nil
}

// live returns peer's pool, first pinging its idle pooled connection (it keeps at most one)
// with p.Timeout. A connection pooled before the peer's host went away (cut off, not
// closed) would otherwise take the whole of the caller's deadline: its statement is written
// and no answer, nor reset, ever comes (a promotion's fence of a lost owner's server waited
// its full 3 s). The ping's timeout closes such a connection, so the caller's statement
// dials afresh and an unreachable host fails within a connect timeout. The ping's own error
// is not the caller's: a slow but reachable server still gets the caller's full deadline.
// With nothing pooled the caller dials anyway, and no ping is spent.
func (p *PeerServers) live(ctx context.Context, peer string) (*sql.DB, error) {
	db, err := p.db(peer)
	if err != nil {
		return nil, err
	}
	if db.Stats().Idle > 0 {
		pctx, cancel := context.WithTimeout(ctx, p.Timeout)
		_ = db.PingContext(pctx)
		cancel()
	}
	return db, nil
}

// Ping connects to peer's server and runs SELECT 1.
func (p *PeerServers) Ping(ctx context.Context, peer string) error {
	db, err := p.db(peer)
	if err != nil {
		return err
	}
	var one int
	return db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// Fence fences peer's server and returns its final GTID set.
func (p *PeerServers) Fence(ctx context.Context, peer string) (string, error) {
	db, err := p.live(ctx, peer)
	if err != nil {
		return "", err
	}
	g, err := probe.Fence(ctx, db, p.Flavor, p.AppUsers)
	if err != nil {
		return "", fmt.Errorf("fence %s: %w", peer, err)
	}
	return g, nil
}

// Executed reads peer's executed GTID set.
func (p *PeerServers) Executed(ctx context.Context, peer string) (string, error) {
	db, err := p.live(ctx, peer)
	if err != nil {
		return "", err
	}
	g, err := probe.Executed(ctx, db, p.Flavor)
	if err != nil {
		return "", fmt.Errorf("read %s's GTIDs: %w", peer, err)
	}
	return g, nil
}

// ReadOnly reads peer's read_only.
func (p *PeerServers) ReadOnly(ctx context.Context, peer string) (bool, error) {
	db, err := p.live(ctx, peer)
	if err != nil {
		return false, err
	}
	ro, err := probe.ReadOnly(ctx, db, p.Flavor)
	if err != nil {
		return false, fmt.Errorf("read %s's read_only: %w", peer, err)
	}
	return ro, nil
}

// Close closes every connection pool.
func (p *PeerServers) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, db := range p.dbs {
		errs = append(errs, db.Close())
	}
	p.dbs = nil
	return errors.Join(errs...)
}
