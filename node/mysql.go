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
	dbs map[poolKey]*sql.DB
}

// poolKey names one of a peer's two pools: the remote probe's, which keeps a connection,
// and the failover statements', which keeps none.
type poolKey struct {
	peer     string
	failover bool
}

var _ owner.Remote = (*PeerServers)(nil)

// db returns peer's probe pool (failover false) or its failover pool. The failover pool
// keeps no idle connection, so a fence, a read of read_only or of the GTIDs always dials
// afresh: a connection pooled before the peer's host was cut off (not closed) would take
// the statement and its whole deadline, since no answer, nor reset, ever comes (a
// promotion's fence of a lost owner's server once waited its full 3 s), and pinging it
// first costs a timeout of its own before the dial (a host loss took one connect timeout
// longer whenever the remote probe had left a connection pooled). An unreachable host
// thus fails within one connect timeout, and a slow but reachable server gets the
// caller's full deadline. The probe pool keeps one idle connection for its pings.
func (p *PeerServers) db(peer string, failover bool) (*sql.DB, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := poolKey{peer, failover}
	if db := p.dbs[k]; db != nil {
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
	if failover {
		db.SetMaxIdleConns(0)
	} else {
		db.SetMaxIdleConns(1)
		db.SetConnMaxIdleTime(mysqlIdleTime)
	}
	if p.dbs == nil {
		p.dbs = map[poolKey]*sql.DB{}
	}
	p.dbs[k] = db
	return db, nil
}

// Ping connects to peer's server and runs SELECT 1.
func (p *PeerServers) Ping(ctx context.Context, peer string) error {
	db, err := p.db(peer, false)
	if err != nil {
		return err
	}
	var one int
	return db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// Fence fences peer's server and returns its final GTID set.
func (p *PeerServers) Fence(ctx context.Context, peer string) (string, error) {
	db, err := p.db(peer, true)
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
	db, err := p.db(peer, true)
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
	db, err := p.db(peer, true)
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
