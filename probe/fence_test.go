package probe

import "testing"

func TestSuperImpliesReadOnlyAdmin(t *testing.T) {
	tests := []struct {
		version string
		want    bool
	}{
		{"10.11.9-MariaDB-0+deb12u1", false},
		{"10.11.0-MariaDB", false},
		{"11.4.2-MariaDB-log", false},
		{"10.10.7-MariaDB", true},
		{"10.6.18-MariaDB-0ubuntu0.22.04.1", true},
		{"10.5.2-MariaDB", true},
		{"10.11-MariaDB", false},
		{"garbage", true}, // unknown: assume the older, more permissive rule
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			if got := superImpliesReadOnlyAdmin(tt.version); got != tt.want {
				t.Errorf("superImpliesReadOnlyAdmin(%q) = %v, want %v", tt.version, got, tt.want)
			}
		})
	}
}

func TestKillFilter(t *testing.T) {
	k := killFilter{
		apps:   appFilter{users: []string{"app", "web@10.%"}, self: "keepraft"},
		bypass: map[string]bool{"root": true, "ops": true},
	}
	all := killFilter{apps: appFilter{self: "keepraft"}}
	tests := []struct {
		name    string
		k       killFilter
		user    string
		command string
		want    bool
	}{
		{"listed application account", k, "app", "Sleep", true},
		{"listed with a host", k, "web", "Query", true},
		{"unlisted ordinary account", k, "report", "Sleep", false},
		{"root bypasses read_only", k, "root", "Sleep", true},
		{"other READ ONLY ADMIN holder", k, "ops", "Query", true},
		{"daemon's own account", k, "keepraft", "Sleep", false},
		{"daemon's own account even with bypass", killFilter{apps: k.apps, bypass: map[string]bool{"keepraft": true}}, "keepraft", "Sleep", false},
		{"replica's dump thread", k, "app", "Binlog Dump GTID", false},
		{"replication SQL thread", k, "system user", "Slave_SQL", false},
		{"event scheduler", k, "event_scheduler", "Daemon", false},
		{"unauthenticated", k, "unauthenticated user", "Connect", false},
		{"mariadb.sys never", killFilter{apps: k.apps, bypass: map[string]bool{"mariadb.sys": true}}, "mariadb.sys", "Sleep", false},
		{"default: root is an application account", all, "root", "Sleep", true},
		{"default: any other account", all, "report", "Sleep", true},
		{"default: system user", all, "system user", "Daemon", false},
		{"default: own account", all, "keepraft", "Query", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.k.kill(tt.user, tt.command); got != tt.want {
				t.Errorf("kill(%q, %q) = %v, want %v", tt.user, tt.command, got, tt.want)
			}
		})
	}
}
