package testenv

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keepraft/keepraft/config"
)

var vip = []netip.Prefix{netip.MustParsePrefix("198.18.0.100/32")}

func TestKeepalivedRender(t *testing.T) {
	seed := KeepalivedConfig{Interface: "eth0", VRID: 51, Priority: 100, AdvertInt: time.Second, AuthPass: "secret",
		VIPs: vip, Nopreempt: true, CheckCmd: "/usr/bin/mysqladmin ping", RouterID: "db1"}
	const seedText = `# written by keepraft testenv
global_defs {
    router_id db1
    vrrp_version 2
    enable_script_security
    script_user root
    vrrp_garp_master_delay 0
}

vrrp_script chk_mysql {
    script "/usr/bin/mysqladmin ping"
    interval 1
    timeout 1
    fall 2
    rise 2
}

vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 100
    advert_int 1
    nopreempt
    authentication {
        auth_type PASS
        auth_pass secret
    }
    virtual_ipaddress {
        198.18.0.100/32 dev eth0
    }
    track_script {
        chk_mysql
    }
}
`
	with := func(f func(*KeepalivedConfig)) KeepalivedConfig {
		c := seed
		f(&c)
		return c
	}
	tests := []struct {
		name     string
		give     KeepalivedConfig
		want     string // whole text, when set
		contains []string
		wantErr  string
	}{
		{name: "classic seed", give: seed, want: seedText},
		{name: "no check, no auth, master", give: with(func(c *KeepalivedConfig) {
			c.CheckCmd, c.AuthPass, c.Nopreempt, c.State = "", "", false, "MASTER"
		}), contains: []string{"state MASTER", "advert_int 1\n"}},
		{name: "v3 centiseconds", give: with(func(c *KeepalivedConfig) {
			c.Version, c.AuthPass, c.AdvertInt = 3, "", 250*time.Millisecond
		}), contains: []string{"vrrp_version 3", "advert_int 0.25\n"}},
		{name: "two vips", give: with(func(c *KeepalivedConfig) {
			c.VIPs = append(slices.Clone(vip), netip.MustParsePrefix("198.18.0.101/32"))
		}), contains: []string{"198.18.0.100/32 dev eth0\n        198.18.0.101/32 dev eth0\n"}},
		{name: "v2 fractional advert", give: with(func(c *KeepalivedConfig) { c.AdvertInt = 1500 * time.Millisecond }), wantErr: "whole seconds"},
		{name: "v3 with auth", give: with(func(c *KeepalivedConfig) { c.Version = 3 }), wantErr: "VRRPv3 has no authentication"},
		{name: "long pass", give: with(func(c *KeepalivedConfig) { c.AuthPass = "123456789" }), wantErr: "auth_pass"},
		{name: "priority 255", give: with(func(c *KeepalivedConfig) { c.Priority = 255 }), wantErr: "priority"},
		{name: "vrid 0", give: with(func(c *KeepalivedConfig) { c.VRID = 0 }), wantErr: "vrid"},
		{name: "nopreempt master", give: with(func(c *KeepalivedConfig) { c.State = "MASTER" }), wantErr: "nopreempt"},
		{name: "no vips", give: with(func(c *KeepalivedConfig) { c.VIPs = nil }), wantErr: "vips"},
		{name: "relative check", give: with(func(c *KeepalivedConfig) { c.CheckCmd = "mysqladmin ping" }), wantErr: "check_cmd"},
		{name: "quoted check", give: with(func(c *KeepalivedConfig) { c.CheckCmd = `/bin/sh -c "x"` }), wantErr: "check_cmd"},
		{name: "no interface", give: with(func(c *KeepalivedConfig) { c.Interface = "" }), wantErr: "interface"},
		{name: "version 4", give: with(func(c *KeepalivedConfig) { c.Version = 4 }), wantErr: "version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.give.Render()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Render() error = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Render() error = %v", err)
			}
			if tt.want != "" && got != tt.want {
				t.Errorf("Render() =\n%s\nwant\n%s", got, tt.want)
			}
			for _, c := range tt.contains {
				if !strings.Contains(got, c) {
					t.Errorf("Render() =\n%s\nwant it to contain %q", got, c)
				}
			}
		})
	}
}

func TestParseGTIDPos(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		want    map[uint32]uint64
		wantErr bool
	}{
		{name: "empty", give: "", want: map[uint32]uint64{}},
		{name: "two domains", give: "1-1-5,2-2-3", want: map[uint32]uint64{1: 5, 2: 3}},
		{name: "spaces", give: " 1-1-5, 2-12-30 ", want: map[uint32]uint64{1: 5, 2: 30}},
		{name: "bad", give: "1-1", wantErr: true},
		{name: "not a number", give: "1-1-x", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseGTIDPos(tt.give)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseGTIDPos(%q) error = %v, wantErr %v", tt.give, err, tt.wantErr)
			}
			if err == nil && len(got) != len(tt.want) {
				t.Fatalf("parseGTIDPos(%q) = %v, want %v", tt.give, got, tt.want)
			}
			for d, n := range tt.want {
				if got[d] != n {
					t.Errorf("parseGTIDPos(%q)[%d] = %d, want %d", tt.give, d, got[d], n)
				}
			}
		})
	}
}

func TestKeepraftdConfigsParse(t *testing.T) {
	l := &Lab{Dir: t.TempDir(), VIP: DefaultVIP, byName: map[string]*Host{}}
	for _, n := range []string{"db1", "db2", "witness"} {
		h := &Host{Name: n, Addr: netip.AddrFrom4([4]byte{198, 18, 0, fixedOctets[n]})}
		l.hosts = append(l.hosts, h)
		l.byName[n] = h
	}
	nodes, err := l.WriteKeepraftdConfigs(KeepraftdOptions{VRRP: true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		give     int
		wantRole string
		wantPrio int
	}{
		{name: "db1", give: 0, wantRole: "database", wantPrio: 100},
		{name: "db2", give: 1, wantRole: "database", wantPrio: 90},
		{name: "witness", give: 2, wantRole: "witness"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := nodes[tt.give]
			cfg, err := config.Load(n.ConfigPath)
			if err != nil {
				b, _ := os.ReadFile(n.ConfigPath)
				t.Fatalf("config.Load(%s): %v\n%s", n.ConfigPath, err, b)
			}
			if cfg.Node.ID != tt.name || cfg.Node.Role != tt.wantRole || len(cfg.Cluster.Peers) != 3 {
				t.Errorf("node %s: got id %q role %q peers %d", tt.name, cfg.Node.ID, cfg.Node.Role, len(cfg.Cluster.Peers))
			}
			if tt.wantPrio != 0 && cfg.VRRP.Priority != tt.wantPrio {
				t.Errorf("node %s: priority %d, want %d", tt.name, cfg.VRRP.Priority, tt.wantPrio)
			}
		})
	}
}

func TestCaughtUp(t *testing.T) {
	pos := func(s string) map[uint32]uint64 {
		m, err := parseGTIDPos(s)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	tests := []struct {
		name                string
		want, slave, binlog string
		own                 uint32
		wantOK              bool
	}{
		{name: "applied from peer", want: "1-1-5,2-2-3", slave: "1-1-5,2-2-3", binlog: "2-2-3", own: 2, wantOK: true},
		{name: "own domain from binlog", want: "1-1-5,2-2-3", slave: "1-1-5", binlog: "1-1-5,2-2-3", own: 2, wantOK: true},
		{name: "binlog is not enough for the peer domain", want: "1-1-5", slave: "1-1-4", binlog: "1-1-5", own: 2, wantOK: false},
		{name: "behind", want: "1-1-5", slave: "1-1-4", binlog: "", own: 2, wantOK: false},
		{name: "nothing wanted", want: "", slave: "", binlog: "", own: 1, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := caughtUp(pos(tt.want), pos(tt.slave), pos(tt.binlog), tt.own); got != tt.wantOK {
				t.Errorf("caughtUp(%s; %s; %s; %d) = %v, want %v", tt.want, tt.slave, tt.binlog, tt.own, got, tt.wantOK)
			}
		})
	}
}
