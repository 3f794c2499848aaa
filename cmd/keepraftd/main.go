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
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keepraft/keepraft/config"
	"github.com/keepraft/keepraft/node"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

type options struct {
	config string
	noVIP  bool
}

func main() {
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
			n, err := node.New(cfg, log, node.Options{NoVIP: opts.noVIP, Watchdog: watchdogCommand(opts.config)})
			if err != nil {
				log.Error("start", zap.Error(err))
				return err
			}
			return n.Run(cmd.Context())
		},
	}
	root.Flags().StringVarP(&opts.config, "config", "c", "", "path of the YAML config file")
	root.Flags().BoolVar(&opts.noVIP, "no-vip", false, "never touch addresses or send VRRP (Raft-only testing)")
	_ = root.Flags().MarkHidden("no-vip")
	root.AddCommand(checkConfigCmd(stdout), importKeepalivedCmd(stdout, stderr), genCertsCmd(stdout), watchdogCmd(stderr))
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.ExecuteContext(ctx)
}

func checkConfigCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "check-config FILE",
		Short: "validate a config file and print every error with its key",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			cfg, err := config.Load(args[0])
			if err != nil {
				return fmt.Errorf("%s: invalid:\n%w", args[0], err)
			}
			fmt.Fprintf(stdout, "%s: ok (node %s, role %s, %d voters)\n", args[0], cfg.Node.ID, cfg.Node.Role, cfg.Voters())
			return nil
		},
	}
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
