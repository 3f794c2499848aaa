package testenv

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func addVIP(t *testing.T, h *Host, vip string) {
	t.Helper()
	if _, err := h.Run(ctxT(t, 5*time.Second), "ip", "addr", "add", vip, "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
}

func delVIP(t *testing.T, h *Host, vip string) {
	t.Helper()
	if _, err := h.Run(ctxT(t, 5*time.Second), "ip", "addr", "del", vip, "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
}

func TestTrackerOverlapByHand(t *testing.T) {
	Require(t)
	l := NewT(t, Options{Hosts: []string{"db1", "db2", "witness"}})
	db1, db2 := l.Host("db1"), l.Host("db2")
	vip := l.VIP.String()

	t.Run("sequential move has no overlap", func(t *testing.T) {
		tr, err := l.TrackHolders(ctxT(t, 5*time.Second), l.VIP.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		addVIP(t, db1, vip)
		if _, err := tr.WaitHolder(ctxT(t, 5*time.Second), "db1"); err != nil {
			t.Fatal(err)
		}
		delVIP(t, db1, vip)
		addVIP(t, db2, vip)
		got, err := tr.WaitHolder(ctxT(t, 5*time.Second), "db2")
		if err != nil {
			t.Fatal(err)
		}
		gone, err := tr.WaitNone(ctxT(t, 5*time.Second), "db1")
		if err != nil {
			t.Fatal(err)
		}
		if !gone.Before(got) {
			t.Errorf("db1 released at %v, not before db2 acquired at %v", gone, got)
		}
		if h := tr.Holders(); !slices.Equal(h, []string{"db2"}) {
			t.Errorf("Holders() = %v, want [db2]", h)
		}
		if m := tr.MaxConcurrent(); m != 1 {
			t.Errorf("MaxConcurrent() = %d, want 1; events %+v", m, tr.Events())
		}
		if o := tr.Overlaps(); len(o) != 0 {
			t.Errorf("Overlaps() = %+v, want none", o)
		}
		if err := tr.Close(); err != nil {
			t.Errorf("tracker: %v", err)
		}
		delVIP(t, db2, vip)
	})

	t.Run("both hold", func(t *testing.T) {
		tr, err := l.TrackHolders(ctxT(t, 5*time.Second), l.VIP.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		if h := tr.Holders(); len(h) != 0 {
			t.Fatalf("Holders() at start = %v, want none", h)
		}
		addVIP(t, db1, vip)
		addVIP(t, db2, vip)
		if _, err := tr.WaitHolder(ctxT(t, 5*time.Second), "db2"); err != nil {
			t.Fatal(err)
		}
		if _, err := tr.WaitHolder(ctxT(t, 5*time.Second), "db1"); err != nil {
			t.Fatal(err)
		}
		delVIP(t, db1, vip)
		if _, err := tr.WaitNone(ctxT(t, 5*time.Second), "db1"); err != nil {
			t.Fatal(err)
		}
		if m := tr.MaxConcurrent(); m != 2 {
			t.Errorf("MaxConcurrent() = %d, want 2", m)
		}
		o := tr.Overlaps()
		if len(o) != 1 || !slices.Equal(o[0].Hosts, []string{"db1", "db2"}) || o[0].End.IsZero() || o[0].Duration() <= 0 {
			t.Errorf("Overlaps() = %+v, want one closed overlap of db1 and db2", o)
		}
		delVIP(t, db2, vip)
	})

	t.Run("kernel lease expiry is seen", func(t *testing.T) {
		tr, err := l.TrackHolders(ctxT(t, 5*time.Second), l.VIP.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		if _, err := db1.Run(ctxT(t, 5*time.Second), "ip", "addr", "add", vip, "dev", "eth0", "valid_lft", "1", "preferred_lft", "1"); err != nil {
			t.Fatal(err)
		}
		on, err := tr.WaitHolder(ctxT(t, 5*time.Second), "db1")
		if err != nil {
			t.Fatal(err)
		}
		off, err := tr.WaitNone(ctxT(t, 5*time.Second), "db1")
		if err != nil {
			t.Fatal(err)
		}
		if d := off.Sub(on); d < 500*time.Millisecond || d > 3500*time.Millisecond {
			t.Errorf("address with valid_lft 1 held for %s", d)
		}
	})
}

func TestKeepalivedPair(t *testing.T) {
	Require(t)
	l := NewT(t, Options{Hosts: []string{"db1", "db2"}})
	ctx := ctxT(t, time.Minute)
	tr, err := l.TrackHolders(ctx, l.VIP.Addr())
	if err != nil {
		t.Fatal(err)
	}
	cfg := KeepalivedConfig{Interface: "eth0", VRID: 51, AdvertInt: time.Second, AuthPass: "secret",
		VIPs: []netip.Prefix{l.VIP}, Nopreempt: true}
	c1, c2 := cfg, cfg
	c1.Priority, c2.Priority = 100, 90
	k1, err := l.StartKeepalived(ctx, l.Host("db1"), c1)
	if err != nil {
		t.Fatal(err)
	}
	// Both start as BACKUP; the first to time out becomes MASTER. Start db2 once db1 holds.
	if _, err := tr.WaitHolder(ctxT(t, 15*time.Second), "db1"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.StartKeepalived(ctx, l.Host("db2"), c2); err != nil {
		t.Fatal(err)
	}
	// The backup must stay backup while adverts flow (3 advert intervals and the skew).
	time.Sleep(4 * time.Second)
	if h := tr.Holders(); !slices.Equal(h, []string{"db1"}) {
		t.Fatalf("holders = %v, want [db1]", h)
	}
	// Kill the master outright: its kernel keeps the address, so db2 taking over is an overlap,
	// which is exactly the case the tracker must report.
	if err := k1.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.WaitHolder(ctxT(t, 15*time.Second), "db2"); err != nil {
		t.Fatal(err)
	}
	if tr.MaxConcurrent() != 2 || len(tr.Overlaps()) != 1 {
		t.Errorf("after SIGKILL of keepalived on db1: max %d overlaps %+v, want an overlap", tr.MaxConcurrent(), tr.Overlaps())
	}
	log := tailFile(l.Procs()[1].LogPath, 50)
	if !strings.Contains(log, "Entering MASTER STATE") {
		t.Errorf("db2 keepalived log has no MASTER transition:\n%s", log)
	}
}
