package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keepraft/keepraft/config"
	"github.com/keepraft/keepraft/node"
)

// watchdogCommand builds the command keepraftd starts as its fence watchdog: this same
// binary, in its own process group (a signal to keepraftd's group must not stop it).
func watchdogCommand(configPath string) func() *exec.Cmd {
	return func() *exec.Cmd {
		exe, err := os.Executable()
		if err != nil {
			exe = os.Args[0]
		}
		path, err := filepath.Abs(configPath)
		if err != nil {
			path = configPath
		}
		cmd := exec.Command(exe, "fence-watchdog", "--config", path)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return cmd
	}
}

// watchdogCmd is the fence watchdog process keepraftd starts (file descriptor 3 is its
// pipe). It ignores SIGTERM and SIGINT: it ends when keepraftd's pipe closes, after
// fencing the server if the lease it was given runs out first.
func watchdogCmd(stderr io.Writer) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:    "fence-watchdog --config FILE",
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
				return errors.New("fence-watchdog: no pipe on file descriptor 3 (it is started by keepraftd)")
			}
			signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
			return node.RunWatchdog(cmd.Context(), cfg, pipe, log)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "path of the YAML config file")
	return cmd
}
