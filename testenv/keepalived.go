package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"
)

// KeepalivedConfig describes one classic keepalived VRRP peer, as in the dual-master seed:
// one vrrp_instance, optionally tracking a MySQL check script every second.
type KeepalivedConfig struct {
	// Interface is the VRRP interface (eth0 in the lab).
	Interface string
	// VRID is virtual_router_id, 1..255.
	VRID int
	// Priority is 1..254.
	Priority int
	// AdvertInt is advert_int; whole seconds for VRRPv2, centiseconds for v3.
	AdvertInt time.Duration
	// AuthPass enables PASS authentication (v2 only, at most 8 bytes); empty = none.
	AuthPass string
	// VIPs are the virtual_ipaddress entries.
	VIPs []netip.Prefix
	// Version is vrrp_version, 2 (default) or 3.
	Version int
	// Nopreempt keeps a lower-priority MASTER in place; needs State BACKUP.
	Nopreempt bool
	// State is the initial state, BACKUP (default) or MASTER.
	State string
	// CheckCmd is the track_script command run every 1 s (fall 2, rise 2); empty = none. It
	// must start with an absolute path and contain no double quote.
	CheckCmd string
	// RouterID is global_defs router_id; default "lab".
	RouterID string
}

var keepalivedTmpl = template.Must(template.New("keepalived.conf").Parse(`# written by keepraft testenv
global_defs {
    router_id {{.RouterID}}
    vrrp_version {{.Version}}
    enable_script_security
    script_user root
    vrrp_garp_master_delay 0
}
{{- if .CheckCmd}}

vrrp_script chk_mysql {
    script "{{.CheckCmd}}"
    interval 1
    timeout 1
    fall 2
    rise 2
}
{{- end}}

vrrp_instance VI_1 {
    state {{.State}}
    interface {{.Interface}}
    virtual_router_id {{.VRID}}
    priority {{.Priority}}
    advert_int {{.Advert}}
{{- if .Nopreempt}}
    nopreempt
{{- end}}
{{- if .AuthPass}}
    authentication {
        auth_type PASS
        auth_pass {{.AuthPass}}
    }
{{- end}}
    virtual_ipaddress {
{{- range .VIPs}}
        {{.}} dev {{$.Interface}}
{{- end}}
    }
{{- if .CheckCmd}}
    track_script {
        chk_mysql
    }
{{- end}}
}
`))

// Render validates the config and returns the keepalived.conf text.
func (c KeepalivedConfig) Render() (string, error) {
	if c.Version == 0 {
		c.Version = 2
	}
	if c.State == "" {
		c.State = "BACKUP"
	}
	if c.RouterID == "" {
		c.RouterID = "lab"
	}
	var errs []error
	if c.Interface == "" || strings.ContainsAny(c.Interface, " \t\n\"{}") {
		errs = append(errs, fmt.Errorf("interface: invalid %q", c.Interface))
	}
	if c.VRID < 1 || c.VRID > 255 {
		errs = append(errs, fmt.Errorf("vrid: must be 1..255, got %d", c.VRID))
	}
	if c.Priority < 1 || c.Priority > 254 {
		errs = append(errs, fmt.Errorf("priority: must be 1..254, got %d", c.Priority))
	}
	if c.Version != 2 && c.Version != 3 {
		errs = append(errs, fmt.Errorf("version: must be 2 or 3, got %d", c.Version))
	}
	if c.State != "BACKUP" && c.State != "MASTER" {
		errs = append(errs, fmt.Errorf("state: must be BACKUP or MASTER, got %q", c.State))
	}
	if c.Nopreempt && c.State != "BACKUP" {
		errs = append(errs, errors.New("nopreempt: needs state BACKUP"))
	}
	advert := ""
	switch {
	case c.AdvertInt <= 0:
		errs = append(errs, fmt.Errorf("advert_int: must be > 0, got %s", c.AdvertInt))
	case c.Version == 2 && c.AdvertInt%time.Second != 0:
		errs = append(errs, fmt.Errorf("advert_int: VRRPv2 needs whole seconds, got %s", c.AdvertInt))
	case c.Version == 3 && c.AdvertInt%(10*time.Millisecond) != 0:
		errs = append(errs, fmt.Errorf("advert_int: VRRPv3 needs centiseconds, got %s", c.AdvertInt))
	case c.AdvertInt > 40*time.Second:
		errs = append(errs, fmt.Errorf("advert_int: at most 40s, got %s", c.AdvertInt))
	default:
		advert = strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", c.AdvertInt.Seconds()), "0"), ".")
	}
	if c.AuthPass != "" {
		if c.Version == 3 {
			errs = append(errs, errors.New("auth_pass: VRRPv3 has no authentication"))
		}
		if len(c.AuthPass) > 8 || strings.ContainsAny(c.AuthPass, " \t\n\"{}#!") {
			errs = append(errs, fmt.Errorf("auth_pass: at most 8 bytes without blanks, quotes, braces or comment marks, got %q", c.AuthPass))
		}
	}
	if len(c.VIPs) == 0 {
		errs = append(errs, errors.New("vips: at least one"))
	}
	for _, v := range c.VIPs {
		if !v.IsValid() || !v.Addr().Is4() {
			errs = append(errs, fmt.Errorf("vips: %s is not an IPv4 prefix", v))
		}
	}
	if c.CheckCmd != "" && (!strings.HasPrefix(c.CheckCmd, "/") || strings.ContainsAny(c.CheckCmd, "\"\n")) {
		errs = append(errs, fmt.Errorf("check_cmd: must start with an absolute path and hold no double quote or newline, got %q", c.CheckCmd))
	}
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("keepalived config: %w", err)
	}
	var b strings.Builder
	if err := keepalivedTmpl.Execute(&b, struct {
		KeepalivedConfig
		Advert string
	}{c, advert}); err != nil {
		return "", fmt.Errorf("render keepalived config: %w", err)
	}
	return b.String(), nil
}

// StartKeepalived writes the config under Dir/keepalived-<host>/ and runs keepalived in the
// foreground (-n -l -D, VRRP only, no syslog) inside h's namespace, with its own pid files.
// It returns once the process runs; the config is checked with `keepalived -t` first.
func (l *Lab) StartKeepalived(ctx context.Context, h *Host, cfg KeepalivedConfig) (*Proc, error) {
	if h == nil {
		return nil, errors.New("start keepalived: need a host")
	}
	if cfg.RouterID == "" {
		cfg.RouterID = h.Name
	}
	text, err := cfg.Render()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(l.Dir, "keepalived-"+h.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("start keepalived on %s: %w", h.Name, err)
	}
	conf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, fmt.Errorf("start keepalived on %s: %w", h.Name, err)
	}
	if out, err := h.Run(ctx, "keepalived", "-t", "-f", conf); err != nil {
		return nil, fmt.Errorf("keepalived config check on %s: %w: %s", h.Name, err, lastLines(string(out), 20))
	}
	argv := []string{"keepalived", "-n", "-l", "-D", "-G", "-P",
		"-f", conf,
		"-p", filepath.Join(dir, "keepalived.pid"),
		"-r", filepath.Join(dir, "vrrp.pid"),
		"-c", filepath.Join(dir, "checkers.pid"),
		"-b", filepath.Join(dir, "bfd.pid"),
	}
	return l.Spawn(h, "keepalived-"+h.Name, argv, nil)
}
