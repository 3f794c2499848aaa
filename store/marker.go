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

// raftSnapshots is where hashicorp/raft's file snapshot store keeps one directory per
// snapshot (with a meta.json) below [SnapshotDir]; names ending in .tmp are unfinished.
const raftSnapshots = "snapshots"

// Marker records that a node became part of a cluster. It is written once, when the node
// bootstraps the cluster or first joins one, and never removed by keepraftd: a data dir
// with a marker but without Raft state lost its log and votes (see [Inspect]).
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
func WriteMarker(dir string, m Marker) (err error) {
	path := filepath.Join(dir, MarkerFile)
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
	f, err := os.CreateTemp(dir, "."+MarkerFile+".*")
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
	// RaftDB is true when raft.db exists and is not empty.
	RaftDB bool
	// Snapshots counts the finished snapshots on disk.
	Snapshots int
}

// New reports whether the dir holds nothing of a cluster: a node may bootstrap or join
// with it.
func (d DirState) New() bool { return !d.Marker && !d.RaftDB && d.Snapshots == 0 }

// Amnesiac reports whether the node bootstrapped or joined a cluster (the marker or a
// snapshot says so) but raft.db, its log and votes, is missing or empty: starting it as a
// new node would forget what it voted and acknowledged.
func (d DirState) Amnesiac() bool { return !d.RaftDB && (d.Marker || d.Snapshots > 0) }

// Inspect looks at dir without changing it, so the daemon can tell a new node from one
// that bootstrapped or joined but lost its Raft state. A missing dir is a new one.
func Inspect(dir string) (DirState, error) {
	var d DirState
	if _, err := os.Stat(filepath.Join(dir, MarkerFile)); err == nil {
		d.Marker = true
	} else if !errors.Is(err, os.ErrNotExist) {
		return DirState{}, fmt.Errorf("inspect %s: %w", dir, err)
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
