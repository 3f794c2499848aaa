package vrrp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"
)

// Protocol is the IP protocol number of VRRP.
const Protocol = 112

// Wire constants.
const (
	// TypeAdvertisement is the only VRRP message type.
	TypeAdvertisement = 1
	// AuthNone is the v2 auth type for no authentication.
	AuthNone = 0
	// AuthPass is the v2 auth type for a simple text password (RFC 2338).
	AuthPass = 1
	// AuthAH is the v2 auth type for IPsec AH (RFC 2338); such adverts are carried inside AH.
	AuthAH = 2
	// PriorityResign is the priority a master sends when it gives up the virtual router.
	PriorityResign = 0
	// PriorityOwner is the priority of the address owner.
	PriorityOwner = 255
	// MaxAdvertIntV3 is the largest v3 advert interval (12 bits of centiseconds).
	MaxAdvertIntV3 = 4095 * 10 * time.Millisecond
	// MaxAdvertIntV2 is the largest v2 advert interval (8 bits of seconds).
	MaxAdvertIntV2 = 255 * time.Second
)

const (
	headerLen = 8
	authLen   = 8
)

// IPv4Group and IPv6Group are the VRRP multicast groups.
var (
	IPv4Group = netip.MustParseAddr("224.0.0.18")
	IPv6Group = netip.MustParseAddr("ff02::12")
)

// Errors returned by [Unmarshal] and [Packet.Marshal], always wrapped with detail. Match them
// with errors.Is.
var (
	// ErrShort is returned when the input ends before the header or the addresses and auth
	// data its count field announces; it also matches io.ErrUnexpectedEOF.
	ErrShort = fmt.Errorf("vrrp: packet too short: %w", io.ErrUnexpectedEOF)
	// ErrVersion is returned for a version other than 2 or 3.
	ErrVersion = errors.New("vrrp: unsupported version")
	// ErrType is returned for a message type other than 1 (advertisement).
	ErrType = errors.New("vrrp: unknown message type")
	// ErrChecksum is returned when the checksum does not verify.
	ErrChecksum = errors.New("vrrp: bad checksum")
	// ErrAddrCount is returned when the packet is longer than its address count announces,
	// or when a packet to marshal holds more than 255 addresses.
	ErrAddrCount = errors.New("vrrp: address count does not match length")
	// ErrAuth is returned for a v2 auth type other than 0, 1 or 2, or for auth on a v3 packet.
	ErrAuth = errors.New("vrrp: invalid authentication")
	// ErrVRID is returned for virtual router id 0.
	ErrVRID = errors.New("vrrp: invalid virtual router id")
	// ErrAdvertInt is returned for a zero advert interval, or one that the version cannot
	// carry (v2: whole seconds up to 255 s; v3: centiseconds up to 40.95 s).
	ErrAdvertInt = errors.New("vrrp: invalid advert interval")
	// ErrFamily is returned when src, dst and the addresses are not of one family (v2 is
	// IPv4 only; v3 needs valid src and dst to pick the family and compute the checksum).
	ErrFamily = errors.New("vrrp: address family mismatch")
)

// Packet is one VRRP advertisement.
type Packet struct {
	// Version is 2 or 3.
	Version int
	// VRID is the virtual router id, 1..255.
	VRID uint8
	// Priority is 0 (resign), 1..254 (backup) or 255 (address owner).
	Priority uint8
	// AdvertInt is the advert interval: whole seconds for v2, centiseconds for v3.
	AdvertInt time.Duration
	// AuthType is the v2 auth type (AuthNone, AuthPass, AuthAH); must be 0 for v3.
	AuthType uint8
	// AuthData is the v2 auth data (the password, zero-padded); must be zero for v3.
	AuthData [8]byte
	// Addresses are the virtual addresses, IPv4 for v2, IPv4 or IPv6 (one family) for v3.
	Addresses []netip.Addr
	// ChecksumAsV2 selects, for v3 over IPv4, a checksum without the IPv4 pseudo-header
	// (keepalived's v3_checksum_as_v2, RFC 9568). [Unmarshal] sets it when only that
	// variant verifies.
	ChecksumAsV2 bool
}

// String returns a one-line summary of p for logs.
func (p *Packet) String() string {
	return fmt.Sprintf("VRRPv%d vrid=%d prio=%d intvl=%s auth=%d addrs=%v", p.Version, p.VRID, p.Priority, p.AdvertInt, p.AuthType, p.Addresses)
}

// Len returns the encoded length of p in bytes.
func (p *Packet) Len() int {
	n := headerLen
	for _, a := range p.Addresses {
		if a.Unmap().Is4() {
			n += 4
		} else {
			n += 16
		}
	}
	if p.Version == 2 {
		n += authLen
	}
	return n
}

// Marshal encodes p as sent from src to dst. src and dst are used only for the v3 checksum
// pseudo-header (dst is the real IP destination: the group, or the peer when unicasting);
// they may be zero for v2. It returns an error wrapping one of the package sentinels.
func (p *Packet) Marshal(src, dst netip.Addr) ([]byte, error) {
	if p.VRID == 0 {
		return nil, ErrVRID
	}
	if len(p.Addresses) > 255 {
		return nil, fmt.Errorf("%w: %d addresses", ErrAddrCount, len(p.Addresses))
	}
	var b []byte
	switch p.Version {
	case 2:
		if p.AdvertInt <= 0 || p.AdvertInt%time.Second != 0 || p.AdvertInt > MaxAdvertIntV2 {
			return nil, fmt.Errorf("%w: %s for v2", ErrAdvertInt, p.AdvertInt)
		}
		if p.AuthType > AuthAH {
			return nil, fmt.Errorf("%w: type %d", ErrAuth, p.AuthType)
		}
		b = make([]byte, headerLen, headerLen+4*len(p.Addresses)+authLen)
		b[4] = p.AuthType
		b[5] = byte(p.AdvertInt / time.Second)
		for _, a := range p.Addresses {
			a = a.Unmap()
			if !a.Is4() {
				return nil, fmt.Errorf("%w: v2 carries IPv4 only, got %s", ErrFamily, a)
			}
			b = append(b, a.AsSlice()...)
		}
		b = append(b, p.AuthData[:]...)
	case 3:
		if p.AdvertInt <= 0 || p.AdvertInt%(10*time.Millisecond) != 0 || p.AdvertInt > MaxAdvertIntV3 {
			return nil, fmt.Errorf("%w: %s for v3", ErrAdvertInt, p.AdvertInt)
		}
		if p.AuthType != AuthNone || p.AuthData != [8]byte{} {
			return nil, fmt.Errorf("%w: v3 has no authentication", ErrAuth)
		}
		is4, err := v3Family(src, dst)
		if err != nil {
			return nil, err
		}
		b = make([]byte, headerLen, headerLen+16*len(p.Addresses))
		binary.BigEndian.PutUint16(b[4:6], uint16(p.AdvertInt/(10*time.Millisecond)))
		for _, a := range p.Addresses {
			a = a.Unmap()
			if a.Is4() != is4 {
				return nil, fmt.Errorf("%w: address %s with src %s", ErrFamily, a, src)
			}
			b = append(b, a.AsSlice()...)
		}
	default:
		return nil, fmt.Errorf("%w: %d", ErrVersion, p.Version)
	}
	b[0] = byte(p.Version)<<4 | TypeAdvertisement
	b[1] = p.VRID
	b[2] = p.Priority
	b[3] = byte(len(p.Addresses))
	binary.BigEndian.PutUint16(b[6:8], checksum(b, p.Version, p.ChecksumAsV2, src, dst))
	return b, nil
}

// Unmarshal decodes and validates one VRRP advertisement received from src for dst (the IP
// header's addresses; they select the v3 address family and feed the v3 checksum). The input
// must be exactly one packet: the IP layer has already removed any link padding. It checks
// version, type, length against the address count, checksum, VRID, advert interval and, for
// v2, the auth type; it returns an error wrapping one of the package sentinels.
func Unmarshal(b []byte, src, dst netip.Addr) (*Packet, error) {
	if len(b) < headerLen {
		return nil, fmt.Errorf("%w: %d bytes, header needs %d", ErrShort, len(b), headerLen)
	}
	p := &Packet{Version: int(b[0] >> 4)}
	if p.Version != 2 && p.Version != 3 {
		return nil, fmt.Errorf("%w: %d", ErrVersion, p.Version)
	}
	if t := b[0] & 0x0f; t != TypeAdvertisement {
		return nil, fmt.Errorf("%w: %d", ErrType, t)
	}
	p.VRID, p.Priority = b[1], b[2]
	count := int(b[3])
	addrLen, want := 4, 0
	if p.Version == 2 {
		want = headerLen + 4*count + authLen
	} else {
		is4, err := v3Family(src, dst)
		if err != nil {
			return nil, err
		}
		if !is4 {
			addrLen = 16
		}
		want = headerLen + addrLen*count
	}
	if len(b) < want {
		return nil, fmt.Errorf("%w: %d bytes, %d addresses need %d", ErrShort, len(b), count, want)
	}
	if len(b) > want {
		return nil, fmt.Errorf("%w: %d bytes, %d addresses need %d", ErrAddrCount, len(b), count, want)
	}
	if !verify(b, p.Version, false, src, dst) {
		if p.Version == 3 && src.Unmap().Is4() && verify(b, p.Version, true, src, dst) {
			p.ChecksumAsV2 = true
		} else {
			return nil, fmt.Errorf("%w: %#04x", ErrChecksum, binary.BigEndian.Uint16(b[6:8]))
		}
	}
	if p.VRID == 0 {
		return nil, ErrVRID
	}
	if p.Version == 2 {
		p.AuthType = b[4]
		if p.AuthType > AuthAH {
			return nil, fmt.Errorf("%w: type %d", ErrAuth, p.AuthType)
		}
		p.AdvertInt = time.Duration(b[5]) * time.Second
		copy(p.AuthData[:], b[want-authLen:])
	} else {
		// The 4 reserved bits are ignored on receipt (RFC 5798 §5.2.5).
		p.AdvertInt = time.Duration(binary.BigEndian.Uint16(b[4:6])&0x0fff) * 10 * time.Millisecond
	}
	if p.AdvertInt == 0 {
		return nil, fmt.Errorf("%w: 0", ErrAdvertInt)
	}
	if count > 0 {
		p.Addresses = make([]netip.Addr, count)
	}
	for i := range count {
		raw := b[headerLen+i*addrLen : headerLen+(i+1)*addrLen]
		p.Addresses[i], _ = netip.AddrFromSlice(raw)
	}
	return p, nil
}

// v3Family reports whether a v3 packet between src and dst is IPv4 (true) or IPv6 (false).
func v3Family(src, dst netip.Addr) (bool, error) {
	src, dst = src.Unmap(), dst.Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return false, fmt.Errorf("%w: v3 needs src and dst of one family, got %s and %s", ErrFamily, src, dst)
	}
	return src.Is4(), nil
}

// AuthString returns the v2 auth data for password pass as keepalived sends and compares it:
// truncated or zero-padded to 8 bytes.
func AuthString(pass string) [8]byte {
	var a [8]byte
	copy(a[:], pass)
	return a
}

// checksum computes the VRRP checksum of b with the checksum field treated as zero.
func checksum(b []byte, version int, asV2 bool, src, dst netip.Addr) uint16 {
	var sum uint32
	if version == 3 && !(asV2 && src.Unmap().Is4()) {
		sum = pseudoSum(src, dst, len(b))
	}
	sum = addBytes(sum, b[:6])
	sum = addBytes(sum, b[8:])
	return ^fold(sum)
}

// verify reports whether the checksum stored in b is correct: the one's-complement sum over
// the (pseudo-header and) whole packet, checksum included, must be all ones.
func verify(b []byte, version int, asV2 bool, src, dst netip.Addr) bool {
	var sum uint32
	if version == 3 && !(asV2 && src.Unmap().Is4()) {
		sum = pseudoSum(src, dst, len(b))
	}
	return fold(addBytes(sum, b)) == 0xffff
}

// pseudoSum sums the IPv4 pseudo-header {src, dst, 0, 112, len} or the IPv6 one
// {src, dst, len32, 0, 0, 0, 112}.
func pseudoSum(src, dst netip.Addr, n int) uint32 {
	src, dst = src.Unmap(), dst.Unmap()
	sum := addBytes(0, src.AsSlice())
	sum = addBytes(sum, dst.AsSlice())
	if src.Is4() {
		return sum + Protocol + uint32(n)
	}
	return sum + uint32(n>>16) + uint32(n&0xffff) + Protocol
}

func addBytes(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}
