package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func secrets(t *testing.T) (token, pass string) {
	t.Helper()
	dir := t.TempDir()
	token, pass = filepath.Join(dir, "token"), filepath.Join(dir, "pass")
	for _, f := range []string{token, pass} {
		if err := os.WriteFile(f, []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return token, pass
}

func reference(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../examples/keepraft.yaml")
	if err != nil {
		t.Fatal(err)
	}
	token, pass := secrets(t)
	s := strings.ReplaceAll(string(b), "/etc/keepraft/token", token)
	return strings.ReplaceAll(s, "/etc/keepraft/mysql.pass", pass)
}

func TestParseReference(t *testing.T) {
	cfg, err := Parse(strings.NewReader(reference(t)))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Node.ID != "db1" || len(cfg.Cluster.Peers) != 3 || cfg.VIP.Addresses[0].String() != "10.0.0.100/32" {
		t.Fatalf("unexpected config %+v", cfg)
	}
	if cfg.Failover.Lease != 500*time.Millisecond || cfg.Cluster.Raft.CommitTimeout != time.Second {
		t.Fatalf("durations not parsed: %+v", cfg.Failover)
	}
}

// TestRaftTimingsFollowHeartbeat: the Raft timings left unset follow heartbeat_timeout, so
// setting it alone gives a valid config; one that is set stays as set.
func TestRaftTimingsFollowHeartbeat(t *testing.T) {
	const raft = "    heartbeat_timeout: 2s\n    election_timeout: 2s\n    leader_lease_timeout: 1s\n    commit_timeout: 1s\n"
	tests := []struct {
		name, set                        string
		heartbeat, election, lease, comm time.Duration
	}{
		{"all unset: the defaults", "", 2 * time.Second, 2 * time.Second, time.Second, time.Second},
		{"heartbeat alone", "    heartbeat_timeout: 300ms\n", 300 * time.Millisecond, 300 * time.Millisecond, 150 * time.Millisecond, 150 * time.Millisecond},
		{"heartbeat and commit", "    heartbeat_timeout: 4s\n    commit_timeout: 250ms\n", 4 * time.Second, 4 * time.Second, 2 * time.Second, 250 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse(strings.NewReader(edited(t, raft, tt.set)))
			if err != nil {
				t.Fatal(err)
			}
			r := cfg.Cluster.Raft
			if r.HeartbeatTimeout != tt.heartbeat || r.ElectionTimeout != tt.election || r.LeaderLeaseTimeout != tt.lease || r.CommitTimeout != tt.comm {
				t.Fatalf("heartbeat %v election %v leader lease %v commit %v", r.HeartbeatTimeout, r.ElectionTimeout, r.LeaderLeaseTimeout, r.CommitTimeout)
			}
		})
	}
}

func TestParseErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name    string
		replace [2]string
		want    string
	}{
		{"unknown key", [2]string{"  fall: 2\n", "  fall: 2\n  fal: 3\n"}, "mysql.fal: unknown key"},
		{"unknown section", [2]string{"log:\n", "logs:\n  x: 1\nlog:\n"}, "logs: unknown key"},
		{"bad duration", [2]string{"interval: 100ms", "interval: fast"}, `mysql.interval: invalid duration "fast"`},
		{"fall zero", [2]string{"fall: 2", "fall: 0"}, "mysql.fall: must be ≥ 1, got 0"},
		{"bad role", [2]string{"role: database", "role: primary"}, "node.role: must be database or witness"},
		{"bad vip", [2]string{"[10.0.0.100/32]", "[10.0.0.300/32]"}, "vip.addresses[0]: invalid CIDR"},
		{"priority 255", [2]string{"priority: 100", "priority: 255"}, "vrrp.priority: must be 1..254"},
		{"v2 fractional advert", [2]string{"advert_int: 1s", "advert_int: 1500ms"}, "vrrp.advert_int: VRRPv2 needs whole seconds"},
		{"kernel lease fraction", [2]string{"kernel_lease: 1s", "kernel_lease: 1500ms"}, "vip.kernel_lease: must be whole seconds"},
		{"bad fence", [2]string{"fence: auto", "fence: iptables"}, `vip.fence: must be auto, nftables or off, got "iptables"`},
		{"lease too short", [2]string{"lease: 500ms", "lease: 50ms"}, "failover.lease: (50ms) must be ≥ 150ms"},
		{"raft inequality", [2]string{"leader_lease_timeout: 1s", "leader_lease_timeout: 2500ms"}, "cluster.raft.leader_lease_timeout: (2.5s) cannot be larger than heartbeat_timeout (2s)"},
		{"probe slower than fall", [2]string{"\n  timeout: 200ms", "\n  timeout: 2s"}, "mysql.timeout: (2s) must not exceed"},
		{"self missing", [2]string{"- {id: db1,", "- {id: db4,"}, "cluster.peers: must include this node"},
		{"bad addr", [2]string{"api_addr: 10.0.0.11:7001\n  token", "api_addr: 10.0.0.11\n  token"}, "cluster.api_addr: invalid address"},
		{"catchup policy", [2]string{"on_catchup_timeout: promote", "on_catchup_timeout: maybe"}, "failover.on_catchup_timeout: must be promote or hold"},
		{"missing token file", [2]string{"token_file: /", "token_file: /nonexistent/"}, "cluster.token_file:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := reference(t)
			if !strings.Contains(src, tt.replace[0]) {
				t.Fatalf("reference lacks %q", tt.replace[0])
			}
			_, err := Parse(strings.NewReader(strings.Replace(src, tt.replace[0], tt.replace[1], 1)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseReportsEveryError(t *testing.T) {
	src := strings.NewReplacer("fall: 2", "fall: 0", "rise: 2", "rise: 0", "priority: 100", "priority: 0").Replace(reference(t))
	_, err := Parse(strings.NewReader(src))
	for _, key := range []string{"mysql.fall", "mysql.rise", "vrrp.priority"} {
		if err == nil || !strings.Contains(err.Error(), key+":") {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
}

func TestWitnessNeedsNoMySQL(t *testing.T) {
	token, _ := secrets(t)
	src := `node: {id: witness, role: witness, data_dir: /tmp/w}
cluster:
  raft_addr: 127.0.0.3:7000
  api_addr: 127.0.0.3:7001
  token_file: ` + token + `
  peers:
    - {id: db1, raft_addr: 127.0.0.1:7000, api_addr: 127.0.0.1:7001}
    - {id: db2, raft_addr: 127.0.0.2:7000, api_addr: 127.0.0.2:7001}
    - {id: witness, raft_addr: 127.0.0.3:7000, api_addr: 127.0.0.3:7001}
`
	if _, err := Parse(strings.NewReader(src)); err != nil {
		t.Fatal(err)
	}
}

// edited returns the reference config with each old→new pair in edits applied once,
// before the secret paths are pointed at temporary files (so an edit may replace them).
func edited(t *testing.T, edits ...string) string {
	t.Helper()
	b, err := os.ReadFile("../examples/keepraft.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(src, edits[i]) {
			t.Fatalf("reference lacks %q", edits[i])
		}
		src = strings.Replace(src, edits[i], edits[i+1], 1)
	}
	token, pass := secrets(t)
	src = strings.ReplaceAll(src, "/etc/keepraft/token", token)
	return strings.ReplaceAll(src, "/etc/keepraft/mysql.pass", pass)
}

// TestBuildErrorsExact pins every validation message byte for byte, and the order in
// which they are reported when one edit triggers several.
func TestBuildErrorsExact(t *testing.T) {
	const peers = "    - {id: db1, raft_addr: 10.0.0.11:7000, api_addr: 10.0.0.11:7001}\n" +
		"    - {id: db2, raft_addr: 10.0.0.12:7000, api_addr: 10.0.0.12:7001}\n" +
		"    - {id: witness, raft_addr: 10.0.0.13:7000, api_addr: 10.0.0.13:7001}\n"
	const dur = " (use Go durations such as 200ms or 1s)"
	tests := []struct {
		name  string
		edits []string
		want  []string // nil: the config is valid
	}{
		{"reference", nil, nil},
		{"bare IPv4 VIP", []string{"[10.0.0.100/32]", "[10.0.0.100]"}, nil},

		{"node id", []string{"  id: db1\n  role", "  id: \"\"\n  role"}, []string{"node.id: must be set"}},
		{"node role", []string{"role: database", "role: primary"}, []string{
			`node.role: must be database or witness, got "primary"`,
			"vip.addresses: must be empty on a witness: a witness never owns the VIP"}},
		{"node data_dir", []string{"data_dir: /var/lib/keepraft", `data_dir: ""`}, []string{"node.data_dir: must be set"}},

		{"raft_addr unset", []string{"raft_addr: 10.0.0.11:7000\n  api", "raft_addr: \"\"\n  api"}, []string{
			"cluster.raft_addr: must be set (host:port)",
			`cluster.peers[0].raft_addr: "10.0.0.11:7000" differs from cluster.raft_addr "" for this node`}},
		{"api_addr no port", []string{"api_addr: 10.0.0.11:7001\n  token", "api_addr: 10.0.0.11\n  token"}, []string{
			`cluster.api_addr: invalid address "10.0.0.11": want host:port`,
			`cluster.peers[0].api_addr: "10.0.0.11:7001" differs from cluster.api_addr "10.0.0.11" for this node`}},
		{"peer port zero", []string{"raft_addr: 10.0.0.12:7000", "raft_addr: 10.0.0.12:0"}, []string{
			`cluster.peers[1].raft_addr: invalid port in "10.0.0.12:0"`}},
		{"token_file unset", []string{"token_file: /etc/keepraft/token", `token_file: ""`}, []string{"cluster.token_file: must be set"}},
		{"token_file missing", []string{"/etc/keepraft/token", "/nonexistent/token"}, []string{
			"cluster.token_file: open /nonexistent/token: no such file or directory"}},
		{"token_file empty", []string{"/etc/keepraft/token", "/dev/null"}, []string{"cluster.token_file: /dev/null is empty"}},
		{"peer id unset", []string{"{id: db2,", `{id: "",`}, []string{"cluster.peers[1].id: must be set"}},
		{"peer id duplicate", []string{"{id: db2,", "{id: db1,"}, []string{
			`cluster.peers[1].id: duplicate id "db1"`,
			`cluster.peers[1].raft_addr: "10.0.0.12:7000" differs from cluster.raft_addr "10.0.0.11:7000" for this node`,
			`cluster.peers[1].api_addr: "10.0.0.12:7001" differs from cluster.api_addr "10.0.0.11:7001" for this node`}},
		{"no peers", []string{"  peers:\n" + peers, "  peers: []\n"}, []string{
			"cluster.peers: must list every voter, this node included"}},
		{"even peers", []string{peers, peers[:strings.LastIndex(peers[:len(peers)-1], "\n")+1]}, []string{
			"cluster.peers: needs an odd number of voters (two database nodes and a witness), got 2"}},
		{"self missing", []string{"- {id: db1,", "- {id: db4,"}, []string{`cluster.peers: must include this node ("db1")`}},

		{"heartbeat invalid", []string{"heartbeat_timeout: 2s", "heartbeat_timeout: soon"}, []string{
			`cluster.raft.heartbeat_timeout: invalid duration "soon"` + dur}},
		{"election zero", []string{"election_timeout: 2s", "election_timeout: 0s"}, []string{
			"cluster.raft.election_timeout: must be positive, got 0s"}},
		{"leader lease negative", []string{"leader_lease_timeout: 1s", "leader_lease_timeout: -5ms"}, []string{
			"cluster.raft.leader_lease_timeout: must be positive, got -5ms"}},
		{"commit invalid", []string{"commit_timeout: 1s", "commit_timeout: 5"}, []string{
			`cluster.raft.commit_timeout: invalid duration "5"` + dur}},
		{"snapshot interval negative", []string{"snapshot_interval: 30s", "snapshot_interval: -1s"}, []string{
			"cluster.raft.snapshot_interval: must be positive, got -1s"}},
		{"snapshot threshold", []string{"snapshot_threshold: 1024", "snapshot_threshold: 0"}, []string{
			"cluster.raft.snapshot_threshold: must be ≥ 1, got 0"}},
		{"journal retain", []string{"journal_retain: 10000", "journal_retain: 99"}, []string{
			"cluster.raft.journal_retain: must be ≥ 100, got 99"}},
		{"leader lease too long", []string{"leader_lease_timeout: 1s", "leader_lease_timeout: 2500ms"}, []string{
			"cluster.raft.leader_lease_timeout: (2.5s) cannot be larger than heartbeat_timeout (2s)"}},
		{"election below heartbeat", []string{"election_timeout: 2s", "election_timeout: 300ms"}, []string{
			"cluster.raft.election_timeout: (300ms) must be ≥ heartbeat_timeout (2s)"}},
		{"heartbeat too short", []string{"heartbeat_timeout: 2s", "heartbeat_timeout: 40ms"}, []string{
			"cluster.raft.leader_lease_timeout: (1s) cannot be larger than heartbeat_timeout (40ms)",
			"cluster.raft.heartbeat_timeout: (40ms) below 50ms causes needless elections on loaded hosts",
			"cluster.raft.commit_timeout: (1s) must be below heartbeat_timeout (40ms)"}},
		{"commit not below heartbeat", []string{"commit_timeout: 1s", "commit_timeout: 2s"}, []string{
			"cluster.raft.commit_timeout: (2s) must be below heartbeat_timeout (2s)"}},

		{"mysql interval invalid", []string{"interval: 100ms", "interval: fast"}, []string{`mysql.interval: invalid duration "fast"` + dur}},
		{"mysql timeout zero", []string{"\n  timeout: 200ms", "\n  timeout: 0ms"}, []string{"mysql.timeout: must be positive, got 0ms"}},
		{"mysql host unset", []string{"host: 10.0.0.11", `host: ""`}, []string{"mysql.host: must be set (or mysql.dsn) on a database node"}},
		{"mysql dsn and host", []string{"  host: 10.0.0.11\n", "  host: 10.0.0.11\n  dsn: x\n"}, []string{
			"mysql.dsn: set either mysql.dsn or mysql.host, not both"}},
		{"mysql user unset", []string{"user: keepraft", `user: ""`}, []string{"mysql.user: must be set on a database node"}},
		{"mysql password empty", []string{"/etc/keepraft/mysql.pass", "/dev/null"}, []string{"mysql.password_file: /dev/null is empty"}},
		{"mysql port", []string{"port: 3306", "port: 0"}, []string{"mysql.port: must be 1..65535, got 0"}},
		{"mysql flavor", []string{"flavor: mariadb", "flavor: percona"}, []string{`mysql.flavor: must be mariadb or mysql, got "percona"`}},
		{"mysql rise", []string{"rise: 2", "rise: 0"}, []string{"mysql.rise: must be ≥ 1, got 0"}},
		{"mysql fall", []string{"fall: 2", "fall: 0"}, []string{"mysql.fall: must be ≥ 1, got 0"}},
		{"mysql probe slower than fall", []string{"\n  timeout: 200ms", "\n  timeout: 2s"}, []string{
			"mysql.timeout: (2s) must not exceed mysql.interval × mysql.fall (200ms), or a hung server is detected late"}},

		{"garp interval invalid", []string{"garp_interval: 20ms", "garp_interval: x"}, []string{`vip.garp_interval: invalid duration "x"` + dur}},
		{"kernel lease zero", []string{"kernel_lease: 1s", "kernel_lease: 0s"}, []string{"vip.kernel_lease: must be positive, got 0s"}},
		{"kernel lease fraction", []string{"kernel_lease: 1s", "kernel_lease: 1500ms"}, []string{
			"vip.kernel_lease: must be whole seconds ≥ 1s (the kernel's valid_lft unit), got 1.5s"}},
		{"kernel lease below lease/10", []string{"kernel_lease: 1s", "kernel_lease: 40ms"}, []string{
			"vip.kernel_lease: must be whole seconds ≥ 1s (the kernel's valid_lft unit), got 40ms",
			"failover.lease: (500ms) should not exceed 10 × vip.kernel_lease (40ms)"}},
		{"vip invalid", []string{"[10.0.0.100/32]", "[10.0.0.300/32]"}, []string{`vip.addresses[0]: invalid CIDR "10.0.0.300/32" (e.g. 10.0.0.100/32)`}},
		{"vip bare IPv6", []string{"[10.0.0.100/32]", `[10.0.0.100/32, "fd00::1"]`}, []string{`vip.addresses[1]: invalid CIDR "fd00::1" (e.g. 10.0.0.100/32)`}},
		{"vip IPv6 prefix", []string{"[10.0.0.100/32]", `[10.0.0.100/32, "fd00::1/128"]`}, []string{
			"vip.addresses[1]: fd00::1/128: only IPv4 VIPs are supported"}},
		{"vip interface unset", []string{"interface: eth0", `interface: ""`}, []string{"vip.interface: must be set on a database node"}},
		{"vip addresses empty", []string{"[10.0.0.100/32]", "[]"}, []string{"vip.addresses: must list at least one VIP on a database node"}},
		{"vip on witness", []string{"role: database", "role: witness"}, []string{
			"vip.addresses: must be empty on a witness: a witness never owns the VIP"}},
		{"garp repeat", []string{"garp_repeat: 3", "garp_repeat: 101"}, []string{"vip.garp_repeat: must be 0..100, got 101"}},

		{"vrrp version", []string{"version: 2", "version: 4"}, []string{"vrrp.version: must be 2 or 3, got 4"}},
		{"vrrp router id", []string{"virtual_router_id: 51", "virtual_router_id: 0"}, []string{"vrrp.virtual_router_id: must be 1..255, got 0"}},
		{"vrrp priority", []string{"priority: 100", "priority: 255"}, []string{"vrrp.priority: must be 1..254 (255 means address owner), got 255"}},
		{"vrrp auth long", []string{`auth_pass: "1111"`, `auth_pass: "123456789"`}, []string{
			"vrrp.auth_pass: at most 8 bytes (keepalived truncates longer passwords), got 9"}},
		{"vrrp v3 auth", []string{"version: 2", "version: 3"}, []string{"vrrp.auth_pass: VRRPv3 has no authentication; remove it or use version 2"}},
		{"vrrp v2 advert", []string{"advert_int: 1s", "advert_int: 1500ms"}, []string{"vrrp.advert_int: VRRPv2 needs whole seconds 1s..255s, got 1.5s"}},
		{"vrrp v3 advert", []string{"version: 2", "version: 3", `auth_pass: "1111"`, `auth_pass: ""`, "advert_int: 1s", "advert_int: 15ms"}, []string{
			"vrrp.advert_int: VRRPv3 needs centiseconds 10ms..40.95s, got 15ms"}},
		{"vrrp advert invalid", []string{"advert_int: 1s", "advert_int: 1"}, []string{`vrrp.advert_int: invalid duration "1"` + dur}},

		{"failover lease invalid", []string{"lease: 500ms", "lease: x"}, []string{`failover.lease: invalid duration "x"` + dur}},
		{"failover catchup negative", []string{"catchup_timeout: 5s", "catchup_timeout: -1s"}, []string{"failover.catchup_timeout: must be positive, got -1s"}},
		{"failover damping invalid", []string{"damping: 30s", "damping: never"}, []string{`failover.damping: invalid duration "never"` + dur}},
		{"failover catchup policy", []string{"on_catchup_timeout: promote", "on_catchup_timeout: maybe"}, []string{
			`failover.on_catchup_timeout: must be promote or hold, got "maybe"`}},
		{"failover lease short", []string{"lease: 500ms", "lease: 50ms"}, []string{"failover.lease: (50ms) must be ≥ 150ms: renewals go out every lease/3"}},
		{"failover lease long and catchup short", []string{"lease: 500ms", "lease: 20s", "catchup_timeout: 5s", "catchup_timeout: 50ms"}, []string{
			"failover.lease: (20s) should not exceed 10 × vip.kernel_lease (1s)",
			"failover.catchup_timeout: must be ≥ 100ms, got 50ms"}},

		{"log level", []string{"level: info", "level: trace"}, []string{`log.level: must be debug, info, warn or error, got "trace"`}},
		{"log format", []string{"format: json", "format: text"}, []string{`log.format: must be json or console, got "text"`}},

		{"every section at once", []string{
			"data_dir: /var/lib/keepraft", `data_dir: ""`,
			"{id: db2,", `{id: "",`,
			"journal_retain: 10000", "journal_retain: 99",
			"interval: 100ms", "interval: fast",
			"fall: 2", "fall: 0",
			"interface: eth0", `interface: ""`,
			"[10.0.0.100/32]", "[10.0.0.300/32]",
			"garp_repeat: 3", "garp_repeat: 101",
			"garp_interval: 20ms", "garp_interval: x",
			"priority: 100", "priority: 0",
			"lease: 500ms", "lease: 20s",
			"catchup_timeout: 5s", "catchup_timeout: 50ms",
			"format: json", "format: text",
		}, []string{
			"node.data_dir: must be set",
			"cluster.peers[1].id: must be set",
			"cluster.raft.journal_retain: must be ≥ 100, got 99",
			`mysql.interval: invalid duration "fast"` + dur,
			`vip.garp_interval: invalid duration "x"` + dur,
			`vip.addresses[0]: invalid CIDR "10.0.0.300/32" (e.g. 10.0.0.100/32)`,
			"mysql.fall: must be ≥ 1, got 0",
			"vip.interface: must be set on a database node",
			"vip.garp_repeat: must be 0..100, got 101",
			"vrrp.priority: must be 1..254 (255 means address owner), got 0",
			"failover.lease: (20s) should not exceed 10 × vip.kernel_lease (1s)",
			"failover.catchup_timeout: must be ≥ 100ms, got 50ms",
			`log.format: must be json or console, got "text"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(edited(t, tt.edits...)))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("valid config rejected: %v", err)
				}
				return
			}
			want := strings.Join(tt.want, "\n")
			if err == nil || err.Error() != want {
				t.Fatalf("err =\n%v\nwant\n%s", err, want)
			}
		})
	}
}
