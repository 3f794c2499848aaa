package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/testenv"
)

// buildBinaries compiles keepraftd and raftctl once per test binary.
func buildBinaries(t *testing.T) (keepraftd, raftctl string) {
	t.Helper()
	dir := t.TempDir()
	keepraftd, raftctl = filepath.Join(dir, "keepraftd"), filepath.Join(dir, "raftctl")
	for bin, pkg := range map[string]string{keepraftd: ".", raftctl: "../raftctl"} {
		out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, out)
		}
	}
	return keepraftd, raftctl
}

func freePort(t *testing.T, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type testNode struct {
	id, role, cfg, log, dataDir, api string
	cmd                              *exec.Cmd
	done                             chan error
}

type loopCluster struct {
	t        *testing.T
	bin, ctl string
	token    string
	nodes    map[string]*testNode
	order    []string
}

func newLoopCluster(t *testing.T) *loopCluster {
	keepraftd, raftctl := buildBinaries(t)
	dir := t.TempDir()
	c := &loopCluster{t: t, bin: keepraftd, ctl: raftctl, token: filepath.Join(dir, "token"), nodes: map[string]*testNode{}}
	if err := os.WriteFile(c.token, []byte("test-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	closed := freePort(t, "127.0.0.1") // nothing listens here: the database nodes see MySQL down
	type spec struct{ id, role, ip string }
	specs := []spec{{"db1", "database", "127.0.0.11"}, {"db2", "database", "127.0.0.12"}, {"witness", "witness", "127.0.0.13"}}
	var peers strings.Builder
	addrs := map[string][2]string{}
	for _, s := range specs {
		raftAddr := fmt.Sprintf("%s:%d", s.ip, freePort(t, s.ip))
		apiAddr := fmt.Sprintf("%s:%d", s.ip, freePort(t, s.ip))
		addrs[s.id] = [2]string{raftAddr, apiAddr}
		fmt.Fprintf(&peers, "    - {id: %s, raft_addr: %q, api_addr: %q}\n", s.id, raftAddr, apiAddr)
	}
	for _, s := range specs {
		n := &testNode{id: s.id, role: s.role, dataDir: filepath.Join(dir, s.id, "data"), log: filepath.Join(dir, s.id+".log"), api: addrs[s.id][1]}
		cfg := fmt.Sprintf(`node: {id: %s, role: %s, data_dir: %q}
cluster:
  raft_addr: %q
  api_addr: %q
  token_file: %q
  peers:
%s  raft: {heartbeat_timeout: 300ms, election_timeout: 300ms, leader_lease_timeout: 150ms}
`, s.id, s.role, n.dataDir, addrs[s.id][0], addrs[s.id][1], c.token, peers.String())
		if s.role == "database" {
			cfg += fmt.Sprintf("mysql: {host: 127.0.0.1, port: %d, user: keepraft, interval: 100ms, timeout: 100ms}\nvip: {interface: lo, addresses: [198.19.255.1/32]}\n", closed)
		}
		n.cfg = filepath.Join(dir, s.id+".yaml")
		if err := os.WriteFile(n.cfg, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		c.nodes[s.id] = n
		c.order = append(c.order, s.id)
	}
	t.Cleanup(func() {
		for _, id := range c.order {
			c.kill(id)
		}
		if t.Failed() {
			for _, id := range c.order {
				b, _ := os.ReadFile(c.nodes[id].log)
				lines := strings.Split(string(b), "\n")
				t.Logf("--- %s log (last 30 lines)\n%s", id, strings.Join(lines[max(0, len(lines)-30):], "\n"))
			}
		}
	})
	return c
}

func (c *loopCluster) start(id string) {
	c.t.Helper()
	n := c.nodes[id]
	f, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	// --no-vip: this test runs in the root namespace, where nothing may touch addresses.
	n.cmd = exec.Command(c.bin, "--config", n.cfg, "--no-vip")
	n.cmd.Stdout, n.cmd.Stderr = f, f
	if err := n.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	n.done = make(chan error, 1)
	go func() { n.done <- n.cmd.Wait(); f.Close() }()
}

// kill ends a node by its PID (SIGKILL) and reaps it.
func (c *loopCluster) kill(id string) {
	n := c.nodes[id]
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
	n.cmd = nil
}

// stop ends a node gracefully and returns its exit error.
func (c *loopCluster) stop(id string) error {
	n := c.nodes[id]
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-n.done:
		n.cmd = nil
		return err
	case <-time.After(10 * time.Second):
		c.kill(id)
		return fmt.Errorf("%s did not stop within 10 s of SIGTERM", id)
	}
}

func (c *loopCluster) raftctl(addr string, args ...string) (string, error) {
	cmd := exec.Command(c.ctl, append([]string{"--addr", addr, "--token-file", c.token, "--timeout", "2s"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *loopCluster) status(id string) (api.Status, error) {
	var st api.Status
	cmd := exec.Command(c.ctl, "--addr", c.nodes[id].api, "--token-file", c.token, "--timeout", "2s", "-o", "json", "status")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	// Exit 1 (degraded) and 2 (no writer: these nodes run without MySQL) still print the
	// status; only other failures have none.
	if xe, ok := errors.AsType[*exec.ExitError](err); err != nil && !(ok && (xe.ExitCode() == 1 || xe.ExitCode() == 2)) {
		return st, fmt.Errorf("%v: %s%s", err, out, stderr.String())
	}
	if jerr := json.Unmarshal(out, &st); jerr != nil {
		return st, fmt.Errorf("%v (raftctl: %v): %s%s", jerr, err, out, stderr.String())
	}
	return st, nil
}

// waitFor polls cond until it holds or the deadline passes.
// waitFor is testenv.WaitFor, the one polling wait of the tests.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	testenv.WaitFor(t, what, timeout, cond)
}

// waitLeader waits until every listed node agrees on one leader with three voters.
func (c *loopCluster) waitLeader(ids []string, not string) string {
	c.t.Helper()
	var leader string
	waitFor(c.t, "one agreed leader", 20*time.Second, func() (bool, string) {
		leader = ""
		for _, id := range ids {
			st, err := c.status(id)
			if err != nil {
				return false, err.Error()
			}
			voters := 0
			for _, m := range st.Members {
				if m.Suffrage == "Voter" {
					voters++
				}
			}
			if st.Leader == "" || st.Leader == not || voters != 3 || (leader != "" && st.Leader != leader) {
				return false, fmt.Sprintf("%s sees leader %q with %d voters", id, st.Leader, voters)
			}
			leader = st.Leader
		}
		return true, ""
	})
	return leader
}

func TestThreeProcessCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three keepraftd processes")
	}
	c := newLoopCluster(t)
	for _, id := range c.order {
		c.start(id)
	}
	all := c.order
	leader := c.waitLeader(all, "")

	// The journal shows the bootstrap, every member with its role, and the database nodes'
	// health (their MySQL is unreachable, so nobody becomes owner).
	waitFor(t, "members and health journaled", 10*time.Second, func() (bool, string) {
		st, err := c.status("witness")
		if err != nil {
			return false, err.Error()
		}
		roles := map[string]fsm.Role{}
		down := 0
		for _, m := range st.Members {
			roles[m.ID] = m.Role
			if m.Healthy != nil && !*m.Healthy {
				down++
			}
		}
		ok := roles["db1"] == fsm.RoleDatabase && roles["db2"] == fsm.RoleDatabase && roles["witness"] == fsm.RoleWitness && down == 2 && st.Owner == ""
		return ok, fmt.Sprintf("roles %v, %d down, owner %q", roles, down, st.Owner)
	})
	// No MySQL runs here, so nobody can write: the banner says so and the exit code is 2,
	// what a monitoring check pages on.
	text, err := c.raftctl(c.nodes["db1"].api, "status")
	xe, _ := errors.AsType[*exec.ExitError](err)
	if xe == nil || xe.ExitCode() != 2 || !strings.Contains(text, "NO WRITER") || !strings.Contains(text, "leader:   "+leader) || !strings.Contains(text, "witness") {
		t.Fatalf("raftctl status text: %v (want exit status 2 and NO WRITER)\n%s", err, text)
	}

	// A wrong or missing token gets 401 and commits nothing.
	before, _ := c.status(leader)
	for _, tok := range []string{"", "Bearer wrong"} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+c.nodes[leader].api+"/v1/maintenance", bytes.NewBufferString(`{"node":"db1","on":true}`))
		if tok != "" {
			req.Header.Set("Authorization", tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("token %q: status %d, want 401", tok, resp.StatusCode)
		}
	}
	// A follower's operator verb is forwarded to the leader and committed.
	follower := "db1"
	if leader == "db1" {
		follower = "db2"
	}
	if out, err := c.raftctl(c.nodes[follower].api, "maintenance", "db2", "on"); err != nil {
		t.Fatalf("maintenance via follower: %v\n%s", err, out)
	}
	after, _ := c.status(leader)
	if after.CommitIndex <= before.CommitIndex {
		t.Fatalf("commit index did not move (%d → %d)", before.CommitIndex, after.CommitIndex)
	}
	if out, err := c.raftctl(c.nodes[follower].api, "maintenance", "db9", "on"); err == nil || !strings.Contains(out, "db9") {
		t.Fatalf("maintenance of unknown node: err %v, out %s", err, out)
	}

	// Kill the leader: the other two elect a new one.
	c.kill(leader)
	var rest []string
	for _, id := range all {
		if id != leader {
			rest = append(rest, id)
		}
	}
	newLeader := c.waitLeader(rest, leader)
	t.Logf("leader %s killed; %s took over", leader, newLeader)

	// Restart the old leader: it rejoins from its own log, without bootstrapping again.
	c.start(leader)
	c.waitLeader(all, "")
	waitFor(t, "restarted node catches up", 10*time.Second, func() (bool, string) {
		a, err1 := c.status(leader)
		b, err2 := c.status(newLeader)
		if err1 != nil || err2 != nil {
			return false, fmt.Sprint(err1, err2)
		}
		return a.Applied >= b.CommitIndex && a.Applied > 0, fmt.Sprintf("applied %d, commit %d", a.Applied, b.CommitIndex)
	})
	logText, _ := os.ReadFile(c.nodes[leader].log)
	if !strings.Contains(string(logText), "restarting from existing state") || strings.Count(string(logText), "bootstrapped new cluster") != 1 {
		t.Fatalf("restart did not reuse the old state:\n%s", logText)
	}

	// Journal, live and offline from a gracefully stopped node.
	live, err := c.raftctl(c.nodes["witness"].api, "journal")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Bootstrapped", "MemberJoined", "HealthChanged", "MaintenanceChanged"} {
		if !strings.Contains(live, want) {
			t.Fatalf("live journal lacks %s:\n%s", want, live)
		}
	}
	if err := c.stop("db2"); err != nil {
		t.Fatalf("graceful stop of db2: %v", err)
	}
	offline, err := c.raftctl("", "journal", "--data-dir", c.nodes["db2"].dataDir, "-o", "json")
	if err != nil {
		t.Fatalf("offline journal: %v\n%s", err, offline)
	}
	var n int
	for _, line := range strings.Split(strings.TrimSpace(offline), "\n") {
		var r fsm.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("offline record %q: %v", line, err)
		}
		n++
	}
	if n < 6 || !strings.Contains(offline, `"Bootstrapped"`) || !strings.Contains(offline, `"MaintenanceChanged"`) {
		t.Fatalf("offline journal has %d records:\n%s", n, offline)
	}
	if out, err := c.raftctl("", "journal", "--data-dir", c.nodes["db1"].dataDir); err == nil || !strings.Contains(out, "in use") {
		t.Fatalf("offline read of a running node should fail: %v %s", err, out)
	}
}
