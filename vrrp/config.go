package vrrp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Config is what keepraft advertises and expects on one virtual router. To interoperate with
// keepalived ≤ 2.3.2 it must mirror the peer's version, VRID, auth, advert_int and VIP list
// exactly.
type Config struct {
	// Interface is the interface adverts are sent and received on.
	Interface string
	// Version is 2 or 3.
	Version int
	// VRID is the virtual router id, 1..255.
	VRID uint8
	// Priority is what the owner advertises, 1..254.
	Priority uint8
	// AdvertInt is the advert interval: whole seconds for v2, centiseconds for v3.
	AdvertInt time.Duration
	// AuthPass is the v2 simple password (≤ 8 bytes); empty means no auth.
	AuthPass string
	// VIPs are the virtual addresses, in the order keepalived lists them.
	VIPs []netip.Addr
	// ChecksumAsV2 selects the v3/IPv4 checksum without the pseudo-header.
	ChecksumAsV2 bool
}

// Validate returns every problem with c, joined, each naming its field.
func (c Config) Validate() error {
	var errs []error
	if c.Interface == "" {
		errs = append(errs, errors.New("interface: must be set"))
	}
	if c.Version != 2 && c.Version != 3 {
		errs = append(errs, fmt.Errorf("version: must be 2 or 3, got %d", c.Version))
	}
	if c.VRID == 0 {
		errs = append(errs, errors.New("virtual_router_id: must be 1..255, got 0"))
	}
	if c.Priority == 0 || c.Priority == PriorityOwner {
		errs = append(errs, fmt.Errorf("priority: must be 1..254, got %d", c.Priority))
	}
	switch {
	case c.Version == 2 && (c.AdvertInt <= 0 || c.AdvertInt%time.Second != 0 || c.AdvertInt > MaxAdvertIntV2):
		errs = append(errs, fmt.Errorf("advert_int: v2 needs whole seconds 1s..255s, got %s", c.AdvertInt))
	case c.Version == 3 && (c.AdvertInt <= 0 || c.AdvertInt%(10*time.Millisecond) != 0 || c.AdvertInt > MaxAdvertIntV3):
		errs = append(errs, fmt.Errorf("advert_int: v3 needs centiseconds 10ms..40.95s, got %s", c.AdvertInt))
	}
	if len(c.AuthPass) > 8 {
		errs = append(errs, fmt.Errorf("auth_pass: at most 8 bytes, got %d", len(c.AuthPass)))
	}
	if c.AuthPass != "" && c.Version != 2 {
		errs = append(errs, errors.New("auth_pass: only VRRPv2 has authentication"))
	}
	if len(c.VIPs) == 0 || len(c.VIPs) > 255 {
		errs = append(errs, fmt.Errorf("vips: need 1..255 addresses, got %d", len(c.VIPs)))
	}
	for i, a := range c.VIPs {
		if !a.Unmap().Is4() {
			errs = append(errs, fmt.Errorf("vips[%d]: %s is not IPv4 (Conn speaks IPv4 only)", i, a))
		}
	}
	return errors.Join(errs...)
}

// Advert returns the advert c sends, at priority prio.
func (c Config) Advert(prio uint8) *Packet {
	p := &Packet{
		Version:      c.Version,
		VRID:         c.VRID,
		Priority:     prio,
		AdvertInt:    c.AdvertInt,
		Addresses:    make([]netip.Addr, len(c.VIPs)),
		ChecksumAsV2: c.ChecksumAsV2,
	}
	for i, a := range c.VIPs {
		p.Addresses[i] = a.Unmap()
	}
	if c.Version == 2 && c.AuthPass != "" {
		p.AuthType = AuthPass
		p.AuthData = AuthString(c.AuthPass)
	}
	return p
}

// MasterDownInterval returns how long a backup at priority prio waits for a silent master:
// 3 × advert_int + skew, where skew = (256 − prio)/256 × advert_int (v3; v2 uses 1 s for
// the interval in the skew).
func (c Config) MasterDownInterval(prio uint8) time.Duration {
	skewBase := c.AdvertInt
	if c.Version == 2 {
		skewBase = time.Second
	}
	return 3*c.AdvertInt + time.Duration(256-int(prio))*skewBase/256
}

// sameAddrs reports whether a and b hold the same addresses, in any order.
func sameAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	x := make([]netip.Addr, len(a))
	y := make([]netip.Addr, len(b))
	for i := range a {
		x[i], y[i] = a[i].Unmap(), b[i].Unmap()
	}
	slices.SortFunc(x, netip.Addr.Compare)
	slices.SortFunc(y, netip.Addr.Compare)
	return slices.Equal(x, y)
}
