package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keepraft/keepraft/watchdog"
)

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := `node: {id: w, role: witness, data_dir: /tmp/w}
cluster:
  raft_addr: 127.0.0.1:7000
  api_addr: 127.0.0.1:7001
  token_file: ` + token + `
  peers:
    - {id: a, raft_addr: 127.0.0.2:7000, api_addr: 127.0.0.2:7001}
    - {id: b, raft_addr: 127.0.0.3:7000, api_addr: 127.0.0.3:7001}
    - {id: w, raft_addr: 127.0.0.1:7000, api_addr: 127.0.0.1:7001}
`
	tests := []struct {
		name    string
		give    string
		wantOut string
		wantErr []string
	}{
		{"valid", good, "ok (node w, role witness, 3 voters)", nil},
		{"every error named", strings.Replace(good, "role: witness", "role: boss", 1) + "vrrp: {priority: 300}\nfailover: {lease: 1ms}\n",
			"", []string{"node.role:", "vrrp.priority:", "failover.lease:"}},
		{"unknown key", good + "mysql: {hots: x}\n", "", []string{"mysql.hots: unknown key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(dir, tt.name+".yaml")
			if err := os.WriteFile(f, []byte(tt.give), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			err := run(context.Background(), []string{"check-config", f}, &out, &errOut)
			if tt.wantErr == nil {
				if err != nil || !strings.Contains(out.String(), tt.wantOut) {
					t.Fatalf("err %v, out %q", err, out.String())
				}
				return
			}
			if err == nil {
				t.Fatal("invalid config accepted")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestImportKeepalivedSeed(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"import-keepalived", "../../kaconf/testdata/seed.conf"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"virtual_router_id: 51", "advert_int: 5s", "addresses: [10.0.0.100/32]", "nopreempt: true", `auth_pass: "1111"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("converted config lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(errOut.String(), "warning:") {
		t.Errorf("no warnings printed for unmapped settings: %q", errOut.String())
	}
}

// TestWatchdogCommandIsKnown: the command line keepraftd starts its fence watchdog with is
// one this binary accepts (a daemon that spawns an unknown subcommand never opens writes).
func TestWatchdogCommandIsKnown(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	cmd := watchdog.Command(missing)()
	var out, errOut bytes.Buffer
	err := run(context.Background(), cmd.Args[1:], &out, &errOut)
	if err == nil || strings.Contains(err.Error(), "unknown command") || !strings.Contains(err.Error(), missing) {
		t.Fatalf("run %v = %v, want the config file's error (the subcommand exists)", cmd.Args[1:], err)
	}
	if cmd.SysProcAttr == nil || !cmd.SysProcAttr.Setpgid {
		t.Error("the watchdog must run in its own process group: a SIGSTOP of keepraftd's group would stop it too")
	}
}

// TestCheckConfigOffline: --offline validates a config whose secret files are not on this
// host (a package build); without it their absence is an error.
func TestCheckConfigOffline(t *testing.T) {
	// The shipped example, with its secrets in a directory that does not exist.
	b, err := os.ReadFile("../../examples/keepraft.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "keepraft.yaml")
	if err := os.WriteFile(cfg, bytes.ReplaceAll(b, []byte("/etc/keepraft/"), []byte(dir+"/missing/")), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"online needs the secrets", []string{"check-config"}, "cluster.token_file:"},
		{"offline skips them", []string{"check-config", "--offline"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), append(tt.args, cfg), &out, &errOut)
			if tt.wantErr == "" {
				if err != nil || !strings.Contains(out.String(), "ok (node db1, role database, 3 voters)") {
					t.Fatalf("err %v, out %q", err, out.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
}
