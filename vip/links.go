package vip

import (
	"errors"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
)

// links is the part of netlink that the Manager needs. The real one is [nlLinks]; unit
// tests use a stateful fake.
type links interface {
	LinkByName(name string) (netlink.Link, error)
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	AddrAdd(link netlink.Link, addr *netlink.Addr) error
	AddrReplace(link netlink.Link, addr *netlink.Addr) error
	AddrDel(link netlink.Link, addr *netlink.Addr) error
}

var (
	_ links = (*nlLinks)(nil)
	_ links = (*netlink.Handle)(nil)
)

// dumpAttempts is how often a dump interrupted by a concurrent change is retried before
// its possibly inconsistent result is accepted (moby's nlwrap does the same).
const dumpAttempts = 5

// nlLinks wraps a netlink handle and retries dumps that netlink reports as interrupted
// (netlink.ErrDumpInterrupted, returned since vishvananda/netlink 1.2.1). After
// dumpAttempts it accepts the last, possibly inconsistent, result: the next Set repairs
// whatever an inconsistent dump made it miss.
type nlLinks struct {
	h   links
	log *zap.Logger
}

// LinkByName looks the link up, retrying an interrupted dump.
func (l *nlLinks) LinkByName(name string) (netlink.Link, error) {
	var (
		link netlink.Link
		err  error
	)
	for i := 0; i < dumpAttempts; i++ {
		link, err = l.h.LinkByName(name)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return link, err
		}
	}
	l.log.Debug("netlink dump interrupted, using result", zap.String("call", "LinkByName"), zap.Int("attempts", dumpAttempts))
	if link == nil {
		return nil, err
	}
	return link, nil
}

// AddrList lists addresses, retrying an interrupted dump.
func (l *nlLinks) AddrList(link netlink.Link, family int) ([]netlink.Addr, error) {
	var (
		addrs []netlink.Addr
		err   error
	)
	for i := 0; i < dumpAttempts; i++ {
		addrs, err = l.h.AddrList(link, family)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return addrs, err
		}
	}
	l.log.Debug("netlink dump interrupted, using result", zap.String("call", "AddrList"), zap.Int("attempts", dumpAttempts))
	return addrs, nil
}

// AddrAdd adds an address; it fails with EEXIST when the address is already there.
func (l *nlLinks) AddrAdd(link netlink.Link, addr *netlink.Addr) error {
	return l.h.AddrAdd(link, addr)
}

// AddrReplace adds an address or updates the lifetime of an existing one.
func (l *nlLinks) AddrReplace(link netlink.Link, addr *netlink.Addr) error {
	return l.h.AddrReplace(link, addr)
}

// AddrDel deletes an address; it fails with EADDRNOTAVAIL when it is not there.
func (l *nlLinks) AddrDel(link netlink.Link, addr *netlink.Addr) error {
	return l.h.AddrDel(link, addr)
}
