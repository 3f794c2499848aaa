// Command keepraft-lab builds and manages the network-namespace lab of package testenv from
// the shell: `up` makes the default lab (db1, db2, witness, client) with MariaDB dual master
// (or MySQL with --flavor mysql) and optionally keepraftd on every node, `down` removes it,
// `status` shows it and who holds the VIP, `exec` runs a command in a host namespace, `mysqld`
// kills, stops or starts a lab database server, `keepraftd` kills, stops, starts, freezes or
// thaws a lab keepraftd, and `mysql-root` builds the Debian sid root the MySQL servers run
// from (`make deps` calls it; later runs reuse the root). The
// lab's state lives in a state file (default /run/keepraft-lab/state.json), so every command
// works on a lab made by an earlier invocation; processes are ended by PID, never by name.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keepraft/keepraft/probe"
	"github.com/keepraft/keepraft/testenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "keepraft-lab:", err)
		os.Exit(1)
	}
}

// exitError carries the exit status of `exec`.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// run builds the command tree and executes it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		statePath string
		verbose   bool
	)
	newLog := func() *zap.Logger {
		level := zapcore.InfoLevel
		if verbose {
			level = zapcore.DebugLevel
		}
		enc := zap.NewDevelopmentEncoderConfig()
		enc.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		return zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(stderr), level))
	}
	root := &cobra.Command{
		Use:           "keepraft-lab",
		Short:         "Network-namespace lab for keepraft (bridge, hosts, MariaDB, keepraftd)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&statePath, "state", testenv.DefaultStatePath, "lab state file")
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "debug logging")

	root.AddCommand(upCmd(ctx, &statePath, newLog, stdout))
	root.AddCommand(downCmd(ctx, &statePath, newLog, stdout))
	root.AddCommand(statusCmd(ctx, &statePath, newLog, stdout))
	root.AddCommand(execCmd(ctx, &statePath, newLog, stdout, stderr))
	root.AddCommand(mysqldCmd(ctx, &statePath, newLog, stdout))
	root.AddCommand(keepraftdCmd(ctx, &statePath, newLog, stdout))
	root.AddCommand(mysqlRootCmd(ctx, newLog, stdout))
	return root.ExecuteContext(ctx)
}

func upCmd(ctx context.Context, statePath *string, newLog func() *zap.Logger, out io.Writer) *cobra.Command {
	var (
		dir, keepraftd, prefix string
		nodes                  []string
		vrrp                   bool
		flavor                 string
	)
	c := &cobra.Command{
		Use:   "up",
		Short: "Create the lab: namespaces, MariaDB dual master, and keepraftd when --keepraftd is given",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			f, err := parseFlavor(flavor)
			if err != nil {
				return err
			}
			log := newLog()
			if s, err := testenv.ReadState(*statePath); err == nil {
				if _, err := os.Stat("/run/netns/" + s.BridgeNS); err == nil {
					return fmt.Errorf("a lab (prefix %s) is already up per %s; run `keepraft-lab down` first", s.Prefix, *statePath)
				}
			}
			if dir == "" {
				d, err := os.MkdirTemp("/var/tmp", "keepraft-lab-")
				if err != nil {
					return fmt.Errorf("make lab dir: %w", err)
				}
				dir = d
			}
			start := time.Now()
			l, err := testenv.New(ctx, log, testenv.Options{
				Prefix: prefix, Dir: dir, KeepDir: true, MariaDB: true, Detach: true, StatePath: *statePath, Flavor: f,
			})
			if err != nil {
				return err
			}
			if keepraftd != "" {
				if err := startKeepraftd(ctx, l, keepraftd, nodes, vrrp); err != nil {
					return errors.Join(err, l.Close())
				}
			}
			fmt.Fprintf(out, "lab %s up in %s\n", l.Prefix, time.Since(start).Round(time.Millisecond))
			printLab(ctx, out, l)
			fmt.Fprintf(out, "\nstate: %s\nremove with: keepraft-lab down --state %s\n", *statePath, *statePath)
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "work dir for datadirs, logs and configs (default a new dir under /var/tmp)")
	c.Flags().StringVar(&keepraftd, "keepraftd", "", "keepraftd binary to start on every node")
	c.Flags().StringSliceVar(&nodes, "nodes", []string{"db1", "db2", "witness"}, "nodes that run keepraftd")
	c.Flags().StringVar(&prefix, "prefix", "krlab", "namespace prefix")
	c.Flags().BoolVar(&vrrp, "vrrp", true, "enable VRRP adverts in the keepraftd configs")
	c.Flags().StringVar(&flavor, "flavor", "mariadb", "database servers: mariadb (from the host) or mysql (mysqld from the Debian sid root, built on first use)")
	return c
}

// parseFlavor checks the --flavor value.
func parseFlavor(s string) (probe.Flavor, error) {
	switch f := probe.Flavor(s); f {
	case probe.FlavorMariaDB, probe.FlavorMySQL:
		return f, nil
	}
	return "", fmt.Errorf("--flavor %q: want mariadb or mysql", s)
}

// mysqlRootCmd builds (or checks) the Debian sid root the lab's MySQL servers run from.
func mysqlRootCmd(ctx context.Context, newLog func() *zap.Logger, out io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "mysql-root",
		Short: "Build the Debian sid root with mysql-server that --flavor mysql runs (once; later runs reuse it)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			root, err := testenv.EnsureMySQLRoot(ctx, newLog())
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "MySQL root ready: %s\n", root)
			return nil
		},
	}
}

// startKeepraftd writes the keepraftd configs and starts one daemon per node.
func startKeepraftd(ctx context.Context, l *testenv.Lab, bin string, nodes []string, vrrp bool) error {
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("keepraftd binary: %w", err)
	}
	ns, err := l.WriteKeepraftdConfigs(testenv.KeepraftdOptions{Nodes: nodes, VRRP: vrrp})
	if err != nil {
		return err
	}
	for _, n := range ns {
		if _, err := l.StartKeepraftd(ctx, bin, n); err != nil {
			return err
		}
	}
	return nil
}

func downCmd(ctx context.Context, statePath *string, newLog func() *zap.Logger, out io.Writer) *cobra.Command {
	var allStale, purge bool
	c := &cobra.Command{
		Use:   "down",
		Short: "End every lab process by PID and delete every lab namespace",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			log := newLog()
			var errs []error
			found := false
			if _, err := os.Stat(*statePath); err == nil {
				found = true
				l, err := testenv.Attach(log, *statePath)
				if err != nil {
					return err
				}
				if err := l.Close(); err != nil {
					errs = append(errs, err)
				} else {
					if purge {
						errs = append(errs, os.RemoveAll(l.Dir))
						fmt.Fprintf(out, "lab %s down, %s removed\n", l.Prefix, l.Dir)
					} else {
						fmt.Fprintf(out, "lab %s down (logs kept in %s)\n", l.Prefix, l.Dir)
					}
				}
			}
			if allStale {
				cleaned, err := testenv.CleanStale(ctx, log)
				errs = append(errs, err)
				for _, p := range cleaned {
					fmt.Fprintf(out, "stale lab %s removed\n", p)
				}
				orphans, err := testenv.CleanOrphanNamespaces(ctx, log)
				errs = append(errs, err)
				for _, ns := range orphans {
					fmt.Fprintf(out, "orphan namespace %s removed\n", ns)
				}
				found = true
			}
			if !found {
				fmt.Fprintf(out, "no lab state at %s (use --all-stale to sweep crashed runs)\n", *statePath)
			}
			return errors.Join(errs...)
		},
	}
	c.Flags().BoolVar(&allStale, "all-stale", false, "also remove labs of dead test processes and orphan lab namespaces")
	c.Flags().BoolVar(&purge, "purge", false, "also delete the lab dir (datadirs, logs)")
	return c
}

func statusCmd(ctx context.Context, statePath *string, newLog func() *zap.Logger, out io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show hosts, namespaces, processes, MariaDB replication and the VIP holder",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			l, err := testenv.Attach(newLog(), *statePath)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "lab %s, dir %s\n", l.Prefix, l.Dir)
			printLab(ctx, out, l)
			holders, withAddr, err := vipHolders(ctx, l)
			if err != nil {
				fmt.Fprintf(out, "\nVIP %s: holder unknown: %v\n", l.VIP.Addr(), err)
				return nil
			}
			fmt.Fprintf(out, "\n%s\n", vipLine(l.VIP, holders, withAddr))
			return nil
		},
	}
}

// printLab prints hosts, processes and MariaDB state.
func printLab(ctx context.Context, out io.Writer, l *testenv.Lab) {
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nHOST\tNAMESPACE\tADDR\tMAC\tNS")
	for _, h := range l.Hosts() {
		fmt.Fprintf(tw, "%s\t%s\t%s/24\t%s\t%s\n", h.Name, h.NS, h.Addr, h.MAC, present("/run/netns/"+h.NS))
	}
	if l.BridgeNS != "" {
		fmt.Fprintf(tw, "(bridge)\t%s\t\t\t%s\n", l.BridgeNS, present("/run/netns/"+l.BridgeNS))
	}
	fmt.Fprintf(tw, "VIP\t\t%s\t\t\n", l.VIP)
	fmt.Fprintln(tw, "\nPROCESS\tHOST\tPID\tSTATE\tLOG")
	for _, p := range l.Procs() {
		state := "running"
		if !p.Alive() {
			state = "gone"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", p.Name, p.Host, p.PID, state, p.LogPath)
	}
	fmt.Fprintln(tw, "\nSERVER\tFLAVOR\tADDR\tSERVER/DOMAIN\tREAD_ONLY\tIO/SQL\tGTID\tERROR")
	for _, m := range l.MariaDBs() {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ro, err := m.QueryString(qctx, "SELECT @@read_only")
		pos, _ := m.GTIDState(qctx)
		ioRun, sqlRun, lastErr, _ := testenv.ReplicationStatus(qctx, m)
		cancel()
		if err != nil {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t-\t-\t-\tdown: %v\n", m.Name, m.Flavor, m.Addr, m.ServerID, m.DomainID, shortErr(err))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s/%s\t%s\t%s\n", m.Name, m.Flavor, m.Addr, m.ServerID, m.DomainID, ro, yes(ioRun), yes(sqlRun), pos, lastErr)
	}
	tw.Flush()
}

func present(path string) string {
	if _, err := os.Stat(path); err != nil {
		return "missing"
	}
	return "ok"
}

func yes(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}

func execCmd(ctx context.Context, statePath *string, newLog func() *zap.Logger, stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "exec HOST -- CMD [ARGS...]",
		Short: "Run a command inside a host's namespace",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			l, err := testenv.Attach(newLog(), *statePath)
			if err != nil {
				return err
			}
			h := l.Host(args[0])
			if h == nil {
				return fmt.Errorf("no host %q in lab %s", args[0], l.Prefix)
			}
			cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS}, args[1:]...)...)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
			if err := cmd.Run(); err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					return &exitError{code: ee.ExitCode()}
				}
				return fmt.Errorf("exec in %s: %w", h.Name, err)
			}
			return nil
		},
	}
}

func mysqldCmd(ctx context.Context, statePath *string, newLog func() *zap.Logger, out io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:       "mysqld HOST kill|stop|start",
		Short:     "Kill (SIGKILL), stop (SIGTERM) or start a lab MariaDB server",
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"kill", "stop", "start"},
		RunE: func(_ *cobra.Command, args []string) error {
			l, err := testenv.Attach(newLog(), *statePath)
			if err != nil {
				return err
			}
			m := l.MariaDB(args[0])
			if m == nil {
				return fmt.Errorf("no MariaDB %q in lab %s", args[0], l.Prefix)
			}
			switch args[1] {
			case "kill":
				err = m.Kill()
			case "stop":
				sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				err = m.Stop(sctx)
			case "start":
				err = m.Start(ctx)
			default:
				return fmt.Errorf("mysqld: unknown action %q (want kill, stop or start)", args[1])
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "mysqld %s: %s done\n", m.Name, args[1])
			return nil
		},
	}
}
