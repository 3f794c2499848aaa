package kaconf

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ErrNoInstance is returned by [Convert] when the named vrrp_instance does not exist, or when
// no name was given and the file does not hold exactly one.
var ErrNoInstance = errors.New("kaconf: no such vrrp_instance")

// notMapped explains, per vrrp_instance keyword, why keepraft has no equivalent.
var notMapped = map[string]string{
	"unicast_peer":               "keepraft speaks multicast VRRP only; unicast keepalived peers will not hear its adverts",
	"unicast_src_ip":             "keepraft speaks multicast VRRP only",
	"unicast_ttl":                "keepraft speaks multicast VRRP only",
	"mcast_src_ip":               "keepraft sends from the interface's primary address",
	"mcast_dst_ip":               "keepraft sends to 224.0.0.18 only",
	"use_vmac":                   "keepraft adds the VIP to vip.interface with the NIC's own MAC (no VMAC)",
	"vmac_xmit_base":             "keepraft does not use a VMAC",
	"track_interface":            "keepraft has no interface tracking or priority weights",
	"preempt_delay":              "keepraft has no preempt delay; failover.damping limits flapping instead",
	"virtual_ipaddress_excluded": "keepraft adverts carry vip.addresses only; add excluded addresses by other means",
	"virtual_routes":             "keepraft manages addresses, not routes",
	"virtual_rules":              "keepraft manages addresses, not rules",
	"notify_stop":                "keepraft has no stop hook",
	"notify_deleted":             "keepraft has no deleted hook",
	"notify_master_rx_lower_pri": "keepraft has no such hook",
	"strict_mode":                "keepraft has no strict mode (it always uses TTL 255 and multicast)",
	"smtp_alert":                 "keepraft sends no mail; use its journal or metrics",
	"garp_master_delay":          "keepraft sends one GARP burst (vip.garp_repeat × vip.garp_interval)",
	"garp_master_refresh":        "keepraft does not refresh GARPs periodically",
	"v3_checksum_as_v2":          "keepraft's config has no switch for the RFC 9568 v3 checksum",
	"dont_track_primary":         "keepraft has no interface tracking",
	"accept":                     "keepraft does not filter traffic to the VIP",
	"no_accept":                  "keepraft does not filter traffic to the VIP",
}

// Convert renders instance of cfg (or the only instance, when instance is "") as keepraftd
// YAML in the format of the keepraftd config contract. Values keepalived.conf cannot supply
// (node, cluster, MySQL access) are placeholders marked CHANGE-ME. warnings lists every
// setting that was not mapped or was changed, each with its line; they are repeated as
// comments at the end of the YAML. Parse warnings are included.
func Convert(cfg *File, instance string) (yamlDoc []byte, warnings []string, err error) {
	in, err := pick(cfg, instance)
	if err != nil {
		return nil, nil, err
	}
	c := &converter{f: cfg, in: in, warns: append([]string(nil), cfg.Warnings...)}
	doc := c.render()
	return []byte(doc), c.warns, nil
}

// warnLine returns the line number a warning starts with, 0 if none.
func warnLine(s string) int {
	var n int
	if _, err := fmt.Sscanf(s, "line %d:", &n); err != nil {
		return 0
	}
	return n
}

func pick(cfg *File, instance string) (*Instance, error) {
	var names []string
	for _, in := range cfg.Instances {
		names = append(names, in.Name)
	}
	if instance == "" {
		if len(cfg.Instances) != 1 {
			return nil, fmt.Errorf("%w: the file has %d instances (%s); name one", ErrNoInstance, len(cfg.Instances), strings.Join(names, ", "))
		}
		return cfg.Instances[0], nil
	}
	if in := cfg.Instance(instance); in != nil {
		return in, nil
	}
	return nil, fmt.Errorf("%w: %q (the file has: %s)", ErrNoInstance, instance, strings.Join(names, ", "))
}

type converter struct {
	f     *File
	in    *Instance
	warns []string
}

func (c *converter) warn(line int, format string, args ...any) {
	c.warns = append(c.warns, fmt.Sprintf("line %d: %s", line, fmt.Sprintf(format, args...)))
}

// q renders s as a YAML scalar, quoted when needed.
func q(s string) string {
	b, err := yaml.Marshal(s)
	if err != nil {
		return fmt.Sprintf("%q", s)
	}
	return strings.TrimSuffix(string(b), "\n")
}

func (c *converter) render() string {
	in := c.in
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	version := in.Version
	if version == 0 {
		version = c.f.Global.VRRPVersion
	}
	if version == 0 {
		version = 2
	}
	prio := in.Priority
	if prio == 0 {
		prio = 100
		if in.State == "MASTER" {
			prio = 255
		}
	}
	if prio == 255 {
		line := in.Line
		if in.Priority == 0 && in.StateLine != 0 {
			line = in.StateLine
		}
		c.warn(line, "priority 255 (address owner) lowered to 254: keepraft never claims address ownership")
		prio = 254
	}
	advert := in.AdvertInt
	if advert == 0 {
		advert = time.Second
	}
	switch {
	case version == 2 && advert%time.Second != 0:
		r := max(time.Second, advert.Round(time.Second))
		c.warn(in.Line, "advert_int %s is not whole seconds, which VRRPv2 carries: rounded to %s (keepalived peers must match)", advert, r)
		advert = r
	case version == 3 && advert%(10*time.Millisecond) != 0:
		r := max(10*time.Millisecond, advert.Round(10*time.Millisecond))
		c.warn(in.Line, "advert_int %s rounded to centiseconds: %s", advert, r)
		advert = r
	}
	if in.State != "" {
		c.warn(in.StateLine, "state %s not mapped: keepraft's Raft log decides which node owns the VIP", in.State)
	}
	if in.VRID == 0 {
		c.warn(in.Line, "no virtual_router_id: keepalived rejects such an instance; set vrrp.virtual_router_id")
	}
	if in.Interface == "" {
		c.warn(in.Line, "no interface: set vip.interface")
	}

	auth := c.auth(version)
	addrs, label := c.vips()

	w("# keepraftd configuration converted by kaconf from keepalived.conf vrrp_instance %s (line %d).", in.Name, in.Line)
	w("# Every value marked CHANGE-ME is a placeholder: keepalived.conf has no equivalent.")
	w("# Settings that could not be converted are listed at the end.")
	rid := ""
	if c.f.Global.RouterID != "" {
		rid = fmt.Sprintf(" (keepalived router_id: %s)", c.f.Global.RouterID)
	}
	w("node:")
	w("  id: db1                               # CHANGE-ME: unique node id%s", rid)
	w("  role: database")
	w("  data_dir: /var/lib/keepraft           # CHANGE-ME")
	w("cluster:")
	w("  raft_addr: 192.0.2.11:7000            # CHANGE-ME: this node's Raft address")
	w("  api_addr: 192.0.2.11:7001             # CHANGE-ME: this node's API address")
	w("  token_file: /etc/keepraft/token       # CHANGE-ME: a file holding a random bearer token")
	w("  peers:                                # CHANGE-ME: every voter, this node included")
	w("    - {id: db1, raft_addr: 192.0.2.11:7000, api_addr: 192.0.2.11:7001}")
	w("    - {id: db2, raft_addr: 192.0.2.12:7000, api_addr: 192.0.2.12:7001}")
	w("    - {id: witness, raft_addr: 192.0.2.13:7000, api_addr: 192.0.2.13:7001}")
	w("mysql:")
	w("  host: 127.0.0.1                       # CHANGE-ME")
	w("  port: 3306                            # CHANGE-ME")
	w("  user: keepraft                        # CHANGE-ME")
	w("  password_file: /etc/keepraft/mysql.pass  # CHANGE-ME")
	w("  flavor: mariadb                       # CHANGE-ME: mariadb | mysql")
	c.trackScripts(w)
	w("vip:")
	w("  interface: %s", q(in.Interface))
	w("  addresses: [%s]", strings.Join(addrs, ", "))
	if label != "" {
		w("  label: %s", q(label))
	}
	if in.GARPMasterRepeat > 0 {
		gr := min(in.GARPMasterRepeat, 100)
		if gr != in.GARPMasterRepeat {
			c.warn(in.Line, "garp_master_repeat %d capped at 100", in.GARPMasterRepeat)
		}
		w("  garp_repeat: %-24d # from garp_master_repeat", gr)
	}
	w("vrrp:")
	w("  enabled: true")
	w("  version: %d", version)
	w("  virtual_router_id: %d", in.VRID)
	w("  priority: %-27d # keepalived routers left on this VRID must be lower, or nopreempt", prio)
	w("  advert_int: %s", advert)
	if auth != "" {
		w("  auth_pass: %s", q(auth))
	}
	w("failover:")
	w("  nopreempt: %t", in.Nopreempt)
	w("notify:")
	w("  master: %s", q(c.notify("notify_master", in.NotifyMaster)))
	w("  backup: %s", q(c.notify("notify_backup", in.NotifyBackup)))
	w("  fault: %s", q(c.notify("notify_fault", in.NotifyFault)))
	if in.NotifyAny.Cmd != "" {
		w("  any: %s", q(c.notify("notify", in.NotifyAny)))
	}
	if in.Name != "" {
		w("  instance: %s", q(in.Name))
	}

	c.others()
	slices.SortStableFunc(c.warns, func(a, b string) int { return warnLine(a) - warnLine(b) })
	if len(c.warns) > 0 {
		w("")
		w("# Not converted or changed (kaconf warnings):")
		for _, s := range c.warns {
			w("#   - %s", strings.ReplaceAll(s, "\n", " "))
		}
	}
	return b.String()
}

// auth returns the password keepalived would really send, warning about the differences.
func (c *converter) auth(version int) string {
	in := c.in
	switch {
	case in.AuthLine == 0:
		return ""
	case version == 3:
		c.warn(in.AuthLine, "authentication ignored: VRRPv3 has none (keepalived ignores it too)")
		return ""
	case in.AuthType == "AH":
		c.warn(in.AuthLine, "auth_type AH not supported: keepraft sends PASS or no authentication; keepalived peers with AH will reject its adverts")
		return ""
	case in.AuthType != "PASS":
		c.warn(in.AuthLine, "auth_type %q not understood: no authentication", in.AuthType)
		return ""
	case in.AuthPass == "":
		c.warn(in.AuthLine, "authentication has auth_type PASS but no auth_pass line: keepalived itself reports "+
			"\"Authentication specified but no password given. Ignoring\" and sends adverts without authentication, so "+
			"vrrp.auth_pass is left empty to match it (a one-line authentication { auth_type PASS auth_pass x } block "+
			"does this: keepalived reads one keyword per line)")
		return ""
	case len(in.AuthPass) > 8:
		c.warn(in.AuthLine, "auth_pass longer than 8 bytes: keepalived truncates it, so is vrrp.auth_pass (%q)", in.AuthPass[:8])
		return in.AuthPass[:8]
	}
	return in.AuthPass
}

func (c *converter) vips() (addrs []string, label string) {
	in := c.in
	if len(in.VIPs) == 0 {
		c.warn(in.Line, "no virtual_ipaddress: set vip.addresses")
	}
	labels := map[string]bool{}
	for _, v := range in.VIPs {
		if !v.Prefix.Addr().Is4() {
			c.warn(v.Line, "IPv6 VIP %s skipped: keepraft supports IPv4 VIPs only", v.Prefix)
			continue
		}
		addrs = append(addrs, v.Prefix.String())
		if v.Dev != "" && v.Dev != in.Interface {
			c.warn(v.Line, "VIP %s dev %s: keepraft puts every VIP on vip.interface %s", v.Prefix, v.Dev, in.Interface)
		}
		if v.Label != "" {
			labels[v.Label] = true
			label = v.Label
		}
		if len(v.Options) > 0 {
			c.warn(v.Line, "VIP %s options not mapped: %s", v.Prefix, strings.Join(v.Options, " "))
		}
	}
	if len(labels) > 1 {
		c.warn(in.Line, "VIPs carry %d different labels; vip.label takes one (%s)", len(labels), label)
	}
	return addrs, label
}

func (c *converter) notify(kw string, n Notify) string {
	if n.User != "" {
		c.warn(n.Line, "%s runs as %s in keepalived; keepraft runs hooks as its own user", kw, n.User)
	}
	return n.Cmd
}

// trackScripts writes the tracked scripts as comments under mysql: keepraft probes MySQL
// itself and does not run them.
func (c *converter) trackScripts(w func(string, ...any)) {
	for _, t := range c.in.TrackScripts {
		s := c.f.Script(t.Name)
		if s == nil {
			c.warn(t.Line, "track_script %s: no vrrp_script of that name", t.Name)
			continue
		}
		w("  # keepalived tracked MySQL health with vrrp_script %s (line %d):", s.Name, s.Line)
		w("  #   script %s (interval %s, fall %d, rise %d)", q(s.Script), s.Interval, s.Fall, s.Rise)
		w("  # keepraft probes MySQL itself (mysql.interval/rise/fall) and does not run it. To keep")
		w("  # the script as an extra check, uncomment:")
		w("  # check_script: %s", q(s.Script))
		c.warn(t.Line, "track_script %s (%s) not run: keepraft probes MySQL itself; see the comment under mysql", t.Name, s.Script)
		if t.WeightSet || s.WeightSet {
			c.warn(t.Line, "track_script %s weight not mapped: keepraft has no priority weights", t.Name)
		}
		if s.User != "" {
			c.warn(s.Line, "vrrp_script %s user %s not mapped", s.Name, s.User)
		}
		for _, d := range s.Other {
			c.warn(d.Line, "vrrp_script %s: %s not mapped", s.Name, d)
		}
	}
}

// others lists everything else: uninterpreted instance keywords, global_defs, other
// instances and top-level blocks.
func (c *converter) others() {
	in := c.in
	for _, d := range in.Other {
		if !instanceKnown[d.Keyword] {
			continue // Parse already warned about an unknown keyword
		}
		why := notMapped[d.Keyword]
		if why == "" {
			why = "no keepraft equivalent"
		}
		text := d.String()
		if d.HasBlock {
			var items []string
			for _, x := range d.Block {
				items = append(items, x.String())
			}
			text += " { " + strings.Join(items, "; ") + " }"
		}
		c.warn(d.Line, "%s not mapped: %s", text, why)
	}
	for _, d := range c.f.Global.Other {
		c.warn(d.Line, "global_defs %s not mapped", d)
	}
	for _, other := range c.f.Instances {
		if other != in {
			c.warn(other.Line, "vrrp_instance %s not converted (convert it separately by name)", other.Name)
		}
	}
	for _, d := range c.f.Other {
		if d.Keyword != "include" {
			c.warn(d.Line, "%s not converted", d)
		}
	}
}
