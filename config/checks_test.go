package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// scripts writes the hook programs the checks look at into a new directory and returns
// it: ok.sh (executable), plain.sh (mode 0644) and sub/ (a directory).
func scripts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, mode := range map[string]os.FileMode{"ok.sh": 0o755, "plain.sh": 0o644} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\nexit 0\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, name), mode); err != nil { // umask may have cut it
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// lineOf returns the 1-based line of the first occurrence of sub in src.
func lineOf(t *testing.T, src, sub string) int {
	t.Helper()
	i := strings.Index(src, sub)
	if i < 0 {
		t.Fatalf("%q not in source", sub)
	}
	return strings.Count(src[:i], "\n") + 1
}

// TestChecksExact pins the messages of the checks on VIPs, voters, YAML types, the
// check script and the notify hooks. In edits and want, @DIR@ is a directory holding
// ok.sh, plain.sh and sub/ (see scripts); in want, @LINE@ is the line of the last edit's
// replacement in the edited file.
func TestChecksExact(t *testing.T) {
	tests := []struct {
		name  string
		edits []string
		want  []string // nil: valid
	}{
		{"vip duplicate", []string{"[10.0.0.100/32]", "[10.0.0.100/32, 10.0.0.101/32, 10.0.0.100/24]"}, []string{
			"vip.addresses[2]: 10.0.0.100/24 repeats the address of vip.addresses[0]"}},
		{"vip duplicate bare", []string{"[10.0.0.100/32]", "[10.0.0.100, 10.0.0.100/32]"}, []string{
			"vip.addresses[1]: 10.0.0.100/32 repeats the address of vip.addresses[0]"}},
		{"vip network address", []string{"[10.0.0.100/32]", "[10.0.0.0/24]"}, []string{
			"vip.addresses[0]: 10.0.0.0/24 is the network address of 10.0.0.0/24; give the VIP a host address"}},
		{"vip broadcast address", []string{"[10.0.0.100/32]", "[10.0.0.127/25]"}, []string{
			"vip.addresses[0]: 10.0.0.127/25 is the broadcast address of 10.0.0.0/25; give the VIP a host address"}},
		{"vip host in /24", []string{"[10.0.0.100/32]", "[10.0.0.100/24]"}, nil},
		{"vip /31 has no broadcast", []string{"[10.0.0.100/32]", "[10.0.0.101/31]"}, nil},
		{"vip /32 network-like", []string{"[10.0.0.100/32]", "[10.0.0.0/32]"}, nil},
		{"vip is a peer address", []string{"[10.0.0.100/32]", "[10.0.0.12/32]"}, []string{
			`vip.addresses[0]: 10.0.0.12/32 is the address of cluster.peers[1].raft_addr (10.0.0.12:7000): a VIP must be an address no host owns`}},

		{"single voter", []string{
			"    - {id: db2, raft_addr: 10.0.0.12:7000, api_addr: 10.0.0.12:7001}\n", "",
			"    - {id: witness, raft_addr: 10.0.0.13:7000, api_addr: 10.0.0.13:7001}\n", "",
		}, []string{`cluster.peers: lists a single voter ("db1"): it can neither fail over nor outvote anything; list two database nodes and a witness`}},

		{"type int", []string{"priority: 100", `priority: high`}, []string{
			`vrrp.priority: want an integer, got "high" (line @LINE@)`}},
		{"type int in peer list", []string{"snapshot_threshold: 1024", "snapshot_threshold: [1]"}, []string{
			`cluster.raft.snapshot_threshold: want an integer, got a list (line @LINE@)`}},
		{"type string in peer", []string{"{id: db2,", "{id: [db2],"}, []string{
			`cluster.peers[1].id: want a string, got a list (line @LINE@)`}},
		{"type bool", []string{"nopreempt: true", "nopreempt: maybe"}, []string{
			`failover.nopreempt: want a boolean (true or false), got "maybe" (line @LINE@)`}},
		{"type list", []string{"[10.0.0.100/32]", "10.0.0.100/32"}, []string{
			`vip.addresses: want a list, got "10.0.0.100/32" (line @LINE@)`}},
		{"type section", []string{"log:\n  level: info\n  format: json\n", "log: verbose\n"}, []string{
			`log: want a mapping of keys, got "verbose" (line @LINE@)`}},
		{"unknown key in a peer", []string{"{id: db2,", "{id: db2, priority: 7,"}, []string{
			"cluster.peers[1].priority: unknown key (line @LINE@)"}},
		{"duplicate key", []string{"  fall: 2\n", "  fall: 2\n  fall: 3\n"}, []string{
			"mysql.fall: duplicate key (first at line 35, again at line 36)"}},
		{"type errors all reported", []string{"priority: 100", "priority: high", "rise: 2", "rise: often"}, []string{
			`mysql.rise: want an integer, got "often" (line 34)`,
			`vrrp.priority: want an integer, got "high" (line 55)`}},
		{"null leaves the default", []string{"fall: 2", "fall:"}, nil},
		{"anchors and merge keys", []string{"peers:\n", "peers:\n    - &p {id: db1, raft_addr: 10.0.0.11:7000, api_addr: 10.0.0.11:7001}\n",
			"    - {id: db1, raft_addr: 10.0.0.11:7000, api_addr: 10.0.0.11:7001}\n", "",
			"    - {id: witness, raft_addr: 10.0.0.13:7000, api_addr: 10.0.0.13:7001}\n", "    - {<<: *p, id: witness, raft_addr: 10.0.0.13:7000, api_addr: 10.0.0.13:7001, bogus: 1}\n"}, []string{
			"cluster.peers[2].bogus: unknown key (line @LINE@)"}},

		{"check script ok", []string{`check_script: ""`, `check_script: "@DIR@/ok.sh --quick"`}, nil},
		{"check script in PATH", []string{`check_script: ""`, `check_script: "sh -c 'exit 0'"`}, nil},
		{"check script builtin", []string{`check_script: ""`, `check_script: "test -e /"`}, nil},
		{"check script with env", []string{`check_script: ""`, `check_script: "MYSQL_PWD=x @DIR@/ok.sh"`}, nil},
		{"check script missing", []string{`check_script: ""`, `check_script: "@DIR@/nope.sh"`}, []string{
			"mysql.check_script: @DIR@/nope.sh does not exist"}},
		{"check script not executable", []string{`check_script: ""`, `check_script: "@DIR@/plain.sh"`}, []string{
			"mysql.check_script: @DIR@/plain.sh is not executable (mode 0644)"}},
		{"check script directory", []string{`check_script: ""`, `check_script: "@DIR@/sub"`}, []string{
			"mysql.check_script: @DIR@/sub is a directory"}},
		{"check script relative", []string{`check_script: ""`, `check_script: "./check.sh"`}, []string{
			"mysql.check_script: ./check.sh is a relative path: give an absolute path or a command name found in PATH"}},
		{"check script not on a witness", []string{"role: database", "role: witness", "[10.0.0.100/32]", "[]", `check_script: ""`, `check_script: "@DIR@/nope.sh"`}, nil},

		{"notify ok", []string{`master: ""`, `master: "@DIR@/ok.sh master 'a b'"`, "notify:\n", "notify:\n  any: @DIR@/ok.sh\n"}, nil},
		{"notify missing", []string{`master: ""`, `master: "@DIR@/nope.sh master"`}, []string{
			"notify.master: @DIR@/nope.sh does not exist"}},
		{"notify not executable", []string{`fault: ""`, `fault: "@DIR@/plain.sh"`}, []string{
			"notify.fault: @DIR@/plain.sh is not executable (mode 0644)"}},
		{"notify any missing", []string{"notify:\n", "notify:\n  any: @DIR@/gone\n"}, []string{
			"notify.any: @DIR@/gone does not exist"}},
		{"notify not in PATH", []string{`backup: ""`, `backup: "keepraft-no-such-program x"`}, []string{
			"notify.backup: keepraft-no-such-program is not found in PATH (" + os.Getenv("PATH") + ")"}},
		{"notify shell syntax", []string{`master: ""`, `master: "@DIR@/ok.sh > /tmp/x"`}, []string{
			`notify.master: "@DIR@/ok.sh > /tmp/x" uses shell syntax (>) but runs without a shell under notify.convention keepalived: move it into a script, quote the character, or set notify.convention: shell`}},
		{"notify quoted syntax", []string{`master: ""`, `master: "@DIR@/ok.sh '>' a\\|b"`}, nil},
		{"notify shell convention", []string{`master: ""`, `master: "@DIR@/ok.sh > /tmp/x"`, "notify:\n", "notify:\n  convention: shell\n"}, nil},
		{"notify shell convention missing", []string{`master: ""`, `master: "@DIR@/nope.sh | logger"`, "notify:\n", "notify:\n  convention: shell\n"}, []string{
			"notify.master: @DIR@/nope.sh does not exist"}},
		{"notify unterminated quote", []string{`master: ""`, `master: "@DIR@/ok.sh 'oops"`}, []string{
			`notify.master: invalid command line: unterminated ' quote in "@DIR@/ok.sh 'oops"`}},
		{"notify blank", []string{`master: ""`, `master: "   "`}, []string{"notify.master: invalid command line: empty command"}},
		{"notify convention", []string{"notify:\n", "notify:\n  convention: bash\n"}, []string{
			`notify.convention: must be keepalived or shell, got "bash"`}},
		{"notify timeout", []string{"notify:\n", "notify:\n  timeout: 11m\n"}, []string{"notify.timeout: (11m0s) must not exceed 10m"}},
		{"notify timeout invalid", []string{"notify:\n", "notify:\n  timeout: soon\n"}, []string{
			`notify.timeout: invalid duration "soon" (use Go durations such as 200ms or 1s)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := scripts(t)
			edits := slices.Clone(tt.edits)
			for i := range edits {
				edits[i] = strings.ReplaceAll(edits[i], "@DIR@", dir)
			}
			src := edited(t, edits...)
			_, err := Parse(strings.NewReader(src))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("valid config rejected: %v", err)
				}
				return
			}
			want := strings.Join(tt.want, "\n")
			want = strings.ReplaceAll(want, "@DIR@", dir)
			if strings.Contains(want, "@LINE@") {
				want = strings.ReplaceAll(want, "@LINE@", fmt.Sprint(lineOf(t, src, edits[len(edits)-1])))
			}
			if err == nil || err.Error() != want {
				t.Fatalf("err =\n%v\nwant\n%s", err, want)
			}
		})
	}
}

// TestOffline checks that Offline skips the secret files and the programs, and only them,
// and that AllowSingleVoter lifts the single-voter error only.
func TestOffline(t *testing.T) {
	missing := []string{
		"/etc/keepraft/token", "/nonexistent/token",
		"/etc/keepraft/mysql.pass", "/nonexistent/mysql.pass",
		`check_script: ""`, `check_script: "/nonexistent/check.sh"`,
		`master: ""`, `master: "/nonexistent/notify.sh master"`,
		"  # tls: {", "  tls: {", "/etc/keepraft/tls/db1-key.pem", "/nonexistent/key.pem",
	}
	tests := []struct {
		name  string
		edits []string
		opts  []Option
		want  []string
	}{
		{"online", missing, nil, []string{
			"cluster.token_file: open /nonexistent/token: no such file or directory",
			"cluster.tls.key_file: stat /nonexistent/key.pem: no such file or directory",
			"mysql.password_file: open /nonexistent/mysql.pass: no such file or directory",
			"mysql.check_script: /nonexistent/check.sh does not exist",
			"notify.master: /nonexistent/notify.sh does not exist",
		}},
		{"offline", missing, []Option{Offline()}, nil},
		{"offline still needs the keys", []string{"token_file: /etc/keepraft/token", `token_file: ""`}, []Option{Offline()}, []string{
			"cluster.token_file: must be set"}},
		{"offline still checks syntax", []string{`master: ""`, `master: "/x/notify.sh; rm"`}, []Option{Offline()}, []string{
			`notify.master: "/x/notify.sh; rm" uses shell syntax (;) but runs without a shell under notify.convention keepalived: move it into a script, quote the character, or set notify.convention: shell`}},
		{"single voter allowed", []string{
			"    - {id: db2, raft_addr: 10.0.0.12:7000, api_addr: 10.0.0.12:7001}\n", "",
			"    - {id: witness, raft_addr: 10.0.0.13:7000, api_addr: 10.0.0.13:7001}\n", "",
		}, []Option{AllowSingleVoter()}, nil},
		{"single voter allowed, still odd", []string{
			"    - {id: witness, raft_addr: 10.0.0.13:7000, api_addr: 10.0.0.13:7001}\n", "",
		}, []Option{AllowSingleVoter()}, []string{
			"cluster.peers: needs an odd number of voters (two database nodes and a witness), got 2"}},
		{"offline still checks VIPs", []string{"[10.0.0.100/32]", "[10.0.0.255/24]"}, []Option{Offline()}, []string{
			"vip.addresses[0]: 10.0.0.255/24 is the broadcast address of 10.0.0.0/24; give the VIP a host address"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(edited(t, tt.edits...)), tt.opts...)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("valid config rejected: %v", err)
				}
				return
			}
			if want := strings.Join(tt.want, "\n"); err == nil || err.Error() != want {
				t.Fatalf("err =\n%v\nwant\n%s", err, want)
			}
		})
	}
}

func TestLoadOffline(t *testing.T) {
	src := edited(t, "/etc/keepraft/token", "/nonexistent/token")
	path := filepath.Join(t.TempDir(), "keepraft.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "cluster.token_file: open /nonexistent/token") {
		t.Fatalf("Load without Offline: err = %v", err)
	}
	cfg, err := Load(path, Offline())
	if err != nil {
		t.Fatalf("Load(Offline): %v", err)
	}
	if cfg.Cluster.TokenFile != "/nonexistent/token" {
		t.Fatalf("token_file = %q", cfg.Cluster.TokenFile)
	}
}

func TestNotifyDefaults(t *testing.T) {
	cfg, err := Parse(strings.NewReader(reference(t)))
	if err != nil {
		t.Fatal(err)
	}
	want := Notify{Instance: "keepraft", Convention: NotifyKeepalived, Timeout: 10 * time.Second}
	if cfg.Notify != want {
		t.Fatalf("notify = %+v, want %+v", cfg.Notify, want)
	}
	cfg, err = Parse(strings.NewReader(edited(t, "notify:\n", "notify:\n  instance: VI_1\n  convention: shell\n  timeout: 30s\n")))
	if err != nil {
		t.Fatal(err)
	}
	want = Notify{Instance: "VI_1", Convention: NotifyShell, Timeout: 30 * time.Second}
	if cfg.Notify != want {
		t.Fatalf("notify = %+v, want %+v", cfg.Notify, want)
	}
}

func TestShellProgram(t *testing.T) {
	tests := []struct{ give, want string }{
		{"/usr/bin/mysqladmin ping", "/usr/bin/mysqladmin"},
		{"mysqladmin ping | grep alive", "mysqladmin"},
		{"A=1 B=2 /x/check.sh", "/x/check.sh"},
		{"test -f /run/ok", ""},
		{"[ -f /run/ok ]", ""},
		{"$CHECK arg", ""},
		{"exit 0", ""},
		{"'unterminated", ""},
	}
	for _, tt := range tests {
		if got := shellProgram(tt.give); got != tt.want {
			t.Errorf("shellProgram(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}
