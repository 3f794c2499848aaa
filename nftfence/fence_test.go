package nftfence

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"
)

func TestValidate(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		name    string
		opts    Options
		want    []netip.Addr
		wantErr []string // substrings of the error, none for success
	}{
		{name: "one /32", opts: Options{Interface: "eth0", VIPs: []netip.Prefix{p("198.18.0.10/32")}},
			want: []netip.Addr{netip.MustParseAddr("198.18.0.10")}},
		{name: "address of a /24, duplicates folded", opts: Options{Interface: "eth0", VIPs: []netip.Prefix{p("198.18.0.10/24"), p("198.18.0.11/32"), p("198.18.0.10/32")}},
			want: []netip.Addr{netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.0.11")}},
		{name: "4in6 unmapped", opts: Options{Interface: "eth0", VIPs: []netip.Prefix{p("::ffff:198.18.0.10/128")}},
			want: []netip.Addr{netip.MustParseAddr("198.18.0.10")}},
		{name: "no interface", opts: Options{VIPs: []netip.Prefix{p("198.18.0.10/32")}}, wantErr: []string{"options.Interface: must be set"}},
		{name: "long interface", opts: Options{Interface: "abcdefghijklmnop", VIPs: []netip.Prefix{p("198.18.0.10/32")}}, wantErr: []string{"not a valid interface name"}},
		{name: "no VIPs", opts: Options{Interface: "eth0"}, wantErr: []string{"options.VIPs: at least one"}},
		{name: "IPv6", opts: Options{Interface: "eth0", VIPs: []netip.Prefix{p("2001:db8::1/128")}}, wantErr: []string{"options.VIPs[0] 2001:db8::1/128: only IPv4"}},
		{name: "invalid", opts: Options{Interface: "eth0", VIPs: []netip.Prefix{{}}}, wantErr: []string{"options.VIPs[0]: invalid prefix"}},
		{name: "unspecified", opts: Options{Interface: "eth0", VIPs: []netip.Prefix{p("0.0.0.0/32")}}, wantErr: []string{"unspecified"}},
		{name: "negative interval", opts: Options{Interface: "eth0", VIPs: []netip.Prefix{p("198.18.0.10/32")}, CheckInterval: -1}, wantErr: []string{"options.CheckInterval"}},
		{name: "all errors joined", opts: Options{VIPs: []netip.Prefix{p("2001:db8::1/128")}}, wantErr: []string{"options.Interface", "only IPv4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.opts.validate()
			if len(tt.wantErr) == 0 {
				if err != nil || !slices.Equal(got, tt.want) {
					t.Fatalf("validate = %v, %v; want %v", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("validate = %v, nil; want an error with %q", got, tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("validate error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLeaseMillis(t *testing.T) {
	tests := []struct {
		give, want time.Duration
	}{
		{-time.Second, 0},
		{0, 0},
		{time.Millisecond, 0},
		{MinLease - time.Nanosecond, 0},
		{MinLease, MinLease},
		{10*time.Millisecond + 999*time.Microsecond, 10 * time.Millisecond},
		{300*time.Millisecond + 1, 300 * time.Millisecond},
		{2 * time.Second, 2 * time.Second},
	}
	for _, tt := range tests {
		if got := leaseMillis(tt.give); got != tt.want {
			t.Errorf("leaseMillis(%s) = %s, want %s", tt.give, got, tt.want)
		}
	}
}

func TestEgressSupported(t *testing.T) {
	tests := []struct {
		release string
		want    bool
		wantErr bool
	}{
		{"6.1.0-18-amd64", true, false},
		{"6.18.44-fc-v657", true, false},
		{"5.16.0", true, false},
		{"5.15.0-91-generic", false, false},
		{"5.4.0", false, false},
		{"4.19.0-26-amd64", false, false},
		{"10.0", true, false},
		{"5.16-rc1", true, false},
		{"6", false, true},
		{"x.y", false, true},
	}
	for _, tt := range tests {
		got, err := egressSupported(tt.release)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("egressSupported(%q) = %v, %v; want %v, error %v", tt.release, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestRules(t *testing.T) {
	o := newObjects("eth0")
	o.lease.ID, o.managed.ID = 7, 8
	if o.table.Name != "keepraft_eth0" || o.table.Family != nftables.TableFamilyNetdev {
		t.Fatalf("table %+v", o.table)
	}
	if !o.lease.HasTimeout || o.lease.KeyType != nftables.TypeIPAddr || o.managed.HasTimeout || !o.managed.Constant {
		t.Fatalf("sets %+v %+v", o.lease, o.managed)
	}
	for _, c := range []struct {
		ch   *nftables.Chain
		hook nftables.ChainHook
	}{{o.ingress, unix.NF_NETDEV_INGRESS}, {o.egress, unix.NF_NETDEV_EGRESS}} {
		if *c.ch.Hooknum != c.hook || c.ch.Device != "eth0" || *c.ch.Policy != nftables.ChainPolicyAccept || c.ch.Type != nftables.ChainTypeFilter {
			t.Errorf("chain %s: %+v", c.ch.Name, c.ch)
		}
	}

	fence := func(off uint32) []expr.Any {
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
			&expr.Lookup{SourceRegister: 1, SetName: "vip_lease", SetID: 7, Invert: true},
			&expr.Lookup{SourceRegister: 1, SetName: "vip_managed", SetID: 8},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}
	}
	ip := func(off uint32) []expr.Any {
		return append([]expr.Any{
			&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x08, 0x00}},
		}, fence(off)...)
	}
	arp := func(off uint32) []expr.Any {
		return append([]expr.Any{
			&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x08, 0x06}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 2, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x08, 0x00, 6, 4}},
		}, fence(off)...)
	}
	tcp := []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 9, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{6}},
	}
	refuse := slices.Concat([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyPKTTYPE, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}},
		&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x08, 0x00}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: "vip_managed", SetID: 8},
		&expr.Lookup{SourceRegister: 1, SetName: "vip_lease", SetID: 7, Invert: true},
	}, tcp, []expr.Any{&expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST}})
	reset := slices.Concat([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x08, 0x00}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: "vip_managed", SetID: 8},
	}, tcp, []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x04}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x04}},
		&expr.Verdict{Kind: expr.VerdictAccept},
	})
	want := []struct {
		name  string
		chain string
		exprs []expr.Any
	}{
		{"ingress reset TCP to an unleased VIP", "ingress", refuse},
		{"ingress ip daddr", "ingress", ip(16)},
		{"ingress arp tpa", "ingress", arp(24)},
		{"egress let resets from a VIP out", "egress", reset},
		{"egress ip saddr", "egress", ip(12)},
		{"egress arp spa", "egress", arp(14)},
	}
	got := o.rules()
	if len(got) != len(want) {
		t.Fatalf("%d rules, want %d", len(got), len(want))
	}
	for i, w := range want {
		t.Run(w.name, func(t *testing.T) {
			r := got[i]
			if r.Table != o.table || r.Chain.Name != w.chain {
				t.Errorf("rule in %s/%s, want %s", r.Table.Name, r.Chain.Name, w.chain)
			}
			if !reflect.DeepEqual(r.Exprs, w.exprs) {
				t.Errorf("exprs\n%#v\nwant\n%#v", r.Exprs, w.exprs)
			}
		})
	}
}

func TestElements(t *testing.T) {
	addrs := []netip.Addr{netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.0.11")}
	got := elements(addrs, 300*time.Millisecond)
	want := []nftables.SetElement{
		{Key: []byte{198, 18, 0, 10}, Timeout: 300 * time.Millisecond},
		{Key: []byte{198, 18, 0, 11}, Timeout: 300 * time.Millisecond},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("elements = %+v, want %+v", got, want)
	}
}

// fakeClock advances by the configured step on each batch.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestOpenCorrectsSlowBatches(t *testing.T) {
	errKernel := errors.New("kernel says no")
	ms := time.Millisecond
	tests := []struct {
		name    string
		until   time.Duration
		takes   []time.Duration // how long each batch takes, in order
		failAt  int             // 1-based batch that fails, 0 none
		want    []time.Duration // timeouts applied, 0 = flush only
		wantErr error
	}{
		{name: "fast", until: 300 * ms, takes: []time.Duration{100 * time.Microsecond}, want: []time.Duration{300 * ms}},
		{name: "rounded down", until: 300*ms + 900*time.Microsecond, takes: []time.Duration{0}, want: []time.Duration{300 * ms}},
		{name: "too short closes", until: 9 * ms, takes: []time.Duration{0}, want: []time.Duration{0}},
		{name: "zero closes", until: 0, takes: []time.Duration{0}, want: []time.Duration{0}},
		{name: "negative closes", until: -ms, takes: []time.Duration{0}, want: []time.Duration{0}},
		{name: "stalled once", until: 300 * ms, takes: []time.Duration{120 * ms, 0}, want: []time.Duration{300 * ms, 180 * ms}},
		{name: "stalled past the lease", until: 300 * ms, takes: []time.Duration{295 * ms, 0}, want: []time.Duration{300 * ms, 0}, wantErr: ErrSlow},
		{name: "stalled three times", until: 300 * ms, takes: []time.Duration{60 * ms, 60 * ms, 60 * ms, 0}, want: []time.Duration{300 * ms, 240 * ms, 180 * ms, 0}, wantErr: ErrSlow},
		{name: "a loaded host's 16 ms batch is not slow", until: 300 * ms, takes: []time.Duration{16 * ms}, want: []time.Duration{300 * ms}},
		{name: "kernel error", until: 300 * ms, takes: []time.Duration{0}, failAt: 1, want: []time.Duration{300 * ms}, wantErr: errKernel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1000, 0)}
			var applied []time.Duration
			f := &Fence{obj: newObjects("eth0"), log: zaptest.NewLogger(t), now: clk.now}
			f.apply = func(d time.Duration) error {
				applied = append(applied, d)
				n := len(applied)
				if n > len(tt.takes) {
					t.Fatalf("batch %d: more batches than expected", n)
				}
				clk.t = clk.t.Add(tt.takes[n-1])
				if n == tt.failAt {
					return errKernel
				}
				return nil
			}
			err := f.Open(tt.until)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("Open = %v, want %v", err, tt.wantErr)
			}
			if !slices.Equal(applied, tt.want) {
				t.Errorf("batches %v, want %v", applied, tt.want)
			}
		})
	}
}

func TestRemovedFence(t *testing.T) {
	f := &Fence{obj: newObjects("eth0"), log: zaptest.NewLogger(t), now: time.Now, removed: true,
		apply: func(time.Duration) error { t.Fatal("apply after remove"); return nil }}
	for name, err := range map[string]error{"Open": f.Open(time.Second), "Shut": f.Shut(), "Check": f.Check(), "Remove": f.Remove(), "Close": f.Close(),
		"Watch": f.Watch(t.Context(), func(string) {})} {
		if !errors.Is(err, ErrRemoved) {
			t.Errorf("%s after Remove = %v, want ErrRemoved", name, err)
		}
	}
}

// event builds an nftables netlink event of type typ about table in family.
func event(t *testing.T, typ int, family byte, table string) netlink.Message {
	t.Helper()
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: 1, Data: append([]byte(table), 0)},
		{Type: 2, Data: []byte("x\x00")},
	})
	if err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 4)
	hdr[0] = family
	binary.BigEndian.PutUint16(hdr[2:], 0)
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ)},
		Data:   append(hdr, attrs...),
	}
}

func TestConcerns(t *testing.T) {
	const table = "keepraft_eth0"
	tests := []struct {
		name string
		msgs []netlink.Message
		want string
	}{
		{name: "our table deleted", msgs: []netlink.Message{event(t, unix.NFT_MSG_DELTABLE, unix.NFPROTO_NETDEV, table)}, want: "deltable"},
		{name: "our chain deleted after others", msgs: []netlink.Message{
			event(t, unix.NFT_MSG_DELRULE, unix.NFPROTO_INET, table),
			event(t, unix.NFT_MSG_DELCHAIN, unix.NFPROTO_NETDEV, table),
		}, want: "delchain"},
		{name: "our table made dormant", msgs: []netlink.Message{event(t, unix.NFT_MSG_NEWTABLE, unix.NFPROTO_NETDEV, table)}, want: "newtable"},
		{name: "element events are Open's", msgs: []netlink.Message{
			event(t, unix.NFT_MSG_DELSETELEM, unix.NFPROTO_NETDEV, table),
			event(t, unix.NFT_MSG_NEWSETELEM, unix.NFPROTO_NETDEV, table),
			event(t, unix.NFT_MSG_NEWGEN, unix.NFPROTO_UNSPEC, ""),
		}},
		{name: "same name, other family", msgs: []netlink.Message{event(t, unix.NFT_MSG_DELTABLE, unix.NFPROTO_INET, table)}},
		{name: "other table", msgs: []netlink.Message{event(t, unix.NFT_MSG_DELTABLE, unix.NFPROTO_NETDEV, "keepraft_eth1")}},
		{name: "other subsystem", msgs: []netlink.Message{{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_CTNETLINK<<8 | unix.NFT_MSG_DELTABLE)}, Data: []byte{unix.NFPROTO_NETDEV, 0, 0, 0}}}},
		{name: "short", msgs: []netlink.Message{{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_DELTABLE)}, Data: []byte{unix.NFPROTO_NETDEV}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := concerns(tt.msgs, table)
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("concerns = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
}

func TestDormant(t *testing.T) {
	var be [4]byte
	binary.BigEndian.PutUint32(be[:], unix.NFT_TABLE_F_DORMANT)
	asDecoded := binary.NativeEndian.Uint32(be[:]) // google/nftables v0.3.0 decoding
	binary.BigEndian.PutUint32(be[:], tableFlagOwner)
	ownerDecoded := binary.NativeEndian.Uint32(be[:])
	tests := []struct {
		flags uint32
		want  bool
	}{
		{0, false},
		{asDecoded, true},
		{unix.NFT_TABLE_F_DORMANT, true},
		{ownerDecoded, false},
		{tableFlagOwner, false},
	}
	for _, tt := range tests {
		if got := dormant(tt.flags); got != tt.want {
			t.Errorf("dormant(%#x) = %v, want %v", tt.flags, got, tt.want)
		}
	}
}

// tableFlagOwner is NFT_TABLE_F_OWNER (Linux 5.12), missing from x/sys/unix.
const tableFlagOwner = 0x2
