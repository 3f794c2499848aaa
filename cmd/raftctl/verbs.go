package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/opsview"
)

// retryPause is how long the wait pauses after a journal read failed before the next try.
const retryPause = 250 * time.Millisecond

// waitFlags are the flags of a verb that waits for its outcome.
type waitFlags struct {
	noWait  bool
	timeout time.Duration
}

func (w *waitFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&w.noWait, "no-wait", false, "return once the request is accepted, without waiting for its outcome")
	cmd.Flags().DurationVar(&w.timeout, "wait-timeout", 60*time.Second, "how long to wait for the outcome; on timeout exit non-zero")
}

// verbResult is a verb's -o json answer.
type verbResult struct {
	Request api.ProposeResponse `json:"request"`
	Done    bool                `json:"done"`
	Message string              `json:"message,omitempty"`
	Change  *opsview.Change     `json:"change,omitempty"`
	Error   string              `json:"error,omitempty"`
	Pending string              `json:"pending,omitempty"`
}

// follow reads the journal after since and feeds each record to w until it is done or
// the wait times out. A journal read that fails is retried (on the next --addr address
// too) until the timeout.
func (c *cli) follow(ctx context.Context, since uint64, w *opsview.Watch, timeout time.Duration) (opsview.Outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	start := since
	var lastErr error
	for {
		wait := min(time.Until(deadline), longPoll).Truncate(time.Millisecond)
		if wait <= 0 {
			break
		}
		jr, err := c.journalAfter(ctx, "", since, wait)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			lastErr = err
			select {
			case <-ctx.Done():
			case <-time.After(retryPause):
			}
			continue
		}
		for _, r := range jr.Records {
			if o := w.Add(r); o.Done {
				return o, nil
			}
		}
		since = jr.Last
	}
	if err := context.Cause(ctx); err != nil && ctx.Err() != context.DeadlineExceeded {
		return opsview.Outcome{}, err // interrupted
	}
	msg := fmt.Sprintf("still pending after %v: waiting for %s", timeout, w.Pending())
	if lastErr != nil {
		msg += " (last journal read failed: " + lastErr.Error() + ")"
	}
	return opsview.Outcome{}, fmt.Errorf("%s; inspect with: raftctl --addr %s journal --since %d --follow", msg, c.addrHint(), start)
}

// finish prints a waited-for outcome and turns it into run's error.
func (c *cli) finish(what string, pr api.ProposeResponse, o opsview.Outcome, werr error, w *opsview.Watch) error {
	err := werr
	if err == nil {
		err = o.Err
	}
	if err == nil && o.Change != nil && !o.Change.CatchUp.Reached && (what == "switchover" || what == "maintenance") {
		// A planned handover promises no loss; a target that opened writes before catching
		// up (on_catchup_timeout: promote) broke that promise, and the operator must know.
		err = fmt.Errorf("%s moved ownership to %s, but its %s (on_catchup_timeout: promote): writes the old owner acknowledged may be missing there and return as extra transactions when it rejoins", what, o.Change.To, o.Change.CatchUp)
	}
	if err != nil && werr == nil {
		err = fmt.Errorf("%w; inspect with: raftctl --addr %s history", err, c.addrHint())
	}
	if c.output == "json" {
		res := verbResult{Request: pr, Done: o.Done, Message: o.Message, Change: o.Change}
		if err != nil {
			res.Error = err.Error()
		}
		if !o.Done {
			res.Pending = w.Pending()
		}
		if perr := c.printJSON(res); perr != nil {
			return perr
		}
		return err
	}
	switch {
	case o.Message == "":
	case what == "maintenance" && o.Change == nil:
		fmt.Fprintln(c.out, o.Message)
	case what == "maintenance":
		fmt.Fprintln(c.out, "handover: "+o.Message)
	default:
		fmt.Fprintln(c.out, what+": "+o.Message)
	}
	return err
}

func (c *cli) switchoverCmd() *cobra.Command {
	var to string
	var wf waitFlags
	cmd := &cobra.Command{
		Use:   "switchover [--to NODE]",
		Short: "planned, lossless move of the VIP: fence the owner, catch up, promote",
		Long: `Switchover asks for a planned, lossless move and, unless --no-wait, follows the journal until
the new owner's OwnerPromoted ("db1 → db2 in 142 ms (catch-up 0 ms, nothing missing)").
It exits non-zero when the request is refused, a promotion fails, ownership ends on
another node than --to or does not move, the new owner opened writes before it caught up
(on_catchup_timeout: promote), or --wait-timeout passes first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			owner := ""
			if !wf.noWait {
				var st api.Status
				if err := c.call(ctx, http.MethodGet, api.PathStatus, nil, &st, false); err != nil {
					return err
				}
				if st.Phase == fsm.PhaseActive {
					owner = st.Owner
				}
			}
			var pr api.ProposeResponse
			if err := c.call(ctx, http.MethodPost, api.PathSwitchover, fsm.SwitchoverData{To: to}, &pr, true); err != nil {
				return err
			}
			if wf.noWait {
				if c.output == "json" {
					return c.printJSON(pr)
				}
				fmt.Fprintf(c.out, "switchover requested (journal index %d); follow it with: raftctl --addr %s journal --since %d --follow\n", pr.Index, c.addrHint(), before(pr.Index))
				return nil
			}
			if c.output != "json" {
				fmt.Fprintf(c.out, "switchover requested (journal index %d); waiting up to %v for the new owner\n", pr.Index, wf.timeout)
			}
			w := opsview.NewSwitchoverWatch(pr.Index, to, owner, c.loc)
			o, err := c.follow(ctx, before(pr.Index), w, wf.timeout)
			return c.finish("switchover", pr, o, err, w)
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the database node to move to (default: the best candidate)")
	wf.add(cmd)
	return cmd
}

func (c *cli) maintenanceCmd() *cobra.Command {
	var wf waitFlags
	cmd := &cobra.Command{
		Use:   "maintenance NODE on|off",
		Short: "take a node out of (or back into) candidacy; an owner in maintenance hands over",
		Long: `Maintenance takes a database node out of candidacy (on) or back in (off) and, unless
--no-wait, waits until the change is applied and, when the node was the owner, until the
handover's new owner is promoted. A witness cannot be put in maintenance (it never owns the
VIP); asking for the state a node already has changes nothing and exits 0.`,
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"on", "off"},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			node := args[0]
			var on bool
			switch args[1] {
			case "on":
				on = true
			case "off":
			default:
				return fmt.Errorf("second argument must be on or off, got %q", args[1])
			}
			var ms []api.MemberStatus
			if err := c.call(ctx, http.MethodGet, api.PathMembers, nil, &ms, false); err != nil {
				return fmt.Errorf("check %s before changing its maintenance: %w", node, err)
			}
			i := slices.IndexFunc(ms, func(m api.MemberStatus) bool { return m.ID == node })
			if i < 0 {
				ids := make([]string, len(ms))
				for j, m := range ms {
					ids[j] = m.ID
				}
				return fmt.Errorf("%q is not a member (members: %s)", node, strings.Join(ids, ", "))
			}
			m := ms[i]
			if m.Role == fsm.RoleWitness {
				return fmt.Errorf("%s has role witness: maintenance applies to database nodes only (a witness never owns the VIP; to stop it, stop its keepraftd)", node)
			}
			if m.Maintenance == on {
				if c.output == "json" {
					return c.printJSON(api.ProposeResponse{Result: fsm.ResultSkipped, Error: "maintenance of " + node + " is already " + args[1]})
				}
				fmt.Fprintf(c.out, "maintenance of %s is already %s: nothing changed\n", node, args[1])
				return nil
			}
			var pr api.ProposeResponse
			if err := c.call(ctx, http.MethodPost, api.PathMaintenance, fsm.MaintenanceData{Node: node, On: on}, &pr, true); err != nil {
				return err
			}
			if pr.Result == fsm.ResultSkipped {
				if c.output == "json" {
					return c.printJSON(pr)
				}
				fmt.Fprintf(c.out, "maintenance of %s is already %s: nothing changed\n", node, args[1])
				return nil
			}
			if wf.noWait {
				if c.output == "json" {
					return c.printJSON(pr)
				}
				fmt.Fprintf(c.out, "maintenance %s for %s (journal index %d)", args[1], node, pr.Index)
				if on && m.Owner {
					fmt.Fprint(c.out, "; it owns the VIP and hands over")
				}
				fmt.Fprintf(c.out, "; follow it with: raftctl --addr %s journal --since %d --follow\n", c.addrHint(), before(pr.Index))
				return nil
			}
			if c.output != "json" && on && m.Owner {
				fmt.Fprintf(c.out, "maintenance on for %s (journal index %d); it owns the VIP: waiting up to %v for the handover\n", node, pr.Index, wf.timeout)
			}
			w := opsview.NewMaintenanceWatch(pr.Index, node, on, m.Owner, c.loc)
			o, err := c.follow(ctx, before(pr.Index), w, wf.timeout)
			return c.finish("maintenance", pr, o, err, w)
		},
	}
	wf.add(cmd)
	return cmd
}

// before is the since value that includes index itself.
func before(index uint64) uint64 {
	if index == 0 {
		return 0
	}
	return index - 1
}
