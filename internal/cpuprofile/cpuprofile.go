// Package cpuprofile writes a Go CPU profile of a whole run to a file, for measuring a
// daemon's idle cost (keepraftd's hidden --cpuprofile flag).
package cpuprofile

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// Start starts a CPU profile into the file path, created or truncated, and returns the
// function that stops the profile and closes the file. An empty path profiles nothing and
// returns a stop that does nothing. Only one profile runs at a time in a process.
func Start(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start cpu profile %s: %w", path, err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}
