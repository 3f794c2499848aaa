package node

import (
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keepraft/keepraft/fsm"
)

// nodeView is the node as the cluster collector sees it.
type nodeView struct{ n *Node }

var (
	_ clusterView = nodeView{}
	_ pauseView   = nodeView{}
)

// State returns the applied state.
func (v nodeView) State() fsm.State { return v.n.fsm.State() }

// Paused reads the pause from s through the status's hook (server.go), so that
// raftctl status and keepraft_paused cannot disagree.
func (nodeView) Paused(s fsm.State) bool { return clusterPaused(s) }

// Reachable reports every other configured voter's last poll: never polled is
// unreachable.
func (v nodeView) Reachable() map[string]bool {
	views := v.n.poll.snapshot()
	out := map[string]bool{}
	for _, p := range v.n.cfg.Cluster.Peers {
		if p.ID != v.n.cfg.Node.ID {
			out[p.ID] = views[p.ID].OK
		}
	}
	return out
}

// Raft reads raft's figures without a round trip through its main loop (Stats would
// read the configuration through it), so a scrape never waits for raft.
func (v nodeView) Raft() raftFigures {
	r := v.n.raft
	f := raftFigures{Term: r.CurrentTerm(), CommitIndex: r.CommitIndex(), LastIndex: r.LastIndex()}
	switch last := r.LastContact(); {
	case r.State() == raft.Leader:
	case last.IsZero():
		f.LastContact = -1
	default:
		f.LastContact = max(time.Since(last), 0)
	}
	return f
}

// registerClusterMetrics adds the cluster collector to the node's registry; New calls it
// once raft is open.
func (n *Node) registerClusterMetrics() error {
	if err := n.metrics.labeled.Register(newClusterCollector(nodeView{n})); err != nil {
		return fmt.Errorf("register the cluster metrics: %w", err)
	}
	return nil
}
