package cpuprofile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestStart(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name        string
		path        string
		wantErr     bool
		wantProfile bool
	}{
		{name: "no path: nothing profiled", path: ""},
		{name: "profile written", path: filepath.Join(dir, "cpu.pprof"), wantProfile: true},
		{name: "missing directory", path: filepath.Join(dir, "missing", "cpu.pprof"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stop, err := Start(tt.path)
			if tt.wantErr {
				if err == nil {
					stop()
					t.Fatal("Start succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			stop()
			if !tt.wantProfile {
				return
			}
			fi, err := os.Stat(tt.path)
			if err != nil || fi.Size() == 0 {
				t.Fatalf("profile %s: %v, %v; want a non-empty file", tt.path, fi, err)
			}
		})
	}
}

// TestStartTwice: a second profile while one runs is an error, and leaves the first running.
func TestStartTwice(t *testing.T) {
	dir := t.TempDir()
	stop, err := Start(filepath.Join(dir, "first.pprof"))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer stop()
	if stop2, err := Start(filepath.Join(dir, "second.pprof")); err == nil {
		stop2()
		t.Fatal("second Start succeeded while a profile runs")
	}
}
