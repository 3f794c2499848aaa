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

// TestBinlogLossMakesNodeUnfit: the owner's server crashes with writes its peer never
// received, and comes back with a binlog that lost them though InnoDB committed them (what
// a binlog write cut by a full disk and then a crash left in the chaos campaign; here the
// binlog is cut back to its size before the writes while the server is down). It is
// journaled unhealthy with the lost set and never promoted again, even when the new owner's
// server dies: its next writes would reuse the lost GTIDs and the peer, which already has
// different transactions under some of them or gets them later, would diverge silently.
// Maintenance makes its current set the baseline, and it is a candidate again.
func TestBinlogLossMakesNodeUnfit(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	node := c.waitOwner(30 * time.Second)
	peer := other(node)
	m := c.lab.MariaDB(node)
	ctx := context.Background()
	if err := c.lab.MariaDB(peer).StopReplicaIO(ctx); err != nil {
		t.Fatal(err)
	}
	idx, err := os.ReadFile(filepath.Join(m.Dir, "data", "mariadb-bin.index"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(idx))
	binlog := filepath.Join(m.Dir, "data", filepath.Base(lines[len(lines)-1]))
	fi, err := os.Stat(binlog)
	if err != nil {
		t.Fatal(err)
	}
	dsn := fmt.Sprintf("%s:%s@%s(%s:3306)/%s?timeout=1s", testenv.AppUser, testenv.AppPass, c.dialer, c.vip, testenv.AppSchema)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range 5 {
		if _, err := db.ExecContext(ctx, "INSERT INTO writes (origin, seq) VALUES ('cut', ?)", i); err != nil {
			t.Fatal(err)
		}
	}
	pos, err := m.QueryString(ctx, "SELECT @@gtid_binlog_pos")
	if err != nil {
		t.Fatal(err)
	}
	own := ""
	for _, g := range strings.Split(pos, ",") {
		if id := serverID(node); strings.HasPrefix(g, id+"-"+id+"-") {
			own = g
		}
	}
	// Let the probe read the set, then crash the server: keepraftd journals it unhealthy
	// with the set it read last.
	time.Sleep(time.Second)
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the crashed server's last set journaled", 20*time.Second, func() (bool, string) {
		g := c.journaledGTID(node)
		return own != "" && strings.Contains(g, own), g + " want " + own
	})
	if _, err := c.firstAnswerFrom(peer, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(binlog, fi.Size()); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var loss fsm.HealthData
	waitFor(t, "the binlog loss journaled", 20*time.Second, func() (bool, string) {
		for _, r := range c.journal("witness") {
			var d fsm.HealthData
			if r.Event.Type == fsm.HealthChanged && r.Result == fsm.ResultApplied && r.Event.Payload(&d) == nil && d.Node == node && d.Lost != "" {
				loss = d
			}
		}
		return loss.Lost != "", fmt.Sprintf("%+v", loss)
	})
	if loss.Healthy || loss.GTID != "" || !strings.Contains(loss.Detail, "binlog lost transactions") {
		t.Fatalf("journaled loss %+v: want unhealthy, no GTID, the loss named", loss)
	}
	if n, err := m.QueryString(ctx, "SELECT COUNT(*) FROM kr.writes WHERE origin='cut'"); err != nil || n != "5" {
		t.Fatalf("%s has %s of the 5 rows whose binlog events were cut (%v): the test needs InnoDB to keep them", node, n, err)
	}
	t.Logf("journaled: %+v (binlog set before the crash: %s)", loss, pos)

	// The new owner's server dies: the unfit node must not take over.
	if err := c.lab.MariaDB(peer).Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		if ro, err := m.QueryString(ctx, "SELECT @@read_only"); err == nil && ro != "1" {
			t.Fatalf("%s with a lost binlog was opened for writes (read_only=%s)", node, ro)
		}
		for _, h := range c.tracker.Holders() {
			if h == node {
				t.Fatalf("%s with a lost binlog holds the VIP", node)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := c.lab.MariaDB(peer).Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.firstAnswerFrom(peer, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	// The operator's way out: maintenance on, repair, maintenance off.
	if err := c.post("/v1/maintenance", fmt.Sprintf(`{"node":%q,"on":true}`, node)); err != nil {
		t.Fatal(err)
	}
	var now string
	waitFor(t, "healthy in maintenance with its current set as the baseline", 20*time.Second, func() (bool, string) {
		now = c.journaledGTID(node)
		st, err := c.status("witness")
		if err != nil {
			return false, err.Error()
		}
		for _, m := range st.Members {
			if m.ID == node {
				return m.Healthy != nil && *m.Healthy && !strings.Contains(now, own), fmt.Sprintf("healthy=%v journaled %s detail %q", m.Healthy, now, m.Detail)
			}
		}
		return false, "no member " + node
	})
	if err := c.post("/v1/maintenance", fmt.Sprintf(`{"node":%q,"on":false}`, node)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	st, err := c.status("witness")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Members {
		if m.ID == node && (m.Healthy == nil || !*m.Healthy) {
			t.Fatalf("%s unhealthy after maintenance off: %q", node, m.Detail)
		}
	}
	t.Logf("baseline after maintenance: %s", now)
	c.assertNeverTwoHolders()
}

// serverID is the lab's server_id (and MariaDB gtid_domain_id) of a database node.
func serverID(node string) string { return strings.TrimPrefix(node, "db") }

// journaledGTID is the last GTID set the witness's journal holds for node (HealthChanged).
func (c *cluster) journaledGTID(node string) string {
	g := ""
	for _, r := range c.journal("witness") {
		var d fsm.HealthData
		if r.Event.Type == fsm.HealthChanged && r.Result == fsm.ResultApplied && r.Event.Payload(&d) == nil && d.Node == node && d.GTID != "" {
			g = d.GTID
		}
	}
	return g
}
