package e2e

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
)

// raftctl runs the raftctl binary from the lab's client host against every node's API
// (the --addr list) with the lab's raftctl certificate, and returns its output and exit
// code.
func (c *cluster) raftctl(args ...string) (string, int) {
	c.t.Helper()
	var addrs []string
	for _, n := range []string{"db1", "db2", "witness"} {
		addrs = append(addrs, c.nodes[n].APIAddr.String())
	}
	base := []string{"--addr", strings.Join(addrs, ","), "--timeout", "3s"}
	if c.tls {
		dir := c.lab.TLSDir()
		base = append(base, "--ca", filepath.Join(dir, "ca.pem"), "--cert", filepath.Join(dir, "raftctl.pem"), "--key", filepath.Join(dir, "raftctl-key.pem"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", c.lab.Host("client").NS, raftctlBin}, append(base, args...)...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if xe, ok := errors.AsType[*exec.ExitError](err); ok {
		code = xe.ExitCode()
	} else if err != nil {
		c.t.Fatalf("raftctl %s: %v", strings.Join(args, " "), err)
	}
	c.t.Logf("raftctl %s → exit %d\n%s", strings.Join(args, " "), code, out)
	return string(out), code
}

// expect runs raftctl and fails unless it exits with code and prints every want.
func (c *cluster) expect(code int, want []string, args ...string) string {
	c.t.Helper()
	out, got := c.raftctl(args...)
	if got != code {
		c.t.Fatalf("raftctl %s: exit %d, want %d:\n%s", strings.Join(args, " "), got, code, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			c.t.Fatalf("raftctl %s: output lacks %q:\n%s", strings.Join(args, " "), w, out)
		}
	}
	return out
}

// TestRaftctlVerbs drives the operator's verbs and status exit codes against a real
// cluster: pause keeps a failed owner's cluster from failing over (status: PAUSED, then NO
// WRITER), failover --to asks for --yes and then moves ownership with the loss accepted,
// resume, a waiting switchover back, maintenance's refusals and no-ops, history and the
// journal filters.
func TestRaftctlVerbs(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	owner := c.waitOwner(30 * time.Second)
	standby := other(owner)
	ctx := context.Background()
	waitFor(t, "status healthy (exit 0)", 20*time.Second, func() (bool, string) {
		out, code := c.raftctl("status")
		return code == 0, out
	})

	c.expect(0, []string{"paused"}, "pause", "--reason", "drill")
	c.expect(0, []string{"already paused", "nothing changed"}, "pause")
	c.expect(1, []string{"PAUSED"}, "status")

	// Paused: the owner's server dies and nothing takes over.
	if err := c.lab.MariaDB(owner).Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	for _, r := range c.journal("witness") {
		if r.Result == fsm.ResultApplied && r.Event.Type == fsm.OwnerAssigned && r.Event.Epoch >= 1 {
			var d fsm.AssignData
			_ = r.Event.Payload(&d)
			if d.Owner == standby {
				t.Fatalf("paused, yet %s was assigned: %+v", standby, d)
			}
		}
	}
	c.expect(2, []string{"NO WRITER", "PAUSED"}, "status")

	c.expect(1, []string{"needs confirmation", "--yes"}, "failover", "--to", standby)
	c.expect(1, []string{"not a database node"}, "failover", "--to", "witness", "--yes")
	c.expect(0, []string{"failover: " + owner + " → " + standby}, "failover", "--to", standby, "--yes")
	c.waitOwner(10 * time.Second)

	c.expect(0, []string{"resumed"}, "resume")
	c.expect(0, []string{"not paused", "nothing changed"}, "resume")

	if err := c.lab.MariaDB(owner).Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, owner+" healthy again", 30*time.Second, func() (bool, string) {
		st, err := c.status("")
		if err != nil {
			return false, err.Error()
		}
		i := slices.IndexFunc(st.Members, func(m api.MemberStatus) bool { return m.ID == owner })
		return i >= 0 && st.Members[i].Healthy != nil && *st.Members[i].Healthy, st.Owner
	})
	c.expect(0, []string{"switchover: " + standby + " → " + owner}, "switchover", "--to", owner)
	c.expect(1, []string{"witness"}, "maintenance", "witness", "on")
	c.expect(0, []string{"already off", "nothing changed"}, "maintenance", standby, "off")
	c.expect(0, []string{"not blocked", "nothing changed"}, "rejoin", standby, "resume")

	hist := c.expect(0, []string{"operator", "switchover"}, "history")
	if !strings.Contains(hist, owner+" → "+standby) || !strings.Contains(hist, standby+" → "+owner) {
		t.Fatalf("history lacks the two moves:\n%s", hist)
	}
	j := c.expect(0, []string{"FailoverRequested", "PauseChanged"}, "journal", "--type", "PauseChanged,FailoverRequested")
	for _, line := range strings.Split(strings.TrimSpace(j), "\n") {
		if strings.Contains(line, "HealthChanged") || strings.Contains(line, "OwnerAssigned") {
			t.Fatalf("journal --type let through %q", line)
		}
	}
	byNode := c.expect(0, []string{"FailoverRequested"}, "journal", "--node", standby, "--type", "FailoverRequested")
	if !slices.ContainsFunc(strings.Split(byNode, "\n"), func(l string) bool {
		return strings.Contains(l, "T") && (strings.Contains(l, "Z ") || strings.Contains(l, "+00:00"))
	}) {
		t.Fatalf("journal times are not ISO-8601 with a zone:\n%s", byNode)
	}
	c.expect(1, []string{"unknown", "PauseChanged"}, "journal", "--type", "NoSuchType")
	c.expect(0, []string{"consistent", "vrrp.virtual_router_id", "cluster.peers"}, "config-check")

	// No address answers: exit 3, so a monitoring check does not read it as degraded.
	ctx3, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx3, "ip", "netns", "exec", c.lab.Host("client").NS, raftctlBin, "--addr", "198.18.0.250:7001", "--timeout", "1s", "status")
	out, err := cmd.CombinedOutput()
	if xe, ok := errors.AsType[*exec.ExitError](err); !ok || xe.ExitCode() != 3 {
		t.Fatalf("status with no answering address: %v, want exit 3:\n%s", err, out)
	}
}
