package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keepraft/keepraft/testenv"
)

// The Debian root the package is installed into: debootstrap --variant=minbase of
// bookworm, made once and kept as a tarball that later runs unpack.
const (
	pkgRootCache = "/var/cache/keepraft-test/bookworm-minbase.tar"
	pkgSuite     = "bookworm"
	// defaultMirror is used when the host's apt sources name no bookworm mirror.
	defaultMirror = "http://deb.debian.org/debian"
	// mirrorEnv overrides the mirror debootstrap uses.
	mirrorEnv = "KEEPRAFT_DEBIAN_MIRROR"
)

// TestPackage builds the .deb with `make package`, installs it with apt-get (which pulls
// its Depends from the mirror) into a fresh Debian bookworm root, and checks it from
// inside that root: the binaries run, the shipped example config passes check-config
// --offline (and the full check once its secret files exist), the unit's ExecStartPre
// runs, the directories have their modes, the config is a conffile an upgrade keeps, the
// service is not enabled, and a purge removes the binaries and /var/lib/keepraft.
// It needs root (chroot) and the apt mirror, no network namespace.
func TestPackage(t *testing.T) {
	testenv.Require(t)
	for _, b := range []string{"debootstrap", "chroot", "tar", "make", "dpkg-deb"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s=1 but %s is missing (make deps installs debootstrap): %v", testenv.IntegEnv, b, err)
		}
	}
	deb := buildPackage(t)

	fields := pkgRun(t, 10*time.Second, "", "dpkg-deb", "-f", deb, "Package", "Depends")
	for _, want := range []string{"Package: keepraft", "iproute2", "nftables"} {
		if !strings.Contains(fields, want) {
			t.Errorf("control fields lack %q:\n%s", want, fields)
		}
	}
	listing := pkgRun(t, 10*time.Second, "", "dpkg-deb", "-c", deb)
	for _, want := range []string{"./usr/sbin/keepraftd", "./usr/bin/raftctl", "./lib/systemd/system/keepraftd.service",
		"./usr/share/man/man1/keepraftd.1.gz", "./etc/keepraft/keepraft.yaml", "./usr/share/doc/keepraft/copyright"} {
		if !strings.Contains(listing, want) {
			t.Errorf("package lacks %s:\n%s", want, listing)
		}
	}

	root := freshRoot(t)
	if err := pkgCopy("/etc/resolv.conf", filepath.Join(root, "etc/resolv.conf"), 0o644); err != nil {
		t.Fatal(err)
	}
	// No maintainer script may start a service inside the root.
	if err := os.WriteFile(filepath.Join(root, "usr/sbin/policy-rc.d"), []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := pkgCopy(deb, filepath.Join(root, "tmp/keepraft.deb"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := func(bound time.Duration, argv ...string) string { return pkgRun(t, bound, root, argv...) }
	in(5*time.Minute, "apt-get", "update", "-qq")
	in(10*time.Minute, "apt-get", "install", "-y", "-qq", "--no-install-recommends", "/tmp/keepraft.deb")

	if out := in(10*time.Second, "keepraftd", "--version"); !strings.HasPrefix(out, "keepraftd version ") {
		t.Errorf("keepraftd --version: %q", out)
	}
	if out := in(10*time.Second, "raftctl", "--version"); !strings.HasPrefix(out, "raftctl version ") {
		t.Errorf("raftctl --version: %q", out)
	}
	const cfg = "/etc/keepraft/keepraft.yaml"
	if out := in(10*time.Second, "keepraftd", "check-config", "--offline", cfg); !strings.Contains(out, cfg+": ok (node db1") {
		t.Errorf("check-config --offline on the shipped config: %q", out)
	}
	// Without --offline the secrets are read: they are not shipped.
	if out, err := pkgRunErr(10*time.Second, root, "keepraftd", "check-config", cfg); err == nil || !strings.Contains(out, "cluster.token_file") {
		t.Errorf("check-config without the token file: err %v, output %q", err, out)
	}
	in(10*time.Second, "sh", "-c", "umask 077 && echo test-token > /etc/keepraft/token && echo test-pass > /etc/keepraft/mysql.pass")
	if out := in(10*time.Second, "keepraftd", "check-config", cfg); !strings.Contains(out, "ok (node db1") {
		t.Errorf("check-config with the secrets: %q", out)
	}

	unit, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/keepraftd.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "WatchdogSec=", "Restart=on-failure", "ExecStart=/usr/sbin/keepraftd --config " + cfg} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	// The unit's ExecStartPre is a command line this keepraftd accepts.
	for _, line := range strings.Split(string(unit), "\n") {
		if pre, ok := strings.CutPrefix(line, "ExecStartPre="); ok {
			in(10*time.Second, strings.Fields(pre)...)
		}
	}
	for path, want := range map[string]os.FileMode{"var/lib/keepraft": 0o700, "etc/keepraft": 0o750, "etc/keepraft/keepraft.yaml": 0o640, "usr/sbin/keepraftd": 0o755} {
		fi, err := os.Stat(filepath.Join(root, path))
		if err != nil {
			t.Errorf("/%s: %v", path, err)
		} else if fi.Mode().Perm() != want {
			t.Errorf("/%s has mode %04o, want %04o", path, fi.Mode().Perm(), want)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/keepraftd.service")); err == nil {
		t.Error("the package enabled keepraftd.service: it must wait for a config")
	}
	if conf := in(10*time.Second, "dpkg-query", "-W", "-f=${Conffiles}", "keepraft"); !strings.Contains(conf, cfg) {
		t.Errorf("%s is not a conffile: %q", cfg, conf)
	}
	for _, page := range []string{"keepraftd.1.gz", "raftctl.1.gz"} {
		if _, err := os.Stat(filepath.Join(root, "usr/share/man/man1", page)); err != nil {
			t.Errorf("the package has no %s: %v", page, err)
		}
	}

	// Reinstalling keeps an edited config.
	in(10*time.Second, "sh", "-c", "echo '# edited by the test' >> "+cfg)
	in(5*time.Minute, "dpkg", "-i", "/tmp/keepraft.deb")
	if b, err := os.ReadFile(filepath.Join(root, cfg)); err != nil || !strings.Contains(string(b), "# edited by the test") {
		t.Errorf("reinstall replaced the edited %s (err %v)", cfg, err)
	}

	in(5*time.Minute, "apt-get", "purge", "-y", "-qq", "keepraft")
	for _, gone := range []string{"usr/sbin/keepraftd", "usr/bin/raftctl", "var/lib/keepraft", "lib/systemd/system/keepraftd.service", "etc/keepraft/keepraft.yaml"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("/%s left after purge: %v", gone, err)
		}
	}
}

// buildPackage runs `make package` in the repository and returns the one .deb in dist/.
func buildPackage(t *testing.T) string {
	t.Helper()
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	pkgRun(t, 15*time.Minute, "", "make", "-C", repo, "package")
	debs, err := filepath.Glob(filepath.Join(repo, "dist", "keepraft_*.deb"))
	if err != nil || len(debs) != 1 {
		t.Fatalf("make package left %v (err %v), want one dist/keepraft_*.deb", debs, err)
	}
	return debs[0]
}

// freshRoot unpacks the cached bookworm root (making it first when missing) into a new
// directory that the test's cleanup removes, after unmounting anything left under it.
func freshRoot(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(pkgRootCache); errors.Is(err, os.ErrNotExist) {
		makeRootCache(t)
	} else if err != nil {
		t.Fatal(err)
	}
	root, err := os.MkdirTemp("/var/tmp", "keepraft-pkg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeRootTree(t, root) })
	pkgRun(t, 5*time.Minute, "", "tar", "-C", root, "--numeric-owner", "-xf", pkgRootCache)
	return root
}

// makeRootCache runs debootstrap into a scratch directory beside the cache and stores the
// result as the cache tarball (renamed into place, so a failed run leaves no cache).
func makeRootCache(t *testing.T) {
	t.Helper()
	dir := filepath.Dir(pkgRootCache)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	scratch, err := os.MkdirTemp(dir, "debootstrap-")
	if err != nil {
		t.Fatal(err)
	}
	defer removeRootTree(t, scratch)
	mirror := os.Getenv(mirrorEnv)
	if mirror == "" {
		mirror = hostMirror(t)
	}
	t.Logf("debootstrap %s from %s into %s (once; cached as %s)", pkgSuite, mirror, scratch, pkgRootCache)
	target := filepath.Join(scratch, "root")
	pkgRun(t, 30*time.Minute, "", "debootstrap", "--variant=minbase", pkgSuite, target, mirror)
	pkgRun(t, time.Minute, target, "apt-get", "clean")
	tmp := pkgRootCache + ".tmp"
	pkgRun(t, 5*time.Minute, "", "tar", "-C", target, "--numeric-owner", "-cf", tmp, ".")
	if err := os.Rename(tmp, pkgRootCache); err != nil {
		t.Fatal(err)
	}
}

// hostMirror is the first Debian mirror of this host's apt sources that serves the
// bookworm suite (not the security archive), or defaultMirror.
func hostMirror(t *testing.T) string {
	t.Helper()
	var files []string
	for _, pat := range []string{"/etc/apt/sources.list", "/etc/apt/sources.list.d/*.list", "/etc/apt/sources.list.d/*.sources"} {
		m, _ := filepath.Glob(pat)
		files = append(files, m...)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if m := mirrorFromSources(string(b), strings.HasSuffix(f, ".sources"), pkgSuite); m != "" {
			return m
		}
	}
	return defaultMirror
}

// mirrorFromSources returns the first URI in an apt sources file (one-line .list format,
// or deb822 when deb822) that offers `deb` packages of suite, "" when none does.
func mirrorFromSources(text string, deb822 bool, suite string) string {
	if !deb822 {
		for _, line := range strings.Split(text, "\n") {
			f := strings.Fields(strings.TrimSpace(strings.SplitN(line, "#", 2)[0]))
			if len(f) > 0 && f[0] == "deb" && len(f) > 1 && strings.HasPrefix(f[1], "[") {
				// deb [opts] uri suite: drop the options
				for len(f) > 1 && !strings.HasSuffix(f[1], "]") {
					f = slices.Delete(f, 1, 2)
				}
				f = slices.Delete(f, 1, 2)
			}
			if len(f) >= 3 && f[0] == "deb" && f[2] == suite {
				return f[1]
			}
		}
		return ""
	}
	for _, block := range strings.Split(text, "\n\n") {
		fields := map[string]string{}
		sc := bufio.NewScanner(strings.NewReader(block))
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "#") {
				continue
			}
			if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(k, " ") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if !slices.Contains(strings.Fields(fields["types"]), "deb") || strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		uris := strings.Fields(fields["uris"])
		if len(uris) > 0 && slices.Contains(strings.Fields(fields["suites"]), suite) {
			return uris[0]
		}
	}
	return ""
}

func TestMirrorFromSources(t *testing.T) {
	tests := []struct {
		name   string
		text   string
		deb822 bool
		want   string
	}{
		{"deb822, security block first", "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n\nTypes: deb\n# snapshot\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n", true, "http://mirror.example/debian"},
		{"deb822, disabled block", "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\nTypes: deb deb-src\nURIs: http://on.example/debian\nSuites: bookworm\n", true, "http://on.example/debian"},
		{"deb822, sources only", "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n", true, ""},
		{"one-line", "# comment\ndeb-src http://src.example/debian bookworm main\ndeb http://mirror.example/debian bookworm main\n", false, "http://mirror.example/debian"},
		{"one-line with options", "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n", false, "http://mirror.example/debian"},
		{"other suite", "deb http://mirror.example/debian trixie main\n", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mirrorFromSources(tt.text, tt.deb822, "bookworm"); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// pkgRun runs argv (inside root with chroot when root is not "") within bound and returns its
// combined output; a failure or timeout fails the test.
func pkgRun(t *testing.T, bound time.Duration, root string, argv ...string) string {
	t.Helper()
	out, err := pkgRunErr(bound, root, argv...)
	if err != nil {
		in := ""
		if root != "" {
			in = " in " + root
		}
		t.Fatalf("%s%s: %v\n%s", strings.Join(argv, " "), in, err, pkgTail(out, 40))
	}
	return out
}

// pkgRunErr is pkgRun returning the error. The command runs in its own process group, which is
// sent SIGTERM at the bound and SIGKILL 30 s later, and killed whole once it exits.
func pkgRunErr(bound time.Duration, root string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	var cmd *exec.Cmd
	if root != "" {
		cmd = exec.CommandContext(ctx, "chroot", append([]string{root}, argv...)...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root", "DEBIAN_FRONTEND=noninteractive"}
	} else {
		cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	err := cmd.Start()
	if err == nil {
		pgid := cmd.Process.Pid
		err = cmd.Wait()
		_ = syscall.Kill(-pgid, syscall.SIGKILL) // whatever of the group is left
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (bound %s)", ctx.Err(), bound)
	}
	return out.String(), err
}

// removeRootTree unmounts everything mounted under dir (a killed debootstrap leaves /proc, /sys
// or bind mounts of /dev behind), deepest first, and deletes dir only when no mount is left
// under it: removing through a bind mount would delete the host's files.
func removeRootTree(t *testing.T, dir string) {
	t.Helper()
	mounts, err := mountsUnder(dir)
	if err != nil {
		t.Errorf("not removing %s: %v", dir, err)
		return
	}
	for _, m := range mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", m, err)
		}
	}
	if left, err := mountsUnder(dir); err != nil || len(left) > 0 {
		t.Errorf("not removing %s: still mounted under it: %v (err %v)", dir, left, err)
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Errorf("remove %s: %v", dir, err)
	}
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a blank).
func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func pkgCopy(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return out.Close()
}

// pkgTail returns the last n lines of s.
func pkgTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
