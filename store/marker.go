package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// MarkerFile is the name of the marker in the data dir: its presence says this node
// bootstrapped or joined a cluster, so it must have Raft state.
const MarkerFile = "cluster-marker.json"

// PendingFile is the name of the pending marker in the data dir: its presence says a node
// started on this dir as a new one and has not finished bootstrapping. It is written
// before Raft first starts on a new dir and removed once the bootstrap is complete, so
// Raft state next to it, without a [MarkerFile], was written by a start that never
// decided to bootstrap (see [DirState.Decide]).
const PendingFile = "bootstrap-pending.json"

// ErrAmnesia is returned by [DirState.Decide] for a data dir whose node would forget
// votes or log entries it gave: it bootstrapped or joined a cluster (the marker says so)
// but its Raft state is gone, or its Raft state was written by a start that never
// finished its bootstrap. The message names the file and ends with [Recovery].
var ErrAmnesia = errors.New("raft state missing")

// raftSnapshots is where hashicorp/raft's file snapshot store keeps one directory per
// snapshot (with a meta.json) below [SnapshotDir]; names ending in .tmp are unfinished.
const raftSnapshots = "snapshots"

// Marker records that a node became part of a cluster. It is written once, when the node
// bootstraps the cluster or first joins one, and never removed by keepraftd: a data dir
// with a marker but without Raft state lost its log and votes (see [Inspect]). The
// pending marker ([PendingFile]) has the same content: the node, its peers, and when it
// first started on the new dir.
type Marker struct {
	// Node is this node's id.
	Node string `json:"node"`
	// Cluster lists the peer ids of the cluster the node bootstrapped or joined.
	Cluster []string `json:"cluster"`
	// At is when the node bootstrapped or joined.
	At time.Time `json:"at"`
}

// WriteMarker writes m to dir atomically: a temporary file, written and synced, is
// renamed over [MarkerFile] and the directory is synced, so a crash leaves either the
// old marker or the new one. The file has mode 0600. dir is created if needed.
func WriteMarker(dir string, m Marker) error { return writeMarker(dir, MarkerFile, m) }

// WritePending writes the pending marker [PendingFile] to dir, as atomically as
// [WriteMarker]: a node writes it before Raft first starts on a new data dir.
func WritePending(dir string, m Marker) error { return writeMarker(dir, PendingFile, m) }

// ClearPending removes the pending marker from dir, durably, once the bootstrap is
// complete ([MarkerFile] written, Raft state stored). A missing one is not an error.
func ClearPending(dir string) error {
	path := filepath.Join(dir, PendingFile)
	if err := os.Remove(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove pending marker %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("remove pending marker %s: %w", path, err)
	}
	return nil
}

// writeMarker writes m to dir/name through a synced temporary file and a rename.
func writeMarker(dir, name string, m Marker) (err error) {
	path := filepath.Join(dir, name)
	if m.Node == "" {
		return fmt.Errorf("write marker %s: node id is empty", path)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("write marker %s: %w", path, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write marker %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return fmt.Errorf("write marker %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return errors.Join(fmt.Errorf("write marker %s: %w", tmp, err), f.Close())
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		return errors.Join(fmt.Errorf("write marker %s: %w", tmp, err), f.Close())
	}
	if err := f.Sync(); err != nil {
		return errors.Join(fmt.Errorf("sync marker %s: %w", tmp, err), f.Close())
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close marker %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write marker %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write marker %s: %w", path, err)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// ReadMarker reads the marker in dir. ok is false, with no error, when there is none. A
// marker that does not decode, or names no node, is an error wrapping [ErrCorrupt] that
// names the file.
func ReadMarker(dir string) (m Marker, ok bool, err error) {
	path := filepath.Join(dir, MarkerFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Marker{}, false, nil
	}
	if err != nil {
		return Marker{}, false, fmt.Errorf("read marker %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return Marker{}, false, fmt.Errorf("read marker %s: %w: %w", path, ErrCorrupt, err)
	}
	if m.Node == "" {
		return Marker{}, false, fmt.Errorf("read marker %s: %w: no node id", path, ErrCorrupt)
	}
	return m, true, nil
}

// DirState is what [Inspect] finds in a data dir.
type DirState struct {
	// Marker is true when the [MarkerFile] exists.
	Marker bool
	// Pending is true when the [PendingFile] exists.
	Pending bool
	// RaftDB is true when raft.db exists and is not empty.
	RaftDB bool
	// Snapshots counts the finished snapshots on disk.
	Snapshots int
}

// New reports whether the dir holds nothing of a cluster: a node may bootstrap or join
// with it. A pending marker alone leaves a dir new.
func (d DirState) New() bool { return !d.Marker && !d.RaftDB && d.Snapshots == 0 }

// Amnesiac reports whether the node bootstrapped or joined a cluster (the marker or a
// snapshot says so) but raft.db, its log and votes, is missing or empty: starting it as a
// new node would forget what it voted and acknowledged.
func (d DirState) Amnesiac() bool { return !d.RaftDB && (d.Marker || d.Snapshots > 0) }

// Inspect looks at dir without changing it, so the daemon can tell a new node from one
// that bootstrapped or joined but lost its Raft state. A missing dir is a new one.
func Inspect(dir string) (DirState, error) {
	var d DirState
	for name, found := range map[string]*bool{MarkerFile: &d.Marker, PendingFile: &d.Pending} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			*found = true
		} else if !errors.Is(err, os.ErrNotExist) {
			return DirState{}, fmt.Errorf("inspect %s: %w", dir, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, LogFile)); err == nil {
		d.RaftDB = fi.Size() > 0
	} else if !errors.Is(err, os.ErrNotExist) {
		return DirState{}, fmt.Errorf("inspect %s: %w", dir, err)
	}
	snaps := filepath.Join(dir, SnapshotDir, raftSnapshots)
	ents, err := os.ReadDir(snaps)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return DirState{}, fmt.Errorf("inspect %s: %w", snaps, err)
	}
	for _, e := range ents {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if _, err := os.Stat(filepath.Join(snaps, e.Name(), "meta.json")); err == nil {
			d.Snapshots++
		}
	}
	return d, nil
}

// Start is how a node starts on its data dir, as [DirState.Decide] finds.
type Start int

// The ways a node starts.
const (
	// StartNew: the dir holds no Raft state and no finished bootstrap. The node writes
	// the pending marker, keeps Raft from talking until every peer reports a new data dir
	// too, then bootstraps with them, or refuses when a peer holds state.
	StartNew Start = iota + 1
	// StartExisting: the node bootstrapped or joined (the marker says so) and restarts
	// from its Raft state.
	StartExisting
	// StartLegacy: Raft state without either marker, left by a keepraftd from before the
	// markers existed; the node writes the marker and restarts from that state.
	StartLegacy
)

func (s Start) String() string {
	switch s {
	case StartNew:
		return "new"
	case StartExisting:
		return "existing"
	case StartLegacy:
		return "legacy"
	}
	return fmt.Sprintf("Start(%d)", int(s))
}

// Decide tells how a node starts on the data dir dir, which Inspect found as d, given
// whether its opened stores hold Raft state (raft.HasExistingState). The table:
//
//	marker  pending  raft state  start
//	  no      any       no       StartNew: a new dir, or one whose earlier start never bootstrapped
//	  yes     yes       no       StartNew: the marker was written, the bootstrap never reached Raft
//	  yes     no        no       ErrAmnesia: bootstrapped, Raft state lost
//	  yes     any       yes      StartExisting (a leftover pending marker is removed by the caller)
//	  no      no        yes      StartLegacy
//	  no      yes       yes      ErrAmnesia: state written by a start that never decided to bootstrap
//
// A node writes the pending marker before Raft first starts on a new dir, keeps Raft
// from sending or answering anything until it decides, then writes the marker,
// bootstraps, and removes the pending marker. So a start that refused, or stopped before
// deciding, leaves the pending marker and no Raft state; and a pending marker beside Raft
// state but without the marker means that state came from outside that protocol (a
// keepraftd from before it, which let a node that had not decided yet vote and store a
// term): the node refuses rather than take it for a legacy dir.
func (d DirState) Decide(dir string, raftState bool) (Start, error) {
	switch {
	case !raftState && (!d.Marker || d.Pending):
		return StartNew, nil
	case !raftState:
		return 0, fmt.Errorf("%w: data dir %s was bootstrapped (%s present) but its Raft state (%s) is missing or empty; "+
			"starting would forget this node's votes and log; %s", ErrAmnesia, dir, MarkerFile, LogFile, Recovery)
	case d.Marker:
		return StartExisting, nil
	case !d.Pending:
		return StartLegacy, nil
	default:
		return 0, fmt.Errorf("%w: data dir %s holds Raft state (%s) but no %s, and %s says a start on the new dir "+
			"never finished its bootstrap: that state was stored before this node decided to bootstrap, maybe by a node "+
			"that had lost its data dir; starting would take it for this node's own; %s",
			ErrAmnesia, dir, LogFile, MarkerFile, PendingFile, Recovery)
	}
}
