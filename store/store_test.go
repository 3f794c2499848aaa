package store

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keepraft/keepraft/fsm"
)

func TestReadJournalAfterSnapshot(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := fsm.New(0)
	conf := raft.DefaultConfig()
	conf.LocalID = "db1"
	conf.HeartbeatTimeout, conf.ElectionTimeout, conf.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	conf.LogLevel = "ERROR"
	_, trans := raft.NewInmemTransport("db1")
	r, err := raft.NewRaft(conf, f, s.Log, s.Stable, s.Snap, trans)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: "db1", Address: trans.LocalAddr()}}}).Error(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.State() != raft.Leader {
		if time.Now().After(deadline) {
			t.Fatal("no leader within 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	apply := func(typ fsm.Type, p any) {
		t.Helper()
		st := f.State()
		ev, err := fsm.NewEvent(typ, "db1", time.Now(), st.Epoch, st.Phase, p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := ev.Encode()
		if err := r.Apply(b, time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	apply(fsm.Bootstrapped, fsm.BootstrappedData{Members: []fsm.Member{{ID: "db1", Role: fsm.RoleDatabase}, {ID: "db2", Role: fsm.RoleDatabase}}})
	apply(fsm.HealthChanged, fsm.HealthData{Node: "db1", Healthy: true})
	apply(fsm.OwnerAssigned, fsm.AssignData{Owner: "db1", Reason: "initial assignment"})
	if err := r.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	apply(fsm.OwnerRevoked, fsm.RevokeData{Owner: "db1", Reason: "test"})
	apply(fsm.OwnerReleased, fsm.ReleaseData{Owner: "db1", Reason: "test", GTID: "1-11-3"})

	if _, err := ReadJournal(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("ReadJournal of a running node: err = %v, want ErrLocked", err)
	}
	want := f.Journal(0)
	if err := r.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	j, err := ReadJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if j.SnapshotIndex == 0 {
		t.Fatal("no snapshot was read")
	}
	if !reflect.DeepEqual(types(j.Records), types(want)) {
		t.Fatalf("offline journal %v, live journal %v", types(j.Records), types(want))
	}
	if j.State.Phase != fsm.PhaseReleased || j.State.LastRelease.GTID != "1-11-3" {
		t.Fatalf("offline state phase %s release %+v", j.State.Phase, j.State.LastRelease)
	}
}

func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Open(dir, Options{LockTimeout: 100 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: err = %v, want ErrLocked", err)
	}
}

func types(rs []fsm.Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, string(r.Event.Type)+"/"+string(r.Result))
	}
	return out
}
