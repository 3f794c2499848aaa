package vrrp

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// golden is one VRRP packet captured from a real keepalived, stored in testdata/*.golden as
// "key value" lines: src, dst, ttl, payload (hex); '#' starts a comment.
type golden struct {
	name     string
	src, dst netip.Addr
	ttl      int
	payload  []byte
}

func loadGoldens(t testing.TB) []golden {
	t.Helper()
	files, err := filepath.Glob("testdata/*.golden")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/*.golden files (err %v)", err)
	}
	var out []golden
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		g := golden{name: strings.TrimSuffix(filepath.Base(f), ".golden")}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, _ := strings.Cut(line, " ")
			switch k {
			case "src":
				g.src, err = netip.ParseAddr(v)
			case "dst":
				g.dst, err = netip.ParseAddr(v)
			case "ttl":
				g.ttl, err = strconv.Atoi(v)
			case "payload":
				g.payload, err = hex.DecodeString(v)
			default:
				err = fmt.Errorf("unknown key %q", k)
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		}
		out = append(out, g)
	}
	return out
}

// TestGoldenRoundTrip decodes every keepalived capture and re-encodes it byte for byte.
func TestGoldenRoundTrip(t *testing.T) {
	want := map[string]Packet{
		"keepalived-v2-pass": {Version: 2, VRID: 51, Priority: 100, AdvertInt: time.Second, AuthType: AuthPass,
			AuthData: AuthString("1111"), Addresses: addrs("198.18.2.100")},
		"keepalived-v2-pass-resign": {Version: 2, VRID: 51, Priority: 0, AdvertInt: time.Second, AuthType: AuthPass,
			AuthData: AuthString("1111"), Addresses: addrs("198.18.2.100")},
		"keepalived-v2-multi": {Version: 2, VRID: 52, Priority: 200, AdvertInt: 2 * time.Second,
			Addresses: addrs("198.18.2.110", "198.18.2.111", "198.18.2.112")},
		"keepalived-v2-longpass": {Version: 2, VRID: 54, Priority: 100, AdvertInt: time.Second, AuthType: AuthPass,
			AuthData: AuthString("secret-too-long"), Addresses: addrs("198.18.2.130")},
		"keepalived-v3": {Version: 3, VRID: 53, Priority: 150, AdvertInt: 500 * time.Millisecond,
			Addresses: addrs("198.18.2.120", "198.18.2.121")},
	}
	gs := loadGoldens(t)
	if len(gs) != len(want) {
		t.Errorf("got %d golden files, want %d", len(gs), len(want))
	}
	for _, g := range gs {
		t.Run(g.name, func(t *testing.T) {
			if g.ttl != 255 {
				t.Errorf("captured TTL %d, want 255", g.ttl)
			}
			p, err := Unmarshal(g.payload, g.src, g.dst)
			if err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			w, ok := want[g.name]
			if !ok {
				t.Fatalf("no expectation for %s", g.name)
			}
			if !packetsEqual(p, &w) {
				t.Errorf("decoded %+v\nwant    %+v", p, &w)
			}
			b, err := p.Marshal(g.src, g.dst)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if !bytes.Equal(b, g.payload) {
				t.Errorf("re-encoded\n%x\nwant\n%x", b, g.payload)
			}
			// Our own encoding of the expected packet is byte-identical too.
			b, err = w.Marshal(g.src, g.dst)
			if err != nil {
				t.Fatalf("Marshal want: %v", err)
			}
			if !bytes.Equal(b, g.payload) {
				t.Errorf("encoded expectation\n%x\nwant\n%x", b, g.payload)
			}
		})
	}
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func packetsEqual(a, b *Packet) bool {
	if a.Version != b.Version || a.VRID != b.VRID || a.Priority != b.Priority || a.AdvertInt != b.AdvertInt ||
		a.AuthType != b.AuthType || a.AuthData != b.AuthData || a.ChecksumAsV2 != b.ChecksumAsV2 ||
		len(a.Addresses) != len(b.Addresses) {
		return false
	}
	for i := range a.Addresses {
		if a.Addresses[i] != b.Addresses[i] {
			return false
		}
	}
	return true
}

// goldenConf is the keepalived configuration the goldens were captured from; IFACE is
// replaced by the lab interface.
const goldenConf = `global_defs {
    router_id golden
}
vrrp_instance V2PASS {
    state MASTER
    interface IFACE
    virtual_router_id 51
    priority 100
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass 1111
    }
    virtual_ipaddress {
        198.18.2.100
    }
}
vrrp_instance V2MULTI {
    state MASTER
    interface IFACE
    virtual_router_id 52
    priority 200
    advert_int 2
    virtual_ipaddress {
        198.18.2.110
        198.18.2.111/32
        198.18.2.112
    }
}
vrrp_instance V3 {
    state MASTER
    version 3
    interface IFACE
    virtual_router_id 53
    priority 150
    advert_int 0.5
    virtual_ipaddress {
        198.18.2.120
        198.18.2.121
    }
}
vrrp_instance V2LONGPASS {
    state MASTER
    interface IFACE
    virtual_router_id 54
    priority 100
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass secret-too-long
    }
    virtual_ipaddress {
        198.18.2.130
    }
}
`

// TestCaptureGoldens regenerates testdata/*.golden from a live keepalived. It runs only with
// KEEPRAFT_INTEG=1 and KEEPRAFT_VRRP_CAPTURE=1 and rewrites the committed files.
func TestCaptureGoldens(t *testing.T) {
	requireInteg(t)
	if os.Getenv("KEEPRAFT_VRRP_CAPTURE") != "1" {
		t.Skip("set KEEPRAFT_VRRP_CAPTURE=1 to rewrite testdata/*.golden")
	}
	l := newLab(t)
	dump := startTcpdump(t, l.nsB, l.ifB)
	ka := startKeepalived(t, l.nsA, strings.ReplaceAll(goldenConf, "IFACE", l.ifA))
	master := regexp.MustCompile(`Entering MASTER STATE`)
	from := 0
	for range 4 {
		_, i, err := ka.waitFor(master, from, 15*time.Second)
		if err != nil {
			t.Fatalf("%v\n%s", err, ka.dump())
		}
		from = i + 1
	}
	// Let every instance send a few adverts as master, then stop keepalived so that it
	// sends its priority-0 adverts.
	time.Sleep(2500 * time.Millisecond)
	ka.stop(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond)
	pkts := dump.finish(t)
	t.Logf("keepalived log:\n%s", ka.dump())

	names := map[uint8]string{51: "keepalived-v2-pass", 52: "keepalived-v2-multi", 53: "keepalived-v3", 54: "keepalived-v2-longpass"}
	instances := map[uint8]string{51: "V2PASS", 52: "V2MULTI", 53: "V3", 54: "V2LONGPASS"}
	written := map[string]bool{}
	for _, c := range pkts {
		if len(c.payload) < 4 || c.src != l.addrA {
			continue
		}
		name, ok := names[c.payload[1]]
		if !ok {
			continue
		}
		if c.payload[2] == 0 {
			name += "-resign"
			if c.payload[1] != 51 {
				continue
			}
		}
		if written[name] {
			continue
		}
		written[name] = true
		text := fmt.Sprintf("# VRRP advert captured with tcpdump from keepalived 2.2.7 (vrrp_instance %s of goldenConf in golden_test.go)\n"+
			"# by TestCaptureGoldens on a veth pair between two network namespaces.\n"+
			"src %s\ndst %s\nttl %d\npayload %x\n", instances[c.payload[1]], c.src, c.dst, c.ttl, c.payload)
		if err := os.WriteFile(filepath.Join("testdata", name+".golden"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s: %x", name, c.payload)
	}
	if len(written) != 5 {
		t.Errorf("wrote %d goldens, want 5: %v", len(written), written)
	}
}
