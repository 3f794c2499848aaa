package vrrp

import (
	"encoding/hex"
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"
)

var (
	srcA  = netip.MustParseAddr("198.18.2.1")
	grp4  = IPv4Group
	srcLL = netip.MustParseAddr("fe80::1")
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCodec encodes each packet, compares with known bytes (checksums from keepalived
// captures or computed independently), then decodes the bytes back.
func TestCodec(t *testing.T) {
	tests := []struct {
		name     string
		give     Packet
		src, dst netip.Addr
		want     string
	}{
		{
			name: "v2 PASS (keepalived capture)",
			give: Packet{Version: 2, VRID: 51, Priority: 100, AdvertInt: time.Second, AuthType: AuthPass,
				AuthData: AuthString("1111"), Addresses: addrs("198.18.2.100")},
			src: srcA, dst: grp4,
			want: "2133640101014ef1c61202643131313100000000",
		},
		{
			name: "v2 resign, no src/dst needed",
			give: Packet{Version: 2, VRID: 51, Priority: 0, AdvertInt: time.Second, AuthType: AuthPass,
				AuthData: AuthString("1111"), Addresses: addrs("198.18.2.100")},
			want: "213300010101b2f1c61202643131313100000000",
		},
		{
			name: "v2 three VIPs no auth (keepalived capture)",
			give: Packet{Version: 2, VRID: 52, Priority: 200, AdvertInt: 2 * time.Second,
				Addresses: addrs("198.18.2.110", "198.18.2.111", "198.18.2.112")},
			src: srcA, dst: grp4,
			want: "2134c8030002bd40c612026ec612026fc61202700000000000000000",
		},
		{
			name: "v3 IPv4 pseudo-header checksum (keepalived capture)",
			give: Packet{Version: 3, VRID: 53, Priority: 150, AdvertInt: 500 * time.Millisecond,
				Addresses: addrs("198.18.2.120", "198.18.2.121")},
			src: srcA, dst: grp4,
			want: "313596020032fed8c6120278c6120279",
		},
		{
			name: "v3 IPv4 unicast dst enters the pseudo-header",
			give: Packet{Version: 3, VRID: 53, Priority: 150, AdvertInt: 500 * time.Millisecond,
				Addresses: addrs("198.18.2.120", "198.18.2.121")},
			src: srcA, dst: netip.MustParseAddr("198.18.2.2"),
			want: "31359602003216d7c6120278c6120279",
		},
		{
			name: "v3 IPv4 checksum as v2 (RFC 9568)",
			give: Packet{Version: 3, VRID: 53, Priority: 150, AdvertInt: 500 * time.Millisecond,
				Addresses: addrs("198.18.2.120", "198.18.2.121"), ChecksumAsV2: true},
			src: srcA, dst: grp4,
			want: "313596020032a77fc6120278c6120279",
		},
		{
			name: "v3 IPv6",
			give: Packet{Version: 3, VRID: 7, Priority: 200, AdvertInt: time.Second,
				Addresses: addrs("2001:db8::7")},
			src: srcLL, dst: IPv6Group,
			want: "3107c8010064dab320010db8000000000000000000000007",
		},
		{
			name: "v3 max interval, zero addresses",
			give: Packet{Version: 3, VRID: 255, Priority: 255, AdvertInt: MaxAdvertIntV3},
			src:  srcA, dst: grp4,
			want: "31ffff000fff" + v3sum(t, "31ffff000fff0000", srcA, grp4),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.give.Marshal(tt.src, tt.dst)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if got := hex.EncodeToString(b); got != tt.want {
				t.Errorf("Marshal = %s, want %s", got, tt.want)
			}
			if tt.give.Len() != len(b) {
				t.Errorf("Len = %d, encoded %d", tt.give.Len(), len(b))
			}
			p, err := Unmarshal(mustHex(t, tt.want), tt.src, tt.dst)
			if err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !packetsEqual(p, &tt.give) {
				t.Errorf("Unmarshal = %+v, want %+v", p, &tt.give)
			}
		})
	}
}

// v3sum computes the v3 IPv4 checksum of the hex packet with an independent, byte-wise sum.
func v3sum(t *testing.T, h string, src, dst netip.Addr) string {
	b := mustHex(t, h)
	ph := append(append(src.AsSlice(), dst.AsSlice()...), 0, Protocol, 0, byte(len(b)))
	all := append(ph, b...)
	var s uint32
	for i := 0; i < len(all); i += 2 {
		s += uint32(all[i])<<8 | uint32(all[i+1])
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	c := ^uint16(s)
	return hex.EncodeToString([]byte{byte(c >> 8), byte(c)})
}

func TestUnmarshalErrors(t *testing.T) {
	v2 := "2133640101014ef1c61202643131313100000000"
	v3 := "313596020032fed8c6120278c6120279"
	tests := []struct {
		name     string
		give     string
		src, dst netip.Addr
		want     error
	}{
		{name: "empty", give: "", want: ErrShort},
		{name: "7 bytes", give: v2[:14], want: ErrShort},
		{name: "v2 missing auth data", give: v2[:24], want: ErrShort},
		{name: "v2 count says 2, one present", give: "2133640201014ef1c61202643131313100000000", want: ErrShort},
		{name: "v3 truncated address", give: v3[:28], src: srcA, dst: grp4, want: ErrShort},
		{name: "v2 trailing bytes", give: v2 + "00000000", want: ErrAddrCount},
		{name: "v3 count says 1, two present", give: "313596010032fed8c6120278c6120279", src: srcA, dst: grp4, want: ErrAddrCount},
		{name: "version 1", give: "1133640101014ef1c61202643131313100000000", want: ErrVersion},
		{name: "version 4", give: "4133640101014ef1c61202643131313100000000", want: ErrVersion},
		{name: "type 2", give: "2233640101014ef1c61202643131313100000000", want: ErrType},
		{name: "v2 bad checksum", give: "2133640101014ef2c61202643131313100000000", want: ErrChecksum},
		{name: "v2 password changed", give: "2133640101014ef1c61202643131313200000000", want: ErrChecksum},
		{name: "v3 wrong dst in pseudo-header", give: v3, src: srcA, dst: netip.MustParseAddr("224.0.0.19"), want: ErrChecksum},
		{name: "v3 without src/dst", give: v3, want: ErrFamily},
		{name: "v3 src IPv4 dst IPv6", give: v3, src: srcA, dst: IPv6Group, want: ErrFamily},
		{name: "v2 auth type 3", give: fixV2(t, "213364010301"+"0000"+"c6120264"+"3131313100000000"), want: ErrAuth},
		{name: "v2 VRID 0", give: fixV2(t, "210064010101"+"0000"+"c6120264"+"3131313100000000"), want: ErrVRID},
		{name: "v2 advert_int 0", give: fixV2(t, "213364010100"+"0000"+"c6120264"+"3131313100000000"), want: ErrAdvertInt},
		{name: "v3 advert_int 0", give: "313596000000" + v3sum(t, "3135960000000000", srcA, grp4), src: srcA, dst: grp4, want: ErrAdvertInt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Unmarshal(mustHex(t, tt.give), tt.src, tt.dst)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Unmarshal err = %v (packet %+v), want %v", err, p, tt.want)
			}
			if p != nil {
				t.Errorf("Unmarshal returned a packet with an error")
			}
		})
	}
	if !errors.Is(ErrShort, io.ErrUnexpectedEOF) {
		t.Errorf("ErrShort does not match io.ErrUnexpectedEOF")
	}
}

// fixV2 writes a correct v2 checksum into the hex packet h.
func fixV2(t *testing.T, h string) string {
	b := mustHex(t, h)
	b[6], b[7] = 0, 0
	c := checksum(b, 2, false, netip.Addr{}, netip.Addr{})
	b[6], b[7] = byte(c>>8), byte(c)
	return hex.EncodeToString(b)
}

func TestMarshalErrors(t *testing.T) {
	ok := Packet{Version: 2, VRID: 1, Priority: 100, AdvertInt: time.Second, Addresses: addrs("198.18.2.100")}
	tests := []struct {
		name     string
		give     func(p *Packet)
		src, dst netip.Addr
		want     error
	}{
		{name: "version 0", give: func(p *Packet) { p.Version = 0 }, want: ErrVersion},
		{name: "VRID 0", give: func(p *Packet) { p.VRID = 0 }, want: ErrVRID},
		{name: "v2 interval 1.5s", give: func(p *Packet) { p.AdvertInt = 1500 * time.Millisecond }, want: ErrAdvertInt},
		{name: "v2 interval 256s", give: func(p *Packet) { p.AdvertInt = 256 * time.Second }, want: ErrAdvertInt},
		{name: "v2 interval 0", give: func(p *Packet) { p.AdvertInt = 0 }, want: ErrAdvertInt},
		{name: "v3 interval 5ms", give: func(p *Packet) { p.Version = 3; p.AdvertInt = 5 * time.Millisecond }, src: srcA, dst: grp4, want: ErrAdvertInt},
		{name: "v3 interval 41s", give: func(p *Packet) { p.Version = 3; p.AdvertInt = 41 * time.Second }, src: srcA, dst: grp4, want: ErrAdvertInt},
		{name: "v2 auth type 3", give: func(p *Packet) { p.AuthType = 3 }, want: ErrAuth},
		{name: "v3 with auth", give: func(p *Packet) { p.Version = 3; p.AuthType = AuthPass }, src: srcA, dst: grp4, want: ErrAuth},
		{name: "v3 with auth data", give: func(p *Packet) { p.Version = 3; p.AuthData = AuthString("x") }, src: srcA, dst: grp4, want: ErrAuth},
		{name: "v2 IPv6 VIP", give: func(p *Packet) { p.Addresses = addrs("2001:db8::1") }, want: ErrFamily},
		{name: "v3 IPv6 VIP over IPv4", give: func(p *Packet) { p.Version = 3; p.Addresses = addrs("2001:db8::1") }, src: srcA, dst: grp4, want: ErrFamily},
		{name: "v3 no src", give: func(p *Packet) { p.Version = 3 }, want: ErrFamily},
		{name: "256 addresses", give: func(p *Packet) { p.Addresses = make([]netip.Addr, 256) }, want: ErrAddrCount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ok
			tt.give(&p)
			if _, err := p.Marshal(tt.src, tt.dst); !errors.Is(err, tt.want) {
				t.Fatalf("Marshal err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestAuthString(t *testing.T) {
	tests := []struct {
		give string
		want [8]byte
	}{
		{give: "", want: [8]byte{}},
		{give: "1111", want: [8]byte{'1', '1', '1', '1'}},
		{give: "12345678", want: [8]byte{'1', '2', '3', '4', '5', '6', '7', '8'}},
		{give: "secret-too-long", want: [8]byte{'s', 'e', 'c', 'r', 'e', 't', '-', 't'}},
	}
	for _, tt := range tests {
		if got := AuthString(tt.give); got != tt.want {
			t.Errorf("AuthString(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

// FuzzUnmarshal checks that decoding never panics and that every packet that decodes
// re-encodes to bytes that decode to the same packet.
func FuzzUnmarshal(f *testing.F) {
	for _, g := range loadGoldens(f) {
		f.Add(g.payload, g.src.AsSlice(), g.dst.AsSlice())
	}
	f.Add(mustHex(f, "2133640201014ef1c612026431313131"), srcA.AsSlice(), grp4.AsSlice())
	f.Add(mustHex(f, "3107c8010064dab320010db8000000000000000000000007"), srcLL.AsSlice(), IPv6Group.AsSlice())
	f.Fuzz(func(t *testing.T, b, rawSrc, rawDst []byte) {
		src, _ := netip.AddrFromSlice(rawSrc)
		dst, _ := netip.AddrFromSlice(rawDst)
		p, err := Unmarshal(b, src, dst)
		if err != nil {
			return
		}
		out, err := p.Marshal(src, dst)
		if err != nil {
			t.Fatalf("decoded %+v but Marshal: %v", p, err)
		}
		q, err := Unmarshal(out, src, dst)
		if err != nil {
			t.Fatalf("re-decode of %x: %v", out, err)
		}
		if !packetsEqual(p, q) {
			t.Fatalf("round trip changed packet:\n%+v\n%+v", p, q)
		}
	})
}
