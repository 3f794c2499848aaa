// Package fsm owns keepraft's event model: the versioned journal events, the
// deterministic state machine that folds them into [State], and the pure failover policy
// and quorum-lease bookkeeping that operate on that state.
package fsm
