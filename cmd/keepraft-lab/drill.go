package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keepraft/keepraft/testenv"
)

// Drill timing.
const (
	// defaultStopWait is how long `keepraftd HOST stop` waits after SIGTERM before SIGKILL.
	defaultStopWait = 30 * time.Second
	// goneWait bounds the wait for an adopted process that is dead to be marked exited, so
	// the state file written by the next start no longer lists it.
	goneWait = time.Second
	// startSettle is how long `keepraftd HOST start` watches the new daemon before it
	// reports it started: a bad config or a taken port ends it within this.
	startSettle = 500 * time.Millisecond
)

// drillLab is what the keepraftd drills use of a lab ([testenv.Lab] satisfies it).
type drillLab interface {
	Procs() []*testenv.Proc
	Host(name string) *testenv.Host
	Spawn(h *testenv.Host, name string, argv []string, env []string) (*testenv.Proc, error)
}

// drill is one `keepraft-lab keepraftd HOST ACTION`.
type drill struct {
	host, action string
	// bin replaces the recorded binary of a start; dir is the lab dir, where
	// WriteKeepraftdConfigs put keepraft/<host>.yaml.
	bin, dir string
	stopWait time.Duration
}

var drillActions = []string{"kill", "stop", "start", "freeze", "thaw"}

func keepraftdCmd(ctx context.Context, statePath *string, newLog func() *zap.Logger, out io.Writer) *cobra.Command {
	var (
		bin      string
		stopWait time.Duration
	)
	c := &cobra.Command{
		Use:   "keepraftd HOST kill|stop|start|freeze|thaw",
		Short: "Drill a lab keepraftd by PID: kill (SIGKILL), stop (SIGTERM, wait), start, freeze (SIGSTOP), thaw (SIGCONT)",
		Long: `Drill a lab keepraftd by the PID in the lab's state file. kill sends SIGKILL and stop
SIGTERM (SIGKILL after --stop-wait) and waits for the exit; freeze and thaw send SIGSTOP and
SIGCONT. They reach keepraftd's process group, not its fence watchdog, which runs in a group
of its own as in production: after a kill or freeze the watchdog fences the server when the
lease runs out. start runs the command line the lab recorded for that keepraftd again
(--bin replaces its binary).`,
		Args:      cobra.ExactArgs(2),
		ValidArgs: drillActions,
		RunE: func(_ *cobra.Command, args []string) error {
			l, err := testenv.Attach(newLog(), *statePath)
			if err != nil {
				return err
			}
			return drill{host: args[0], action: args[1], bin: bin, dir: l.Dir, stopWait: stopWait}.run(ctx, l, out)
		},
	}
	c.Flags().StringVar(&bin, "bin", "", "keepraftd binary for start (default: the one the lab started)")
	c.Flags().DurationVar(&stopWait, "stop-wait", defaultStopWait, "how long stop waits after SIGTERM before SIGKILL")
	return c
}

// keepraftdName is the process name [testenv.Lab.StartKeepraftd] gives a host's daemon.
func keepraftdName(host string) string { return "keepraftd-" + host }

// findKeepraftd returns host's keepraftd processes of the lab: the last one still alive
// (nil when none) and the last one recorded (nil when none), whose command line a start
// reuses.
func findKeepraftd(procs []*testenv.Proc, host string) (live, last *testenv.Proc) {
	for _, p := range procs {
		if p.Name != keepraftdName(host) {
			continue
		}
		last = p
		if p.Alive() {
			live = p
		}
	}
	return live, last
}

func (d drill) run(ctx context.Context, l drillLab, out io.Writer) error {
	if !slices.Contains(drillActions, d.action) {
		return fmt.Errorf("keepraftd: unknown action %q (want %s)", d.action, strings.Join(drillActions, ", "))
	}
	procs := l.Procs()
	live, last := findKeepraftd(procs, d.host)
	if d.action == "start" {
		return d.start(ctx, l, procs, live, last, out)
	}
	if live == nil {
		return fmt.Errorf("keepraftd %s %s: no running keepraftd on %s in the lab state", d.host, d.action, d.host)
	}
	var err error
	switch d.action {
	case "kill":
		err = live.Kill()
	case "stop":
		sctx, cancel := context.WithTimeout(ctx, d.stopWait)
		defer cancel()
		err = live.Stop(sctx)
	case "freeze":
		err = live.Freeze()
	case "thaw":
		err = live.Thaw()
	}
	if err != nil {
		return fmt.Errorf("keepraftd %s %s: %w", d.host, d.action, err)
	}
	fmt.Fprintf(out, "keepraftd %s (pid %d): %s done\n", d.host, live.PID, d.action)
	return nil
}

// start runs host's keepraftd again with its recorded command line (or --bin and the
// lab's config of host), after the dead ones are marked exited.
func (d drill) start(ctx context.Context, l drillLab, procs []*testenv.Proc, live, last *testenv.Proc, out io.Writer) error {
	if live != nil {
		return fmt.Errorf("keepraftd %s start: already running (pid %d)", d.host, live.PID)
	}
	h := l.Host(d.host)
	if h == nil {
		return fmt.Errorf("keepraftd %s start: no host %q in the lab", d.host, d.host)
	}
	argv, err := d.argv(last)
	if err != nil {
		return err
	}
	for _, p := range procs {
		if p.Name != keepraftdName(d.host) {
			continue
		}
		select {
		case <-p.Done():
		case <-time.After(goneWait):
			return fmt.Errorf("keepraftd %s start: old pid %d not seen exiting within %s", d.host, p.PID, goneWait)
		}
	}
	p, err := l.Spawn(h, keepraftdName(d.host), argv, nil)
	if err != nil {
		return fmt.Errorf("keepraftd %s start: %w", d.host, err)
	}
	select {
	case <-p.Done():
		return fmt.Errorf("keepraftd %s start: exited at once (pid %d):\n%s", d.host, p.PID, p.Tail(20))
	case <-ctx.Done():
		return fmt.Errorf("keepraftd %s start: %w", d.host, ctx.Err())
	case <-time.After(startSettle):
	}
	fmt.Fprintf(out, "keepraftd %s (pid %d): started, log %s\n", d.host, p.PID, p.LogPath)
	return nil
}

// argv is the command line of a start: the recorded one, its binary replaced by --bin;
// without a record, --bin with the config the lab writes for host.
func (d drill) argv(last *testenv.Proc) ([]string, error) {
	if last != nil && len(last.Argv) > 0 {
		argv := slices.Clone(last.Argv)
		if d.bin != "" {
			abs, err := filepath.Abs(d.bin)
			if err != nil {
				return nil, fmt.Errorf("keepraftd %s start: --bin %s: %w", d.host, d.bin, err)
			}
			argv[0] = abs
		}
		return argv, nil
	}
	if d.bin == "" {
		return nil, fmt.Errorf("keepraftd %s start: the lab state records no keepraftd command for %s; give --bin", d.host, d.host)
	}
	abs, err := filepath.Abs(d.bin)
	if err != nil {
		return nil, fmt.Errorf("keepraftd %s start: --bin %s: %w", d.host, d.bin, err)
	}
	return []string{abs, "--config", filepath.Join(d.dir, "keepraft", d.host+".yaml")}, nil
}

// vipLine describes who holds vip: the holders (address present and, with a keepraftd
// fence, the fence open) and the hosts that have the address behind a closed fence.
func vipLine(vip netip.Prefix, holders, withAddr []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "VIP %s: ", vip.Addr())
	switch len(holders) {
	case 0:
		b.WriteString("no holder")
	case 1:
		b.WriteString("held by " + holders[0])
	default:
		b.WriteString("held by " + strings.Join(holders, ", ") + " (MORE THAN ONE HOLDER)")
	}
	var fenced []string
	for _, h := range withAddr {
		if !slices.Contains(holders, h) {
			fenced = append(fenced, h)
		}
	}
	if len(fenced) > 0 {
		fmt.Fprintf(&b, "; address behind a closed fence on %s", strings.Join(fenced, ", "))
	}
	return b.String()
}

// vipHolders reads who holds the lab's VIP now with a short-lived [testenv.Tracker]: the
// holders, and every host whose dump showed the address.
func vipHolders(ctx context.Context, l *testenv.Lab) (holders, withAddr []string, err error) {
	tr, err := l.TrackHolders(ctx, l.VIP.Addr())
	if err != nil {
		return nil, nil, err
	}
	holders = tr.Holders()
	for _, ev := range tr.Events() {
		if ev.Seed && ev.Added && !slices.Contains(withAddr, ev.Host) {
			withAddr = append(withAddr, ev.Host)
		}
	}
	err = tr.Close()
	slices.Sort(holders)
	slices.Sort(withAddr)
	return holders, withAddr, err
}
