package kaconf

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/keepraft/keepraft/testenv"
)

var nsSeq atomic.Int32

// keepalivedCheck runs `keepalived -t` (config test) on conf inside a namespace of its own
// that has an interface named eth0, and returns what keepalived printed.
func keepalivedCheck(t *testing.T, conf string) string {
	t.Helper()
	ns := fmt.Sprintf("krkaconf%d%d", os.Getpid()%100000, nsSeq.Add(1))
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	})
	run("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "kaconfpeer")
	run("-n", ns, "addr", "add", "198.18.3.1/24", "dev", "eth0")
	run("-n", ns, "link", "set", "eth0", "up")

	dir := t.TempDir()
	cf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, "keepalived", "-t", "-l", "-f", cf,
		"-p", filepath.Join(dir, "k.pid"), "-r", filepath.Join(dir, "v.pid"))
	out, _ := cmd.CombinedOutput() // -t exits non-zero on any warning; the text is what we check
	return string(out)
}

// TestKeepalivedAgreesOneLineAuth checks kaconf's claim against keepalived 2.2.7 itself: a
// one-line authentication block sets no password.
func TestKeepalivedAgreesOneLineAuth(t *testing.T) {
	testenv.Require(t)
	conf := "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n" +
		" authentication { auth_type PASS auth_pass 1111 }\n virtual_ipaddress {\n  198.18.3.100\n }\n}\n"
	out := keepalivedCheck(t, conf)
	const msg = "Authentication specified but no password given"
	if !strings.Contains(out, msg) {
		t.Fatalf("keepalived -t did not report %q:\n%s", msg, out)
	}
	f, err := Parse(strings.NewReader(conf))
	if err != nil {
		t.Fatal(err)
	}
	doc, warns, err := Convert(f, "VI_1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(doc), "auth_pass:") || !strings.Contains(strings.Join(warns, "\n"), msg) {
		t.Errorf("kaconf disagrees with keepalived:\n%s\n%q", doc, warns)
	}
	t.Logf("keepalived -t: %s", strings.TrimSpace(out))
}

var kaUnknown = regexp.MustCompile(`Line (\d+)\) Unknown keyword '([^']+)'`)
var ourUnknown = regexp.MustCompile(`^line (\d+): .*unknown (?:top-level )?keyword (\S+)`)

// TestKeepalivedAgreesOnKeywords: keepalived and kaconf flag the same unknown keywords in the
// test files, and keepalived accepts the seed config's syntax.
func TestKeepalivedAgreesOnKeywords(t *testing.T) {
	testenv.Require(t)
	for _, name := range []string{"seed.conf", "kitchen.conf"} {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			out := keepalivedCheck(t, string(b))
			var theirs, ours []string
			for _, m := range kaUnknown.FindAllStringSubmatch(out, -1) {
				theirs = append(theirs, m[1]+":"+m[2])
			}
			f := parseFile(t, name)
			for _, w := range f.Warnings {
				if m := ourUnknown.FindStringSubmatch(w); m != nil {
					ours = append(ours, m[1]+":"+m[2])
				}
			}
			if !slices.Equal(theirs, ours) {
				t.Errorf("unknown keywords: keepalived %v, kaconf %v\nkeepalived -t said:\n%s", theirs, ours, out)
			}
			if strings.Contains(out, "Configuration error") || strings.Contains(out, "missing '}'") {
				t.Errorf("keepalived -t found syntax errors:\n%s", out)
			}
			t.Logf("keepalived -t:\n%s", out)
		})
	}
}
