package owner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/cmdline"
	"github.com/keepraft/keepraft/fsm"
)

func TestHookPlan(t *testing.T) {
	env := func(state, hook string) []string {
		return []string{"KEEPRAFT_STATE=" + state, "KEEPRAFT_NODE=db1", "KEEPRAFT_INSTANCE=VI_1", "KEEPRAFT_PRIORITY=100", "KEEPRAFT_HOOK=" + hook}
	}
	all := Hooks{Master: "/x/m.sh 'a b' c", Backup: "/x/b.sh", Fault: "/x/f.sh", Any: "/x/any.sh --tag kr", Instance: "VI_1"}
	shell := all
	shell.Convention = conventionShell
	tests := []struct {
		name  string
		hooks Hooks
		state string
		want  []hookRun
	}{
		{"keepalived master then any", all, "master", []hookRun{
			{key: "notify.master", state: "MASTER", argv: []string{"/x/m.sh", "a b", "c"}, env: env("MASTER", "notify.master")},
			{key: "notify.any", state: "MASTER", argv: []string{"/x/any.sh", "--tag", "kr", "INSTANCE", "VI_1", "MASTER", "100"}, env: env("MASTER", "notify.any")},
		}},
		{"keepalived fault", all, "fault", []hookRun{
			{key: "notify.fault", state: "FAULT", argv: []string{"/x/f.sh"}, env: env("FAULT", "notify.fault")},
			{key: "notify.any", state: "FAULT", argv: []string{"/x/any.sh", "--tag", "kr", "INSTANCE", "VI_1", "FAULT", "100"}, env: env("FAULT", "notify.any")},
		}},
		{"shell convention", shell, "backup", []hookRun{
			{key: "notify.backup", state: "BACKUP", argv: []string{"/bin/sh", "-c", "/x/b.sh"}, env: env("BACKUP", "notify.backup")},
			{key: "notify.any", state: "BACKUP", argv: []string{"/bin/sh", "-c", "/x/any.sh --tag kr", "keepraft-notify", "INSTANCE", "VI_1", "BACKUP", "100"}, env: env("BACKUP", "notify.any")},
		}},
		{"only any, default instance", Hooks{Any: "/x/any.sh"}, "backup", []hookRun{
			{key: "notify.any", state: "BACKUP", argv: []string{"/x/any.sh", "INSTANCE", "keepraft", "BACKUP", "100"},
				env: []string{"KEEPRAFT_STATE=BACKUP", "KEEPRAFT_NODE=db1", "KEEPRAFT_INSTANCE=keepraft", "KEEPRAFT_PRIORITY=100", "KEEPRAFT_HOOK=notify.any"}},
		}},
		{"no hooks", Hooks{Master: "/x/m.sh"}, "backup", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.hooks.plan("db1", tt.state, 100)
			if len(got) != len(tt.want) {
				t.Fatalf("plan = %+v, want %+v", got, tt.want)
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if g.key != w.key || g.state != w.state || !slices.Equal(g.argv, w.argv) || !slices.Equal(g.env, w.env) || g.err != nil {
					t.Errorf("run %d = %+v\nwant %+v", i, g, w)
				}
			}
		})
	}
}

func TestHookPlanBadCommand(t *testing.T) {
	runs := Hooks{Master: "/x/m.sh 'open"}.plan("db1", "master", 1)
	if len(runs) != 1 || !errors.Is(runs[0].err, cmdline.ErrCommand) || !strings.HasPrefix(runs[0].err.Error(), "notify.master: ") {
		t.Fatalf("runs = %+v", runs)
	}
	res := runHook(context.Background(), runs[0], time.Second)
	if res.err == nil || res.exitCode != -1 {
		t.Fatalf("a command that cannot be split ran: %+v", res)
	}
}

// script writes an executable shell script into dir and returns its path.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// gone reports whether the process pid has exited and been reaped, waiting up to 3 s.
func gone(pid int) bool {
	for range 60 {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return true
		}
		// a zombie is dead too: its parent (init or a subreaper) reaps it later
		if f := strings.Fields(string(b)); len(f) > 2 && f[2] == "Z" {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestRunHook(t *testing.T) {
	dir := t.TempDir()
	args := script(t, dir, "args.sh", `for a in "$@"; do printf '<%s>' "$a"; done; echo " $KEEPRAFT_STATE $KEEPRAFT_NODE $KEEPRAFT_HOOK"; echo oops >&2`)
	fail := script(t, dir, "fail.sh", "echo 'no route to pager' >&2; exit 3\n")
	chatty := script(t, dir, "chatty.sh", "i=0; while [ $i -lt 100 ]; do printf '%0100d' 0; i=$((i+1)); done\n")
	tests := []struct {
		name       string
		hooks      Hooks
		state      string
		wantExit   []int
		wantStdout []string
		wantStderr []string
		wantErr    []bool
		dropped    []int
	}{
		{"keepalived arguments and environment", Hooks{Master: args + " 'one two' three", Any: args, Instance: "VI_1"}, "master",
			[]int{0, 0},
			[]string{"<one two><three> MASTER db1 notify.master\n", "<INSTANCE><VI_1><MASTER><90> MASTER db1 notify.any\n"},
			[]string{"oops\n", "oops\n"}, []bool{false, false}, []int{0, 0}},
		{"shell convention", Hooks{Fault: args + ` "$KEEPRAFT_STATE" | tr a-z A-Z`, Any: args + ` "$@"`, Convention: conventionShell}, "fault",
			[]int{0, 0},
			[]string{"<FAULT> FAULT DB1 NOTIFY.FAULT\n", "<INSTANCE><keepraft><FAULT><90> FAULT db1 notify.any\n"},
			[]string{"oops\n", "oops\n"}, []bool{false, false}, []int{0, 0}},
		{"non-zero exit", Hooks{Backup: fail}, "backup", []int{3}, []string{""}, []string{"no route to pager\n"}, []bool{true}, []int{0}},
		{"missing program", Hooks{Backup: filepath.Join(dir, "nope.sh")}, "backup", []int{-1}, []string{""}, []string{""}, []bool{true}, []int{0}},
		{"output bounded", Hooks{Master: chatty}, "master", []int{0}, []string{strings.Repeat("0", hookOutputMax)}, []string{""}, []bool{false}, []int{10000 - hookOutputMax}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runs := tt.hooks.plan("db1", tt.state, 90)
			if len(runs) != len(tt.wantExit) {
				t.Fatalf("%d runs planned, want %d", len(runs), len(tt.wantExit))
			}
			for i, r := range runs {
				res := runHook(context.Background(), r, 5*time.Second)
				if res.exitCode != tt.wantExit[i] || string(res.stdout.buf) != tt.wantStdout[i] || string(res.stderr.buf) != tt.wantStderr[i] ||
					(res.err != nil) != tt.wantErr[i] || res.stdout.dropped != tt.dropped[i] || res.timedOut {
					t.Errorf("run %d (%q): exit %d err %v timedOut %v\nstdout %q (dropped %d)\nstderr %q\nwant exit %d stdout %q (dropped %d) stderr %q err %v",
						i, r.argv, res.exitCode, res.err, res.timedOut, res.stdout.buf, res.stdout.dropped, res.stderr.buf,
						tt.wantExit[i], tt.wantStdout[i], tt.dropped[i], tt.wantStderr[i], tt.wantErr[i])
				}
			}
		})
	}
}

// TestRunHookTimeoutKillsGroup checks that a hook past its timeout is killed with every
// process it started, and that the run returns promptly.
func TestRunHookTimeoutKillsGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	hang := script(t, dir, "hang.sh", "sleep 30 &\necho $! > "+pidFile+"\necho started\nsleep 30\n")
	runs := Hooks{Master: hang}.plan("db1", "master", 1)
	start := time.Now()
	res := runHook(context.Background(), runs[0], 300*time.Millisecond)
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("runHook took %s after a 300ms timeout", took)
	}
	child := readPID(t, pidFile)
	t.Cleanup(func() {
		if !gone(child) {
			_ = syscall.Kill(child, syscall.SIGKILL)
		}
	})
	if !res.timedOut || res.err == nil || res.exitCode != -1 || string(res.stdout.buf) != "started\n" {
		t.Fatalf("result: timedOut %v err %v exit %d stdout %q", res.timedOut, res.err, res.exitCode, res.stdout.buf)
	}
	if !strings.Contains(res.err.Error(), "killed after 300ms") {
		t.Errorf("err = %v", res.err)
	}
	if !gone(child) {
		t.Fatalf("the hook's background child %d survived the timeout", child)
	}
}

// TestRunHookBackgroundChild checks that a hook that exits 0 but leaves a child holding
// its output succeeds, with the output cut off after hookWaitDelay.
func TestRunHookBackgroundChild(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	bg := script(t, dir, "bg.sh", "sleep 20 &\necho $! > "+pidFile+"\necho done\n")
	res := runHook(context.Background(), Hooks{Master: bg}.plan("db1", "master", 1)[0], 10*time.Second)
	child := readPID(t, pidFile)
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	if res.err != nil || res.exitCode != 0 || !res.heldOpen || string(res.stdout.buf) != "done\n" || res.took > 5*time.Second {
		t.Fatalf("result: err %v exit %d heldOpen %v stdout %q took %s", res.err, res.exitCode, res.heldOpen, res.stdout.buf, res.took)
	}
}

// hookNode is the little of Node that notify reads: the applied membership.
// hookNode is a Node for the hook tests: it records what is proposed and applies nothing.
type hookNode struct {
	s        fsm.State
	mu       *sync.Mutex
	proposed *[]fsm.Event
}

func (n hookNode) State() fsm.State           { return n.s }
func (n hookNode) Watch() <-chan struct{}     { return make(chan struct{}) }
func (n hookNode) CaughtUp() bool             { return true }
func (n hookNode) Peers() map[string]api.Peer { return nil }
func (n hookNode) Propose(_ context.Context, ev fsm.Event) (api.ProposeResponse, error) {
	if n.mu == nil {
		return api.ProposeResponse{}, errors.New("hookNode: no proposals")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	*n.proposed = append(*n.proposed, ev)
	return api.ProposeResponse{Result: fsm.ResultApplied}, nil
}

// TestNotifyLogs runs the runtime's notify and checks its JSON log: a success at info,
// a failure at error, each with the command, exit code and captured output.
func TestNotifyLogs(t *testing.T) {
	dir := t.TempDir()
	ok := script(t, dir, "ok.sh", `echo "$3 $KEEPRAFT_PRIORITY"`+"\n")
	bad := script(t, dir, "bad.sh", "echo bad >&2; exit 2\n")
	var buf bytes.Buffer
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = ""
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(ec), zapcore.AddSync(&buf), zapcore.DebugLevel))
	s := fsm.State{Members: map[string]*fsm.NodeState{"db1": {Member: fsm.Member{ID: "db1", Role: fsm.RoleDatabase, Priority: 150}}}}
	var proposed []fsm.Event
	node := hookNode{s: s, mu: &sync.Mutex{}, proposed: &proposed}
	o := &Owner{cfg: Config{Node: "db1", Hooks: Hooks{Master: bad, Backup: ok}}, log: log, d: Deps{Node: node}, metrics: newMetrics()}

	o.notify(context.Background(), "master")
	o.notify(context.Background(), "fault") // no hook: nothing runs
	o.bg.Wait()
	o.cfg.Hooks.Master = ok + " INSTANCE x MASTER"
	o.notify(context.Background(), "master")
	o.bg.Wait()

	var got []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		delete(m, "took")
		got = append(got, m)
	}
	want := []map[string]any{
		{"level": "error", "msg": "notify hook failed", "hook": "notify.master", "state": "MASTER", "command": []any{bad},
			"exit_code": 2.0, "stderr": "bad\n", "error": "exit status 2"},
		{"level": "info", "msg": "notify hook ran", "hook": "notify.master", "state": "MASTER", "command": []any{ok, "INSTANCE", "x", "MASTER"},
			"exit_code": 0.0, "stdout": "MASTER 150\n"},
	}
	if len(got) != len(want) {
		t.Fatalf("logged %v\nwant %v", got, want)
	}
	// The failure is journaled too, and only the failure.
	var d fsm.HookFailedData
	if len(proposed) != 1 || proposed[0].Type != fsm.HookFailed || proposed[0].Payload(&d) != nil ||
		d.Node != "db1" || d.Hook != "notify.master" || d.State != "MASTER" || d.ExitCode != 2 || d.Stderr != "bad\n" {
		t.Fatalf("proposed %+v (%+v), want one HookFailed for notify.master exit 2", proposed, d)
	}
	for i := range want {
		if gb, _ := json.Marshal(got[i]); string(gb) != mustJSON(t, want[i]) {
			t.Errorf("line %d = %s\nwant      %s", i, gb, mustJSON(t, want[i]))
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
