package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keepraft/keepraft/fsm"
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

// TestNotifyHooks: the keepalived-compatible hooks run on acquiring and dropping the VIP.
func TestNotifyHooks(t *testing.T) {
	out := filepath.Join(t.TempDir(), "notify.log")
	hook := func(state string) string {
		return fmt.Sprintf(`"echo %s $KEEPRAFT_NODE $KEEPRAFT_STATE >> %s"`, state, out)
	}
	c := newCluster(t, clusterOpts{extra: fmt.Sprintf("notify: {master: %s, backup: %s, fault: %s}\n", hook("master"), hook("backup"), hook("fault"))})
	owner := c.waitOwner(30 * time.Second)
	if err := c.lab.MariaDB(owner).Kill(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"master " + owner + " MASTER",
		"fault " + owner + " FAULT",
		"backup " + owner + " BACKUP",
		"master " + other(owner) + " MASTER",
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
