package watchdog

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestCommand: the watchdog is this executable, run as "fence-watchdog --config ABS" in a
// process group of its own, with a fresh command for every start.
func TestCommand(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		give       string
		wantConfig string
	}{
		{"absolute path kept", "/etc/keepraft/keepraft.yaml", "/etc/keepraft/keepraft.yaml"},
		{"relative path made absolute", "conf/keepraft.yaml", filepath.Join(wd, "conf/keepraft.yaml")},
		{"path cleaned", "/etc/keepraft/../keepraft/keepraft.yaml", "/etc/keepraft/keepraft.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			build := Command(tt.give)
			cmd := build()
			if cmd.Path != exe {
				t.Errorf("Path = %q, want this executable %q", cmd.Path, exe)
			}
			if want := []string{exe, Subcommand, "--config", tt.wantConfig}; !slices.Equal(cmd.Args, want) {
				t.Errorf("Args = %q, want %q", cmd.Args, want)
			}
			if cmd.SysProcAttr == nil || !cmd.SysProcAttr.Setpgid {
				t.Error("the watchdog must run in its own process group: a SIGSTOP of keepraftd's group would stop it too")
			}
			if cmd.Stdout != os.Stderr || cmd.Stderr != os.Stderr {
				t.Errorf("output goes to %v and %v, want this process's stderr", cmd.Stdout, cmd.Stderr)
			}
			if again := build(); again == cmd {
				t.Error("the builder returned the same command twice; an exec.Cmd starts only once")
			}
		})
	}
}
