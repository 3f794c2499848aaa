package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// filledDir returns a data dir whose raft.db holds n log entries, closed again.
func filledDir(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	logs := make([]*raft.Log, n)
	for i := range logs {
		logs[i] = &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, 512)}
	}
	if err := s.Log.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := s.Stable.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestOpenDamagedIsCorrupt damages a real raft.db in several ways and checks that Open
// reports ErrCorrupt, naming the file and the recovery, instead of panicking or faulting.
func TestOpenDamagedIsCorrupt(t *testing.T) {
	tests := []struct {
		name string
		logs int
		give func(t *testing.T, path string, size int64)
	}{
		{"truncated to half", 400, func(t *testing.T, path string, size int64) {
			if err := os.Truncate(path, size/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"large file truncated to half", 4000, func(t *testing.T, path string, size int64) {
			if err := os.Truncate(path, size/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"data pages overwritten", 400, func(t *testing.T, path string, size int64) {
			overwrite(t, path, 4*4096, bytes.Repeat([]byte{0xff}, int(size/2)))
		}},
		{"both meta pages wiped", 400, func(t *testing.T, path string, size int64) {
			overwrite(t, path, 0, make([]byte, 2*4096))
		}},
		{"shorter than a header", 400, func(t *testing.T, path string, size int64) {
			if err := os.Truncate(path, 40); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filledDir(t, tt.logs)
			path := filepath.Join(dir, LogFile)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			tt.give(t, path, fi.Size())
			s, err := Open(dir, Options{LockTimeout: 100 * time.Millisecond})
			if err == nil {
				s.Close()
				t.Fatal("Open of a damaged raft.db succeeded")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: err = %v, want ErrCorrupt", err)
			}
			for _, want := range []string{path, Recovery} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("Open: err = %q, want it to name %q", err, want)
				}
			}
		})
	}
}

// TestOpenSoundAfterReopen checks that the verification passes a healthy, used file.
func TestOpenSoundAfterReopen(t *testing.T) {
	dir := filledDir(t, 400)
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if last, err := s.Log.LastIndex(); err != nil || last != 400 {
		t.Fatalf("LastIndex = %d, %v; want 400", last, err)
	}
}

func overwrite(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
