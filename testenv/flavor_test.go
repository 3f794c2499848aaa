package testenv

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keepraft/keepraft/config"
	"github.com/keepraft/keepraft/probe"
)

func TestKeepraftdConfigFlavor(t *testing.T) {
	tests := []struct {
		name    string
		lab     probe.Flavor
		server  probe.Flavor // flavor of a server registered for db1, "" for none
		give    probe.Flavor // KeepraftdOptions.Flavor
		want    string
		wantErr bool
	}{
		{name: "default", want: "mariadb"},
		{name: "lab mysql", lab: FlavorMySQL, want: "mysql"},
		{name: "server mysql", server: FlavorMySQL, want: "mysql"},
		{name: "server mariadb in a mysql lab", lab: FlavorMySQL, server: FlavorMariaDB, want: "mariadb"},
		{name: "option wins", lab: FlavorMySQL, server: FlavorMySQL, give: FlavorMariaDB, want: "mariadb"},
		{name: "bad option", give: "oracle", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &Lab{Dir: t.TempDir(), VIP: DefaultVIP, byName: map[string]*Host{}, flavor: tt.lab}
			for _, n := range []string{"db1", "db2", "witness"} {
				h := &Host{Name: n, Addr: netip.AddrFrom4([4]byte{198, 18, 0, fixedOctets[n]})}
				l.hosts = append(l.hosts, h)
				l.byName[n] = h
			}
			if tt.server != "" {
				l.dbs = []*MariaDB{{Name: "db1", Flavor: tt.server}, {Name: "db2", Flavor: tt.server}}
			}
			nodes, err := l.WriteKeepraftdConfigs(KeepraftdOptions{Flavor: tt.give, Plaintext: true})
			if tt.wantErr {
				if err == nil {
					t.Fatal("no error for a bad flavor")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(nodes[0].ConfigPath)
			if err != nil {
				b, _ := os.ReadFile(nodes[0].ConfigPath)
				t.Fatalf("config.Load: %v\n%s", err, b)
			}
			if cfg.MySQL.Flavor != tt.want {
				t.Errorf("mysql.flavor %q, want %q", cfg.MySQL.Flavor, tt.want)
			}
		})
	}
}

func TestFlavorSQL(t *testing.T) {
	src := &MariaDB{Name: "db2", Addr: netip.MustParseAddrPort("198.18.0.12:3306")}
	tests := []struct {
		flavor     probe.Flavor
		wantChange []string
		wantVerb   string
		wantShow   string
		wantSemi   string
	}{
		{FlavorMariaDB, []string{"CHANGE MASTER TO", "master_use_gtid=slave_pos", "198.18.0.12", "master_port=3306"}, "SLAVE", "SHOW SLAVE STATUS", "rpl_semi_sync_slave_enabled = ON"},
		{FlavorMySQL, []string{"CHANGE REPLICATION SOURCE TO", "SOURCE_AUTO_POSITION=1", "GET_SOURCE_PUBLIC_KEY=1", "SOURCE_RETRY_COUNT=86400", "198.18.0.12", "SOURCE_PORT=3306"}, "REPLICA", "SHOW REPLICA STATUS", "rpl_semi_sync_replica_enabled = ON"},
	}
	for _, tt := range tests {
		t.Run(string(tt.flavor), func(t *testing.T) {
			m := &MariaDB{Name: "db1", Flavor: tt.flavor}
			q := m.changeSourceSQL(src)
			for _, w := range tt.wantChange {
				if !strings.Contains(q, w) {
					t.Errorf("change source %q lacks %q", q, w)
				}
			}
			if v := m.replicaVerb(); v != tt.wantVerb {
				t.Errorf("verb %q, want %q", v, tt.wantVerb)
			}
			if s := m.showReplicaSQL(); s != tt.wantShow {
				t.Errorf("show %q, want %q", s, tt.wantShow)
			}
			if !slices.Contains(m.SemiSyncConfig(), tt.wantSemi) {
				t.Errorf("semi-sync config %v lacks %q", m.SemiSyncConfig(), tt.wantSemi)
			}
		})
	}
}

func TestReplStatusRunning(t *testing.T) {
	tests := []struct {
		name       string
		give       map[string]string
		wantIO     bool
		wantSQLRun bool
	}{
		{"mariadb", map[string]string{"Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes"}, true, true},
		{"mysql", map[string]string{"Replica_IO_Running": "Connecting", "Replica_SQL_Running": "Yes"}, false, true},
		{"none", map[string]string{}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			io, sqlRun := replStatusRunning(tt.give)
			if io != tt.wantIO || sqlRun != tt.wantSQLRun {
				t.Errorf("got %v/%v, want %v/%v", io, sqlRun, tt.wantIO, tt.wantSQLRun)
			}
		})
	}
}

func TestChrootArgv(t *testing.T) {
	argv := chrootArgv("/var/cache/r", "/tmp/lab/mariadb-db1", "/usr/sbin/mysqld", "--defaults-file=/tmp/lab/mariadb-db1/my.cnf")
	if argv[0] != "unshare" || !slices.Contains(argv, "--mount") || !slices.Contains(argv, "private") {
		t.Errorf("argv %q: want unshare --mount --propagation private first", argv)
	}
	tail := argv[len(argv)-4:]
	want := []string{"/var/cache/r", "/tmp/lab/mariadb-db1", "/usr/sbin/mysqld", "--defaults-file=/tmp/lab/mariadb-db1/my.cnf"}
	if !slices.Equal(tail, want) {
		t.Errorf("argv tail %q, want %q", tail, want)
	}
	script := argv[slices.Index(argv, "-c")+1]
	for _, w := range []string{`mount --rbind "$2" "$1$2"`, `exec chroot`} {
		if !strings.Contains(script, w) {
			t.Errorf("script %q lacks %q", script, w)
		}
	}
}

func TestRemoveMirrorDirs(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"usr/sbin", "etc", "tmp/other"} {
		if err := os.MkdirAll(root+"/"+d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"usr/sbin/mysqld", mysqlRootMarker} {
		if err := os.WriteFile(root+"/"+f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(root+"/tmp/lab1/x/mariadb-db1", 0o755); err != nil {
		t.Fatal(err)
	}
	removeMirrorDirs(root, "/tmp/lab1/x/mariadb-db1")
	if _, err := os.Stat(root + "/tmp/lab1"); !os.IsNotExist(err) {
		t.Errorf("mirror dirs left: %v", err)
	}
	for _, keep := range []string{"tmp", "tmp/other"} {
		if _, err := os.Stat(root + "/" + keep); err != nil {
			t.Errorf("%s removed: %v", keep, err)
		}
	}
}

// TestRemoveStaleSocketLock: a lock naming a dead pid is removed; one naming a live
// process is kept.
func TestRemoveStaleSocketLock(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "mysqld.sock")
	for _, tt := range []struct {
		pid  string
		kept bool
	}{{"999999999", false}, {fmt.Sprint(os.Getpid()), true}, {"garbage", false}} {
		if err := os.WriteFile(sock+".lock", []byte(tt.pid+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := removeStaleSocketLock(sock); err != nil {
			t.Fatal(err)
		}
		_, err := os.Stat(sock + ".lock")
		if kept := err == nil; kept != tt.kept {
			t.Fatalf("pid %s: lock kept=%v, want %v", tt.pid, kept, tt.kept)
		}
	}
	if err := removeStaleSocketLock(filepath.Join(dir, "none.sock")); err != nil {
		t.Fatalf("no lock: %v", err)
	}
}
