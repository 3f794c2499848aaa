package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/keepraft/keepraft/fsm"
)

// Data-dir layout.
const (
	// LogFile is the bbolt file holding the Raft log and stable store.
	LogFile = "raft.db"
	// SnapshotDir holds the file snapshots.
	SnapshotDir = "snapshots"
	// retainSnapshots is how many snapshots are kept on disk.
	retainSnapshots = 3
)

// Timeouts of the bbolt file lock.
const (
	// defaultLockTimeout is how long [Open] waits for the bbolt file lock when
	// [Options].LockTimeout is zero: long enough for a keepraftd that is stopping to
	// release it, short enough that a second keepraftd on the same dir fails at once.
	defaultLockTimeout = 2 * time.Second
	// journalLockTimeout is how long [ReadJournal] waits for a shared lock on raft.db
	// before it reports [ErrLocked]: a running node holds the lock for good, so a longer
	// wait would only delay that answer.
	journalLockTimeout = time.Second
)

// Sentinel errors of package store.
var (
	// ErrLocked is returned by [Open] and [ReadJournal] when a running node holds the
	// data dir.
	ErrLocked = errors.New("data dir is in use by a running keepraftd")
	// ErrCorrupt is returned by [Open] and [ReadJournal] when raft.db is damaged (for
	// example truncated), and by [ReadMarker] for a marker that does not decode. The
	// message names the file; for raft.db it ends with [Recovery].
	ErrCorrupt = errors.New("data dir is damaged")
)

// Options tunes [Open].
type Options struct {
	// Logger receives the snapshot store's messages; nil discards them.
	Logger hclog.Logger
	// LockTimeout bounds the wait for the bbolt file lock (default defaultLockTimeout, 2 s).
	LockTimeout time.Duration
}

// Stores are the three stores hashicorp/raft needs, backed by one data dir.
type Stores struct {
	Log    raft.LogStore
	Stable raft.StableStore
	Snap   raft.SnapshotStore
	bolt   *raftboltdb.BoltStore
}

// Open creates dir if needed and opens its log, stable and snapshot stores. The bbolt
// file is locked until Close; a second Open of the same dir fails with [ErrLocked] after
// LockTimeout. A damaged raft.db never panics: Open checks it first (meta pages, size,
// and a read of every page) and fails with an error wrapping [ErrCorrupt] that names the
// file and the recovery. After a panic inside bbolt's own open the file handle cannot be
// released, so the process should exit on ErrCorrupt. A missing or empty raft.db opens
// as a new one; use [Inspect] and the [Marker] to tell a new node from one that lost its
// Raft state.
func Open(dir string, opts Options) (*Stores, error) {
	if dir == "" {
		return nil, errors.New("open store: data dir is empty")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if opts.LockTimeout == 0 {
		opts.LockTimeout = defaultLockTimeout
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	path := filepath.Join(dir, LogFile)
	if err := verify(path, opts.LockTimeout); err != nil {
		return nil, err
	}
	var b *raftboltdb.BoltStore
	err := guard(func() error {
		var err error
		b, err = raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bbolt.Options{Timeout: opts.LockTimeout}})
		return err
	})
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, fmt.Errorf("open %s: %w", path, ErrLocked)
		}
		if damaged(err) {
			return nil, fmt.Errorf("open %s: %w: %w; %s", path, ErrCorrupt, err, Recovery)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(dir, SnapshotDir), retainSnapshots, opts.Logger)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open snapshot store in %s: %w", dir, err), b.Close())
	}
	return &Stores{Log: b, Stable: b, Snap: snaps, bolt: b}, nil
}

// Close releases the bbolt file.
func (s *Stores) Close() error {
	if err := s.bolt.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// Journal is what [ReadJournal] recovers from a stopped node's data dir.
type Journal struct {
	// SnapshotIndex is the last index covered by the snapshot read, 0 if none.
	SnapshotIndex uint64
	// Records are the retained journal records, oldest first.
	Records []fsm.Record
	// State is the state after the last committed entry on disk. Entries that were
	// written but not yet committed when the node stopped are folded in as well, so
	// this may run ahead of the cluster by a few entries.
	State fsm.State
}

// ReadJournal reads the journal of a stopped node from its data dir: the latest snapshot
// (state plus retained history) and every log entry after it. It fails with [ErrLocked]
// when the node is running; use the API then.
func ReadJournal(dir string) (*Journal, error) {
	path := filepath.Join(dir, LogFile)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	if err := checkMeta(path); err != nil {
		return nil, fmt.Errorf("read journal from %s: %w: %w", path, ErrCorrupt, err)
	}
	// Copy the log under a shared lock, then open the copy: raft-boltdb wants write
	// access, and the node's own file must stay untouched.
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: journalLockTimeout})
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, fmt.Errorf("read journal from %s: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("read journal from %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp("", "keepraft-journal-")
	if err != nil {
		return nil, errors.Join(fmt.Errorf("read journal: %w", err), db.Close())
	}
	defer os.RemoveAll(tmp)
	cp := filepath.Join(tmp, LogFile)
	err = guard(func() error { return db.View(walk) })
	if err != nil {
		return nil, errors.Join(fmt.Errorf("read journal from %s: %w: %w", path, ErrCorrupt, err), db.Close())
	}
	err = db.View(func(tx *bbolt.Tx) error { return tx.CopyFile(cp, 0o600) })
	if err := errors.Join(err, db.Close()); err != nil {
		return nil, fmt.Errorf("copy %s: %w", path, err)
	}
	b, err := raftboltdb.New(raftboltdb.Options{Path: cp})
	if err != nil {
		return nil, fmt.Errorf("open copy of %s: %w", path, err)
	}
	defer b.Close()

	f := fsm.New(0)
	j := &Journal{}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(dir, SnapshotDir), retainSnapshots, hclog.NewNullLogger())
	if err != nil {
		return nil, fmt.Errorf("open snapshots in %s: %w", dir, err)
	}
	metas, err := snaps.List()
	if err != nil {
		return nil, fmt.Errorf("list snapshots in %s: %w", dir, err)
	}
	if len(metas) > 0 {
		_, rc, err := snaps.Open(metas[0].ID)
		if err != nil {
			return nil, fmt.Errorf("open snapshot %s: %w", metas[0].ID, err)
		}
		if err := f.Restore(rc); err != nil {
			return nil, fmt.Errorf("restore snapshot %s: %w", metas[0].ID, err)
		}
		j.SnapshotIndex = metas[0].Index
	}
	first, err := b.FirstIndex()
	if err != nil {
		return nil, fmt.Errorf("read first index: %w", err)
	}
	last, err := b.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("read last index: %w", err)
	}
	for i := max(first, j.SnapshotIndex+1); i <= last && i > 0; i++ {
		var l raft.Log
		if err := b.GetLog(i, &l); err != nil {
			return nil, fmt.Errorf("read log entry %d: %w", i, err)
		}
		f.Apply(&l)
	}
	j.Records, j.State = f.Journal(0), f.State()
	return j, nil
}
