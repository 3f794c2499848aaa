package probe

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// RelayCatchUp is a placeholder until the probe work lands (removed at merge).
type RelayCatchUp struct {
	Received, Applied string
	Reached           bool
	Waited            time.Duration
}

// WaitRelayApplied is a placeholder until the probe work lands (removed at merge).
func WaitRelayApplied(ctx context.Context, db *sql.DB, f Flavor, timeout time.Duration) (RelayCatchUp, error) {
	return RelayCatchUp{}, errors.New("not implemented")
}

// ReadOnly is a placeholder until the probe work lands (removed at merge).
func ReadOnly(ctx context.Context, db *sql.DB, f Flavor) (bool, error) {
	return false, errors.New("not implemented")
}
