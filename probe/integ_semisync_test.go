package probe_test

import (
	"context"
	"testing"
	"time"

	"github.com/keepraft/keepraft/probe"
)

// TestIntegSemiSyncOffKillsWaiters: switching the semi-sync master side off releases every
// commit waiting for an acknowledgement. SetSemiSyncMaster kills the client connections
// among them first, so the client sees a lost connection, never a success for a write no
// replica has.
func TestIntegSemiSyncOffKillsWaiters(t *testing.T) {
	_, m := newServer(t)
	db := daemonDB(t, m)
	app := appDB(t, m)
	for _, q := range []string{
		"SET GLOBAL read_only = 0",
		"SET GLOBAL rpl_semi_sync_master_wait_point = 'AFTER_SYNC'",
		"SET GLOBAL rpl_semi_sync_master_timeout = 4294967295",
		"SET GLOBAL rpl_semi_sync_master_wait_no_slave = ON",
	} {
		if err := m.Exec(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if changed, err := probe.SetSemiSyncMaster(t.Context(), db, true); err != nil || !changed {
		t.Fatalf("switch on: changed=%v, %v", changed, err)
	}
	if changed, err := probe.SetSemiSyncMaster(t.Context(), db, true); err != nil || changed {
		t.Fatalf("switch on again: changed=%v, %v; want no change", changed, err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := app.ExecContext(t.Context(), "INSERT INTO kr.writes (origin) VALUES ('waits-for-ack')")
		done <- err
	}()
	// No replica ever acknowledges: the commit waits.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := m.QueryString(t.Context(), "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE LIKE 'Waiting for semi-sync ACK%'")
		if err == nil && n == "1" {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the commit returned (%v) without an acknowledgement", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no commit waiting for an acknowledgement after 10s (%s, %v)", n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if changed, err := probe.SetSemiSyncMaster(ctx, db, false); err != nil || !changed {
		t.Fatalf("switch off: changed=%v, %v", changed, err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the waiting client was told its write committed: switching semi-sync off acknowledged it")
		}
		t.Logf("the waiting client got: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting commit still blocks 5s after semi-sync was switched off")
	}
	if v, err := m.QueryString(t.Context(), "SELECT @@rpl_semi_sync_master_enabled"); err != nil || v != "0" {
		t.Fatalf("rpl_semi_sync_master_enabled=%q (%v) after switching off", v, err)
	}
}
