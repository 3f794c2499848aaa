package vrrp

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// kaBackupConf is keepalived as a migrating site runs it next to keepraft: BACKUP,
// priority 100, nopreempt, same VRID, auth, advert_int and VIP list as our Speaker.
func kaBackupConf(ifname string, version int) string {
	auth := `    authentication {
        auth_type PASS
        auth_pass 1111
    }
`
	if version == 3 {
		auth = ""
	}
	return fmt.Sprintf(`global_defs {
    router_id interop
}
vrrp_instance VI_1 {
    state BACKUP
    version %d
    interface %s
    virtual_router_id 51
    priority 100
    advert_int 1
    nopreempt
%s    virtual_ipaddress {
        198.18.2.100
        198.18.2.101
    }
}
`, version, ifname, auth)
}

func interopConfig(ifname string, version int) Config {
	c := Config{Interface: ifname, Version: version, VRID: 51, Priority: 150, AdvertInt: time.Second,
		VIPs: addrs("198.18.2.100", "198.18.2.101")}
	if version == 2 {
		c.AuthPass = "1111"
	}
	return c
}

var (
	reBackup     = regexp.MustCompile(`\(VI_1\) Entering BACKUP STATE`)
	reMaster     = regexp.MustCompile(`\(VI_1\) Entering MASTER STATE`)
	reComplaints = regexp.MustCompile(`(?i)bad|invalid|discard`)
)

// timedWriter remembers when the last advert went out.
type timedWriter struct {
	w    advertWriter
	mu   sync.Mutex
	last time.Time
	n    int
}

func (tw *timedWriter) WriteAdvert(p *Packet) error {
	err := tw.w.WriteAdvert(p)
	if err == nil {
		tw.mu.Lock()
		tw.last, tw.n = time.Now(), tw.n+1
		tw.mu.Unlock()
	}
	return err
}

func (tw *timedWriter) lastWrite() (time.Time, int) {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	return tw.last, tw.n
}

// TestKeepalivedHeldBackupThenResign: our Speaker (priority 150) keeps a real keepalived
// (BACKUP, priority 100, nopreempt) in BACKUP for more than 10 advert intervals; Resign makes
// it MASTER after its skew; our Listener then sees it as a foreign router; tcpdump decodes
// our adverts without complaint.
func TestKeepalivedHeldBackupThenResign(t *testing.T) {
	requireInteg(t)
	for _, version := range []int{2, 3} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			l := newLab(t)
			dump := startTcpdump(t, l.nsA, l.ifA)
			conn := dialIn(t, l.nsB, l.ifB)
			cfg := interopConfig(l.ifB, version)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			log := zaptest.NewLogger(t)
			ctx, cancel := context.WithCancel(t.Context())
			var wg sync.WaitGroup
			t.Cleanup(func() { cancel(); wg.Wait() })

			tw := &timedWriter{w: conn}
			sp := NewSpeaker(tw, cfg, func() bool { return true }, nil, log)
			var foreign []Router
			var fmu sync.Mutex
			li := NewListener(conn, cfg, []netip.Addr{l.addrB}, func(r Router) {
				fmu.Lock()
				foreign = append(foreign, r)
				fmu.Unlock()
			}, log)
			wg.Add(2)
			go func() { defer wg.Done(); sp.Run(ctx) }()
			go func() {
				defer wg.Done()
				if err := li.Run(ctx); err != nil {
					t.Errorf("Listener.Run: %v", err)
				}
			}()

			ka := startKeepalived(t, l.nsA, kaBackupConf(l.ifA, version))
			if _, _, err := ka.waitFor(reBackup, 0, 10*time.Second); err != nil {
				t.Fatalf("%v\n%s", err, ka.dump())
			}
			holdStart := time.Now()
			hold := 11 * cfg.AdvertInt
			if line, _, err := ka.waitFor(reMaster, 0, hold); err == nil {
				t.Fatalf("keepalived became MASTER while we advertised priority 150: %q\n%s", line.text, ka.dump())
			}
			_, sentDuringHold := tw.lastWrite()
			t.Logf("keepalived stayed BACKUP for %s while we sent %d adverts", time.Since(holdStart).Round(time.Millisecond), sentDuringHold)

			resignAt := time.Now()
			if err := sp.Resign(ctx); err != nil {
				t.Fatalf("Resign: %v", err)
			}
			line, _, err := ka.waitFor(reMaster, 0, 3*time.Second)
			if err != nil {
				t.Fatalf("after Resign: %v\n%s", err, ka.dump())
			}
			took := line.at.Sub(resignAt)
			skew := time.Duration(256-100) * time.Second / 256
			t.Logf("keepalived MASTER %s after Resign (skew %s)", took.Round(time.Millisecond), skew)
			if took > skew+900*time.Millisecond {
				t.Errorf("keepalived took %s after Resign, want about its skew %s", took, skew)
			}

			// The Listener hears keepalived's adverts as a foreign router at priority 100.
			deadline := time.Now().Add(5 * time.Second)
			var kaRouter *Router
			for kaRouter == nil && time.Now().Before(deadline) {
				for _, r := range li.Routers() {
					if r.VRID == 51 && r.Src == l.addrA && r.Priority == 100 && r.Count >= 2 {
						kaRouter = &r
					}
				}
				time.Sleep(50 * time.Millisecond)
			}
			if kaRouter == nil {
				t.Fatalf("Listener did not track keepalived: routers %+v stats %+v", li.Routers(), li.Stats())
			}
			t.Logf("Listener: keepalived router %+v, stats %+v", *kaRouter, li.Stats())
			if kaRouter.Version != version || kaRouter.AdvertInt != time.Second || !sameAddrs(kaRouter.Addresses, cfg.VIPs) {
				t.Errorf("keepalived router = %+v", *kaRouter)
			}
			fmu.Lock()
			if len(foreign) == 0 || foreign[0].Src != l.addrA {
				t.Errorf("onForeign calls %+v, want keepalived at %s", foreign, l.addrA)
			}
			fmu.Unlock()
			if st := li.Stats(); len(st.Dropped) != 0 {
				t.Errorf("Listener dropped packets: %+v", st)
			}

			ka.stop(syscall.SIGTERM)
			checkKeepalivedLog(t, ka)

			// Our adverts as captured on keepalived's side.
			pkts := dump.finish(t)
			var ours, resigns int
			for _, c := range pkts {
				if c.src != l.addrB {
					continue
				}
				p, err := Unmarshal(c.payload, c.src, c.dst)
				if err != nil {
					t.Errorf("captured advert %x: %v", c.payload, err)
					continue
				}
				want := cfg.Advert(p.Priority)
				if c.ttl != 255 || c.dst != IPv4Group || !packetsEqual(p, want) || (p.Priority != 150 && p.Priority != 0) {
					t.Errorf("captured advert ttl %d dst %s %+v, want %+v", c.ttl, c.dst, p, want)
				}
				ours++
				if p.Priority == 0 {
					resigns++
				}
			}
			if ours < 11 || resigns != resignAdverts {
				t.Errorf("captured %d of our adverts (%d resign), want ≥ 11 and %d", ours, resigns, resignAdverts)
			}
			checkTcpdumpDecode(t, dump.file, version, l.addrA, l.addrB)
		})
	}
}

// TestKeepalivedTakesOverWhenSpeakerStops: stopping the Speaker without resigning makes
// keepalived MASTER after its Master_Down_Interval (3 × advert_int + skew).
func TestKeepalivedTakesOverWhenSpeakerStops(t *testing.T) {
	requireInteg(t)
	for _, version := range []int{2, 3} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			l := newLab(t)
			conn := dialIn(t, l.nsB, l.ifB)
			cfg := interopConfig(l.ifB, version)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			tw := &timedWriter{w: conn}
			sp := NewSpeaker(tw, cfg, func() bool { return true }, nil, zaptest.NewLogger(t))
			go func() { defer close(done); sp.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })

			ka := startKeepalived(t, l.nsA, kaBackupConf(l.ifA, version))
			if _, _, err := ka.waitFor(reBackup, 0, 10*time.Second); err != nil {
				t.Fatalf("%v\n%s", err, ka.dump())
			}
			if line, _, err := ka.waitFor(reMaster, 0, 3*cfg.AdvertInt); err == nil {
				t.Fatalf("keepalived became MASTER while we advertised: %q\n%s", line.text, ka.dump())
			}
			cancel()
			<-done
			last, n := tw.lastWrite()
			line, _, err := ka.waitFor(reMaster, 0, 6*time.Second)
			if err != nil {
				t.Fatalf("after the speaker stopped: %v\n%s", err, ka.dump())
			}
			mdi := cfg.MasterDownInterval(100)
			took := line.at.Sub(last)
			t.Logf("keepalived MASTER %s after our last advert (#%d); Master_Down_Interval %s", took.Round(time.Millisecond), n, mdi)
			if took < mdi-300*time.Millisecond || took > mdi+time.Second {
				t.Errorf("keepalived took %s after our last advert, want its Master_Down_Interval %s", took, mdi)
			}
			ka.stop(syscall.SIGTERM)
			checkKeepalivedLog(t, ka)
		})
	}
}

// checkKeepalivedLog fails on any line where keepalived complains about a packet.
func checkKeepalivedLog(t *testing.T, ka *proc) {
	t.Helper()
	var bad []string
	for _, l := range ka.snapshot() {
		if reComplaints.MatchString(l.text) {
			bad = append(bad, l.text)
		}
	}
	if len(bad) > 0 {
		t.Errorf("keepalived complained:\n%s\nfull log:\n%s", strings.Join(bad, "\n"), ka.dump())
	}
	t.Logf("keepalived log:\n%s", ka.dump())
}

// checkTcpdumpDecode runs tcpdump -v -r on the capture and checks that it decodes our adverts
// as VRRP advertisements of the right version without marking a bad checksum (tcpdump 4.99
// checks v2 without and v3 over IPv4 with the pseudo-header, as keepalived does). So that the
// check has teeth, tcpdump must mark a copy of our advert with a corrupted checksum as bad.
func checkTcpdumpDecode(t *testing.T, file string, version int, kaAddr, ourAddr netip.Addr) {
	t.Helper()
	out := tcpdumpRead(t, file)
	// tcpdump -v prints the IP header on one line and the VRRP part indented on the next.
	kind := fmt.Sprintf("VRRPv%d, Advertisement", version)
	ours, oursBad := countVRRP(out, ourAddr, kind)
	kas, kaBad := countVRRP(out, kaAddr, kind)
	t.Logf("tcpdump -v: ours %d (bad %d), keepalived %d (bad %d); sample:\n%s", ours, oursBad, kas, kaBad, sample(out, ourAddr.String(), kaAddr.String()))
	if ours < 11 || oursBad != 0 || kaBad != 0 {
		t.Errorf("tcpdump decoded %d of our adverts as %q with %d bad (keepalived's: %d bad), want ≥ 11 and 0:\n%s", ours, kind, oursBad, kaBad, out)
	}

	cfg := interopConfig("x", version)
	b, err := cfg.Advert(150).Marshal(ourAddr, IPv4Group)
	if err != nil {
		t.Fatal(err)
	}
	b[7] ^= 0x01
	bad := filepath.Join(t.TempDir(), "corrupt.pcap")
	if err := writePcap(bad, ourAddr, IPv4Group, b); err != nil {
		t.Fatal(err)
	}
	out = tcpdumpRead(t, bad)
	if n, nBad := countVRRP(out, ourAddr, kind); n != 1 || nBad != 1 {
		t.Errorf("tcpdump did not flag a corrupted v%d checksum (decoded %d, bad %d):\n%s", version, n, nBad, out)
	}
}

func tcpdumpRead(t *testing.T, file string) string {
	t.Helper()
	out, err := exec.Command("tcpdump", "-n", "-v", "-r", file).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r %s: %v: %s", file, err, out)
	}
	return string(out)
}

// countVRRP counts tcpdump -v lines of kind sent by src, and those marked bad.
func countVRRP(out string, src netip.Addr, kind string) (n, bad int) {
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, src.String()+" > 224.0.0.18: "+kind) {
			n++
			if strings.Contains(l, "bad") {
				bad++
			}
		}
	}
	return n, bad
}

// writePcap writes one Ethernet/IPv4 frame carrying a VRRP payload, TTL 255.
func writePcap(file string, src, dst netip.Addr, payload []byte) error {
	ip := make([]byte, 20, 20+len(payload))
	ip[0], ip[1] = 0x45, 0xc0
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(payload)))
	ip[8], ip[9] = 255, Protocol
	copy(ip[12:], src.AsSlice())
	copy(ip[16:], dst.AsSlice())
	binary.BigEndian.PutUint16(ip[10:], ^fold(addBytes(0, ip)))
	ip = append(ip, payload...)
	frame := append([]byte{1, 0, 0x5e, 0, 0, 0x12, 2, 0, 0, 0, 0, 1, 0x08, 0x00}, ip...)
	hdr := make([]byte, 24+16)
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535)
	binary.LittleEndian.PutUint32(hdr[20:], 1)
	binary.LittleEndian.PutUint32(hdr[24+8:], uint32(len(frame)))
	binary.LittleEndian.PutUint32(hdr[24+12:], uint32(len(frame)))
	return os.WriteFile(file, append(hdr, frame...), 0o644)
}

// sample returns the first VRRP line of each sender from tcpdump output.
func sample(out string, srcs ...string) string {
	var b strings.Builder
	lines := strings.Split(out, "\n")
	for _, s := range srcs {
		for _, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(l), s+" > ") {
				b.WriteString(strings.TrimSpace(l) + "\n")
				break
			}
		}
	}
	return b.String()
}

// TestKeepalivedRejectsMismatchedAdverts shows the interop trap the Config must avoid, and
// that the checks above can fail: keepalived 2.2.7 discards adverts whose auth, v2 interval
// or VIP list differ from its own, and then takes over as if we were silent.
func TestKeepalivedRejectsMismatchedAdverts(t *testing.T) {
	requireInteg(t)
	tests := []struct {
		name string
		give func(c *Config)
	}{
		{name: "wrong password", give: func(c *Config) { c.AuthPass = "2222" }},
		{name: "advert_int 2s", give: func(c *Config) { c.AdvertInt = 2 * time.Second }},
		{name: "extra VIP", give: func(c *Config) { c.VIPs = append(c.VIPs, netip.MustParseAddr("198.18.2.102")) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t)
			conn := dialIn(t, l.nsB, l.ifB)
			cfg := interopConfig(l.ifB, 2)
			tt.give(&cfg)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			sp := NewSpeaker(conn, cfg, func() bool { return true }, nil, zaptest.NewLogger(t))
			go func() { defer close(done); sp.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })

			ka := startKeepalived(t, l.nsA, kaBackupConf(l.ifA, 2))
			backup, _, err := ka.waitFor(reBackup, 0, 10*time.Second)
			if err != nil {
				t.Fatalf("%v\n%s", err, ka.dump())
			}
			master, _, err := ka.waitFor(reMaster, 0, 8*time.Second)
			if err != nil {
				t.Fatalf("keepalived stayed BACKUP despite mismatched adverts: %v\n%s", err, ka.dump())
			}
			t.Logf("keepalived MASTER %s after BACKUP despite our priority-150 adverts", master.at.Sub(backup.at).Round(time.Millisecond))
			ka.stop(syscall.SIGTERM)
			var complaints []string
			for _, line := range ka.snapshot() {
				if reComplaints.MatchString(line.text) || strings.Contains(line.text, "received") || strings.Contains(line.text, "interval") {
					complaints = append(complaints, line.text)
				}
			}
			t.Logf("keepalived said:\n%s", strings.Join(complaints, "\n"))
		})
	}
}
