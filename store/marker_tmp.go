package store

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"
)

// Marker is a placeholder until the store work lands (removed at merge).
type Marker struct {
	Node    string
	Cluster []string
	At      time.Time
}

// WriteMarker is a placeholder until the store work lands (removed at merge).
func WriteMarker(dir string, m Marker) error {
	b, _ := json.Marshal(m)
	return os.WriteFile(filepath.Join(dir, "keepraft-marker.json"), b, 0o600)
}

// ReadMarker is a placeholder until the store work lands (removed at merge).
func ReadMarker(dir string) (Marker, bool, error) {
	var m Marker
	b, err := os.ReadFile(filepath.Join(dir, "keepraft-marker.json"))
	if errors.Is(err, os.ErrNotExist) {
		return m, false, nil
	}
	if err != nil {
		return m, false, err
	}
	return m, true, json.Unmarshal(b, &m)
}
