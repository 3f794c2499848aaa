// Command raftctl is the operator CLI of keepraft: cluster status, members, the failover
// journal (live or from a stopped node's data dir), the ownership history, switchover
// and maintenance.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/internal/mancmd"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitError ends raftctl with a chosen exit code (status's verdict); msg, when not
// empty, is printed to stderr.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return fmt.Sprintf("exit code %d", e.code)
}

// exitCode maps run's error to the process's exit code, printing what needs printing:
// nil is 0, an *exitError its code, any other error 1.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	if e, ok := errors.AsType[*exitError](err); ok {
		if e.msg != "" {
			fmt.Fprintln(stderr, "raftctl:", e.msg)
		}
		return e.code
	}
	fmt.Fprintln(stderr, "raftctl:", err)
	return 1
}

type cli struct {
	// addrFlag is --addr as given; addrs the parsed list, good the last one that answered.
	addrFlag  string
	addrs     []string
	good      string
	tokenFile string
	// ca, cert and key are the mutual-TLS files (an HTTPS API needs them).
	ca, cert, key string
	output        string
	timeout       time.Duration
	out           io.Writer
	// loc is the zone times print in.
	loc     *time.Location
	clients map[bool]*api.Client
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, args []string, out io.Writer) error {
	return runIn(ctx, args, out, time.Local)
}

// runIn is run with times printed in loc.
func runIn(ctx context.Context, args []string, out io.Writer, loc *time.Location) error {
	c := &cli{out: out, loc: loc, clients: map[bool]*api.Client{}}
	root := &cobra.Command{
		Use:           "raftctl",
		Short:         "inspect and steer a keepraft cluster",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if c.output != "text" && c.output != "json" {
				return fmt.Errorf("-o: must be text or json, got %q", c.output)
			}
			// Commands that read a data dir need no address; client() refuses an empty list.
			addrs, err := parseAddrs(c.addrFlag)
			if err != nil && strings.TrimSpace(strings.ReplaceAll(c.addrFlag, ",", "")) != "" {
				return err
			}
			c.addrs = addrs
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&c.addrFlag, "addr", envOr("KEEPRAFT_ADDR", "127.0.0.1:7001"), "admin API address of any node, or several comma-separated, tried in order until one answers (env KEEPRAFT_ADDR)")
	pf.StringVar(&c.tokenFile, "token-file", envOr("KEEPRAFT_TOKEN_FILE", "/etc/keepraft/token"), "bearer token file for mutating calls (env KEEPRAFT_TOKEN_FILE)")
	pf.StringVar(&c.ca, "ca", os.Getenv("KEEPRAFT_CA"), "cluster CA (PEM) for an API under mutual TLS (env KEEPRAFT_CA)")
	pf.StringVar(&c.cert, "cert", os.Getenv("KEEPRAFT_CERT"), "client certificate (PEM) from the cluster CA (env KEEPRAFT_CERT)")
	pf.StringVar(&c.key, "key", os.Getenv("KEEPRAFT_KEY"), "client key (PEM) (env KEEPRAFT_KEY)")
	pf.StringVarP(&c.output, "output", "o", "text", "output format: text or json")
	pf.DurationVar(&c.timeout, "timeout", 5*time.Second, "timeout of one API call")
	root.AddCommand(c.statusCmd(), c.membersCmd(), c.journalCmd(), c.historyCmd(), c.switchoverCmd(), c.maintenanceCmd(), c.pauseCmd(), c.resumeCmd(), c.failoverCmd(), c.rejoinCmd(), c.configCheckCmd(), mancmd.Command(out, "keepraft "+version))
	root.SetArgs(args)
	root.SetOut(out)
	return root.ExecuteContext(ctx)
}

func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
