package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadTokenMode: a token file that group or others may read or write is refused
// with its name, its mode and the fix; an owner-only one is read.
func TestReadTokenMode(t *testing.T) {
	tests := []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o600, true},
		{0o400, true},
		{0o640, false},
		{0o604, false},
		{0o620, false},
		{0o602, false},
		{0o644, false},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(path, []byte("s3cret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			tok, err := readToken(path)
			if tt.ok {
				if err != nil || tok != "s3cret" {
					t.Fatalf("readToken = %q, %v; want s3cret", tok, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("readToken of a %04o file = %q, want a refusal", tt.mode, tok)
			}
			for _, want := range []string{"--token-file", path, fmt.Sprintf("mode %04o", tt.mode.Perm()), "chmod 600"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		if _, err := readToken(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("readToken of a missing file = %v, want fs.ErrNotExist", err)
		}
	})
}

// TestVerbRefusesOpenTokenFile: a verb with a world-readable --token-file fails before
// anything is sent.
func TestVerbRefusesOpenTokenFile(t *testing.T) {
	w := newFake(t, clusterStatus("", ""))
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, code, errOut := raftctl(t, "--addr", w.addr(), "--token-file", path, "switchover", "--no-wait")
	if code == 0 || !strings.Contains(errOut, path) || !strings.Contains(errOut, "0644") || !strings.Contains(errOut, "chmod 600") {
		t.Fatalf("exit %d, stderr %q; want a refusal naming the file, its mode and chmod 600", code, errOut)
	}
	if n := w.postCount(); n != 0 {
		t.Fatalf("%d requests sent with a refused token file", n)
	}
}
