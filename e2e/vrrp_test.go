package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keepraft/keepraft/testenv"
)

var complaint = regexp.MustCompile(`(?i)invalid|bad |discard|mismatch|unexpected|wrong`)

// startKeepalivedPeer runs a real keepalived on the client host as a BACKUP router of the
// same VRID with a lower priority and exactly keepraft's advert settings.
func (c *cluster) startKeepalivedPeer(t *testing.T) *testenv.Proc {
	t.Helper()
	cfg := testenv.KeepalivedConfig{Interface: "eth0", VRID: 51, Priority: 50, AdvertInt: time.Second, AuthPass: "secret",
		VIPs: []netip.Prefix{c.lab.VIP}, Nopreempt: true, State: "BACKUP", RouterID: "peer"}
	p, err := c.lab.StartKeepalived(context.Background(), c.lab.Host("client"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func keepalivedLog(p *testenv.Proc) string { return p.Tail(10000) }

// backupThroughout asserts keepalived is BACKUP, never became MASTER and logged no
// complaint about our adverts.
func backupThroughout(t *testing.T, p *testenv.Proc) {
	t.Helper()
	log := keepalivedLog(p)
	if !strings.Contains(log, "Entering BACKUP STATE") || strings.Contains(log, "Entering MASTER STATE") {
		t.Fatalf("keepalived did not stay BACKUP:\n%s", log)
	}
	for _, line := range strings.Split(log, "\n") {
		if complaint.MatchString(line) {
			t.Fatalf("keepalived complained about an advert: %q\n%s", line, log)
		}
	}
}

func TestVRRPKeepalivedStaysBackupAndTakesOverOnGiveUp(t *testing.T) {
	c := newCluster(t, clusterOpts{vrrp: true})
	owner := c.waitOwner(30 * time.Second)
	ka := c.startKeepalivedPeer(t)
	// At least 10 advert intervals while keepraft owns the VIP.
	c.stays(owner, 11*time.Second)
	backupThroughout(t, ka)

	// An internal failover: the old owner stops advertising, the new one starts well
	// within keepalived's Master_Down_Interval (3 s + skew), so keepalived stays BACKUP.
	if err := c.lab.MariaDB(owner).Kill(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.tracker.WaitHolder(ctx, other(owner)); err != nil {
		t.Fatal(err)
	}
	c.stays(other(owner), 6*time.Second)
	backupThroughout(t, ka)
	owner = other(owner)

	// The whole keepraft cluster stops gracefully, the owner last. Once both peers said
	// goodbye the owner has no quorum and no successor: it drops the VIP and sends
	// priority 0, so keepalived takes over after its skew ((256-50)/256 ≈ 0.8 s) instead of
	// its Master_Down_Interval (3.8 s).
	if err := c.procs["witness"].Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The last peer says goodbye as its stop begins; its exit may take longer (its fence
	// watchdog keeps trying to fence its killed mysqld for up to 10 s).
	stopped := time.Now()
	if err := c.procs[other(owner)].Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	at, err := c.tracker.WaitHolder(ctx2, "client")
	if err != nil {
		t.Fatalf("keepalived never took the VIP: %v\n%s", err, keepalivedLog(ka))
	}
	took := at.Sub(stopped)
	t.Logf("keepraft peers stopped: keepalived MASTER with the VIP %s after the last peer left (lease 0.5 s + skew 0.8 s)", took)
	if !strings.Contains(keepalivedLog(ka), "priority 0") || took < 0 || took > 2500*time.Millisecond {
		t.Fatalf("keepalived took over after %s, want the priority-0 skew (< 2.5 s incl. the lease):\n%s", took, keepalivedLog(ka))
	}
	if err := c.procs[owner].Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.assertNeverTwoHolders()
}

func TestVRRPKeepalivedTakesOverWhenKeepraftKilled(t *testing.T) {
	c := newCluster(t, clusterOpts{vrrp: true})
	owner := c.waitOwner(30 * time.Second)
	ka := c.startKeepalivedPeer(t)
	c.stays(owner, 4*time.Second)
	backupThroughout(t, ka)
	killed := time.Now()
	for _, n := range []string{"witness", "db1", "db2"} {
		if err := c.procs[n].Kill(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	at, err := c.tracker.WaitHolder(ctx, "client")
	if err != nil {
		t.Fatalf("keepalived never took the VIP: %v\n%s", err, keepalivedLog(ka))
	}
	took := at.Sub(killed)
	mdi := 3*time.Second + (256-50)*time.Second/256
	t.Logf("keepraft killed hard: keepalived MASTER after %s (Master_Down_Interval %s)", took, mdi)
	if took > mdi+time.Second {
		t.Fatalf("keepalived took %s, want within its Master_Down_Interval %s (+1 s)", took, mdi)
	}
	// The killed owner's VIP expired through its kernel lifetime; an overlap with the
	// foreign keepalived master is outside keepraft's promise, but report it.
	if o := c.tracker.Overlaps(); len(o) > 0 {
		t.Logf("overlap with the foreign master after the kill: %+v", o)
	}
}

// TestVRRPForeignMasterJournaled: a keepalived router that insists on being MASTER of our
// VRID (higher priority, same settings) is seen by the owner's listener, journaled as
// ForeignVRRPMasterSeen and shown in the status. keepraft's "never two holders" promise
// covers keepraft hosts only, so the foreign router's copy of the VIP is expected.
func TestVRRPForeignMasterJournaled(t *testing.T) {
	c := newCluster(t, clusterOpts{vrrp: true})
	c.waitOwner(30 * time.Second)
	cfg := testenv.KeepalivedConfig{Interface: "eth0", VRID: 51, Priority: 200, AdvertInt: time.Second, AuthPass: "secret",
		VIPs: []netip.Prefix{c.lab.VIP}, State: "MASTER", RouterID: "rogue"}
	if _, err := c.lab.StartKeepalived(context.Background(), c.lab.Host("client"), cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ForeignVRRPMasterSeen in the journal and the status", 20*time.Second, func() (bool, string) {
		seen := false
		for _, r := range c.journal("witness") {
			if r.Event.Type == "ForeignVRRPMasterSeen" && r.Result == "applied" && strings.Contains(string(r.Event.Data), c.lab.Host("client").Addr.String()) {
				seen = true
			}
		}
		st, err := c.status("witness")
		return seen && err == nil && len(st.Foreign) > 0, fmt.Sprintf("journaled %v, status %+v", seen, st.Foreign)
	})
	for _, h := range c.tracker.Holders() {
		if h != "client" && h != "db1" && h != "db2" {
			t.Fatalf("unexpected holder %s", h)
		}
	}
	var keepraftHolders int
	for _, h := range c.tracker.Holders() {
		if h == "db1" || h == "db2" {
			keepraftHolders++
		}
	}
	if keepraftHolders > 1 {
		t.Fatalf("two keepraft hosts hold the VIP: %v", c.tracker.Holders())
	}
}
