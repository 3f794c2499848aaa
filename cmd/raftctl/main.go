// Command raftctl is the operator CLI of keepraft: cluster status, members, the failover
// journal (live or from a stopped node's data dir), switchover and maintenance.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/mtls"
	"github.com/keepraft/keepraft/store"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "raftctl:", err)
		os.Exit(1)
	}
}

type cli struct {
	addr      string
	tokenFile string
	// ca, cert and key are the mutual-TLS files (an HTTPS API needs them).
	ca, cert, key string
	output        string
	timeout       time.Duration
	out           io.Writer
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, args []string, out io.Writer) error {
	c := &cli{out: out}
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
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&c.addr, "addr", envOr("KEEPRAFT_ADDR", "127.0.0.1:7001"), "admin API address of any node (env KEEPRAFT_ADDR)")
	pf.StringVar(&c.tokenFile, "token-file", envOr("KEEPRAFT_TOKEN_FILE", "/etc/keepraft/token"), "bearer token file for mutating calls (env KEEPRAFT_TOKEN_FILE)")
	pf.StringVar(&c.ca, "ca", os.Getenv("KEEPRAFT_CA"), "cluster CA (PEM) for an API under mutual TLS (env KEEPRAFT_CA)")
	pf.StringVar(&c.cert, "cert", os.Getenv("KEEPRAFT_CERT"), "client certificate (PEM) from the cluster CA (env KEEPRAFT_CERT)")
	pf.StringVar(&c.key, "key", os.Getenv("KEEPRAFT_KEY"), "client key (PEM) (env KEEPRAFT_KEY)")
	pf.StringVarP(&c.output, "output", "o", "text", "output format: text or json")
	pf.DurationVar(&c.timeout, "timeout", 5*time.Second, "timeout of one API call")
	root.AddCommand(c.statusCmd(), c.membersCmd(), c.journalCmd(), c.switchoverCmd(), c.maintenanceCmd())
	root.SetArgs(args)
	root.SetOut(out)
	return root.ExecuteContext(ctx)
}

// call sends one API request to --addr. With --cert the API is reached over mutual TLS
// and the certificate is the credential; otherwise auth adds the bearer token from
// --token-file.
func (c *cli) call(ctx context.Context, method, path string, body, out any, auth bool) error {
	if c.cert != "" || c.key != "" || c.ca != "" {
		if c.cert == "" || c.key == "" || c.ca == "" {
			return fmt.Errorf("--ca, --cert and --key go together (got ca %q, cert %q, key %q)", c.ca, c.cert, c.key)
		}
		b, err := mtls.Load(mtls.Files{CA: c.ca, Cert: c.cert, Key: c.key})
		if err != nil {
			return err
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: b.ClientConfig("")}}
		return api.NewTLSClient("", hc).Do(ctx, method, c.addr, path, body, out, c.timeout)
	}
	token := ""
	if auth {
		tok, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		token = strings.TrimSpace(string(tok))
	}
	return api.NewClient(token, http.DefaultClient).Do(ctx, method, c.addr, path, body, out, c.timeout)
}

func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (c *cli) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "leader, term, commit index, members, owner and epoch",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st api.Status
			if err := c.call(cmd.Context(), http.MethodGet, "/v1/status", nil, &st, false); err != nil {
				return err
			}
			if c.output == "json" {
				return c.printJSON(st)
			}
			owner := st.Owner
			if owner == "" {
				owner = "(none)"
			}
			fmt.Fprintf(c.out, "node:     %s (%s, raft %s)\n", st.Node, st.Role, st.RaftState)
			fmt.Fprintf(c.out, "leader:   %s   term: %d   commit: %d   applied: %d\n", orDash(st.Leader), st.Term, st.CommitIndex, st.Applied)
			fmt.Fprintf(c.out, "owner:    %s   epoch: %d   phase: %s", owner, st.Epoch, st.Phase)
			if !st.PhaseSince.IsZero() {
				fmt.Fprintf(c.out, " since %s", st.PhaseSince.Local().Format(time.RFC3339))
			}
			fmt.Fprintln(c.out)
			fmt.Fprintf(c.out, "control plane: %s\n", orDash(st.ControlPlane))
			if st.StaleEvents > 0 {
				fmt.Fprintf(c.out, "stale:    %d events rejected by compare-and-set\n", st.StaleEvents)
			}
			for _, f := range st.Foreign {
				fmt.Fprintf(c.out, "WARNING:  foreign VRRP master %s on VRID %d (priority %d, v%d)\n", f.Source, f.VRID, f.Priority, f.Version)
			}
			fmt.Fprintln(c.out)
			c.memberTable(st.Members)
			if st.Role == fsm.RoleDatabase {
				l := st.Local
				fmt.Fprintf(c.out, "\nlocal (%s): holding VIP %v, lease valid %v (%d ms left), promoted %v\n", st.Node, l.Holding, l.LeaseValid, l.LeaseLeftMS, l.Promoted)
				if l.MySQLHealthy != nil {
					fmt.Fprintf(c.out, "  mysql healthy %v %s, read_only %s\n", *l.MySQLHealthy, l.MySQLDetail, ptrBool(l.ReadOnly))
				}
				if l.GTID != "" {
					fmt.Fprintf(c.out, "  gtid %s\n", l.GTID)
				}
				if l.Replication != "" {
					fmt.Fprintf(c.out, "  replication %s\n", l.Replication)
				}
				for _, m := range st.Members {
					if m.ID == st.Node && m.SemiSync != "" {
						fmt.Fprintf(c.out, "  semi-sync (journaled) %s\n", m.SemiSync)
					}
				}
			}
			return nil
		},
	}
}

// shortView trims error details from the peer view for the table; -o json has them all.
func shortView(v string) string {
	var out []string
	for _, part := range strings.Split(v, "; ") {
		if i := strings.Index(part, "down: "); i >= 0 {
			part = part[:i+len("down")]
		}
		if part != "" {
			out = append(out, part)
		}
	}
	return strings.Join(out, ",")
}

func ptrBool(b *bool) string {
	if b == nil {
		return "-"
	}
	return strconv.FormatBool(*b)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *cli) memberTable(ms []api.MemberStatus) {
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tSUFFRAGE\tRAFT\tLAST CONTACT\tAPPLIED\tPRIO\tMYSQL\tPEER VIEW\tMAINT\tOWNER\tREPLICATION")
	for _, m := range ms {
		health := "-"
		if m.Healthy != nil {
			health = "down"
			if *m.Healthy {
				health = "up"
			}
		}
		owner := ""
		if m.Owner {
			owner = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%v\t%s\t%s\n", m.ID, orDash(string(m.Role)), orDash(m.Suffrage), orDash(m.RaftState), orDash(m.LastContact), m.Applied, m.Priority, health, orDash(shortView(m.PeerView)), m.Maintenance, owner, orDash(m.Replication))
	}
	tw.Flush()
}

func (c *cli) membersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "the voters with role, raft state and last contact",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ms []api.MemberStatus
			if err := c.call(cmd.Context(), http.MethodGet, "/v1/members", nil, &ms, false); err != nil {
				return err
			}
			if c.output == "json" {
				return c.printJSON(ms)
			}
			c.memberTable(ms)
			return nil
		},
	}
}

func (c *cli) journalCmd() *cobra.Command {
	var since uint64
	var follow bool
	var dataDir string
	cmd := &cobra.Command{
		Use:   "journal",
		Short: "the committed event journal (live, or offline with --data-dir)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir != "" {
				if follow {
					return errors.New("--follow needs a running node, not --data-dir")
				}
				j, err := store.ReadJournal(dataDir)
				if err != nil {
					return err
				}
				var recs []fsm.Record
				for _, r := range j.Records {
					if r.Index > since {
						recs = append(recs, r)
					}
				}
				return c.printRecords(recs, true)
			}
			first := true
			for {
				q := url.Values{"since": {strconv.FormatUint(since, 10)}}
				if follow && !first {
					q.Set("wait", "30s")
				}
				var jr api.JournalResponse
				old := c.timeout
				c.timeout = old + 30*time.Second
				err := c.call(cmd.Context(), http.MethodGet, "/v1/journal?"+q.Encode(), nil, &jr, false)
				c.timeout = old
				if err != nil {
					if follow && cmd.Context().Err() != nil {
						return nil
					}
					return err
				}
				if err := c.printRecords(jr.Records, first); err != nil {
					return err
				}
				first = false
				since = jr.Last
				if !follow {
					return nil
				}
			}
		},
	}
	cmd.Flags().Uint64Var(&since, "since", 0, "only records with a log index above N")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new records as they commit")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "read a stopped node's journal from its data dir")
	return cmd
}

func (c *cli) printRecords(recs []fsm.Record, header bool) error {
	if c.output == "json" {
		enc := json.NewEncoder(c.out)
		for _, r := range recs {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	// Fixed widths rather than a tabwriter, so that --follow output stays aligned across
	// batches.
	const row = "%-7s %-12s %-22s %-8s %-5s %-8s %s\n"
	if header {
		fmt.Fprintf(c.out, row, "INDEX", "TIME", "TYPE", "BY", "EPOCH", "RESULT", "DETAIL")
	}
	for _, r := range recs {
		detail := string(r.Event.Data)
		if r.Error != "" {
			detail = r.Error + " " + detail
		}
		fmt.Fprintf(c.out, row, strconv.FormatUint(r.Index, 10), r.Event.At.Local().Format("15:04:05.000"), r.Event.Type, orDash(r.Event.By), strconv.FormatUint(r.Event.Epoch, 10), r.Result, detail)
	}
	return nil
}

func (c *cli) switchoverCmd() *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "switchover [--to NODE]",
		Short: "planned, lossless move of the VIP: fence the owner, catch up, promote",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var pr api.ProposeResponse
			if err := c.call(cmd.Context(), http.MethodPost, "/v1/switchover", fsm.SwitchoverData{To: to}, &pr, true); err != nil {
				return err
			}
			if c.output == "json" {
				return c.printJSON(pr)
			}
			fmt.Fprintf(c.out, "switchover requested (journal index %d); follow it with: raftctl journal --since %d --follow\n", pr.Index, pr.Index-1)
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the database node to move to (default: the best candidate)")
	return cmd
}

func (c *cli) maintenanceCmd() *cobra.Command {
	return &cobra.Command{
		Use:       "maintenance NODE on|off",
		Short:     "take a node out of (or back into) candidacy; an owner in maintenance hands over",
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"on", "off"},
		RunE: func(cmd *cobra.Command, args []string) error {
			var on bool
			switch args[1] {
			case "on":
				on = true
			case "off":
			default:
				return fmt.Errorf("second argument must be on or off, got %q", args[1])
			}
			var pr api.ProposeResponse
			if err := c.call(cmd.Context(), http.MethodPost, "/v1/maintenance", fsm.MaintenanceData{Node: args[0], On: on}, &pr, true); err != nil {
				return err
			}
			if c.output == "json" {
				return c.printJSON(pr)
			}
			if pr.Result == fsm.ResultSkipped {
				fmt.Fprintf(c.out, "maintenance of %s is already %s: nothing changed\n", args[0], args[1])
				return nil
			}
			fmt.Fprintf(c.out, "maintenance %s for %s (journal index %d)\n", args[1], args[0], pr.Index)
			return nil
		},
	}
}
