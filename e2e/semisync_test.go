package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/keepraft/keepraft/testenv"
)

// semiSyncOn turns semi-sync on for both sides of both servers the way an operator
// following MariaDB's documentation would (master and slave enabled everywhere, AFTER_SYNC,
// no fallback to async) and reconnects the IO threads so the slave side takes effect.
func semiSyncOn(t *testing.T, c *cluster) {
	t.Helper()
	ctx := context.Background()
	for _, n := range dbNames {
		for _, q := range []string{
			"SET GLOBAL rpl_semi_sync_master_wait_point='AFTER_SYNC'",
			"SET GLOBAL rpl_semi_sync_master_timeout=4294967295",
			"SET GLOBAL rpl_semi_sync_slave_enabled=ON",
			"SET GLOBAL rpl_semi_sync_master_enabled=ON",
			"STOP SLAVE IO_THREAD",
			"START SLAVE IO_THREAD",
		} {
			if err := c.lab.MariaDB(n).Exec(ctx, q); err != nil {
				t.Fatalf("%s: %s: %v", n, q, err)
			}
		}
	}
}

// TestSemiSyncStandbyKeepsApplying: with semi-sync, a write the owner acknowledged is in
// the standby's relay log; the standby must also apply it. A standby whose server is a
// semi-sync master too waits, after applying each replicated transaction, for an
// acknowledgement from its own replica (the owner's channel from it), so while that
// channel is down its SQL thread stalls, and a failover then throws away acknowledged
// writes (the chaos run lost 32). keepraft (mysql.semi_sync) keeps the master side on the
// owner only.
func TestSemiSyncStandbyKeepsApplying(t *testing.T) {
	c := newCluster(t, clusterOpts{semiSync: true})
	owner := c.waitOwner(30 * time.Second)
	standby := other(owner)
	ctx := context.Background()
	semiSyncOn(t, c)
	// The owner stops acknowledging what the standby binlogs: its channel from the
	// standby goes down (in production: that link, or the rejoin check holding it).
	if err := c.lab.MariaDB(owner).Exec(ctx, "STOP SLAVE IO_THREAD"); err != nil {
		t.Fatal(err)
	}
	dsn := fmt.Sprintf("%s:%s@%s(%s:3306)/%s?timeout=1s&readTimeout=5s", testenv.AppUser, testenv.AppPass, c.dialer, c.vip, testenv.AppSchema)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const writes = 5
	for i := range writes {
		if _, err := db.ExecContext(ctx, "INSERT INTO writes (origin) VALUES ('semisync-standby')"); err != nil {
			t.Fatalf("write %d through the VIP: %v", i, err)
		}
	}
	waitFor(t, "the standby applies every acknowledged write", 10*time.Second, func() (bool, string) {
		n, err := c.lab.MariaDB(standby).QueryString(ctx, "SELECT COUNT(*) FROM "+testenv.AppSchema+".writes WHERE origin = 'semisync-standby'")
		pos, _ := c.lab.MariaDB(standby).QueryString(ctx, "SELECT CONCAT(@@gtid_slave_pos, ' master_enabled=', @@rpl_semi_sync_master_enabled)")
		return err == nil && n == fmt.Sprint(writes), fmt.Sprintf("%s has %s of %d rows (%v); %s", standby, n, writes, err, pos)
	})
	on, err := c.lab.MariaDB(owner).QueryString(ctx, "SELECT @@rpl_semi_sync_master_enabled")
	if err != nil || on != "1" {
		t.Fatalf("the owner %s has rpl_semi_sync_master_enabled=%q (%v), want 1", owner, on, err)
	}
}
