package main

import (
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/keepraft/keepraft/api"
	"github.com/keepraft/keepraft/opsview"
)

func (c *cli) configCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "config-check",
		Short: "compare VIPs, VRRP id and auth, peers and failover settings across the running nodes",
		Long: `config-check asks every member (GET /v1/config) for the settings that must agree across
the cluster: cluster.peers, TLS and the failover section on every node; the VIPs, the fence,
VRRP (version, virtual_router_id, advert_int, a digest of auth_pass) and the MySQL flavor
and semi-sync on the database nodes. Exit 0 when they agree, 1 when a setting differs or a
member does not answer. A different build version is shown but is not a difference.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var ms []api.MemberStatus
			if err := c.call(ctx, http.MethodGet, api.PathMembers, nil, &ms, false); err != nil {
				return err
			}
			var ds []api.ConfigDigest
			var missing []string
			for _, m := range ms {
				var d api.ConfigDigest
				if err := c.callAt(ctx, m.APIAddr, api.PathConfig, &d); err != nil {
					missing = append(missing, fmt.Sprintf("%s (%s): %v", m.ID, m.APIAddr, err))
					continue
				}
				ds = append(ds, d)
			}
			fields := opsview.CompareConfigs(ds)
			var differ []string
			for _, f := range fields {
				if f.Differs {
					differ = append(differ, f.Key)
				}
			}
			if c.output == "json" {
				if err := c.printJSON(map[string]any{"fields": fields, "unreachable": missing, "consistent": len(differ) == 0 && len(missing) == 0}); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
				fmt.Fprint(tw, "SETTING")
				for _, d := range ds {
					fmt.Fprint(tw, "\t"+strings.ToUpper(d.Node))
				}
				fmt.Fprintln(tw, "\t")
				for _, f := range fields {
					mark := ""
					switch {
					case f.Differs:
						mark = "DIFFERS"
					case f.Note != "":
						mark = f.Note
					}
					fmt.Fprint(tw, f.Key)
					for _, d := range ds {
						v, ok := f.Values[d.Node]
						switch {
						case !ok:
							v = "-"
						case v == "":
							v = `""`
						}
						fmt.Fprint(tw, "\t"+v)
					}
					fmt.Fprintln(tw, "\t"+mark)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				for _, m := range missing {
					fmt.Fprintln(c.out, "no answer from", m)
				}
			}
			switch {
			case len(differ) > 0:
				return &exitError{code: 1, msg: "config differs across the nodes: " + strings.Join(differ, ", ")}
			case len(missing) > 0:
				return &exitError{code: 1, msg: fmt.Sprintf("%d member(s) did not answer; their settings are not compared", len(missing))}
			}
			if c.output != "json" {
				fmt.Fprintln(c.out, "consistent: every setting agrees across", len(ds), "nodes")
			}
			return nil
		},
	}
}
