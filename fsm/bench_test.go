package fsm

import (
	"testing"

	"github.com/hashicorp/raft"
)

// BenchmarkApplyFullJournal measures one Apply plus the observer's Journal(last) read
// with a journal at its default retention bound: the steady state of a long-running node.
func BenchmarkApplyFullJournal(b *testing.B) {
	f := New(DefaultRetain)
	ev, err := NewEvent(HealthChanged, "db1", t0, 0, "", HealthData{Node: "db9"})
	if err != nil {
		b.Fatal(err)
	}
	data, err := ev.Encode()
	if err != nil {
		b.Fatal(err)
	}
	idx := uint64(0)
	for range DefaultRetain {
		idx++
		f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: data})
	}
	b.ResetTimer()
	for range b.N {
		idx++
		f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: data})
		if len(f.Journal(idx-1)) != 1 {
			b.Fatal("lost the newest record")
		}
	}
}
