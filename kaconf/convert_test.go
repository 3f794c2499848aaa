package kaconf

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keepraft/keepraft/config"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func parseFile(t *testing.T, name string) *File {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("Parse %s: %v", name, err)
	}
	return f
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run go test ./kaconf -update after checking):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// validates checks that the YAML is a keepraftd config once the placeholder secret files
// exist: config.Parse rejects unknown keys and bad values.
func validates(t *testing.T, doc []byte) *config.Config {
	t.Helper()
	dir := t.TempDir()
	token, pass := filepath.Join(dir, "token"), filepath.Join(dir, "mysql.pass")
	for _, p := range []string{token, pass} {
		if err := os.WriteFile(p, []byte("secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := strings.ReplaceAll(string(doc), "/etc/keepraft/token", token)
	s = strings.ReplaceAll(s, "/etc/keepraft/mysql.pass", pass)
	c, err := config.Parse(strings.NewReader(s), config.Offline())
	if err != nil {
		t.Fatalf("converted YAML is not a valid keepraftd config: %v\n%s", err, s)
	}
	return c
}

func TestConvertSeed(t *testing.T) {
	f := parseFile(t, "seed.conf")
	if len(f.Warnings) != 0 {
		t.Errorf("parse warnings: %q", f.Warnings)
	}
	doc, warns, err := Convert(f, "VI_1")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "seed.yaml.golden", doc)
	wantWarns := []string{
		"line 8: state BACKUP not mapped: keepraft's Raft log decides which node owns the VIP",
		"line 19: track_script chk_mysql (/etc/keepalived/check_mysql.sh) not run: keepraft probes MySQL itself; see the comment under mysql",
	}
	if !slices.Equal(warns, wantWarns) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(warns, "\n"), strings.Join(wantWarns, "\n"))
	}
	// "" picks the only instance.
	doc2, _, err := Convert(f, "")
	if err != nil || !bytes.Equal(doc, doc2) {
		t.Errorf("Convert(f, \"\") = %v, differs: %v", err, !bytes.Equal(doc, doc2))
	}

	c := validates(t, doc)
	v := c.VRRP
	if !v.Enabled || v.Version != 2 || v.VirtualRouterID != 51 || v.Priority != 100 || v.AdvertInt.String() != "5s" || v.AuthPass != "1111" {
		t.Errorf("vrrp = %+v", v)
	}
	if c.VIP.Interface != "eth0" || len(c.VIP.Addresses) != 1 || c.VIP.Addresses[0].String() != "10.0.0.100/32" {
		t.Errorf("vip = %+v", c.VIP)
	}
	if !c.Failover.Nopreempt || c.Notify.Master != "/etc/keepalived/notify.sh master" || c.Notify.Backup != "" {
		t.Errorf("failover %+v notify %+v", c.Failover, c.Notify)
	}
}

// TestConvertKitchenSink converts a config full of settings keepraft cannot map; every one
// of them must be reported and the YAML must still be valid.
func TestConvertKitchenSink(t *testing.T) {
	f := parseFile(t, "kitchen.conf")
	doc, warns, err := Convert(f, "VI_DB")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "kitchen.yaml.golden", doc)
	all := strings.Join(warns, "\n")
	for _, want := range []string{
		"unicast_peer", "unicast_src_ip", "use_vmac", "track_interface", "eth1 weight -20", "preempt_delay",
		"Authentication specified but no password given", "ignores \"auth_pass secret\"",
		"priority 255 (address owner) lowered to 254", "vrrp_instance VI_OTHER not converted",
		"virtual_server 10.0.0.1 80 not converted", "global_defs vrrp_strict not mapped",
		"IPv6 VIP 2001:db8::1/128 skipped", "VIP 10.0.0.102/32 dev eth9", "notify_master runs as root",
		"track_script chk_mysql weight not mapped",
		"garp_master_delay 10 not mapped", "include /etc/keepalived/extra/*.conf not followed",
		"vrrp_instance VI_DB: unknown keyword bogus_keyword",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no warning mentions %q; warnings:\n%s", want, all)
		}
	}
	c := validates(t, doc)
	if c.Notify.Any != "/bin/notify-all.sh" || c.Notify.Instance != "VI_DB" {
		t.Errorf("keepalived's notify is not notify.any with its instance: %+v", c.Notify)
	}
	if c.VRRP.AuthPass != "" || c.VRRP.Priority != 254 || c.Failover.Nopreempt {
		t.Errorf("vrrp %+v failover %+v", c.VRRP, c.Failover)
	}
	if got := len(c.VIP.Addresses); got != 3 {
		t.Errorf("vip.addresses %v, want the 3 IPv4 VIPs", c.VIP.Addresses)
	}
	if c.VIP.Label != "eth0:vip" || c.VIP.GARPRepeat != 8 {
		t.Errorf("vip %+v", c.VIP)
	}
}

func TestConvertCases(t *testing.T) {
	tests := []struct {
		name string
		give string
		want []string // substrings of the YAML
		warn []string // substrings of the warnings
	}{
		{
			name: "defaults: no priority, no advert_int, no auth, preempt",
			give: "vrrp_instance A {\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {\n 10.1.1.1/24\n }\n}\n",
			want: []string{"priority: 100 ", "advert_int: 1s\n", "nopreempt: false", "addresses: [10.1.1.1/24]", "version: 2\n"},
		},
		{
			name: "state MASTER without priority means 255, lowered",
			give: "vrrp_instance A {\n state MASTER\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {\n 10.1.1.1\n }\n}\n",
			want: []string{"priority: 254 "},
			warn: []string{"priority 255", "state MASTER not mapped"},
		},
		{
			name: "global vrrp_version 3 and fractional advert_int",
			give: "global_defs {\n vrrp_version 3\n}\nvrrp_instance A {\n interface eth0\n virtual_router_id 9\n advert_int 0.25\n virtual_ipaddress {\n 10.1.1.1\n }\n}\n",
			want: []string{"version: 3\n", "advert_int: 250ms\n"},
		},
		{
			name: "v2 fractional advert_int rounded",
			give: "vrrp_instance A {\n interface eth0\n virtual_router_id 9\n advert_int 1.5\n virtual_ipaddress {\n 10.1.1.1\n }\n}\n",
			want: []string{"advert_int: 2s\n"},
			warn: []string{"advert_int 1.5s is not whole seconds"},
		},
		{
			name: "v3 with authentication: dropped",
			give: "vrrp_instance A {\n version 3\n interface eth0\n virtual_router_id 9\n authentication {\n auth_type PASS\n auth_pass x\n }\n virtual_ipaddress {\n 10.1.1.1\n }\n}\n",
			warn: []string{"VRRPv3 has none"},
		},
		{
			name: "long password truncated like keepalived",
			give: "vrrp_instance A {\n interface eth0\n virtual_router_id 9\n authentication {\n auth_type PASS\n auth_pass 0123456789\n }\n virtual_ipaddress {\n 10.1.1.1\n }\n}\n",
			want: []string{"auth_pass: \"01234567\"\n"},
			warn: []string{"longer than 8 bytes"},
		},
		{
			name: "AH auth",
			give: "vrrp_instance A {\n interface eth0\n virtual_router_id 9\n authentication {\n auth_type AH\n auth_pass x\n }\n virtual_ipaddress {\n 10.1.1.1\n }\n}\n",
			warn: []string{"auth_type AH not supported"},
		},
		{
			name: "password with YAML specials is quoted",
			give: "vrrp_instance A {\n interface eth0\n virtual_router_id 9\n authentication {\n auth_type PASS\n auth_pass \"a: #b\"\n }\n virtual_ipaddress {\n 10.1.1.1\n }\n}\n",
			want: []string{"auth_pass: 'a: #b'\n"},
		},
		{
			name: "missing track script",
			give: "vrrp_instance A {\n interface eth0\n virtual_router_id 9\n track_script {\n nosuch\n }\n virtual_ipaddress {\n 10.1.1.1\n }\n}\n",
			warn: []string{"track_script nosuch: no vrrp_script of that name"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse(strings.NewReader(tt.give))
			if err != nil {
				t.Fatal(err)
			}
			doc, warns, err := Convert(f, "A")
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(doc), w) {
					t.Errorf("YAML lacks %q:\n%s", w, doc)
				}
			}
			all := strings.Join(warns, "\n")
			for _, w := range tt.warn {
				if !strings.Contains(all, w) {
					t.Errorf("warnings lack %q:\n%s", w, all)
				}
			}
			validates(t, doc)
		})
	}
}

func TestConvertPicksInstance(t *testing.T) {
	two := "vrrp_instance A {\n virtual_router_id 1\n}\nvrrp_instance B {\n virtual_router_id 2\n}\n"
	f, err := Parse(strings.NewReader(two))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		give string
		want error
	}{
		{give: "", want: ErrNoInstance},
		{give: "C", want: ErrNoInstance},
		{give: "B", want: nil},
	}
	for _, tt := range tests {
		if _, _, err := Convert(f, tt.give); !errors.Is(err, tt.want) {
			t.Errorf("Convert(%q) err = %v, want %v", tt.give, err, tt.want)
		}
	}
}
