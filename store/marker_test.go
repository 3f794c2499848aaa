package store

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestMarkerRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 24, 10, 0, 0, 123, time.UTC)
	tests := []struct {
		name string
		give []Marker // written in order; the last one is read back
	}{
		{"bootstrap", []Marker{{Node: "db1", Cluster: []string{"db1", "db2", "witness"}, At: at}}},
		{"rewrite replaces", []Marker{{Node: "db1", At: at}, {Node: "db1", Cluster: []string{"db1", "db2"}, At: at.Add(time.Hour)}}},
		{"into a missing dir", []Marker{{Node: "witness", Cluster: []string{"db1"}, At: at}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			for _, m := range tt.give {
				if err := WriteMarker(dir, m); err != nil {
					t.Fatal(err)
				}
			}
			got, ok, err := ReadMarker(dir)
			if err != nil || !ok {
				t.Fatalf("ReadMarker = %+v, %t, %v", got, ok, err)
			}
			want := tt.give[len(tt.give)-1]
			if got.Node != want.Node || !reflect.DeepEqual(got.Cluster, want.Cluster) || !got.At.Equal(want.At) {
				t.Fatalf("ReadMarker = %+v, want %+v", got, want)
			}
			fi, err := os.Stat(filepath.Join(dir, MarkerFile))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Fatalf("marker mode %v, want 0600", fi.Mode().Perm())
			}
			ents, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) != 1 {
				t.Fatalf("dir holds %v, want only the marker (no temp files)", ents)
			}
		})
	}
}

func TestReadMarkerAbsentOrCorrupt(t *testing.T) {
	tests := []struct {
		name    string
		give    *string // marker content; nil = no marker
		wantOK  bool
		wantErr error
	}{
		{"absent", nil, false, nil},
		{"garbage", ptr("\x00\x01not json"), false, ErrCorrupt},
		{"cut short", ptr(`{"node": "db1", "clus`), false, ErrCorrupt},
		{"empty file", ptr(""), false, ErrCorrupt},
		{"no node", ptr(`{"cluster": ["db1"]}`), false, ErrCorrupt},
		{"sound", ptr(`{"node": "db1", "cluster": ["db1", "db2"], "at": "2026-11-24T10:00:00Z"}`), true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, MarkerFile)
			if tt.give != nil {
				if err := os.WriteFile(path, []byte(*tt.give), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, ok, err := ReadMarker(dir)
			if ok != tt.wantOK || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("ReadMarker = %t, %v; want %t, %v", ok, err, tt.wantOK, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name %s", err, path)
			}
		})
	}
}

func TestWriteMarkerWithoutNode(t *testing.T) {
	if err := WriteMarker(t.TempDir(), Marker{Cluster: []string{"db1"}}); err == nil {
		t.Fatal("WriteMarker without a node id succeeded")
	}
}

func TestInspect(t *testing.T) {
	marker := Marker{Node: "db1", Cluster: []string{"db1", "db2", "witness"}, At: time.Now()}
	// bootstrapped leaves what a node has after bootstrapping: marker, log and a snapshot.
	bootstrapped := func(t *testing.T, dir string) {
		t.Helper()
		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Log.StoreLog(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
		sink, err := s.Snap.Create(raft.SnapshotVersionMax, 1, 1, raft.Configuration{}, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sink.Write([]byte("{}")); err != nil {
			t.Fatal(err)
		}
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := WriteMarker(dir, marker); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name         string
		give         func(t *testing.T, dir string)
		want         DirState
		wantNew      bool
		wantAmnesiac bool
	}{
		{"missing dir", func(t *testing.T, dir string) { os.Remove(dir) }, DirState{}, true, false},
		{"empty dir", func(t *testing.T, dir string) {}, DirState{}, true, false},
		{"bootstrapped", bootstrapped, DirState{Marker: true, RaftDB: true, Snapshots: 1}, false, false},
		{"raft.db emptied", func(t *testing.T, dir string) {
			bootstrapped(t, dir)
			if err := os.Truncate(filepath.Join(dir, LogFile), 0); err != nil {
				t.Fatal(err)
			}
		}, DirState{Marker: true, Snapshots: 1}, false, true},
		{"raft.db and snapshots removed", func(t *testing.T, dir string) {
			bootstrapped(t, dir)
			if err := os.RemoveAll(filepath.Join(dir, SnapshotDir)); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dir, LogFile)); err != nil {
				t.Fatal(err)
			}
		}, DirState{Marker: true}, false, true},
		{"raft.db removed, marker too", func(t *testing.T, dir string) {
			bootstrapped(t, dir)
			for _, f := range []string{LogFile, MarkerFile} {
				if err := os.Remove(filepath.Join(dir, f)); err != nil {
					t.Fatal(err)
				}
			}
		}, DirState{Snapshots: 1}, false, true},
		{"node from before markers", func(t *testing.T, dir string) {
			bootstrapped(t, dir)
			if err := os.Remove(filepath.Join(dir, MarkerFile)); err != nil {
				t.Fatal(err)
			}
		}, DirState{RaftDB: true, Snapshots: 1}, false, false},
		{"pending marker only", func(t *testing.T, dir string) {
			if err := WritePending(dir, marker); err != nil {
				t.Fatal(err)
			}
		}, DirState{Pending: true}, true, false},
		{"pending marker left beside a bootstrap", func(t *testing.T, dir string) {
			bootstrapped(t, dir)
			if err := WritePending(dir, marker); err != nil {
				t.Fatal(err)
			}
		}, DirState{Marker: true, Pending: true, RaftDB: true, Snapshots: 1}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.give(t, dir)
			got, err := Inspect(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want || got.New() != tt.wantNew || got.Amnesiac() != tt.wantAmnesiac {
				t.Fatalf("Inspect = %+v new %t amnesiac %t; want %+v new %t amnesiac %t", got, got.New(), got.Amnesiac(), tt.want, tt.wantNew, tt.wantAmnesiac)
			}
		})
	}
}

// TestPendingRoundTrip: WritePending leaves only the pending marker, which ClearPending
// removes, twice without error; neither touches the marker.
func TestPendingRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	m := Marker{Node: "db2", Cluster: []string{"db1", "db2", "witness"}, At: time.Now()}
	if err := WritePending(dir, m); err != nil {
		t.Fatal(err)
	}
	if d, err := Inspect(dir); err != nil || d != (DirState{Pending: true}) {
		t.Fatalf("Inspect after WritePending = %+v, %v; want only Pending", d, err)
	}
	if err := WriteMarker(dir, m); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := ClearPending(dir); err != nil {
			t.Fatal(err)
		}
	}
	if d, err := Inspect(dir); err != nil || d != (DirState{Marker: true}) {
		t.Fatalf("Inspect after ClearPending = %+v, %v; want only Marker", d, err)
	}
	if err := WritePending(dir, Marker{}); err == nil {
		t.Fatal("WritePending without a node id succeeded")
	}
}

// TestDecide walks the start table: only a dir with no Raft state and no finished
// bootstrap starts new; lost state, and state stored by a start that never finished its
// bootstrap, are refused with the file and the recovery named.
func TestDecide(t *testing.T) {
	const dir = "/var/lib/keepraft"
	tests := []struct {
		name      string
		give      DirState
		raftState bool
		want      Start
		wantIn    []string // in the error; nil = no error
	}{
		{"new dir", DirState{}, false, StartNew, nil},
		{"empty raft.db from a start that never bootstrapped", DirState{RaftDB: true}, false, StartNew, nil},
		{"refused or unfinished start", DirState{Pending: true, RaftDB: true}, false, StartNew, nil},
		{"marker written, bootstrap never reached Raft", DirState{Marker: true, Pending: true, RaftDB: true}, false, StartNew, nil},
		{"bootstrapped, raft.db emptied", DirState{Marker: true, RaftDB: true}, false, 0, []string{MarkerFile, LogFile, "restore this node's own data dir", dir}},
		{"bootstrapped", DirState{Marker: true, RaftDB: true}, true, StartExisting, nil},
		{"bootstrapped, pending left by a crash", DirState{Marker: true, Pending: true, RaftDB: true}, true, StartExisting, nil},
		{"from before markers", DirState{RaftDB: true, Snapshots: 1}, true, StartLegacy, nil},
		{"state stored by an undecided start", DirState{Pending: true, RaftDB: true}, true, 0, []string{PendingFile, MarkerFile, LogFile, "restore this node's own data dir", dir}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.give.Decide(dir, tt.raftState)
			if tt.wantIn == nil {
				if err != nil || got != tt.want {
					t.Fatalf("Decide = %v, %v; want %v", got, err, tt.want)
				}
				return
			}
			if !errors.Is(err, ErrAmnesia) {
				t.Fatalf("Decide = %v, %v; want ErrAmnesia", got, err)
			}
			for _, want := range append(tt.wantIn, Recovery) {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("Decide error %q does not name %q", err, want)
				}
			}
		})
	}
}

func ptr(s string) *string { return &s }
