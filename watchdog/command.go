package watchdog

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// Subcommand is the keepraftd subcommand that runs the watchdog process; [Command] starts
// the daemon's own executable with it.
const Subcommand = "fence-watchdog"

// Command returns the builder of the watchdog process for [Process.Command]: the running
// executable (os.Args[0] when it cannot be found) with the arguments
// "fence-watchdog --config PATH", PATH being configPath made absolute, its output on this
// process's stderr. The child runs in its own process group, so that a signal to the
// daemon's group (a SIGSTOP, a terminal's SIGINT) does not reach it. Every call of the
// builder returns a fresh command, since an exec.Cmd starts only once.
func Command(configPath string) func() *exec.Cmd {
	return func() *exec.Cmd {
		exe, err := os.Executable()
		if err != nil {
			exe = os.Args[0]
		}
		path, err := filepath.Abs(configPath)
		if err != nil {
			path = configPath
		}
		cmd := exec.Command(exe, Subcommand, "--config", path)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return cmd
	}
}
