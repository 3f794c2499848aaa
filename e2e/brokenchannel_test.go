package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/testenv"
)

// TestBrokenChannelJournaled: an event of the owner's binlog that the standby cannot take
// (here a byte of a row changed in a closed binlog file, as a write cut by a full disk
// leaves one) stops the standby's IO thread at the same position on every restart. The
// standby journals ReplicationBroken with the error and the owner's binlog position, and,
// once the binlog is readable again, journals that the channel runs and receives the rows.
func TestBrokenChannelJournaled(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	owner := c.waitOwner(30 * time.Second)
	peer := other(owner)
	ctx := context.Background()
	om, pm := c.lab.MariaDB(owner), c.lab.MariaDB(peer)
	if err := pm.StopReplicaIO(ctx); err != nil {
		t.Fatal(err)
	}
	mark := strings.Repeat("z", 64)
	for i := range 5 {
		if err := om.Exec(ctx, "INSERT INTO kr.writes (origin, seq) VALUES (?, ?)", mark, i); err != nil {
			t.Fatal(err)
		}
	}
	// Close the file holding the rows, then change one byte of the first row's origin.
	if err := om.Exec(ctx, "FLUSH BINARY LOGS"); err != nil {
		t.Fatal(err)
	}
	file, off, orig := damageBinlog(t, om, []byte(mark))
	t.Logf("changed the byte at %s:%d", filepath.Base(file), off)
	if err := pm.StartReplica(ctx); err != nil {
		t.Fatal(err)
	}

	var d fsm.ReplicationData
	waitFor(t, "ReplicationBroken from the standby", 60*time.Second, func() (bool, string) {
		d = fsm.ReplicationData{}
		for _, r := range c.journal("witness") {
			if r.Event.Type == fsm.ReplicationBroken && r.Result == fsm.ResultApplied {
				_ = r.Event.Payload(&d)
			}
		}
		return d.Broken, fmt.Sprintf("%+v", d)
	})
	if d.Node != peer || d.Source != owner || d.IOErrno == 0 || !strings.HasPrefix(d.SourcePos, filepath.Base(file)+":") || d.Failures < 3 {
		t.Fatalf("journaled %+v, want %s's channel from %s broken in %s", d, peer, owner, filepath.Base(file))
	}
	if n, err := pm.QueryString(ctx, "SELECT COUNT(*) FROM kr.writes WHERE origin=?", mark); err != nil || n != "0" {
		t.Fatalf("the standby has %s of the rows past the damaged event (%v), want 0", n, err)
	}
	t.Logf("journaled: %+v", d)

	// The operator repairs the owner's binlog: the next restart gets through.
	writeByte(t, file, off, orig)
	waitFor(t, "ReplicationBroken saying the channel runs", 40*time.Second, func() (bool, string) {
		d = fsm.ReplicationData{}
		for _, r := range c.journal("witness") {
			if r.Event.Type == fsm.ReplicationBroken && r.Result == fsm.ResultApplied {
				_ = r.Event.Payload(&d)
			}
		}
		return !d.Broken && d.Node == peer, fmt.Sprintf("%+v", d)
	})
	waitFor(t, "the rows on the standby", 20*time.Second, func() (bool, string) {
		n, err := pm.QueryString(ctx, "SELECT COUNT(*) FROM kr.writes WHERE origin=?", mark)
		return err == nil && n == "5", fmt.Sprintf("%s rows (%v)", n, err)
	})
}

// damageBinlog changes a byte in the middle of the first occurrence of mark in m's closed
// binlog files (the newest first) and returns the file, the offset and the byte it held.
func damageBinlog(t *testing.T, m *testenv.MariaDB, mark []byte) (string, int64, byte) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(m.Dir, "data", "mariadb-bin.[0-9]*"))
	if err != nil || len(files) < 2 {
		t.Fatalf("binlog files of %s: %v (%v)", m.Name, files, err)
	}
	// The last file is the active one, opened by FLUSH BINARY LOGS.
	for i := len(files) - 2; i >= 0; i-- {
		b, err := os.ReadFile(files[i])
		if err != nil {
			t.Fatal(err)
		}
		if at := bytes.Index(b, mark); at >= 0 {
			off := int64(at + len(mark)/2)
			writeByte(t, files[i], off, b[off]^0x01)
			return files[i], off, b[off]
		}
	}
	t.Fatalf("no binlog file of %s holds the marked rows", m.Name)
	return "", 0, 0
}

func writeByte(t *testing.T, file string, off int64, v byte) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{v}, off); err != nil {
		t.Fatal(err)
	}
}
