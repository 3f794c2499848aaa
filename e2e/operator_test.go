package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/testenv"
)

// TestMaintenanceOnOwnerHandsOver: an owner put in maintenance hands the VIP over like a
// switchover (fenced release) and is not a candidate until maintenance is off.
func TestMaintenanceOnOwnerHandsOver(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	owner := c.waitOwner(30 * time.Second)
	if err := c.post("/v1/maintenance", fmt.Sprintf(`{"node":%q,"on":true}`, owner)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.tracker.WaitHolder(ctx, other(owner)); err != nil {
		t.Fatal(err)
	}
	var rel fsm.ReleaseData
	for _, r := range c.journal("witness") {
		if r.Event.Type == fsm.OwnerReleased && r.Result == fsm.ResultApplied {
			_ = r.Event.Payload(&rel)
		}
	}
	if rel.Owner != owner || rel.Reason != "maintenance" || !rel.Fenced {
		t.Fatalf("release %+v, want a fenced maintenance release by %s", rel, owner)
	}
	if ro, err := c.lab.MariaDB(owner).QueryString(context.Background(), "SELECT @@read_only"); err != nil || ro != "1" {
		t.Fatalf("%s in maintenance has read_only=%s (%v), want 1", owner, ro, err)
	}
	c.assertNeverTwoHolders()
}

// TestNotifyHooks: the keepalived-compatible hooks run on acquiring and dropping the VIP,
// called as keepalived calls them: notify_master/backup/fault style hooks with their own
// arguments, and notify.any with INSTANCE <name> <STATE> <priority> appended; no shell.
func TestNotifyHooks(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "notify.log")
	script := filepath.Join(dir, "notify.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$*\" \"$KEEPRAFT_NODE\" \"$KEEPRAFT_STATE\" >> "+out+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	hook := func(state string) string { return fmt.Sprintf("%q", script+" "+state) }
	c := newCluster(t, clusterOpts{extra: fmt.Sprintf("notify: {master: %s, backup: %s, fault: %s, any: %s, instance: VI_DB}\n", hook("master"), hook("backup"), hook("fault"), hook("any"))})
	owner := c.waitOwner(30 * time.Second)
	if err := c.lab.MariaDB(owner).Kill(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"master " + owner + " MASTER",
		"fault " + owner + " FAULT",
		"backup " + owner + " BACKUP",
		"master " + other(owner) + " MASTER",
		"any INSTANCE VI_DB MASTER ",
		"any INSTANCE VI_DB FAULT ",
	}
	waitFor(t, "every hook ran", 15*time.Second, func() (bool, string) {
		b, _ := os.ReadFile(out)
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				return false, string(b)
			}
		}
		return true, ""
	})
}

// TestSemiSyncStatusJournaled: with semi-sync (AFTER_SYNC) between owner and peer the
// owner journals ON; when the peer stops acknowledging, MariaDB falls back to async after
// rpl_semi_sync_master_timeout and the owner journals OFF.
func TestSemiSyncStatusJournaled(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	owner := c.waitOwner(30 * time.Second)
	peer := other(owner)
	ctx := context.Background()
	for _, q := range []string{
		"SET GLOBAL rpl_semi_sync_master_enabled=ON",
		"SET GLOBAL rpl_semi_sync_master_wait_point='AFTER_SYNC'",
		"SET GLOBAL rpl_semi_sync_master_timeout=500",
	} {
		if err := c.lab.MariaDB(owner).Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{"SET GLOBAL rpl_semi_sync_slave_enabled=ON", "STOP SLAVE IO_THREAD", "START SLAVE IO_THREAD"} {
		if err := c.lab.MariaDB(peer).Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	write := func() {
		t.Helper()
		dsn := fmt.Sprintf("%s:%s@%s(%s:3306)/%s?timeout=1s&readTimeout=3s", testenv.AppUser, testenv.AppPass, c.dialer, c.vip, testenv.AppSchema)
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, "INSERT INTO writes (origin) VALUES ('semisync')"); err != nil {
			t.Fatal(err)
		}
	}
	semi := func(want string) func() (bool, string) {
		return func() (bool, string) {
			var last fsm.SemiSyncData
			for _, r := range c.journal("witness") {
				if r.Event.Type == fsm.SemiSyncChanged && r.Result == fsm.ResultApplied {
					_ = r.Event.Payload(&last)
				}
			}
			return last.Node == owner && last.Status == want, fmt.Sprintf("%+v", last)
		}
	}
	write()
	waitFor(t, "semi-sync ON journaled", 10*time.Second, semi("ON"))
	if err := c.lab.MariaDB(peer).Exec(ctx, "STOP SLAVE IO_THREAD"); err != nil {
		t.Fatal(err)
	}
	write()
	waitFor(t, "semi-sync OFF journaled after the peer stopped acknowledging", 10*time.Second, semi("OFF"))
}
