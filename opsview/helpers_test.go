package opsview

import (
	"encoding/json"
	"time"

	"github.com/keepraft/keepraft/fsm"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// story builds journal records with consecutive indexes from 1, each ms milliseconds
// after t0.
type story struct {
	recs []fsm.Record
}

func (s *story) add(ms int, typ fsm.Type, by string, epoch uint64, p any) *story {
	return s.addResult(ms, typ, by, epoch, p, fsm.ResultApplied)
}

func (s *story) addResult(ms int, typ fsm.Type, by string, epoch uint64, p any, res fsm.Result) *story {
	var data json.RawMessage
	if p != nil {
		b, err := json.Marshal(p)
		if err != nil {
			panic(err)
		}
		data = b
	}
	s.recs = append(s.recs, fsm.Record{Index: uint64(len(s.recs) + 1), Result: res,
		Event: fsm.Event{V: 1, Type: typ, By: by, Epoch: epoch, At: t0.Add(time.Duration(ms) * time.Millisecond), Data: data}})
	return s
}

// fullStory is a cluster's life: initial owner db1; db1's mysqld fails and db2 takes
// over; an operator switches back to db1; db1 goes into maintenance.
func fullStory() *story {
	s := &story{}
	s.add(0, fsm.Bootstrapped, "db1", 0, fsm.BootstrappedData{Members: []fsm.Member{{ID: "db1", Role: fsm.RoleDatabase}, {ID: "db2", Role: fsm.RoleDatabase}, {ID: "witness", Role: fsm.RoleWitness}}})
	s.add(10, fsm.HealthChanged, "db1", 0, fsm.HealthData{Node: "db1", Healthy: true})
	s.add(20, fsm.HealthChanged, "db2", 0, fsm.HealthData{Node: "db2", Healthy: true})
	s.add(30, fsm.OwnerAssigned, "witness", 0, fsm.AssignData{Owner: "db1", Reason: "initial assignment"})
	s.add(80, fsm.OwnerPromoted, "db1", 1, fsm.PromotedData{Owner: "db1", Reached: true})
	// 6..10: failover
	s.add(1000, fsm.HealthChanged, "db1", 1, fsm.HealthData{Node: "db1", Healthy: false, Detail: "connection refused"})
	s.add(1010, fsm.OwnerReleased, "db1", 1, fsm.ReleaseData{Owner: "db1", Reason: "local mysqld unhealthy", GTID: "0-1-50", Fenced: false})
	s.add(1020, fsm.OwnerAssigned, "witness", 1, fsm.AssignData{Owner: "db2", Reason: "db1 released: local mysqld unhealthy", CatchupTarget: "0-1-50", Loss: `old owner db1 was not fenced (mysqld unreachable); transactions after "0-1-50" may be missing`})
	s.add(1142, fsm.OwnerPromoted, "db2", 2, fsm.PromotedData{Owner: "db2", Reached: true, Target: "0-1-50", WaitedMS: 7})
	s.add(2000, fsm.HealthChanged, "db1", 2, fsm.HealthData{Node: "db1", Healthy: true})
	// 11..14: switchover back to db1
	s.add(3000, fsm.SwitchoverRequested, "db2", 2, fsm.SwitchoverData{To: "db1", Operator: "alice", From: "10.0.0.9:5555"})
	s.add(3050, fsm.OwnerReleased, "db2", 2, fsm.ReleaseData{Owner: "db2", Reason: "switchover requested", GTID: "0-2-9", Fenced: true})
	s.add(3060, fsm.OwnerAssigned, "witness", 2, fsm.AssignData{Owner: "db1", Reason: "switchover", CatchupTarget: "0-2-9"})
	s.add(3142, fsm.OwnerPromoted, "db1", 3, fsm.PromotedData{Owner: "db1", Reached: true, Target: "0-2-9", WaitedMS: 0, PrevOwner: "db2", PrevFence: "already read-only"})
	// 15..19: maintenance on db1, with a stale event and a failed promotion on the way
	s.add(4000, fsm.MaintenanceChanged, "witness", 3, fsm.MaintenanceData{Node: "db1", On: true, Operator: "bob"})
	s.addResult(4001, fsm.OwnerRevoked, "witness", 2, fsm.RevokeData{Owner: "db1", Reason: "old"}, fsm.ResultStale)
	s.add(4010, fsm.OwnerReleased, "db1", 3, fsm.ReleaseData{Owner: "db1", Reason: "maintenance", GTID: "0-1-60", Fenced: true})
	s.add(4020, fsm.OwnerAssigned, "witness", 3, fsm.AssignData{Owner: "db2", Reason: "db1 released: maintenance", CatchupTarget: "0-1-60"})
	s.add(9000, fsm.PromotionFailed, "witness", 4, fsm.PromotionFailedData{Owner: "db2", Reason: "promotion did not finish within catchup_timeout"})
	s.add(9010, fsm.OwnerAssigned, "witness", 4, fsm.AssignData{Owner: "db2", Reason: "db2 revoked and its lease expired", CatchupTarget: "0-1-60"})
	s.add(9500, fsm.OwnerPromoted, "db2", 5, fsm.PromotedData{Owner: "db2", Reached: false, Target: "0-1-60", WaitedMS: 400, Missing: "0-1-58..60", LossNotes: "policy promote: 3 transactions not applied"})
	return s
}
