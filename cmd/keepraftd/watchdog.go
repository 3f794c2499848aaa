package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keepraft/keepraft/config"
	"github.com/keepraft/keepraft/node"
	"github.com/keepraft/keepraft/watchdog"
)

// watchdogCmd is the fence watchdog process keepraftd starts (file descriptor 3 is its
// pipe). It ignores SIGTERM and SIGINT: it ends when keepraftd's pipe closes, after
// fencing the server if the lease it was given runs out first.
func watchdogCmd(stderr io.Writer) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:    watchdog.Subcommand + " --config FILE",
		Short:  "fence the local server when the owner's lease expires (started by keepraftd)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return errors.New("--config is required")
			}
			cfg, err := config.Load(path)
			if err != nil {
				return fmt.Errorf("%s:\n%w", path, err)
			}
			log, err := newLogger(cfg, stderr)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			log = log.With(zap.String("node_id", cfg.Node.ID)).Named("watchdog")
			if err := node.RouteMySQLLog(log); err != nil {
				return err
			}
			pipe := os.NewFile(3, "keepraftd")
			if pipe == nil {
				return errors.New(watchdog.Subcommand + ": no pipe on file descriptor 3 (it is started by keepraftd)")
			}
			signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
			return node.RunWatchdog(cmd.Context(), cfg, pipe, log)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "path of the YAML config file")
	return cmd
}
