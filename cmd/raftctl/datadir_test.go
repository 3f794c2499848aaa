package main

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/store"
)

// stoppedNode writes a data dir whose raft log holds a failover from db1 to db2.
func stoppedNode(t *testing.T) string {
	dir := t.TempDir()
	s, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	add := func(ms int, typ fsm.Type, by string, epoch uint64, p any) {
		ev, err := fsm.NewEvent(typ, by, t0.Add(time.Duration(ms)*time.Millisecond), epoch, "", p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := ev.Encode()
		logs = append(logs, &raft.Log{Index: uint64(len(logs) + 1), Term: 1, Type: raft.LogCommand, Data: b})
	}
	add(0, fsm.Bootstrapped, "db1", 0, fsm.BootstrappedData{Members: []fsm.Member{{ID: "db1", Role: fsm.RoleDatabase}, {ID: "db2", Role: fsm.RoleDatabase}, {ID: "witness", Role: fsm.RoleWitness}}})
	add(10, fsm.HealthChanged, "db1", 0, fsm.HealthData{Node: "db1", Healthy: true})
	add(20, fsm.HealthChanged, "db2", 0, fsm.HealthData{Node: "db2", Healthy: true})
	add(30, fsm.OwnerAssigned, "witness", 0, fsm.AssignData{Owner: "db1", Reason: "initial assignment"})
	add(90, fsm.OwnerPromoted, "db1", 1, fsm.PromotedData{Owner: "db1", Reached: true})
	add(1000, fsm.HealthChanged, "db1", 1, fsm.HealthData{Node: "db1", Healthy: false, Detail: "refused"})
	add(1005, fsm.OwnerReleased, "db1", 1, fsm.ReleaseData{Owner: "db1", Reason: "local mysqld unhealthy", GTID: "0-1-4", Fenced: true})
	add(1010, fsm.OwnerAssigned, "witness", 1, fsm.AssignData{Owner: "db2", Reason: "db1 released: local mysqld unhealthy", CatchupTarget: "0-1-4"})
	add(1250, fsm.OwnerPromoted, "db2", 2, fsm.PromotedData{Owner: "db2", Reached: true, Target: "0-1-4", WaitedMS: 12})
	if err := s.Log.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestDataDir(t *testing.T) {
	dir := stoppedNode(t)
	out, code, errOut := raftctl(t, "journal", "--data-dir", dir, "--type", "HealthChanged,OwnerPromoted", "--node", "db2")
	if code != 0 {
		t.Fatalf("exit %d %s", code, errOut)
	}
	if got := strings.Join(indexes(out), " "); got != "3 9" {
		t.Errorf("indexes %q, want 3 9:\n%s", got, out)
	}
	out, code, errOut = raftctl(t, "history", "--data-dir", dir)
	if code != 0 {
		t.Fatalf("exit %d %s", code, errOut)
	}
	if !strings.Contains(out, "db1 → db2") || !strings.Contains(out, "250 ms") || !strings.Contains(out, "db1 unhealthy: refused") || !strings.Contains(out, "catch-up 12 ms, nothing missing") {
		t.Errorf("history from the data dir:\n%s", out)
	}
}
