package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
)

// Attach rebuilds a [Lab] from a state file written by another process (keepraft-lab, or a
// crashed test). Running processes are adopted: they are watched by polling /proc and ended
// by PID only while their start time still matches. Missing namespaces are tolerated, so
// Close can finish a half-removed lab. Processes started through the attached lab are
// detached (they outlive this Go process).
func Attach(log *zap.Logger, statePath string) (*Lab, error) {
	s, err := ReadState(statePath)
	if err != nil {
		return nil, err
	}
	l := &Lab{
		Prefix: s.Prefix, Dir: s.Dir, BridgeNS: s.BridgeNS, VIP: DefaultVIP,
		log:    log.Named("testenv").With(zap.String("lab", s.Prefix)),
		detach: true, stopTimeout: 10 * time.Second, created: s.Created,
		ownerPID: s.OwnerPID, ownerStart: s.OwnerStart,
		brNS: netns.None(), byName: map[string]*Host{},
		fw: map[string]map[netip.Addr]bool{}, made: map[string]bool{},
	}
	if l.BridgeNS != "" {
		l.made[l.BridgeNS] = true
	}
	for _, hs := range s.Hosts {
		l.made[hs.NS] = true
	}
	l.statePaths = []string{filepath.Join(RegistryDir, l.Prefix+".json"), filepath.Join(l.Dir, "state.json")}
	if abs, err := filepath.Abs(statePath); err == nil && !containsString(l.statePaths, abs) {
		l.statePaths = append(l.statePaths, abs)
	}
	if l.BridgeNS != "" {
		if ns, err := netns.GetFromName(l.BridgeNS); err == nil {
			l.brNS = ns
			if l.brH, err = netlink.NewHandleAt(ns); err != nil {
				l.brH = nil
			}
		}
	}
	for _, hs := range s.Hosts {
		addr, _ := netip.ParseAddr(hs.Addr)
		mac, _ := net.ParseMAC(hs.MAC)
		h := &Host{Name: hs.Name, NS: hs.NS, Iface: hs.Iface, Addr: addr, MAC: mac, BridgePort: hs.BridgePort,
			lab: l, ns: netns.None(), dialNet: "keepraft-lab-" + hs.NS}
		if ns, err := netns.GetFromName(hs.NS); err == nil {
			h.ns = ns
			registerDialer(h)
		}
		l.hosts = append(l.hosts, h)
		l.byName[h.Name] = h
	}
	procByName := map[string]*Proc{}
	for _, ps := range s.Procs {
		p := &Proc{Name: ps.Name, PID: ps.PID, LogPath: ps.LogPath, Host: ps.Host, StartTime: ps.Start, Argv: ps.Argv,
			done: make(chan struct{}), stopCh: make(chan struct{})}
		go p.pollAdopted()
		l.procs = append(l.procs, p)
		procByName[p.Name] = p
	}
	for _, ms := range s.MariaDB {
		addr, _ := netip.ParseAddrPort(ms.Addr)
		m := &MariaDB{Name: ms.Name, Host: l.byName[ms.Host], Addr: addr, ServerID: ms.ServerID, DomainID: ms.DomainID,
			Dir: ms.Dir, Proc: procByName[ms.Proc], lab: l, Flavor: FlavorMariaDB}
		if ms.Flavor == string(FlavorMySQL) {
			m.Flavor, m.root = FlavorMySQL, MySQLRootDir
		}
		l.dbs = append(l.dbs, m)
	}
	return l, nil
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// CleanStale closes every lab in [RegistryDir] whose owner process is gone (a crashed or
// killed test run) and returns their prefixes. Detached labs are left alone.
func CleanStale(ctx context.Context, log *zap.Logger) ([]string, error) {
	ents, err := os.ReadDir(RegistryDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", RegistryDir, err)
	}
	var cleaned []string
	var errs []error
	for _, e := range ents {
		if ctx.Err() != nil {
			break
		}
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(RegistryDir, e.Name())
		s, err := ReadState(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !s.Stale() {
			continue
		}
		l, err := Attach(log, path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("clean stale lab %s: %w", s.Prefix, err))
			continue
		}
		cleaned = append(cleaned, s.Prefix)
	}
	return cleaned, errors.Join(errs...)
}

// OrphanPattern matches namespace names a lab may have made: "kr" plus four hex digits (the
// random test prefix) or "krlab" (keepraft-lab's default), a dash and a host name or "br".
var OrphanPattern = regexp.MustCompile(`^(kr[0-9a-f]{4}|krlab)-[a-z][a-z0-9]*$`)

// CleanOrphanNamespaces deletes namespaces that match [OrphanPattern] but belong to no lab
// in the registry, after killing (by PID) every process still inside them. It returns the
// namespaces it deleted.
func CleanOrphanNamespaces(ctx context.Context, log *zap.Logger) ([]string, error) {
	known := map[string]bool{}
	ents, _ := os.ReadDir(RegistryDir)
	for _, e := range ents {
		s, err := ReadState(filepath.Join(RegistryDir, e.Name()))
		if err != nil {
			continue
		}
		known[s.Prefix] = true
	}
	nss, err := os.ReadDir("/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read /run/netns: %w", err)
	}
	var deleted []string
	var errs []error
	for _, e := range nss {
		if ctx.Err() != nil {
			break
		}
		name := e.Name()
		if !OrphanPattern.MatchString(name) || known[name[:strings.IndexByte(name, '-')]] {
			continue
		}
		if err := killNetnsProcs(log, name); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := delNetns(name); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted = append(deleted, name)
	}
	return deleted, errors.Join(errs...)
}
