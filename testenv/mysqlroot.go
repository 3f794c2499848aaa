package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// The Debian sid root that MySQL servers of the lab run from. Debian bookworm ships no MySQL
// server; sid ships mysql-server (9.x), which needs a newer libc than the host's, so mysqld
// runs chrooted into a debootstrap --variant=minbase sid root with mysql-server installed.
// The root is built once and kept; later runs reuse it.
const (
	// MySQLRootDir is the cached root (built by [EnsureMySQLRoot], `keepraft-lab mysql-root`
	// and `make deps`).
	MySQLRootDir = "/var/cache/keepraft-test/sid-mysql"
	// MySQLRootSuite is the Debian suite of the root.
	MySQLRootSuite = "sid"
	// MirrorEnv overrides the Debian mirror the root is built from.
	MirrorEnv = "KEEPRAFT_DEBIAN_MIRROR"
	// DefaultMirror is the Debian mirror used when MirrorEnv is unset.
	DefaultMirror = "http://deb.debian.org/debian"
	// mysqlRootMarker, inside the root, is written last: a root without it is unfinished.
	mysqlRootMarker = "etc/keepraft-test-root"
	// mysqlRootBuildTimeout bounds one whole build (debootstrap and apt-get).
	mysqlRootBuildTimeout = 20 * time.Minute
)

// ErrNoMySQLRoot wraps every failure to build or find the MySQL root.
var ErrNoMySQLRoot = errors.New("no Debian sid root with mysql-server")

// EnsureMySQLRoot returns MySQLRootDir, building it first when it is missing or unfinished:
// debootstrap --variant=minbase sid, then apt-get install mysql-server inside it (with
// Acquire::Check-Valid-Until=false, since the mirror's sid Release file may be past its
// validity date). A lock file (MySQLRootDir + ".lock", flock) makes concurrent callers, also
// in other processes, wait for one build. The build goes to a scratch dir renamed into place
// only when complete. It needs root, debootstrap and the mirror (MirrorEnv, default
// DefaultMirror).
func EnsureMySQLRoot(ctx context.Context, log *zap.Logger) (string, error) {
	root := MySQLRootDir
	if mysqlRootReady(root) {
		return root, nil
	}
	if err := os.MkdirAll(filepath.Dir(root), 0o755); err != nil {
		return "", fmt.Errorf("%w: make %s: %w", ErrNoMySQLRoot, filepath.Dir(root), err)
	}
	lock, err := os.OpenFile(root+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("%w: open lock %s.lock: %w", ErrNoMySQLRoot, root, err)
	}
	defer lock.Close()
	if err := flockCtx(ctx, lock); err != nil {
		return "", fmt.Errorf("%w: lock %s.lock: %w", ErrNoMySQLRoot, root, err)
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()
	if mysqlRootReady(root) { // another process built it while we waited
		return root, nil
	}
	for _, b := range []string{"debootstrap", "chroot"} {
		if _, err := exec.LookPath(b); err != nil {
			return "", fmt.Errorf("%w: %s is missing (apt-get install debootstrap): %w", ErrNoMySQLRoot, b, err)
		}
	}
	mirror := os.Getenv(MirrorEnv)
	if mirror == "" {
		mirror = DefaultMirror
	}
	bctx, cancel := context.WithTimeout(ctx, mysqlRootBuildTimeout)
	defer cancel()
	build := root + ".build"
	if err := os.RemoveAll(build); err != nil {
		return "", fmt.Errorf("%w: remove the unfinished build %s: %w", ErrNoMySQLRoot, build, err)
	}
	log.Info("building the MySQL root (debootstrap sid + mysql-server, a few minutes)", zap.String("dir", root), zap.String("mirror", mirror))
	start := time.Now()
	if err := buildMySQLRoot(bctx, build, mirror); err != nil {
		return "", fmt.Errorf("%w: build in %s from %s: %w", ErrNoMySQLRoot, build, mirror, err)
	}
	if err := os.RemoveAll(root); err != nil {
		return "", fmt.Errorf("%w: remove the unfinished root %s: %w", ErrNoMySQLRoot, root, err)
	}
	if err := os.Rename(build, root); err != nil {
		return "", fmt.Errorf("%w: move %s to %s: %w", ErrNoMySQLRoot, build, root, err)
	}
	log.Info("MySQL root built", zap.String("dir", root), zap.Duration("took", time.Since(start)))
	return root, nil
}

// mysqlRootReady reports whether root is a finished build.
func mysqlRootReady(root string) bool {
	_, err1 := os.Stat(filepath.Join(root, mysqlRootMarker))
	_, err2 := os.Stat(filepath.Join(root, "usr/sbin/mysqld"))
	return err1 == nil && err2 == nil
}

// buildMySQLRoot makes the root in dir.
func buildMySQLRoot(ctx context.Context, dir, mirror string) error {
	run := func(env []string, argv ...string) error {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), env...)
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, lastLines(string(out), 15))
		}
		return nil
	}
	if err := run(nil, "debootstrap", "--variant=minbase", MySQLRootSuite, dir, mirror); err != nil {
		return err
	}
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return fmt.Errorf("read /etc/resolv.conf: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc/resolv.conf"), resolv, 0o644); err != nil {
		return fmt.Errorf("copy resolv.conf into the root: %w", err)
	}
	// No maintainer script may start a service inside the root.
	if err := os.WriteFile(filepath.Join(dir, "usr/sbin/policy-rc.d"), []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
		return fmt.Errorf("write policy-rc.d: %w", err)
	}
	apt := []string{"chroot", dir, "apt-get", "-o", "Acquire::Check-Valid-Until=false"}
	env := []string{"DEBIAN_FRONTEND=noninteractive", "RUNLEVEL=1"}
	if err := run(env, append(apt, "update", "-qq")...); err != nil {
		return err
	}
	if err := run(env, append(apt, "install", "-y", "-qq", "--no-install-recommends", "mysql-server")...); err != nil {
		return err
	}
	if err := run(env, append(apt, "clean")...); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "chroot", dir, "/usr/sbin/mysqld", "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("mysqld --version in the new root: %w: %s", err, strings.TrimSpace(string(out)))
	}
	marker := fmt.Sprintf("built %s from %s %s\n%s", time.Now().UTC().Format(time.RFC3339), mirror, MySQLRootSuite, out)
	if err := os.WriteFile(filepath.Join(dir, mysqlRootMarker), []byte(marker), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", mysqlRootMarker, err)
	}
	return nil
}

// flockCtx takes an exclusive flock on f, polling so that ctx can end the wait.
func flockCtx(ctx context.Context, f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// chrootArgv returns the command line that runs argv chrooted into root with dir (a host
// path) visible at the same path inside: in a private mount namespace of its own, it
// bind-mounts dir (recursively: a filesystem mounted under it, such as a small one on the
// datadir, comes along) onto root+dir and mounts /proc, then execs chroot. Every mount lives only in
// that namespace, so it disappears with the process, killed or not; the exec chain keeps
// one PID, so the returned process is mysqld itself.
func chrootArgv(root, dir string, argv ...string) []string {
	script := `set -e; mkdir -p "$1$2"; mount --rbind "$2" "$1$2"; mount -t proc proc "$1/proc"; r=$1; shift 2; exec chroot "$r" "$@"`
	return append([]string{"unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "keepraft-chroot", root, dir}, argv...)
}

// removeMirrorDirs removes, bottom-up, the empty directories chrootArgv made inside root to
// mirror dir. It never removes a directory that is not empty, nor one directly under root
// (such as the root's own /tmp), so another lab's directories and the root itself stay.
func removeMirrorDirs(root, dir string) {
	if !mysqlRootReady(root) {
		return
	}
	for d := filepath.Clean(dir); filepath.Dir(d) != "/" && d != "." && d != "/"; d = filepath.Dir(d) {
		if err := os.Remove(filepath.Join(root, d)); err != nil {
			return // not empty, or gone
		}
	}
}
