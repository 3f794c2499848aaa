package kaconf

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// File is a parsed keepalived.conf.
type File struct {
	// Global holds global_defs.
	Global Global
	// Scripts are the vrrp_script blocks, in file order.
	Scripts []*Script
	// Instances are the vrrp_instance blocks, in file order.
	Instances []*Instance
	// Other are top-level directives kaconf does not interpret (virtual_server,
	// vrrp_sync_group, include, …).
	Other []*Directive
	// Warnings are problems that did not stop parsing: unknown keywords, ignored words,
	// unsupported preprocessor lines.
	Warnings []string
}

// Global is the part of global_defs that matters to a VRRP import.
type Global struct {
	// RouterID is router_id.
	RouterID string
	// VRRPVersion is vrrp_version (0 if unset, meaning 2).
	VRRPVersion int
	// Strict is vrrp_strict.
	Strict bool
	// Other are the other global_defs directives.
	Other []*Directive
}

// Script is one vrrp_script block.
type Script struct {
	Name string
	Line int
	// Script is the command line.
	Script string
	// Interval is how often it runs (keepalived default 1 s).
	Interval time.Duration
	// Timeout is its run time limit (0: unset, keepalived uses the interval).
	Timeout time.Duration
	// Weight is its weight; WeightSet reports that one was given.
	Weight    int
	WeightSet bool
	// Reverse inverts the weight.
	Reverse bool
	// Rise and Fall are the successes/failures needed to change state (keepalived default 1).
	Rise, Fall int
	// User is the user (and group) it runs as.
	User string
	// Other are the directives kaconf does not interpret.
	Other []*Directive
}

// Track is one entry of track_script or track_interface.
type Track struct {
	Name      string
	Line      int
	Weight    int
	WeightSet bool
	Reverse   bool
}

// VIP is one virtual_ipaddress entry.
type VIP struct {
	// Prefix is the address; a bare address gets /32 (IPv6 /128) as in keepalived.
	Prefix netip.Prefix
	// Dev is the interface given with "dev" ("" = the instance's interface).
	Dev string
	// Label is the address label given with "label".
	Label string
	// Options are the other words (brd, scope, peer, no_track, …).
	Options []string
	Line    int
}

// Notify is a notify_* hook: the command line and the optional user[:group] keepalived runs
// it as.
type Notify struct {
	Cmd  string
	User string
	Line int
}

// Instance is one vrrp_instance block.
type Instance struct {
	Name string
	Line int
	// State is "MASTER", "BACKUP" or ""; StateLine is its line.
	State     string
	StateLine int
	// Interface is the interface adverts go out on.
	Interface string
	// VRID is virtual_router_id (0 if unset).
	VRID int
	// Priority is priority (0 if unset).
	Priority int
	// AdvertInt is advert_int (0 if unset, keepalived default 1 s).
	AdvertInt time.Duration
	// Version is version (0 if unset: global vrrp_version, else 2).
	Version int
	// Nopreempt is nopreempt (a later "preempt" clears it).
	Nopreempt bool
	// AuthType and AuthPass are from the authentication block as keepalived reads it: one
	// keyword per line, the rest of the line ignored.
	AuthType, AuthPass string
	// AuthLine is the line of the authentication block (0 if none).
	AuthLine int
	// TrackScripts and TrackInterfaces are the tracked objects.
	TrackScripts, TrackInterfaces []Track
	// VIPs are the virtual_ipaddress entries.
	VIPs []VIP
	// NotifyMaster, NotifyBackup and NotifyFault are the state hooks; NotifyAny is the
	// generic notify script (called with INSTANCE <name> <STATE> <priority> appended).
	NotifyMaster, NotifyBackup, NotifyFault, NotifyAny Notify
	// GARPMasterRepeat is garp_master_repeat (0 if unset).
	GARPMasterRepeat int
	// Other are the directives kaconf does not interpret, kept for the converter's report.
	Other []*Directive
}

// Parse reads a keepalived.conf. Syntax errors (unbalanced braces, unterminated quotes,
// malformed numbers or addresses) are errors naming the line; unknown keywords and other
// oddities become File.Warnings. include files are not followed (a warning says so).
func Parse(r io.Reader) (*File, error) {
	lines, err := lex(r)
	if err != nil {
		return nil, err
	}
	ds, err := tree(lines)
	if err != nil {
		return nil, err
	}
	p := &parser{f: &File{}}
	for _, d := range p.preprocess(ds) {
		switch d.Keyword {
		case "global_defs":
			p.global(d)
		case "vrrp_script":
			p.script(d)
		case "vrrp_instance":
			p.instance(d)
		case "include":
			p.warn(d, "include %s not followed: convert the included file separately", strings.Join(d.Args, " "))
			p.f.Other = append(p.f.Other, d)
		default:
			if !topKnown[d.Keyword] {
				p.warn(d, "unknown top-level keyword %s", d.Keyword)
			}
			p.f.Other = append(p.f.Other, d)
		}
	}
	if len(p.errs) > 0 {
		return nil, joinErrs(p.errs)
	}
	return p.f, nil
}

var topKnown = map[string]bool{
	"vrrp_sync_group": true, "virtual_server": true, "virtual_server_group": true, "static_ipaddress": true,
	"static_routes": true, "static_rules": true, "linkbeat_use_polling": true, "net_namespace": true,
	"vrrp_track_file": true, "track_file": true, "vrrp_track_process": true, "bfd_instance": true,
	"garp_group": true, "real_server": true,
}

type parser struct {
	f    *File
	errs []string
}

func (p *parser) warn(d *Directive, format string, args ...any) {
	p.f.Warnings = append(p.f.Warnings, fmt.Sprintf("line %d: %s", d.Line, fmt.Sprintf(format, args...)))
}

func (p *parser) fail(d *Directive, format string, args ...any) {
	p.errs = append(p.errs, fmt.Sprintf("line %d: %s", d.Line, fmt.Sprintf(format, args...)))
}

// preprocess drops keepalived's preprocessor lines ($NAME=value, ~SEQ) with a warning and
// keeps @id conditional lines unconditionally, also with a warning, at every depth.
func (p *parser) preprocess(ds []*Directive) []*Directive {
	out := ds[:0:0]
	for _, d := range ds {
		switch {
		case strings.HasPrefix(d.Keyword, "$"):
			p.warn(d, "parameter definition %s not supported: substitute it by hand", d.Keyword)
			continue
		case strings.HasPrefix(d.Keyword, "~"):
			p.warn(d, "%s expansion not supported: expand it by hand", d.Keyword)
			continue
		case strings.HasPrefix(d.Keyword, "@"):
			p.warn(d, "conditional line %s kept unconditionally", d.Keyword)
			if len(d.Args) == 0 {
				continue
			}
			d.Keyword, d.Args = d.Args[0], d.Args[1:]
		}
		for _, a := range d.Args {
			if strings.Contains(a, "$") {
				p.warn(d, "%s: $ substitution not supported in %q", d.Keyword, a)
			}
		}
		if d.HasBlock {
			d.Block = p.preprocess(d.Block)
		}
		out = append(out, d)
	}
	return out
}

// one returns the first argument of d, failing when there is none and warning, as keepalived
// would silently ignore them, about the words after it.
func (p *parser) one(d *Directive) (string, bool) {
	if len(d.Args) == 0 {
		p.fail(d, "%s needs a value", d.Keyword)
		return "", false
	}
	if len(d.Args) > 1 {
		p.warn(d, "%s: keepalived ignores the rest of the line: %s", d.Keyword, strings.Join(d.Args[1:], " "))
	}
	return d.Args[0], true
}

func (p *parser) int(d *Directive, lo, hi int) (int, bool) {
	s, ok := p.one(d)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		p.fail(d, "%s: want an integer %d..%d, got %q", d.Keyword, lo, hi, s)
		return 0, false
	}
	return n, true
}

// seconds parses keepalived's decimal seconds (e.g. 1, 0.5) into a duration, microsecond
// resolution as keepalived keeps it.
func (p *parser) seconds(d *Directive, hi float64) (time.Duration, bool) {
	s, ok := p.one(d)
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > hi || math.IsNaN(f) {
		p.fail(d, "%s: want seconds 0..%g, got %q", d.Keyword, hi, s)
		return 0, false
	}
	return time.Duration(math.Round(f*1e6)) * time.Microsecond, true
}

func (p *parser) global(g *Directive) {
	for _, d := range g.Block {
		switch d.Keyword {
		case "router_id":
			p.f.Global.RouterID, _ = p.one(d)
		case "vrrp_version":
			p.f.Global.VRRPVersion, _ = p.int(d, 2, 3)
		case "vrrp_strict":
			p.f.Global.Strict = true
			p.f.Global.Other = append(p.f.Global.Other, d)
		default:
			p.f.Global.Other = append(p.f.Global.Other, d)
		}
	}
}

func (p *parser) script(s *Directive) {
	name, ok := p.one(s)
	if !ok {
		return
	}
	sc := &Script{Name: name, Line: s.Line, Interval: time.Second, Rise: 1, Fall: 1}
	for _, d := range s.Block {
		switch d.Keyword {
		case "script":
			// keepalived takes the command as one (usually quoted) word, or joins the words.
			sc.Script = strings.Join(d.Args, " ")
		case "interval":
			sc.Interval, _ = p.seconds(d, 1e6)
		case "timeout":
			sc.Timeout, _ = p.seconds(d, 1e6)
		case "weight":
			if len(d.Args) == 0 {
				p.fail(d, "weight needs a value")
				continue
			}
			n, err := strconv.Atoi(d.Args[0])
			if err != nil || n < -253 || n > 253 {
				p.fail(d, "weight: want an integer -253..253, got %q", d.Args[0])
				continue
			}
			sc.Weight, sc.WeightSet = n, true
			sc.Reverse = len(d.Args) > 1 && d.Args[1] == "reverse"
		case "rise":
			sc.Rise, _ = p.int(d, 1, math.MaxInt32)
		case "fall":
			sc.Fall, _ = p.int(d, 1, math.MaxInt32)
		case "user":
			sc.User = strings.Join(d.Args, " ")
		default:
			if !scriptKnown[d.Keyword] {
				p.warn(d, "vrrp_script %s: unknown keyword %s", name, d.Keyword)
			}
			sc.Other = append(sc.Other, d)
		}
	}
	p.f.Scripts = append(p.f.Scripts, sc)
}

var scriptKnown = map[string]bool{"init_fail": true}

func (p *parser) instance(b *Directive) {
	name, ok := p.one(b)
	if !ok {
		return
	}
	in := &Instance{Name: name, Line: b.Line}
	for _, d := range b.Block {
		switch d.Keyword {
		case "state":
			s, _ := p.one(d)
			in.State, in.StateLine = strings.ToUpper(s), d.Line
			if in.State != "MASTER" && in.State != "BACKUP" {
				p.fail(d, "state: want MASTER or BACKUP, got %q", s)
			}
		case "interface":
			in.Interface, _ = p.one(d)
		case "virtual_router_id":
			in.VRID, _ = p.int(d, 1, 255)
		case "priority":
			in.Priority, _ = p.int(d, 1, 255)
		case "advert_int":
			in.AdvertInt, _ = p.seconds(d, 255)
			if in.AdvertInt == 0 {
				p.fail(d, "advert_int must be positive")
			}
		case "version":
			in.Version, _ = p.int(d, 2, 3)
		case "nopreempt":
			in.Nopreempt = true
		case "preempt":
			in.Nopreempt = false
		case "authentication":
			p.auth(in, d)
		case "track_script":
			in.TrackScripts = append(in.TrackScripts, p.tracks(d)...)
		case "track_interface":
			in.TrackInterfaces = append(in.TrackInterfaces, p.tracks(d)...)
			in.Other = append(in.Other, d)
		case "virtual_ipaddress":
			in.VIPs = append(in.VIPs, p.vips(d)...)
		case "notify_master":
			in.NotifyMaster = p.notify(d)
		case "notify_backup":
			in.NotifyBackup = p.notify(d)
		case "notify_fault":
			in.NotifyFault = p.notify(d)
		case "notify":
			in.NotifyAny = p.notify(d)
		case "garp_master_repeat":
			in.GARPMasterRepeat, _ = p.int(d, 1, 255)
		default:
			if !instanceKnown[d.Keyword] {
				p.warn(d, "vrrp_instance %s: unknown keyword %s", name, d.Keyword)
			}
			in.Other = append(in.Other, d)
		}
	}
	p.f.Instances = append(p.f.Instances, in)
}

// instanceKnown are the vrrp_instance keywords (keepalived 2.2/2.3) that kaconf keeps in
// Instance.Other without interpreting them.
var instanceKnown = map[string]bool{}

func init() {
	for _, k := range strings.Fields(`use_vmac vmac_xmit_base no_accept accept skip_check_adv_addr
		strict_mode preempt_delay debug notify_stop notify_deleted notify notify_master_rx_lower_pri
		smtp_alert lvs_sync_daemon_interface garp_master_delay garp_master_refresh
		garp_master_refresh_repeat garp_lower_prio_delay garp_lower_prio_repeat lower_prio_no_advert
		higher_prio_send_advert kernel_rx_buf_size mcast_src_ip unicast_src_ip unicast_peer
		unicast_ttl unicast_fault_no_peer check_unicast_src old_unicast_checksum
		virtual_ipaddress_excluded virtual_routes virtual_rules track_file track_process track_bfd
		track_src_ip dont_track_primary down_timer_adverts promote_secondaries linkbeat_use_polling
		native_ipv6 mcast_dst_ip mcast_dst_port use_ipvlan track_interface
		v3_checksum_as_v2 owner_ignore_adverts vrrp_script_user notify_priority_changes
		accept_unicast_priority_zero`) {
		instanceKnown[k] = true
	}
}

// auth reads an authentication block the way keepalived does: one keyword per logical line,
// extra words ignored. The one-line form "authentication { auth_type PASS auth_pass x }" thus
// sets no password, and keepalived then sends adverts without authentication.
func (p *parser) auth(in *Instance, b *Directive) {
	in.AuthLine = b.Line
	for _, d := range b.Block {
		switch d.Keyword {
		case "auth_type":
			if len(d.Args) == 0 {
				p.fail(d, "auth_type needs a value")
				continue
			}
			in.AuthType = strings.ToUpper(d.Args[0])
			if len(d.Args) > 1 {
				p.warn(d, "authentication: keepalived reads one keyword per line and ignores %q after auth_type %s", strings.Join(d.Args[1:], " "), d.Args[0])
			}
		case "auth_pass":
			in.AuthPass, _ = p.one(d)
		default:
			p.warn(d, "authentication: unknown keyword %s", d.Keyword)
		}
	}
}

func (p *parser) tracks(b *Directive) []Track {
	var out []Track
	for _, d := range b.Block {
		t := Track{Name: d.Keyword, Line: d.Line}
		args := d.Args
		if len(args) >= 2 && args[0] == "weight" {
			n, err := strconv.Atoi(args[1])
			if err != nil || n < -254 || n > 254 {
				p.fail(d, "%s %s: bad weight %q", b.Keyword, d.Keyword, args[1])
				continue
			}
			t.Weight, t.WeightSet = n, true
			args = args[2:]
		}
		if len(args) > 0 && args[0] == "reverse" {
			t.Reverse = true
			args = args[1:]
		} else if len(args) > 0 && args[0] == "noreverse" {
			args = args[1:]
		}
		if len(args) > 0 {
			p.warn(d, "%s %s: ignored words %s", b.Keyword, d.Keyword, strings.Join(args, " "))
		}
		out = append(out, t)
	}
	return out
}

func (p *parser) vips(b *Directive) []VIP {
	var out []VIP
	for _, d := range b.Block {
		v := VIP{Line: d.Line}
		pfx, err := netip.ParsePrefix(d.Keyword)
		if err != nil {
			a, aerr := netip.ParseAddr(d.Keyword)
			if aerr != nil {
				p.fail(d, "virtual_ipaddress: bad address %q", d.Keyword)
				continue
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		v.Prefix = pfx
		for i := 0; i < len(d.Args); i++ {
			switch w := d.Args[i]; {
			case (w == "dev" || w == "label") && i+1 < len(d.Args):
				if w == "dev" {
					v.Dev = d.Args[i+1]
				} else {
					v.Label = d.Args[i+1]
				}
				i++
			default:
				v.Options = append(v.Options, w)
			}
		}
		out = append(out, v)
	}
	return out
}

func (p *parser) notify(d *Directive) Notify {
	n := Notify{Line: d.Line}
	if len(d.Args) == 0 {
		p.fail(d, "%s needs a command", d.Keyword)
		return n
	}
	n.Cmd = d.Args[0]
	if len(d.Args) > 1 {
		n.User = d.Args[1]
	}
	if len(d.Args) > 2 {
		p.warn(d, "%s: keepalived ignores the rest of the line: %s", d.Keyword, strings.Join(d.Args[2:], " "))
	}
	return n
}

// Script returns the vrrp_script called name, or nil.
func (f *File) Script(name string) *Script {
	for _, s := range f.Scripts {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Instance returns the vrrp_instance called name, or nil.
func (f *File) Instance(name string) *Instance {
	for _, in := range f.Instances {
		if in.Name == name {
			return in
		}
	}
	return nil
}

func joinErrs(errs []string) error {
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = errors.New(e)
	}
	return errors.Join(out...)
}
