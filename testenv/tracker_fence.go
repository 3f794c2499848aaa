package testenv

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// The nftables objects of keepraftd's VIP fence (package nftfence, which cannot be
// imported here: its tests use this package). e2e checks that they agree.
const (
	// FenceTablePrefix starts the fence table's name (netdev family): keepraft_eth0.
	FenceTablePrefix = "keepraft_"
	// FenceLeaseSet is the timeout set whose element lets a VIP's traffic pass.
	FenceLeaseSet = "vip_lease"
)

// fenceState is a host's keepraftd VIP fence for the tracked vip, as
// last read: with a fence table, the vip's traffic passes only until openUntil.
type fenceState struct {
	table     bool
	openUntil time.Time // zero: closed; far future: no timeout
}

// passes reports whether the vip's traffic passes the host's fence at `at`.
func (f fenceState) passes(at time.Time) bool {
	return !f.table || at.Before(f.openUntil)
}

// expireEvery is how often the tracker re-evaluates holders whose fence times out (an
// element's timeout sends no event): an overlap ends within this of the fence closing.
const expireEvery = 5 * time.Millisecond

// watchFence reads h's fence now and again on every nftables table, set or element event
// in h's namespace.
func (t *Tracker) watchFence(h *Host) error {
	t.refreshFence(h, time.Now())
	// Not a lasting connection: the monitor then owns its socket, and closing the monitor
	// closes the socket, which ends its reader and the event channel.
	c, err := nftables.New(nftables.WithNetNSFd(int(h.ns)))
	if err != nil {
		return fmt.Errorf("nftables socket in %s: %w", h.NS, err)
	}
	mon := nftables.NewMonitor(nftables.WithMonitorObject(nftables.MonitorObjectTables | nftables.MonitorObjectSets | nftables.MonitorObjectElements))
	events, err := c.AddMonitor(mon)
	if err != nil {
		return fmt.Errorf("nftables monitor in %s: %w", h.NS, err)
	}
	t.wg.Go(func() { // ends the monitor, and so the reader below, when the tracker closes
		<-t.done
		_ = mon.Close()
	})
	t.wg.Go(func() {
		for ev := range events {
			if ev.Type == nftables.MonitorEventTypeOOB && ev.Error != nil {
				t.mu.Lock()
				if !t.closing {
					t.errs = append(t.errs, fmt.Errorf("nftables events from %s: %w", h.Name, ev.Error))
				}
				t.mu.Unlock()
			}
			t.refreshFence(h, time.Now())
		}
	})
	return nil
}

// refreshFence reads h's fence table and the vip's element in its lease set.
func (t *Tracker) refreshFence(h *Host, at time.Time) {
	st, err := readFence(h, t.vip, at)
	if err != nil {
		t.log.Warn("read the VIP fence", zap.String("host", h.Name), zap.Error(err))
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.fences[h.Name] = st
	t.recomputeLocked(at)
}

// readFence lists h's fence set at `at`: the vip's element says how long its traffic
// still passes (the far future for an element without timeout).
func readFence(h *Host, vip netip.Addr, at time.Time) (fenceState, error) {
	c, err := nftables.New(nftables.WithNetNSFd(int(h.ns)))
	if err != nil {
		return fenceState{}, err
	}
	table := &nftables.Table{Name: FenceTablePrefix + h.Iface, Family: nftables.TableFamilyNetdev}
	set, err := c.GetSetByName(table, FenceLeaseSet)
	if errors.Is(err, unix.ENOENT) {
		return fenceState{}, nil // no fence: nothing stops the vip's traffic
	}
	if err != nil {
		return fenceState{}, fmt.Errorf("get set %s of table netdev %s: %w", FenceLeaseSet, table.Name, err)
	}
	elems, err := c.GetSetElements(set)
	if err != nil {
		return fenceState{}, fmt.Errorf("list set %s of table netdev %s: %w", FenceLeaseSet, table.Name, err)
	}
	for _, e := range elems {
		if a, ok := netip.AddrFromSlice(e.Key); !ok || a.Unmap() != vip {
			continue
		}
		if e.Timeout == 0 && e.Expires == 0 {
			return fenceState{table: true, openUntil: at.Add(100 * 365 * 24 * time.Hour)}, nil
		}
		if e.Expires <= 0 {
			return fenceState{table: true}, nil
		}
		return fenceState{table: true, openUntil: at.Add(e.Expires)}, nil
	}
	return fenceState{table: true}, nil
}

// expireLoop re-evaluates holders as fences time out, until the tracker closes.
func (t *Tracker) expireLoop() {
	tk := time.NewTicker(expireEvery)
	defer tk.Stop()
	for {
		select {
		case <-t.done:
			return
		case now := <-tk.C:
			t.mu.Lock()
			t.recomputeLocked(now)
			t.mu.Unlock()
		}
	}
}
