package owner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/keepraft/keepraft/cmdline"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/vrrp"
)

// foreignEvery bounds how often one foreign VRRP source is journaled.
const foreignEvery = time.Minute

// Hooks are the notify hooks and how they are called: the config's notify section plus
// the values keepalived passes to its generic notify script.
type Hooks struct {
	// Master, Backup and Fault run when this node enters that state, with their own
	// arguments only (keepalived's notify_master, notify_backup and notify_fault).
	Master, Backup, Fault string
	// Any runs on every state change after the state's hook, with INSTANCE <Instance>
	// <MASTER|BACKUP|FAULT> <Priority> appended to its arguments (keepalived's notify).
	Any string
	// Convention is "keepalived" (the command line is split as keepalived splits it and
	// run without a shell; the default, also for "") or conventionShell (run with
	// /bin/sh -c; Any's four values become $1..$4).
	Convention string
	// Instance is the instance name given to Any ("keepraft" when empty).
	Instance string
	// Priority is the priority given to Any; 0 takes this node's priority from the
	// applied membership (vrrp.priority).
	Priority int
	// Timeout bounds each run (hookTimeout when zero): the hook's process group is
	// killed when it expires.
	Timeout time.Duration
}

// conventionShell is notify.convention shell: hooks run with /bin/sh -c.
const conventionShell = "shell"

const (
	// hookOutputMax bounds what is kept of each of a hook's stdout and stderr for the log.
	hookOutputMax = 4096
	// hookWaitDelay bounds the wait for a hook's output once it exited or was killed: a
	// child it left in the background may hold the pipes open.
	hookWaitDelay = time.Second
	// defaultInstance is the instance name given to notify.any when none is configured.
	defaultInstance = "keepraft"
)

// hooks returns the runtime's notify hooks. Config carries the three state hooks only;
// the rest takes the defaults (keepalived convention, instance "keepraft", the
// membership's priority, hookTimeout).
func (o *Owner) hooks() Hooks {
	return o.cfg.Hooks
}

// hookRun is one planned run of a hook.
type hookRun struct {
	key   string   // the config key: "notify.master", ...
	state string   // MASTER, BACKUP or FAULT
	argv  []string // the program and its arguments
	env   []string // added to keepraftd's environment
	err   error    // the command line could not be split; nothing runs
}

// plan returns the runs for node entering state ("master", "backup" or "fault"), in
// keepalived's order: the state's own hook, then Any. priority is given to Any.
func (h Hooks) plan(node, state string, priority int) []hookRun {
	upper := strings.ToUpper(state)
	inst := h.Instance
	if inst == "" {
		inst = defaultInstance
	}
	env := []string{
		"KEEPRAFT_STATE=" + upper, "KEEPRAFT_NODE=" + node,
		"KEEPRAFT_INSTANCE=" + inst, "KEEPRAFT_PRIORITY=" + strconv.Itoa(priority),
	}
	shell := h.Convention == conventionShell
	var runs []hookRun
	add := func(key, cmd string, extra []string) {
		if cmd == "" {
			return
		}
		r := hookRun{key: key, state: upper, env: append(slices.Clone(env), "KEEPRAFT_HOOK="+key)}
		if shell {
			r.argv = []string{"/bin/sh", "-c", cmd}
			if extra != nil {
				r.argv = append(r.argv, "keepraft-notify") // $0
			}
		} else if r.argv, r.err = cmdline.Split(cmd); r.err != nil {
			r.err = fmt.Errorf("%s: %w", key, r.err)
		}
		r.argv = append(r.argv, extra...)
		runs = append(runs, r)
	}
	add("notify."+state, map[string]string{"master": h.Master, "backup": h.Backup, "fault": h.Fault}[state], nil)
	add("notify.any", h.Any, []string{"INSTANCE", inst, upper, strconv.Itoa(priority)})
	return runs
}

// hookResult is what one run did.
type hookResult struct {
	run      hookRun
	exitCode int // -1 when it did not start or was killed by a signal
	timedOut bool
	// heldOpen: the hook exited 0 but left a process holding its output open, which was
	// cut off after hookWaitDelay (the process keeps running).
	heldOpen bool
	err      error
	took     time.Duration
	stdout   capBuffer
	stderr   capBuffer
}

// runHook runs r with stdin from /dev/null, in its own process group, bounded by
// timeout: at the deadline the whole group is killed (SIGKILL to -pid, the group the
// hook leads). Output beyond hookOutputMax per stream is counted, not kept.
func runHook(ctx context.Context, r hookRun, timeout time.Duration) hookResult {
	res := hookResult{run: r, exitCode: -1, stdout: capBuffer{max: hookOutputMax}, stderr: capBuffer{max: hookOutputMax}}
	if r.err != nil {
		res.err = r.err
		return res
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(hctx, r.argv[0], r.argv[1:]...)
	cmd.Env = append(os.Environ(), r.env...)
	cmd.Stdout, cmd.Stderr = &res.stdout, &res.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = hookWaitDelay
	start := time.Now()
	res.err = cmd.Run()
	res.took = time.Since(start)
	if cmd.ProcessState != nil {
		res.exitCode = cmd.ProcessState.ExitCode()
	}
	if errors.Is(res.err, exec.ErrWaitDelay) && res.exitCode == 0 {
		res.err, res.heldOpen = nil, true
	}
	if errors.Is(hctx.Err(), context.DeadlineExceeded) && res.err != nil {
		res.timedOut = true
		res.err = fmt.Errorf("killed after %s: %w", timeout, res.err)
	}
	return res
}

// fields returns the log fields of res.
func (res *hookResult) fields() []zap.Field {
	fs := []zap.Field{
		zap.String("hook", res.run.key), zap.String("state", res.run.state), zap.Strings("command", res.run.argv),
		zap.Int("exit_code", res.exitCode), zap.Duration("took", res.took),
	}
	for _, out := range []struct {
		name string
		b    *capBuffer
	}{{"stdout", &res.stdout}, {"stderr", &res.stderr}} {
		if len(out.b.buf) > 0 {
			fs = append(fs, zap.String(out.name, string(out.b.buf)))
		}
		if out.b.dropped > 0 {
			fs = append(fs, zap.Int(out.name+"_dropped_bytes", out.b.dropped))
		}
	}
	if res.timedOut {
		fs = append(fs, zap.Bool("timed_out", true))
	}
	if res.heldOpen {
		fs = append(fs, zap.Bool("output_held_open", true))
	}
	if res.err != nil {
		fs = append(fs, zap.Error(res.err))
	}
	return fs
}

// notify runs the hooks for entering state ("master", "backup" or "fault") in the
// background, one after the other; Run waits for them. A hook outlives a stop of the
// runtime up to its timeout. Each run is logged with its output; a failure (it could
// not start, exited non-zero or was killed) at error level, and journaled (HookFailed).
func (o *Owner) notify(ctx context.Context, state string) {
	h := o.hooks()
	prio := h.Priority
	if prio == 0 {
		if m := o.d.Node.State().Members[o.cfg.Node]; m != nil {
			prio = m.Priority
		}
	}
	runs := h.plan(o.cfg.Node, state, prio)
	if len(runs) == 0 {
		return
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = hookTimeout
	}
	o.spawn(func() {
		hctx := context.WithoutCancel(ctx)
		for _, r := range runs {
			res := runHook(hctx, r, timeout)
			if res.err != nil {
				o.log.Error("notify hook failed", res.fields()...)
				o.proposeNow(hctx, fsm.HookFailed, fsm.HookFailedData{
					Node: o.cfg.Node, Hook: r.key, State: r.state, Command: r.argv, ExitCode: res.exitCode,
					TimedOut: res.timedOut, Error: res.err.Error(), Stderr: string(res.stderr.buf),
				})
				continue
			}
			o.log.Info("notify hook ran", res.fields()...)
		}
	})
}

// capBuffer keeps the first max bytes written to it and counts the rest. It never fails
// a write, so a chatty hook is not killed by EPIPE.
type capBuffer struct {
	max     int
	buf     []byte
	dropped int
}

func (b *capBuffer) Write(p []byte) (int, error) {
	keep := min(len(p), b.max-len(b.buf))
	b.buf = append(b.buf, p[:keep]...)
	b.dropped += len(p) - keep
	return len(p), nil
}

// OnForeign is the VRRP listener's callback: a foreign master on our VRID while we hold
// the VIP is journaled, at most once per foreignEvery per source. It works only while
// Run runs (the listener runs as one of Run's tasks).
func (o *Owner) OnForeign(r vrrp.Router) {
	o.mu.Lock()
	ctx := o.runCtx
	o.mu.Unlock()
	{
		if ctx == nil || ctx.Err() != nil || !o.holding.Load() {
			return
		}
		now := o.now()
		o.mu.Lock()
		last, seen := o.foreign[r.Src]
		if seen && now-last < foreignEvery {
			o.mu.Unlock()
			return
		}
		o.foreign[r.Src] = now
		o.mu.Unlock()
		o.log.Warn("foreign VRRP master on our VRID", zap.String("source", r.Src.String()), zap.Uint8("priority", r.Priority))
		d := fsm.ForeignData{Source: r.Src.String(), VRID: int(r.VRID), Priority: int(r.Priority), Version: r.Version}
		o.spawn(func() { o.proposeNow(ctx, fsm.ForeignVRRPMasterSeen, d) })
	}
}
