package probe_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keepraft/keepraft/probe"
	"github.com/keepraft/keepraft/testenv"
)

func TestIsRelayLogErrno(t *testing.T) {
	for _, n := range []int{probe.ErrRelayLogPurge, probe.ErrRelayLogInit, probe.ErrRelayLogRead, probe.ErrRelayLogWrite} {
		if !probe.IsRelayLogErrno(n) {
			t.Errorf("IsRelayLogErrno(%d) = false", n)
		}
	}
	for _, n := range []int{0, 1236, 1743, 2003, 2013, 1062} {
		if probe.IsRelayLogErrno(n) {
			t.Errorf("IsRelayLogErrno(%d) = true", n)
		}
	}
}

// TestIntegResetRelayLog runs ResetRelayLog on a MariaDB replica (master_use_gtid=slave_pos)
// with the daemon's exact grants: the relay logs are discarded, Using_Gtid stays Slave_Pos,
// both threads run again and the source's writes arrive. It refuses a channel positioned by
// file and one with an SQL error, changing nothing. Last, the source's binlog is damaged in
// an event the replica has not fetched: the replica's IO thread stops with 1595 "Relay log
// write failure" while its SQL thread runs (what the chaos run saw), START does not help, a
// reset neither (the damage is in the source's binlog, not the relay log: the IO thread fails
// at the same source position), and once the source's binlog is repaired a reset recovers.
func TestIntegResetRelayLog(t *testing.T) {
	const f = probe.FlavorMariaDB
	a, b := newPair(t)
	// probe.Grants lack RELOAD, which RESET REPLICA needs on MariaDB 10.11 as on MySQL.
	plain := daemonDB(t, b)
	bdb := account(t, b, "kreset", append(probe.Grants(f, "kreset", "%"), "GRANT RELOAD ON *.* TO 'kreset'@'%'"))
	ctx := ctxT(t, 3*time.Minute)
	if err := a.ExecAdmin(ctx, "CREATE TABLE "+testenv.AppSchema+".relay_t (id INT PRIMARY KEY, v VARCHAR(64) NOT NULL) ENGINE=InnoDB"); err != nil {
		t.Fatal(err)
	}
	channel := func() probe.ReplicaChannel {
		t.Helper()
		c, err := probe.ReadReplicaChannel(ctx, bdb, f)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	waitChannel := func(what string, ok func(probe.ReplicaChannel) bool) probe.ReplicaChannel {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			c := channel()
			if ok(c) {
				return c
			}
			if time.Now().After(deadline) {
				t.Fatalf("channel never %s: %+v", what, c)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	running := func(c probe.ReplicaChannel) bool { return c.IORunning && c.SQLRunning }
	ioFailed := func(c probe.ReplicaChannel) bool { return !c.IORunning && c.IOErrno != 0 }
	relayIndex := func() []string {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(b.Dir, "data", "relay-bin.index"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(string(data))
	}
	write := func(id int, v string) {
		t.Helper()
		if err := a.ExecAdmin(ctx, fmt.Sprintf("INSERT INTO %s.relay_t VALUES (%d, '%s')", testenv.AppSchema, id, v)); err != nil {
			t.Fatal(err)
		}
	}
	arrives := func(id int, v string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			got, err := b.QueryString(ctx, fmt.Sprintf("SELECT v FROM %s.relay_t WHERE id = %d", testenv.AppSchema, id))
			if err == nil && got == v {
				return
			}
			if time.Now().After(deadline) {
				c := channel()
				t.Fatalf("row %d (%q) never arrived on the replica: got %q, %v; channel %+v", id, v, got, err, c)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	t.Run("without RELOAD: refused by the server, channel started again", func(t *testing.T) {
		_, err := probe.ResetRelayLog(ctx, plain, f)
		if errNumber(err) != 1227 {
			t.Fatalf("ResetRelayLog without RELOAD = %v, want error 1227", err)
		}
		c := waitChannel("running again", running)
		if c.Positioning != "Slave_Pos" {
			t.Errorf("channel %+v, want Using_Gtid Slave_Pos", c)
		}
		write(2, "after-refusal")
		arrives(2, "after-refusal")
	})

	t.Run("healthy channel", func(t *testing.T) {
		for range 3 {
			if err := b.Exec(ctx, "FLUSH RELAY LOGS"); err != nil {
				t.Fatal(err)
			}
		}
		old := relayIndex()
		c, err := probe.ResetRelayLog(ctx, bdb, f)
		if err != nil {
			t.Fatalf("ResetRelayLog: %v", err)
		}
		if !c.GTIDPositioned || c.Positioning != "Slave_Pos" || !running(c) {
			t.Errorf("channel before the reset %+v, want running with Using_Gtid Slave_Pos", c)
		}
		after := waitChannel("running after the reset", running)
		if after.Positioning != "Slave_Pos" || !after.GTIDPositioned || after.IOErrno != 0 || after.SQLErrno != 0 {
			t.Errorf("channel after the reset %+v, want Using_Gtid Slave_Pos and no error", after)
		}
		if idx := relayIndex(); slices.Contains(idx, old[len(old)-1]) || len(idx) >= len(old) {
			t.Errorf("relay log index %v after the reset, was %v: want the old relay logs gone", idx, old)
		}
		write(1, "after-reset")
		arrives(1, "after-reset")
	})

	t.Run("not GTID positioned: refused", func(t *testing.T) {
		for _, s := range []string{"STOP SLAVE", "CHANGE MASTER TO master_use_gtid=no", "START SLAVE"} {
			if err := b.Exec(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		c := waitChannel("running by file position", running)
		if c.GTIDPositioned || c.Positioning != "No" {
			t.Fatalf("channel %+v, want Using_Gtid No", c)
		}
		idx := relayIndex()
		if _, err := probe.ResetRelayLog(ctx, bdb, f); !errors.Is(err, probe.ErrNotGTIDPositioned) {
			t.Fatalf("ResetRelayLog = %v, want ErrNotGTIDPositioned", err)
		}
		if c := channel(); !running(c) || !slices.Equal(relayIndex(), idx) {
			t.Errorf("refused reset changed the channel: %+v, relay index %v was %v", c, relayIndex(), idx)
		}
		for _, s := range []string{"STOP SLAVE", "CHANGE MASTER TO master_use_gtid=slave_pos", "START SLAVE"} {
			if err := b.Exec(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		waitChannel("running by GTID again", func(c probe.ReplicaChannel) bool { return running(c) && c.GTIDPositioned })
	})

	t.Run("SQL error: refused", func(t *testing.T) {
		if err := b.ExecNoBinlog(ctx, fmt.Sprintf("INSERT INTO %s.relay_t VALUES (100, 'local')", testenv.AppSchema)); err != nil {
			t.Fatal(err)
		}
		write(100, "from-source")
		c := waitChannel("stopped by an SQL error", func(c probe.ReplicaChannel) bool { return !c.SQLRunning && c.SQLErrno != 0 })
		if c.SQLErrno != 1062 || !c.IORunning {
			t.Errorf("channel %+v, want SQL error 1062 with the IO thread running", c)
		}
		if _, err := probe.ResetRelayLog(ctx, bdb, f); !errors.Is(err, probe.ErrSQLThreadFailed) {
			t.Fatalf("ResetRelayLog = %v, want ErrSQLThreadFailed", err)
		}
		if c := channel(); !c.IORunning || c.SQLErrno != 1062 {
			t.Errorf("refused reset changed the channel: %+v", c)
		}
		if err := b.ExecNoBinlog(ctx, fmt.Sprintf("DELETE FROM %s.relay_t WHERE id = 100", testenv.AppSchema)); err != nil {
			t.Fatal(err)
		}
		if err := probe.StartReplication(ctx, bdb); err != nil {
			t.Fatal(err)
		}
		arrives(100, "from-source")
	})

	t.Run("IO thread failing on a damaged source event", func(t *testing.T) {
		if err := b.StopReplicaIO(ctx); err != nil {
			t.Fatal(err)
		}
		index, err := os.ReadFile(filepath.Join(a.Dir, "data", "mariadb-bin.index"))
		if err != nil {
			t.Fatal(err)
		}
		files := strings.Fields(string(index))
		file := files[len(files)-1]
		const canary = "relay-canary-0123456789"
		write(200, canary)
		// Flip one byte of the row image in the source's binlog: the event's checksum no
		// longer matches, as after a torn write.
		path := filepath.Join(a.Dir, "data", file)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		at := bytes.Index(data, []byte(canary))
		if at < 0 {
			t.Fatalf("canary not in %s", path)
		}
		flip := func() {
			t.Helper()
			bf, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer bf.Close()
			data[at+5] ^= 0x20
			if _, err := bf.WriteAt(data[at+5:at+6], int64(at+5)); err != nil {
				t.Fatal(err)
			}
		}
		flip()
		if err := b.Exec(ctx, "START SLAVE IO_THREAD"); err != nil {
			t.Fatal(err)
		}
		failed := waitChannel("stopped by an IO error", ioFailed)
		t.Logf("IO thread failed: errno %d %q at %s:%d", failed.IOErrno, failed.IOError, failed.SourceLogFile, failed.SourceLogPos)
		if failed.IOErrno != probe.ErrRelayLogWrite || !failed.RelayLogFailed() || !failed.SQLRunning || failed.SQLErrno != 0 || !failed.GTIDPositioned {
			t.Fatalf("channel %+v, want IO error 1595 (relay-log class), SQL thread running without error, GTID positioning", failed)
		}

		// START does not help: the IO thread fails the same way.
		if err := probe.StartReplication(ctx, bdb); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		again := waitChannel("failing again after START", ioFailed)
		if again.IOErrno != failed.IOErrno {
			t.Fatalf("after START: %+v, want errno %d again", again, failed.IOErrno)
		}

		// Neither does a reset: the damage is in the source's binlog, at the same position.
		if _, err := probe.ResetRelayLog(ctx, bdb, f); err != nil {
			t.Fatalf("ResetRelayLog: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
		reset := waitChannel("failing again after the reset", ioFailed)
		if reset.IOErrno != failed.IOErrno || reset.SourceLogFile != failed.SourceLogFile || reset.SourceLogPos != failed.SourceLogPos ||
			reset.Positioning != "Slave_Pos" || !reset.SQLRunning {
			t.Fatalf("after the reset: %+v, want the same error at the same source position (%s:%d), Slave_Pos, SQL running",
				reset, failed.SourceLogFile, failed.SourceLogPos)
		}

		// Source repaired: the reset recovers the channel and the row arrives.
		flip()
		if _, err := probe.ResetRelayLog(ctx, bdb, f); err != nil {
			t.Fatalf("ResetRelayLog after the repair: %v", err)
		}
		ok := waitChannel("running after the repair", running)
		if ok.Positioning != "Slave_Pos" {
			t.Errorf("Using_Gtid %q after the reset, want Slave_Pos", ok.Positioning)
		}
		arrives(200, canary)
		write(201, "after-recovery")
		arrives(201, "after-recovery")
		if c := channel(); !running(c) || c.IOErrno != 0 {
			t.Errorf("channel %+v at the end, want running without error", c)
		}
	})
}
