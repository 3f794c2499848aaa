package testenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// RegistryDir holds one state file per live lab (<prefix>.json), so that a lab left behind by
// a crashed run can be found and removed by the next [New] or by `keepraft-lab down --all-stale`.
const RegistryDir = "/run/keepraft-lab/labs"

// DefaultStatePath is where keepraft-lab keeps the state of the lab it manages.
const DefaultStatePath = "/run/keepraft-lab/state.json"

// State is the on-disk record of a lab: enough to find and end every process and namespace
// from another process.
type State struct {
	Version  int       `json:"version"`
	Prefix   string    `json:"prefix"`
	Dir      string    `json:"dir"`
	BridgeNS string    `json:"bridge_ns"`
	Created  time.Time `json:"created"`
	// OwnerPID and OwnerStart name the process that made the lab; zero when the lab is
	// detached (made by keepraft-lab up) and must outlive its maker.
	OwnerPID   int          `json:"owner_pid"`
	OwnerStart uint64       `json:"owner_start"`
	Hosts      []HostState  `json:"hosts"`
	Procs      []ProcState  `json:"procs"`
	MariaDB    []MariaState `json:"mariadb"`
}

// HostState records one host.
type HostState struct {
	Name       string `json:"name"`
	NS         string `json:"ns"`
	Iface      string `json:"iface"`
	Addr       string `json:"addr"`
	MAC        string `json:"mac"`
	BridgePort string `json:"bridge_port"`
}

// ProcState records one process.
type ProcState struct {
	Name    string   `json:"name"`
	Host    string   `json:"host"`
	PID     int      `json:"pid"`
	Start   uint64   `json:"start"`
	LogPath string   `json:"log_path"`
	Argv    []string `json:"argv"`
}

// MariaState records one MariaDB server.
type MariaState struct {
	Name     string `json:"name"`
	Host     string `json:"host"`
	Addr     string `json:"addr"`
	ServerID uint32 `json:"server_id"`
	DomainID uint32 `json:"domain_id"`
	Dir      string `json:"dir"`
	Proc     string `json:"proc"`
	// Flavor is "mysql" for a MySQL server (run from MySQLRootDir); "" means MariaDB.
	Flavor string `json:"flavor,omitempty"`
}

// ReadState reads a state file.
func ReadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read lab state %s: %w", path, err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse lab state %s: %w", path, err)
	}
	return &s, nil
}

// writeState writes s atomically to path.
func writeState(path string, s *State) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write lab state %s: %w", path, err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode lab state: %w", err)
	}
	// A unique temp file: concurrent writers (MariaDB servers start in parallel) must not
	// rename each other's file away.
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write lab state %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(b)
	if err := errors.Join(werr, f.Chmod(0o644), f.Close()); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write lab state %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write lab state %s: %w", path, err)
	}
	return nil
}

// removeState removes a state file; a missing file is fine.
func removeState(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove lab state %s: %w", path, err)
	}
	return nil
}

// Stale reports whether the lab's owner process is gone. Detached labs are never stale.
func (s *State) Stale() bool {
	return s.OwnerPID != 0 && !pidAlive(s.OwnerPID, s.OwnerStart)
}
