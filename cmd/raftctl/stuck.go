package main

import (
	"fmt"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/opsview"
)

// The verbs for stuck states: pause / resume, failover --to, rejoin NODE resume.

// simpleResult prints the answer of a verb that does not wait: applied, or a no-op the
// server reported (result skipped).
func (c *cli) simpleResult(pr api.ProposeResponse, done, noop string) error {
	if c.output == "json" {
		return c.printJSON(pr)
	}
	if pr.Result == fsm.ResultSkipped {
		fmt.Fprintf(c.out, "%s: nothing changed\n", noop)
		return nil
	}
	fmt.Fprintf(c.out, "%s (journal index %d); see it with: raftctl --addr %s journal --since %d\n", done, pr.Index, c.addrHint(), before(pr.Index))
	return nil
}

func (c *cli) pauseCmd() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "pause",
		Short: "pause automatic failover cluster-wide (the owner keeps its VIP under lease)",
		Long: `Pause stops every decision the cluster would take on its own: an owner whose MySQL fails
is not replaced, a higher-priority node does not take over. The owner keeps its VIP and
writes under its lease; raftctl switchover and failover still work. status shows PAUSED
(exit 1) until raftctl resume. Pausing a paused cluster changes nothing and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var pr api.ProposeResponse
			if err := c.call(cmd.Context(), http.MethodPost, api.PathPause, fsm.PauseData{Paused: true, Reason: reason}, &pr, true); err != nil {
				return err
			}
			return c.simpleResult(pr, "paused: no automatic failover until raftctl resume", "already paused")
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the journal")
	return cmd
}

func (c *cli) resumeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "resume",
		Short: "resume automatic failover after pause",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var pr api.ProposeResponse
			if err := c.call(cmd.Context(), http.MethodPost, api.PathPause, fsm.PauseData{Paused: false}, &pr, true); err != nil {
				return err
			}
			return c.simpleResult(pr, "resumed: automatic failover is on again", "not paused")
		},
	}
}

func (c *cli) failoverCmd() *cobra.Command {
	var to string
	var yes bool
	var wf waitFlags
	cmd := &cobra.Command{
		Use:   "failover --to NODE [--yes]",
		Short: "operator-driven failover when the cluster cannot decide (may lose writes)",
		Long: `Failover moves ownership to NODE when the cluster cannot decide by itself: paused, a
promotion held by on_catchup_timeout hold, an owner that will not come back. The owner is
revoked, its lease runs out (never two writers), and NODE opens writes even if its catch-up
is incomplete. Without --yes it only shows what may be lost and exits 1; with --yes it
commits and, unless --no-wait, waits for NODE's promotion. NODE must be healthy, reachable
and not in maintenance. Prefer raftctl switchover when the owner is healthy: it loses
nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if to == "" {
				return fmt.Errorf("--to is required: name the database node that takes over")
			}
			if !yes {
				var pr api.ProposeResponse
				err := c.call(ctx, http.MethodPost, api.PathFailover, api.FailoverRequest{To: to}, &pr, true)
				if api.StatusCode(err) == http.StatusPreconditionFailed {
					return fmt.Errorf("%w\nnothing was changed; to go ahead: raftctl --addr %s failover --to %s --yes", err, c.addrHint(), to)
				}
				if err != nil {
					return err
				}
				return fmt.Errorf("failover to %s: the server committed without --yes (journal index %d)", to, pr.Index)
			}
			var st api.Status
			if err := c.call(ctx, http.MethodGet, api.PathStatus, nil, &st, false); err != nil {
				return err
			}
			var pr api.ProposeResponse
			if err := c.call(ctx, http.MethodPost, api.PathFailover, api.FailoverRequest{To: to, Yes: true}, &pr, true); err != nil {
				return err
			}
			if wf.noWait {
				return c.simpleResult(pr, "failover to "+to+" requested", "")
			}
			if c.output != "json" {
				fmt.Fprintf(c.out, "failover to %s requested (journal index %d); waiting up to %v for its promotion\n", to, pr.Index, wf.timeout)
			}
			w := opsview.NewFailoverWatch(pr.Index, to, st.Owner, c.loc)
			o, err := c.follow(ctx, before(pr.Index), w, wf.timeout)
			return c.finish("failover", pr, o, err, w)
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the database node that takes over")
	cmd.Flags().BoolVar(&yes, "yes", false, "accept the loss shown without --yes and go ahead")
	wf.add(cmd)
	return cmd
}

func (c *cli) rejoinCmd() *cobra.Command {
	var accept string
	cmd := &cobra.Command{
		Use:   "rejoin NODE resume [--accept GTIDSET]",
		Short: "resume a blocked rejoin: check again now, or accept its extra transactions",
		Long: `A former owner that came back with transactions the owner never received is blocked: the
owner's channel from it stays stopped (status: REJOIN BLOCKED). Resolve the extra
transactions first (see docs/runbook.md: inspect them with mariadb-binlog / mysqlbinlog,
then apply them on the owner by hand, or discard them by rebuilding the node), then:

  raftctl rejoin NODE resume                    check again now (clears itself when resolved)
  raftctl rejoin NODE resume --accept GTIDSET   let exactly that extra set flow into the owner

--accept must repeat the journaled extra set (status and journal show it); a set that grew
since stays blocked.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[1] != "resume" {
				return fmt.Errorf("second argument must be resume, got %q", args[1])
			}
			var pr api.ProposeResponse
			if err := c.call(cmd.Context(), http.MethodPost, api.PathRejoin, fsm.RejoinResumeData{Node: args[0], Accept: accept}, &pr, true); err != nil {
				return err
			}
			done := "rejoin of " + args[0] + " resumed: the owner checks it again now"
			if accept != "" {
				done = "rejoin of " + args[0] + " resumed, extra transactions " + accept + " accepted"
			}
			return c.simpleResult(pr, done, "the rejoin of "+args[0]+" is not blocked")
		},
	}
	cmd.Flags().StringVar(&accept, "accept", "", "the extra GTID set to let flow into the owner (exactly as journaled)")
	return cmd
}
