package main

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/fsm"
	"github.com/keepraft/keepraft/opsview"
)

const statusLong = `Status prints a verdict line first, then the leader, term, commit index, owner, epoch and
phase, one line per member, and the owner's own block (lease, VIP, read_only, GTIDs,
replication), read from the owner's API even when --addr names another node. Values of an
unreachable member are its last known ones, marked (stale).

Exit codes, for monitoring checks:
  0  healthy: a promoted owner, every voter reachable, nothing blocked
  1  degraded: VOTER UNREACHABLE (no fault tolerance left), REJOIN BLOCKED, PAUSED,
     NO LEADER, or the owner's API did not answer
  2  critical: NO WRITER (no promoted owner, or the owner has not opened writes) or
     NON-OWNER WRITABLE (a member other than the owner reports read_only=0)
  3  unknown: no address of --addr answered`

// statusJSON is status -o json: the node's status with the verdict and the owner's block.
type statusJSON struct {
	api.Status
	Health opsview.Health      `json:"health"`
	Owner  *opsview.OwnerLocal `json:"owner_status,omitempty"`
}

func (c *cli) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "verdict, leader, term, members, owner and epoch; exit code 0 healthy, 1 degraded, 2 no writer or unsafe",
		Long:  statusLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st api.Status
			if err := c.call(cmd.Context(), http.MethodGet, api.PathStatus, nil, &st, false); err != nil {
				return &exitError{code: opsview.CodeUnknown, msg: err.Error()}
			}
			owner := c.ownerLocal(cmd, st)
			h := opsview.Assess(st, owner, c.loc)
			if c.output == "json" {
				if err := c.printJSON(statusJSON{Status: st, Health: h, Owner: owner}); err != nil {
					return err
				}
			} else {
				c.printStatus(st, h, owner)
			}
			if h.Code != opsview.CodeHealthy {
				return &exitError{code: h.Code}
			}
			return nil
		},
	}
}

// ownerLocal returns the owner's local block: the answering node's own when it is the
// owner, else read from the owner's API address. Nil when there is no owner.
func (c *cli) ownerLocal(cmd *cobra.Command, st api.Status) *opsview.OwnerLocal {
	if st.Owner == "" {
		return nil
	}
	o := &opsview.OwnerLocal{Node: st.Owner}
	if st.Owner == st.Node {
		o.Local = st.Local
		return o
	}
	var m *api.MemberStatus
	for i := range st.Members {
		if st.Members[i].ID == st.Owner {
			m = &st.Members[i]
		}
	}
	switch {
	case m == nil || m.APIAddr == "":
		o.Err = "no API address known for the owner"
	case !m.Reachable:
		o.Err = "unreachable from " + st.Node
	default:
		var ost api.Status
		if err := c.callAt(cmd.Context(), m.APIAddr, api.PathStatus, &ost); err != nil {
			o.Err = err.Error()
		} else {
			o.Local = ost.Local
		}
	}
	return o
}

func (c *cli) printStatus(st api.Status, h opsview.Health, owner *opsview.OwnerLocal) {
	fmt.Fprintln(c.out, h.Banner(st))
	for _, cd := range h.Conditions {
		since := ""
		if cd.SinceText != "" {
			since = " since " + cd.SinceText
		}
		fmt.Fprintf(c.out, "  %s%s: %s\n", cd.Name, since, cd.Detail)
	}
	fmt.Fprintln(c.out)
	ownerName := st.Owner
	if ownerName == "" {
		ownerName = "(none)"
	}
	fmt.Fprintf(c.out, "node:     %s (%s, raft %s)\n", st.Node, st.Role, st.RaftState)
	fmt.Fprintf(c.out, "leader:   %s   term: %d   commit: %d   applied: %d\n", orDash(st.Leader), st.Term, st.CommitIndex, st.Applied)
	fmt.Fprintf(c.out, "owner:    %s   epoch: %d   phase: %s", ownerName, st.Epoch, st.Phase)
	if !st.PhaseSince.IsZero() {
		fmt.Fprintf(c.out, " since %s", opsview.FormatTime(st.PhaseSince, c.loc))
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
	semi := func(id string) string {
		for _, m := range st.Members {
			if m.ID == id {
				return m.SemiSync
			}
		}
		return ""
	}
	if owner != nil {
		what := "owner"
		if st.Phase != fsm.PhaseAssigned && st.Phase != fsm.PhaseActive {
			what = "last owner"
		}
		if owner.Err != "" {
			fmt.Fprintf(c.out, "\n%s (%s): status unavailable: %s\n", what, owner.Node, owner.Err)
		} else {
			c.localBlock(what, owner.Node, owner.Local, semi(owner.Node))
		}
	}
	if st.Role == fsm.RoleDatabase && st.Node != st.Owner {
		c.localBlock("local", st.Node, st.Local, semi(st.Node))
	}
}

func (c *cli) localBlock(what, node string, l api.LocalStatus, semiSync string) {
	fmt.Fprintf(c.out, "\n%s (%s): holding VIP %v, lease valid %v (%d ms left), promoted %v", what, node, l.Holding, l.LeaseValid, l.LeaseLeftMS, l.Promoted)
	if l.Runtime != "" {
		fmt.Fprintf(c.out, ", runtime %s", l.Runtime)
	}
	fmt.Fprintln(c.out)
	if len(l.VIPs) > 0 {
		fmt.Fprintf(c.out, "  vips %s\n", strings.Join(l.VIPs, ", "))
	}
	if l.MySQLHealthy != nil {
		fmt.Fprintf(c.out, "  mysql healthy %v %s, read_only %s\n", *l.MySQLHealthy, l.MySQLDetail, ptrBool(l.ReadOnly))
	}
	if l.GTID != "" {
		fmt.Fprintf(c.out, "  gtid %s\n", l.GTID)
	}
	if l.Replication != "" {
		fmt.Fprintf(c.out, "  replication %s\n", l.Replication)
	}
	if semiSync != "" {
		fmt.Fprintf(c.out, "  semi-sync (journaled) %s\n", semiSync)
	}
}

// shortView trims error details from the peer view for the table; -o json has them all.
func shortView(v string) string {
	var out []string
	for part := range strings.SplitSeq(v, "; ") {
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

// stale marks a polled value of an unreachable member.
func stale(v string, isStale bool) string {
	if isStale && v != "-" {
		return v + " (stale)"
	}
	return v
}

func (c *cli) memberTable(ms []api.MemberStatus) {
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tSUFFRAGE\tRAFT\tLAST CONTACT\tAPPLIED\tPRIO\tMYSQL\tREAD_ONLY\tPEER VIEW\tMAINT\tOWNER\tREPLICATION")
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
		if m.RejoinBlocked {
			health += ",rejoin-blocked"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%v\t%s\t%s\n", m.ID, orDash(string(m.Role)), orDash(m.Suffrage), orDash(m.RaftState), orDash(m.LastContact),
			stale(strconv.FormatUint(m.Applied, 10), m.Stale), m.Priority, health, stale(ptrBool(m.ReadOnly), m.Stale), orDash(shortView(m.PeerView)), m.Maintenance, owner, stale(orDash(m.Replication), m.Stale))
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
			if err := c.call(cmd.Context(), http.MethodGet, api.PathMembers, nil, &ms, false); err != nil {
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
