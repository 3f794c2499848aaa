package nftfence

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// nftEvent builds an nftables event datagram as the kernel sends it: a netlink header in
// host byte order, the nfgenmsg, and a first attribute naming table.
func nftEvent(msg int, family byte, table string, subsys int) []byte {
	b := make([]byte, 16, 64)
	binary.NativeEndian.PutUint16(b[4:], uint16(subsys<<8|msg))
	b = append(b, family, 0, 0x02, 0x46)
	if table != "" {
		v := append([]byte(table), 0)
		attr := make([]byte, 4, 4+len(v)+3)
		binary.NativeEndian.PutUint16(attr[0:], uint16(4+len(v)))
		binary.NativeEndian.PutUint16(attr[2:], unix.NFTA_SET_ELEM_LIST_TABLE)
		attr = append(attr, v...)
		for len(attr)%4 != 0 {
			attr = append(attr, 0)
		}
		b = append(b, attr...)
		b = append(b, 8, 0, 2, 0, 'v', 'i', 'p', 0) // the set's name, as in a real notice
	}
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	return b
}

// TestEventFilter runs Watch's socket filter on the datagrams it must drop (what a
// renewal causes) and on those it must let through (anything that can concern the fence,
// and whatever it cannot read).
func TestEventFilter(t *testing.T) {
	const table = "keepraft_eth0"
	nft := unix.NFNL_SUBSYS_NFTABLES
	tests := []struct {
		name string
		pkt  []byte
		drop bool
	}{
		{"our set's elements added (a renewal)", nftEvent(unix.NFT_MSG_NEWSETELEM, unix.NFPROTO_NETDEV, table, nft), true},
		{"our set's elements flushed (a renewal)", nftEvent(unix.NFT_MSG_DELSETELEM, unix.NFPROTO_NETDEV, table, nft), true},
		{"generation notice", nftEvent(unix.NFT_MSG_NEWGEN, 0, "", nft), true},
		{"another table's elements", nftEvent(unix.NFT_MSG_NEWSETELEM, unix.NFPROTO_NETDEV, "other", nft), false},
		{"a longer name sharing the prefix", nftEvent(unix.NFT_MSG_NEWSETELEM, unix.NFPROTO_NETDEV, table+"1", nft), false},
		{"a shorter name", nftEvent(unix.NFT_MSG_NEWSETELEM, unix.NFPROTO_NETDEV, "keepraft_eth", nft), false},
		{"same name in another family", nftEvent(unix.NFT_MSG_NEWSETELEM, unix.NFPROTO_INET, table, nft), false},
		{"our table deleted", nftEvent(unix.NFT_MSG_DELTABLE, unix.NFPROTO_NETDEV, table, nft), false},
		{"our chain deleted", nftEvent(unix.NFT_MSG_DELCHAIN, unix.NFPROTO_NETDEV, table, nft), false},
		{"our set deleted", nftEvent(unix.NFT_MSG_DELSET, unix.NFPROTO_NETDEV, table, nft), false},
		{"a rule added", nftEvent(unix.NFT_MSG_NEWRULE, unix.NFPROTO_NETDEV, table, nft), false},
		{"another subsystem's message 12", nftEvent(unix.NFT_MSG_NEWSETELEM, unix.NFPROTO_NETDEV, table, unix.NFNL_SUBSYS_CTNETLINK), false},
		{"elements notice cut short", nftEvent(unix.NFT_MSG_NEWSETELEM, unix.NFPROTO_NETDEV, table, nft)[:26], false},
		{"too short for a type", make([]byte, 5), false},
	}
	prog, err := eventFilter(table)
	if err != nil {
		t.Fatal(err)
	}
	insns, ok := bpf.Disassemble(prog)
	if !ok {
		t.Fatal("the filter does not disassemble")
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := vm.Run(tt.pkt)
			if err != nil {
				t.Fatal(err)
			}
			if got := n == 0; got != tt.drop {
				t.Errorf("dropped = %v (kept %d of %d bytes), want %v", got, n, len(tt.pkt), tt.drop)
			}
		})
	}
}
