package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"

	"github.com/keepraft/keepraft/probe"
)

// Lab network constants.
var (
	// LabNet is the lab segment; every host has one address in it on eth0.
	LabNet = netip.MustParsePrefix("198.18.0.0/24")
	// DefaultVIP is the address reserved for the virtual IP; no host is given it.
	DefaultVIP = netip.MustParsePrefix("198.18.0.100/32")
	// DefaultHosts are the hosts New makes when Options.Hosts is empty.
	DefaultHosts = []string{"db1", "db2", "witness", "client"}
)

// fixedOctets are the last address octets of the well-known hosts; other hosts get .21 upward.
var fixedOctets = map[string]byte{"db1": 11, "db2": 12, "witness": 13, "client": 20}

// validName is what a host name or prefix may look like (it ends up in namespace names).
var validName = regexp.MustCompile(`^[a-z][a-z0-9]{0,14}$`)

// Options configure [New]. The zero value makes the default four-host lab.
type Options struct {
	// Hosts names the hosts; default db1, db2, witness, client.
	Hosts []string
	// Prefix prefixes every namespace; default "kr" plus four random hex digits.
	Prefix string
	// Dir is the work dir for datadirs, logs and configs; default a new temp dir, removed by
	// Close (unless KeepDir).
	Dir string
	// KeepDir keeps a default temp Dir after Close.
	KeepDir bool
	// MariaDB starts MariaDB on every host whose name starts with "db" and sets up GTID
	// dual-master replication between the first two.
	MariaDB bool
	// NoNetwork makes no namespaces at all (for MariaDB-only tests on 127.0.0.1).
	NoNetwork bool
	// Detach starts processes in their own session without a parent-death signal, so they
	// outlive the Go process that made the lab (keepraft-lab up). Close still ends them.
	Detach bool
	// StatePath is an extra place to keep the state file (besides Dir/state.json and the
	// registry entry).
	StatePath string
	// DaemonGrants replace [DaemonGrantsFor] the flavor on the servers MariaDB starts.
	DaemonGrants []string
	// Flavor of the servers MariaDB starts: FlavorMariaDB ("" too) or FlavorMySQL (mysqld 9.x
	// from the Debian sid root of [EnsureMySQLRoot], built on first use).
	Flavor probe.Flavor
	// StopTimeout bounds the SIGTERM phase of Close before SIGKILL; default 10 s.
	StopTimeout time.Duration
}

// Lab is a set of network namespaces joined by a bridge, with the processes started in them.
// Methods are safe for concurrent use.
type Lab struct {
	// Prefix prefixes every namespace name of this lab.
	Prefix string
	// Dir is the work dir: logs/, one dir per MariaDB, configs.
	Dir string
	// BridgeNS is the namespace holding the bridge br0 and the outer veth ends.
	BridgeNS string
	// VIP is the address reserved for the virtual IP (198.18.0.100/32).
	VIP netip.Prefix

	log          *zap.Logger
	detach       bool
	daemonGrants []string
	flavor       probe.Flavor
	ownDir       bool
	stopTimeout  time.Duration
	statePaths   []string
	created      time.Time
	ownerPID     int
	ownerStart   uint64

	brNS netns.NsHandle
	brH  *netlink.Handle

	mu       sync.Mutex
	saveMu   sync.Mutex // serializes saveState
	closed   bool
	hosts    []*Host
	byName   map[string]*Host
	procs    []*Proc
	dbs      []*MariaDB
	trackers []*Tracker
	fw       map[string]map[netip.Addr]bool // host -> blocked peer addresses
	made     map[string]bool                // namespaces this Lab may remove (created or attached)
}

// Host is one network namespace with a veth (eth0) on the lab bridge.
type Host struct {
	// Name is the host name (db1, db2, witness, client, ...).
	Name string
	// NS is the network namespace name ("<prefix>-<name>"); usable with `ip netns exec`.
	NS string
	// Iface is the interface inside the namespace (eth0).
	Iface string
	// Addr is the host address on the lab segment (/24).
	Addr netip.Addr
	// MAC is the hardware address of Iface.
	MAC net.HardwareAddr
	// BridgePort is the name of the outer veth end in the bridge namespace.
	BridgePort string

	lab     *Lab
	ns      netns.NsHandle
	dialNet string
}

// New builds a lab: a bridge namespace, one namespace per host, and, with Options.MariaDB,
// MariaDB servers in dual-master replication. On error everything made so far is removed.
func New(ctx context.Context, log *zap.Logger, opts Options) (*Lab, error) {
	if len(opts.Hosts) == 0 && !opts.NoNetwork {
		opts.Hosts = DefaultHosts
	}
	if opts.NoNetwork {
		opts.Hosts = nil
	}
	if opts.Prefix == "" {
		var b [2]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("random prefix: %w", err)
		}
		opts.Prefix = "kr" + hex.EncodeToString(b[:])
	}
	if !validName.MatchString(opts.Prefix) {
		return nil, fmt.Errorf("prefix %q: want lowercase letters and digits, at most 15", opts.Prefix)
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 10 * time.Second
	}
	l := &Lab{
		Prefix:       opts.Prefix,
		Dir:          opts.Dir,
		VIP:          DefaultVIP,
		log:          log.Named("testenv").With(zap.String("lab", opts.Prefix)),
		detach:       opts.Detach,
		daemonGrants: opts.DaemonGrants,
		flavor:       opts.Flavor,
		stopTimeout:  opts.StopTimeout,
		created:      time.Now(),
		brNS:         netns.None(),
		byName:       map[string]*Host{},
		fw:           map[string]map[netip.Addr]bool{},
		made:         map[string]bool{},
	}
	if !opts.Detach {
		l.ownerPID = os.Getpid()
		l.ownerStart, _, _ = procStat(l.ownerPID)
	}
	if l.Dir == "" {
		d, err := os.MkdirTemp("", "keepraft-lab-"+opts.Prefix+"-")
		if err != nil {
			return nil, fmt.Errorf("make lab dir: %w", err)
		}
		l.Dir, l.ownDir = d, !opts.KeepDir
	}
	if err := os.MkdirAll(filepath.Join(l.Dir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("make lab dir %s: %w", l.Dir, err)
	}
	if cleaned, err := CleanStale(ctx, log); err != nil {
		l.log.Warn("clean stale labs", zap.Error(err))
	} else if len(cleaned) > 0 {
		l.log.Info("cleaned stale labs", zap.Strings("prefixes", cleaned))
	}
	// Never adopt another lab's prefix: its namespaces and registry entry are not ours to
	// remove when this New fails.
	if err := prefixFree(l.Prefix, opts.Hosts); err != nil {
		return nil, err
	}
	l.statePaths = []string{filepath.Join(RegistryDir, l.Prefix+".json"), filepath.Join(l.Dir, "state.json")}
	if opts.StatePath != "" {
		l.statePaths = append(l.statePaths, opts.StatePath)
	}

	if err := l.build(ctx, opts); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	if opts.MariaDB {
		if err := l.startAllMariaDB(ctx); err != nil {
			return nil, errors.Join(err, l.Close())
		}
	}
	return l, nil
}

// build makes the namespaces, the bridge and the veths.
func (l *Lab) build(ctx context.Context, opts Options) error {
	seen := map[string]bool{}
	next := byte(21)
	for _, name := range opts.Hosts {
		if !validName.MatchString(name) || name == "br" {
			return fmt.Errorf("host name %q: want lowercase letters and digits, at most 15, not br", name)
		}
		if seen[name] {
			return fmt.Errorf("host name %q: given twice", name)
		}
		seen[name] = true
		oct, ok := fixedOctets[name]
		if !ok {
			for slicesContainsOctet(fixedOctets, next) {
				next++
			}
			oct = next
			next++
		}
		if oct >= 100 {
			return fmt.Errorf("host %q: too many hosts", name)
		}
		h := &Host{
			Name:       name,
			NS:         l.Prefix + "-" + name,
			Iface:      "eth0",
			Addr:       netip.AddrFrom4([4]byte{198, 18, 0, oct}),
			MAC:        net.HardwareAddr{0x02, 0x00, 0xc6, 0x12, 0x00, oct},
			BridgePort: name,
			lab:        l,
			ns:         netns.None(),
		}
		h.dialNet = "keepraft-lab-" + h.NS
		l.hosts = append(l.hosts, h)
		l.byName[name] = h
	}
	if len(l.hosts) > 0 {
		l.BridgeNS = l.Prefix + "-br"
	}
	// Record the state before making anything, so a crash leaves a trail.
	if err := l.saveState(); err != nil {
		return err
	}
	if len(l.hosts) == 0 {
		return nil
	}
	var err error
	if l.brNS, err = l.addNetns(ctx, l.BridgeNS); err != nil {
		return err
	}
	if l.brH, err = netlink.NewHandleAt(l.brNS); err != nil {
		return fmt.Errorf("netlink handle in %s: %w", l.BridgeNS, err)
	}
	brAttrs := netlink.NewLinkAttrs()
	brAttrs.Name = "br0"
	br := &netlink.Bridge{LinkAttrs: brAttrs}
	if err := l.brH.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge br0 in %s: %w", l.BridgeNS, err)
	}
	if err := l.brH.LinkSetUp(br); err != nil {
		return fmt.Errorf("set br0 up in %s: %w", l.BridgeNS, err)
	}
	for _, h := range l.hosts {
		if err := l.addHost(ctx, h, br); err != nil {
			return err
		}
	}
	l.log.Info("lab up", zap.String("dir", l.Dir), zap.Int("hosts", len(l.hosts)))
	return nil
}

func slicesContainsOctet(m map[string]byte, o byte) bool {
	for _, v := range m {
		if v == o {
			return true
		}
	}
	return false
}

// addHost makes one host namespace and wires its veth to the bridge.
func (l *Lab) addHost(ctx context.Context, h *Host, br netlink.Link) error {
	var err error
	if h.ns, err = l.addNetns(ctx, h.NS); err != nil {
		return err
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = h.Iface
	attrs.HardwareAddr = h.MAC
	attrs.Namespace = netlink.NsFd(int(h.ns))
	veth := netlink.NewVeth(attrs)
	veth.PeerName = h.BridgePort
	if err := l.brH.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s/%s for %s: %w", h.Iface, h.BridgePort, h.Name, err)
	}
	port, err := l.brH.LinkByName(h.BridgePort)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", h.BridgePort, l.BridgeNS, err)
	}
	if err := l.brH.LinkSetMaster(port, br); err != nil {
		return fmt.Errorf("enslave %s to br0: %w", h.BridgePort, err)
	}
	if err := l.brH.LinkSetUp(port); err != nil {
		return fmt.Errorf("set %s up: %w", h.BridgePort, err)
	}
	hh, err := netlink.NewHandleAt(h.ns)
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", h.NS, err)
	}
	defer hh.Close()
	for _, name := range []string{"lo", h.Iface} {
		link, err := hh.LinkByName(name)
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", name, h.NS, err)
		}
		if name == h.Iface {
			a := &netlink.Addr{IPNet: &net.IPNet{IP: h.Addr.AsSlice(), Mask: net.CIDRMask(LabNet.Bits(), 32)}}
			if err := hh.AddrAdd(link, a); err != nil {
				return fmt.Errorf("add %s to %s in %s: %w", h.Addr, name, h.NS, err)
			}
		}
		if err := hh.LinkSetUp(link); err != nil {
			return fmt.Errorf("set %s up in %s: %w", name, h.NS, err)
		}
	}
	registerDialer(h)
	return nil
}

// addNetns creates a named network namespace with iproute2 (which also sets up the shared
// /run/netns mount) and opens a handle to it.
func (l *Lab) addNetns(ctx context.Context, name string) (netns.NsHandle, error) {
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput(); err != nil {
		return netns.None(), fmt.Errorf("ip netns add %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	l.mu.Lock()
	l.made[name] = true
	l.mu.Unlock()
	h, err := netns.GetFromName(name)
	if err != nil {
		return netns.None(), fmt.Errorf("open netns %s: %w", name, err)
	}
	return h, nil
}

// Host returns the host with that name, or nil.
func (l *Lab) Host(name string) *Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byName[name]
}

// Hosts returns every host in creation order.
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Host(nil), l.hosts...)
}

// Procs returns every process the lab has started (or adopted), running or not.
func (l *Lab) Procs() []*Proc {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Proc(nil), l.procs...)
}

// Log returns the lab's logger.
func (l *Lab) Log() *zap.Logger { return l.log }

// Spawn starts a long-running process inside h's namespace (h nil: the root namespace),
// with stdout and stderr appended to Dir/logs/<name>.log, and tracks it for Close. env is
// added to the current environment. The process leads its own process group; unless the lab
// is detached it gets SIGKILL when the Go process dies.
func (l *Lab) Spawn(h *Host, name string, argv []string, env []string) (*Proc, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("spawn %s: empty argv", name)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, fmt.Errorf("spawn %s: lab closed", name)
	}
	l.mu.Unlock()
	logPath := filepath.Join(l.Dir, "logs", name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("spawn %s: %w", name, err)
	}
	defer f.Close()
	fmt.Fprintf(f, "==== %s keepraft-lab spawn %s: %s\n", time.Now().Format(time.RFC3339Nano), name, strings.Join(argv, " "))
	full := argv
	hostName := ""
	if h != nil {
		full = append([]string{"ip", "netns", "exec", h.NS}, argv...)
		hostName = h.Name
	}
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = l.Dir
	if l.detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	if err := startOnSpawnThread(cmd); err != nil {
		return nil, fmt.Errorf("spawn %s: %w", name, err)
	}
	p := &Proc{
		Name: name, PID: cmd.Process.Pid, LogPath: logPath, Host: hostName, Argv: argv,
		cmd: cmd, done: make(chan struct{}),
	}
	p.StartTime, _, _ = procStat(p.PID)
	go p.watch()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	l.log.Info("spawned", zap.String("proc", name), zap.Int("pid", p.PID), zap.String("host", hostName))
	return p, l.saveState()
}

// saveState writes the state file to every state path.
func (l *Lab) saveState() error {
	// Writers are serialized, so an older snapshot never lands after a newer one.
	l.saveMu.Lock()
	defer l.saveMu.Unlock()
	l.mu.Lock()
	s := &State{
		Version: 1, Prefix: l.Prefix, Dir: l.Dir, BridgeNS: l.BridgeNS, Created: l.created,
		OwnerPID: l.ownerPID, OwnerStart: l.ownerStart,
	}
	for _, h := range l.hosts {
		s.Hosts = append(s.Hosts, HostState{
			Name: h.Name, NS: h.NS, Iface: h.Iface, Addr: h.Addr.String(), MAC: h.MAC.String(), BridgePort: h.BridgePort,
		})
	}
	for _, p := range l.procs {
		if p.Exited() {
			continue
		}
		s.Procs = append(s.Procs, ProcState{Name: p.Name, Host: p.Host, PID: p.PID, Start: p.StartTime, LogPath: p.LogPath, Argv: p.Argv})
	}
	for _, m := range l.dbs {
		ms := MariaState{Name: m.Name, Addr: m.Addr.String(), ServerID: m.ServerID, DomainID: m.DomainID, Dir: m.Dir}
		if m.IsMySQL() {
			ms.Flavor = string(FlavorMySQL)
		}
		if m.Host != nil {
			ms.Host = m.Host.Name
		}
		if p := m.proc(); p != nil {
			ms.Proc = p.Name
		}
		s.MariaDB = append(s.MariaDB, ms)
	}
	paths := l.statePaths
	l.mu.Unlock()
	var errs []error
	for _, p := range paths {
		errs = append(errs, writeState(p, s))
	}
	return errors.Join(errs...)
}

// Close ends every process by PID (SIGTERM, then SIGKILL after a bound), kills whatever else
// still runs inside the lab's namespaces, deletes every namespace and the registry entry.
// It returns every problem joined; calling it again is harmless.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	trackers := append([]*Tracker(nil), l.trackers...)
	procs := append([]*Proc(nil), l.procs...)
	dbs := append([]*MariaDB(nil), l.dbs...)
	hosts := append([]*Host(nil), l.hosts...)
	l.mu.Unlock()

	var errs []error
	for _, t := range trackers {
		errs = append(errs, t.Close())
	}
	for _, m := range dbs {
		m.closeDB()
	}
	// SIGTERM everything at once, then wait for all within the bound.
	for _, p := range procs {
		if !p.Exited() {
			_ = p.Signal(syscall.SIGTERM)
			_ = p.signalGroup(syscall.SIGCONT)
		}
	}
	// One bound for all of them: once it has passed, every process still running is
	// killed at once (a time.After channel fires only once, so a second stubborn process
	// used to be waited for forever).
	bound := time.NewTimer(l.stopTimeout)
	defer bound.Stop()
	expired := false
	for _, p := range procs {
		if !expired {
			select {
			case <-p.Done():
				continue
			case <-bound.C:
				expired = true
			}
		}
		if p.Exited() {
			continue
		}
		l.log.Warn("process ignored SIGTERM, killing", zap.String("proc", p.Name), zap.Int("pid", p.PID))
		if err := p.Kill(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range procs {
		if p.stopCh != nil {
			close(p.stopCh)
		}
	}
	nsNames := []string{}
	l.mu.Lock()
	for _, h := range hosts {
		if l.made[h.NS] {
			nsNames = append(nsNames, h.NS)
		}
	}
	if l.BridgeNS != "" && l.made[l.BridgeNS] {
		nsNames = append(nsNames, l.BridgeNS)
	}
	l.mu.Unlock()
	for _, name := range nsNames {
		errs = append(errs, killNetnsProcs(l.log, name))
	}
	for _, h := range hosts {
		unregisterDialer(h)
		if h.ns.IsOpen() {
			h.ns.Close()
		}
	}
	if l.brH != nil {
		l.brH.Close()
	}
	if l.brNS.IsOpen() {
		l.brNS.Close()
	}
	for _, name := range nsNames {
		errs = append(errs, delNetns(name))
	}
	// A MySQL server's mounts lived in its own mount namespace and are gone with it; the
	// empty directories that mirrored its dir inside the shared root are removed here.
	for _, m := range dbs {
		if p := m.proc(); m.IsMySQL() && m.root != "" && (p == nil || !p.Alive()) {
			removeMirrorDirs(m.root, m.Dir)
		}
	}
	err := errors.Join(errs...)
	if err == nil {
		for _, p := range l.statePaths {
			errs = append(errs, removeState(p))
		}
		if l.ownDir {
			errs = append(errs, os.RemoveAll(l.Dir))
		}
		err = errors.Join(errs...)
	}
	l.log.Info("lab closed", zap.Error(err))
	return err
}

// prefixFree fails when a namespace or a live registry entry already uses prefix.
func prefixFree(prefix string, hosts []string) error {
	for _, n := range append([]string{"br"}, hosts...) {
		if _, err := os.Stat(filepath.Join("/run/netns", prefix+"-"+n)); err == nil {
			return fmt.Errorf("prefix %s is in use: namespace %s-%s exists (another lab? see keepraft-lab status/down)", prefix, prefix, n)
		}
	}
	if s, err := ReadState(filepath.Join(RegistryDir, prefix+".json")); err == nil && !s.Stale() {
		return fmt.Errorf("prefix %s is in use by a lab in %s (see keepraft-lab status/down)", prefix, s.Dir)
	}
	return nil
}

// delNetns deletes a named namespace; a missing one is fine.
func delNetns(name string) error {
	if _, err := os.Stat(filepath.Join("/run/netns", name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// killNetnsProcs SIGKILLs, by PID, every process whose network namespace is the named one
// (never this process), and waits (bounded) until none is left.
func killNetnsProcs(log *zap.Logger, name string) error {
	var want syscall.Stat_t
	if err := syscall.Stat(filepath.Join("/run/netns", name), &want); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return nil
		}
		return fmt.Errorf("stat netns %s: %w", name, err)
	}
	self := os.Getpid()
	deadline := time.Now().Add(killWait)
	for {
		pids := pidsInNetns(want, self)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netns %s: pids %v still running after SIGKILL", name, pids)
		}
		for _, pid := range pids {
			log.Warn("killing leftover process in lab namespace", zap.String("ns", name), zap.Int("pid", pid))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pidsInNetns lists live processes (not zombies) whose /proc/PID/ns/net is want.
func pidsInNetns(want syscall.Stat_t, self int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid := 0
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid <= 1 || pid == self {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st); err != nil {
			continue
		}
		if st.Ino != want.Ino || st.Dev != want.Dev {
			continue
		}
		if _, state, err := procStat(pid); err != nil || state == 'Z' || state == 'X' {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// closeDB closes the root connection pool of a MariaDB (if any).
func (m *MariaDB) closeDB() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.db != nil {
		_ = m.db.Close()
		m.db = nil
	}
}
