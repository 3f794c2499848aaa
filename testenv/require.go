package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// IntegEnv is the environment variable that enables integration tests.
const IntegEnv = "KEEPRAFT_INTEG"

// KeepLogsEnv names a directory into which a failed test's lab logs are copied (every
// process's whole log, which the failure output only tails).
const KeepLogsEnv = "KEEPRAFT_KEEP_LOGS"

// RequiredBinaries are the programs the lab runs.
var RequiredBinaries = []string{"ip", "nft", "mariadbd", "mariadb-install-db", "keepalived", "mysqladmin"}

// Require skips the test unless KEEPRAFT_INTEG=1. When it is set, a missing prerequisite
// (root, one of [RequiredBinaries]) fails the test instead, so the gate cannot hide failures.
func Require(t testing.TB) {
	t.Helper()
	if os.Getenv(IntegEnv) != "1" {
		t.Skipf("integration test: set %s=1 to run (needs root, iproute2, nftables, mariadb, keepalived)", IntegEnv)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("%s=1 but not running as root (euid %d): the lab needs root for network namespaces", IntegEnv, os.Geteuid())
	}
	for _, b := range RequiredBinaries {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s=1 but %s is missing: %v", IntegEnv, b, err)
		}
	}
}

// NewT builds a lab for a test: [New] with a zaptest logger and a Dir under t.TempDir()
// (unless opts.Dir is set), closed by t.Cleanup. When the test failed, the cleanup first logs
// the last lines of every process log. Setup errors fail the test.
func NewT(t testing.TB, opts Options) *Lab {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
		if strings.ContainsAny(opts.Dir, "#;\" '") {
			// my.cnf reads '#' as a comment: subtests named "x#01" would share a datadir.
			d, err := os.MkdirTemp("", "keepraft-lab-")
			if err != nil {
				t.Fatalf("make lab dir: %v", err)
			}
			t.Cleanup(func() { _ = os.RemoveAll(d) })
			opts.Dir = d
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := New(ctx, zaptest.NewLogger(t), opts)
	if err != nil {
		t.Fatalf("make lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			l.DumpLogs(t, 40)
		}
		if err := l.Close(); err != nil {
			t.Errorf("close lab %s: %v", l.Prefix, err)
		}
		if keep := os.Getenv(KeepLogsEnv); keep != "" && t.Failed() {
			keepLogs(t, keep, filepath.Join(opts.Dir, "logs"))
		}
	})
	return l
}

// keepLogs copies the lab's log directory src into a new directory under keep named for
// the test.
func keepLogs(t testing.TB, keep, src string) {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	dst := filepath.Join(keep, fmt.Sprintf("%s-%s", name, time.Now().Format("20060102T150405")))
	if err := os.MkdirAll(keep, 0o755); err != nil {
		t.Logf("keep the lab's logs: %v", err)
		return
	}
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Logf("keep the lab's logs in %s: %v", dst, err)
		return
	}
	t.Logf("the lab's logs are kept in %s", dst)
}

// DumpLogs logs the last n lines of every process log through t.Log.
func (l *Lab) DumpLogs(t testing.TB, n int) {
	t.Helper()
	seen := map[string]bool{}
	for _, p := range l.Procs() {
		if seen[p.LogPath] {
			continue
		}
		seen[p.LogPath] = true
		t.Logf("---- %s (pid %d) %s ----\n%s", p.Name, p.PID, p.LogPath, p.Tail(n))
	}
}

// RequireMySQL is [Require] for tests that run MySQL servers: it also builds (or reuses)
// the Debian sid root of [EnsureMySQLRoot]. With KEEPRAFT_INTEG=1, a root that cannot be
// built, or a missing unshare/chroot/mount, fails the test; it is never skipped.
func RequireMySQL(t testing.TB) {
	t.Helper()
	Require(t)
	for _, b := range []string{"unshare", "chroot", "mount", "debootstrap"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s=1 but %s is missing (make deps installs it): %v", IntegEnv, b, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), mysqlRootBuildTimeout+time.Minute)
	defer cancel()
	if _, err := EnsureMySQLRoot(ctx, zaptest.NewLogger(t)); err != nil {
		t.Fatalf("%s=1 but the MySQL servers cannot run: %v (build it with `keepraft-lab mysql-root` or `make deps`; %s sets the Debian mirror)", IntegEnv, err, MirrorEnv)
	}
}
