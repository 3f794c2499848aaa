package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/opsview"
	"github.com/keepraft/keepraft/store"
)

// longPoll is how long one journal request waits for a new record.
const longPoll = 30 * time.Second

// journalAfter returns the records after since: from a stopped node's data dir when
// dataDir is set, else from the API (waiting up to wait for one when wait > 0).
func (c *cli) journalAfter(ctx context.Context, dataDir string, since uint64, wait time.Duration) (api.JournalResponse, error) {
	if dataDir != "" {
		j, err := store.ReadJournal(dataDir)
		if err != nil {
			return api.JournalResponse{}, err
		}
		jr := api.JournalResponse{Last: since}
		for _, r := range j.Records {
			if r.Index > since {
				jr.Records = append(jr.Records, r)
				jr.Last = r.Index
			}
		}
		return jr, nil
	}
	q := url.Values{"since": {strconv.FormatUint(since, 10)}}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	var jr api.JournalResponse
	err := c.callWithin(ctx, http.MethodGet, api.PathJournal+"?"+q.Encode(), nil, &jr, false, c.timeout+wait)
	return jr, err
}

func (c *cli) journalCmd() *cobra.Command {
	var since uint64
	var follow bool
	var dataDir, node string
	var types []string
	cmd := &cobra.Command{
		Use:   "journal",
		Short: "the committed event journal (live, or offline with --data-dir)",
		Long: `Journal prints the committed events, oldest first. Times are RFC 3339 with milliseconds in
the local zone; -o json prints one record per line with the same time in an added "time"
field. --type and --node filter, also with --follow and --data-dir.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ts, err := opsview.ParseTypes(types)
			if err != nil {
				return err
			}
			f := opsview.Filter{Types: ts, Node: node}
			if dataDir != "" && follow {
				return errors.New("--follow needs a running node, not --data-dir")
			}
			first := true
			for {
				wait := time.Duration(0)
				if follow && !first {
					wait = longPoll
				}
				jr, err := c.journalAfter(cmd.Context(), dataDir, since, wait)
				if err != nil {
					if follow && cmd.Context().Err() != nil {
						return nil
					}
					return err
				}
				if err := c.printRecords(f.Apply(jr.Records), first); err != nil {
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
	cmd.Flags().StringArrayVar(&types, "type", nil, "only events of these types (repeatable, or a comma list; e.g. OwnerPromoted,HealthChanged)")
	cmd.Flags().StringVar(&node, "node", "", "only events written by or about this node")
	return cmd
}

// recordRow has fixed widths rather than a tabwriter, so that --follow output stays
// aligned across batches.
const recordRow = "%-7s %-29s %-22s %-8s %-5s %-8s %s\n"

func (c *cli) printRecords(recs []fsm.Record, header bool) error {
	if c.output == "json" {
		enc := json.NewEncoder(c.out)
		for _, r := range recs {
			if err := enc.Encode(opsview.NewRecord(r, c.loc)); err != nil {
				return err
			}
		}
		return nil
	}
	if header {
		fmt.Fprintf(c.out, recordRow, "INDEX", "TIME", "TYPE", "BY", "EPOCH", "RESULT", "DETAIL")
	}
	for _, r := range recs {
		detail := string(r.Event.Data)
		if r.Error != "" {
			detail = r.Error + " " + detail
		}
		fmt.Fprintf(c.out, recordRow, strconv.FormatUint(r.Index, 10), opsview.FormatTime(r.Event.At, c.loc), r.Event.Type, orDash(r.Event.By), strconv.FormatUint(r.Event.Epoch, 10), r.Result, detail)
	}
	return nil
}

func (c *cli) historyCmd() *cobra.Command {
	var dataDir string
	var last int
	cmd := &cobra.Command{
		Use:   "history",
		Short: "one line per ownership change, from the journal",
		Long: `History derives every ownership change from the retained journal: when the new owner was
promoted (RFC 3339, local zone), from → to, the kind (initial, failover, switchover,
preempt, maintenance, stop, release) and reason, how long from the triggering event (the
owner's failed health, the revoke, the request, the release) to OwnerPromoted, the
catch-up result, and what may have been lost.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			jr, err := c.journalAfter(cmd.Context(), dataDir, 0, 0)
			if err != nil {
				return err
			}
			changes := opsview.History(jr.Records, c.loc)
			if last > 0 && len(changes) > last {
				changes = changes[len(changes)-last:]
			}
			if c.output == "json" {
				if changes == nil {
					changes = []opsview.Change{}
				}
				return c.printJSON(changes)
			}
			if len(changes) == 0 {
				fmt.Fprintln(c.out, "no ownership change in the retained journal")
				return nil
			}
			tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tEPOCH\tCHANGE\tKIND\tTOOK\tCATCH-UP\tREASON\tLOSS")
			for _, ch := range changes {
				reason := ch.Reason
				for _, f := range ch.FailedPromotions {
					reason += "; promotion failed: " + f
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", ch.Time, ch.Epoch, ch.Move(), ch.Kind, ch.Took(), ch.CatchUp, orDash(reason), orDash(ch.Loss))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "read a stopped node's journal from its data dir")
	cmd.Flags().IntVar(&last, "last", 0, "only the last N changes")
	return cmd
}
