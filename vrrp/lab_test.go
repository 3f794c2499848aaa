package vrrp

// Lab helpers for the integration tests: a pair of network namespaces joined by a veth pair,
// keepalived and tcpdump processes ended by PID, and a minimal pcap reader.
//
// requireInteg is testenv.Require plus tcpdump, which only these tests need.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/keepraft/keepraft/internal/netnsdo"
	"github.com/keepraft/keepraft/testenv"
)

func requireInteg(t *testing.T) {
	t.Helper()
	testenv.Require(t)
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Fatalf("%s=1 but tcpdump is missing: %v", testenv.IntegEnv, err)
	}
}

var labSeq atomic.Int32

// lab is two namespaces, A (keepalived, 198.18.2.1) and B (us, 198.18.2.2), joined by a veth
// pair vethA/vethB.
type lab struct {
	nsA, nsB     string
	ifA, ifB     string
	addrA, addrB netip.Addr
}

func newLab(t *testing.T) *lab {
	t.Helper()
	n := labSeq.Add(1)
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, n)
	l := &lab{
		nsA: "krvrrp" + id + "a", nsB: "krvrrp" + id + "b",
		ifA: "kv" + id + "a", ifB: "kv" + id + "b",
		addrA: netip.MustParseAddr("198.18.2.1"), addrB: netip.MustParseAddr("198.18.2.2"),
	}
	for _, ns := range []string{l.nsA, l.nsB} {
		mustRun(t, "ip", "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
	}
	mustRun(t, "ip", "-n", l.nsA, "link", "add", l.ifA, "type", "veth", "peer", "name", l.ifB, "netns", l.nsB)
	mustRun(t, "ip", "-n", l.nsA, "addr", "add", l.addrA.String()+"/24", "dev", l.ifA)
	mustRun(t, "ip", "-n", l.nsB, "addr", "add", l.addrB.String()+"/24", "dev", l.ifB)
	for _, x := range [][2]string{{l.nsA, l.ifA}, {l.nsB, l.ifB}, {l.nsA, "lo"}, {l.nsB, "lo"}} {
		mustRun(t, "ip", "-n", x[0], "link", "set", x[1], "up")
	}
	return l
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// dialIn opens our Conn on interface ifname inside namespace ns.
func dialIn(t *testing.T, ns, ifname string) *Conn {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatalf("open netns %s: %v", ns, err)
	}
	defer h.Close()
	var c *Conn
	err = netnsdo.Do(h, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("interface %s: %w", ifname, err)
		}
		if c, err = Dial(ifi); err != nil {
			return fmt.Errorf("dial %s: %w", ifname, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("netns %s: %v", ns, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// logLine is one line of a child's output with the time we read it.
type logLine struct {
	at   time.Time
	text string
}

// proc is a child process whose combined output is collected line by line.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	done chan struct{}

	mu    sync.Mutex
	lines []logLine
}

func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, done: make(chan struct{})}
	pr, pw := io.Pipe()
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.cmd.Wait()
		pw.Close()
	}()
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, logLine{at: time.Now(), text: sc.Text()})
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() { p.stop(syscall.SIGTERM) })
	return p
}

// stop signals the process by PID and waits up to 5 s for it, then kills it.
func (p *proc) stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.t.Errorf("%s (pid %d) ignored %v, killing", p.name, p.cmd.Process.Pid, sig)
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) snapshot() []logLine {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]logLine(nil), p.lines...)
}

// waitFor returns the first line at or after index from that matches re, polling until the
// deadline.
func (p *proc) waitFor(re *regexp.Regexp, from int, timeout time.Duration) (logLine, int, error) {
	deadline := time.Now().Add(timeout)
	for {
		lines := p.snapshot()
		for i := from; i < len(lines); i++ {
			if re.MatchString(lines[i].text) {
				return lines[i], i, nil
			}
		}
		if time.Now().After(deadline) {
			return logLine{}, 0, fmt.Errorf("%s: no line matching %q within %s", p.name, re, timeout)
		}
		select {
		case <-p.done:
			return logLine{}, 0, fmt.Errorf("%s exited before a line matched %q", p.name, re)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (p *proc) dump() string {
	var b strings.Builder
	for _, l := range p.snapshot() {
		fmt.Fprintf(&b, "%s %s\n", l.at.Format("15:04:05.000"), l.text)
	}
	return b.String()
}

// keepalived runs keepalived with conf inside namespace ns. It is ended by PID in
// t.Cleanup; its VRRP child, if it outlives the parent, is ended by the PID in its pid file.
func startKeepalived(t *testing.T, ns, conf string) *proc {
	t.Helper()
	dir := t.TempDir()
	cf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	vrrpPid := filepath.Join(dir, "vrrp.pid")
	t.Cleanup(func() {
		// Runs after the parent was stopped (cleanups run in reverse order).
		b, err := os.ReadFile(vrrpPid)
		if err != nil {
			return
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 {
			return
		}
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(comm)) == "keepalived" {
			t.Errorf("keepalived VRRP child %d outlived its parent; killing it", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	p := startProc(t, "keepalived", "ip", "netns", "exec", ns,
		"keepalived", "-n", "-l", "-D", "-P", "-f", cf,
		"-p", filepath.Join(dir, "keepalived.pid"), "-r", vrrpPid)
	return p
}

// tcpdump captures VRRP on ifname inside ns into a pcap file until stopped.
type tcpdump struct {
	*proc
	file string
}

func startTcpdump(t *testing.T, ns, ifname string) *tcpdump {
	t.Helper()
	file := filepath.Join(t.TempDir(), "vrrp.pcap")
	p := startProc(t, "tcpdump", "ip", "netns", "exec", ns,
		"tcpdump", "-i", ifname, "-n", "-U", "-w", file, "ip", "proto", "112")
	if _, _, err := p.waitFor(regexp.MustCompile(`listening on`), 0, 10*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, p.dump())
	}
	return &tcpdump{proc: p, file: file}
}

// finish stops the capture (SIGINT flushes the file) and returns the VRRP packets in it.
func (d *tcpdump) finish(t *testing.T) []captured {
	t.Helper()
	d.stop(syscall.SIGINT)
	pkts, err := readPcap(d.file)
	if err != nil {
		t.Fatalf("read %s: %v", d.file, err)
	}
	return pkts
}

// captured is one IPv4 VRRP packet from a capture.
type captured struct {
	src, dst netip.Addr
	ttl      int
	payload  []byte
}

// readPcap reads a classic little- or big-endian pcap file of Ethernet frames and returns
// the IPv4 protocol-112 payloads, trimmed to the IP total length.
func readPcap(file string) ([]captured, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if len(b) < 24 {
		return nil, errors.New("pcap: short global header")
	}
	var bo binary.ByteOrder
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		bo = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		bo = binary.BigEndian
	default:
		return nil, errors.New("pcap: bad magic")
	}
	if lt := bo.Uint32(b[20:24]); lt != 1 {
		return nil, fmt.Errorf("pcap: link type %d, want Ethernet", lt)
	}
	var out []captured
	for off := 24; off+16 <= len(b); {
		incl := int(bo.Uint32(b[off+8:]))
		off += 16
		if off+incl > len(b) {
			return nil, errors.New("pcap: truncated record")
		}
		frame := b[off : off+incl]
		off += incl
		if len(frame) < 14+20 || binary.BigEndian.Uint16(frame[12:14]) != 0x0800 {
			continue
		}
		ip := frame[14:]
		ihl := int(ip[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(ip[2:4]))
		if ip[9] != Protocol || total > len(ip) || ihl < 20 || total < ihl {
			continue
		}
		src, _ := netip.AddrFromSlice(ip[12:16])
		dst, _ := netip.AddrFromSlice(ip[16:20])
		out = append(out, captured{src: src, dst: dst, ttl: int(ip[8]), payload: append([]byte(nil), ip[ihl:total]...)})
	}
	return out, nil
}
