// Command keepraftd runs one keepraft node: a Raft voter that decides, journals and
// enforces which database host owns the MySQL VIP.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keepraft/keepraft/config"
	"github.com/keepraft/keepraft/internal/cpuprofile"
	"github.com/keepraft/keepraft/internal/mancmd"
	"github.com/keepraft/keepraft/internal/sdnotify"
	"github.com/keepraft/keepraft/internal/timerslack"
	"github.com/keepraft/keepraft/node"
	"github.com/keepraft/keepraft/watchdog"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

// rootLong is keepraftd's description in --help and in its man page.
const rootLong = `keepraftd runs one keepraft node: a Raft voter that decides, journals and enforces which
database host owns the MySQL/MariaDB VIP. Two database nodes and a witness form a cluster.

The config file (YAML, conventionally /etc/keepraft/keepraft.yaml) is validated at start;
"keepraftd check-config FILE" prints every error with its key. SIGTERM or SIGINT stops the
node gracefully: an owner gives the VIP up and fences its server first.

Under systemd (Type=notify) keepraftd sends READY=1 once the node runs, a watchdog ping
every half WatchdogSec, and STOPPING=1 when it shuts down. It needs CAP_NET_ADMIN and
CAP_NET_RAW on a database node (addresses, ARP, VRRP, nftables).`

// slack is what main's timerslack.Set did, logged once the logger exists.
var slack struct {
	changed int
	err     error
}

type options struct {
	config string
	noVIP  bool
	// cpuProfile is the hidden --cpuprofile file.
	cpuProfile string
}

func main() {
	// One P: the daemon's work is a few small messages at a time, and with more Ps each
	// of them wakes an idle thread that spins and sleeps again, which cost a third of the
	// idle CPU in the lab. GOMAXPROCS in the environment wins.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	// Early, while the runtime has few threads; later ones inherit the slack.
	slack.changed, slack.err = timerslack.Set(timerslack.Default)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "keepraftd:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var opts options
	root := &cobra.Command{
		Use:           "keepraftd --config FILE",
		Short:         "keepraft node: consensus-backed VIP failover for MySQL dual masters",
		Long:          rootLong,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.config == "" {
				return errors.New("--config is required")
			}
			cfg, err := config.Load(opts.config)
			if err != nil {
				return fmt.Errorf("%s:\n%w", opts.config, err)
			}
			log, err := newLogger(cfg, stderr)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			log = log.With(zap.String("node_id", cfg.Node.ID))
			if err := node.RouteMySQLLog(log); err != nil { // before node.New: each DSN copies the logger
				return err
			}
			log.Info("keepraftd starting", zap.String("version", version), zap.String("config", opts.config), zap.String("role", cfg.Node.Role))
			if slack.err != nil {
				// Not fatal: only the idle cost is higher.
				log.Info("timer slack not raised on every thread (needs CAP_SYS_NICE, or TimerSlackNSec in the unit); idle CPU is higher",
					zap.Duration("slack", timerslack.Default), zap.Error(slack.err))
			}
			n, err := node.New(cfg, log, node.Options{NoVIP: opts.noVIP, Watchdog: watchdog.Command(opts.config), Version: version})
			if err != nil {
				log.Error("start", zap.Error(err))
				return err
			}
			stop, err := cpuprofile.Start(opts.cpuProfile)
			if err != nil {
				return fmt.Errorf("--cpuprofile: %w", err)
			}
			defer stop()
			return sdnotify.New(log).Supervise(cmd.Context(), n)
		},
	}
	root.Flags().StringVarP(&opts.config, "config", "c", "", "path of the YAML config file")
	root.Flags().BoolVar(&opts.noVIP, "no-vip", false, "never touch addresses or send VRRP (Raft-only testing)")
	_ = root.Flags().MarkHidden("no-vip")
	root.Flags().StringVar(&opts.cpuProfile, "cpuprofile", "", "write a Go CPU profile of the whole run to this file (for measuring the idle cost)")
	_ = root.Flags().MarkHidden("cpuprofile")
	root.AddCommand(checkConfigCmd(stdout), importKeepalivedCmd(stdout, stderr), genCertsCmd(stdout), watchdogCmd(stderr), mancmd.Command(stdout, "keepraft "+version))
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.ExecuteContext(ctx)
}

func checkConfigCmd(stdout io.Writer) *cobra.Command {
	var offline bool
	cmd := &cobra.Command{
		Use:   "check-config FILE",
		Short: "validate a config file and print every error with its key",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			var opts []config.Option
			if offline {
				opts = append(opts, config.Offline())
			}
			cfg, err := config.Load(args[0], opts...)
			if err != nil {
				return fmt.Errorf("%s: invalid:\n%w", args[0], err)
			}
			fmt.Fprintf(stdout, "%s: ok (node %s, role %s, %d voters)\n", args[0], cfg.Node.ID, cfg.Node.Role, cfg.Voters())
			return nil
		},
	}
	cmd.Flags().BoolVar(&offline, "offline", false, "check the file only: do not read the secret files or look up hook programs (for a host without the secrets)")
	return cmd
}

func newLogger(cfg *config.Config, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(cfg.Log.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey, ec.EncodeTime = "ts", zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder = zapcore.NewJSONEncoder(ec)
	if cfg.Log.Format == "console" {
		enc = zapcore.NewConsoleEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), lvl)), nil
}
