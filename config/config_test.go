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
	if cfg.Failover.Lease != 500*time.Millisecond || cfg.Cluster.Raft.CommitTimeout != 5*time.Millisecond {
		t.Fatalf("durations not parsed: %+v", cfg.Failover)
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
		{"lease too short", [2]string{"lease: 500ms", "lease: 50ms"}, "failover.lease: (50ms) must be ≥ 150ms"},
		{"raft inequality", [2]string{"leader_lease_timeout: 200ms", "leader_lease_timeout: 900ms"}, "cluster.raft.leader_lease_timeout: (900ms) cannot be larger than heartbeat_timeout (400ms)"},
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
