package nftfence

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Offsets in an nftables event datagram, from its first message: the netlink header (16
// bytes: length, type, flags, sequence, port), the nfgenmsg (4 bytes: family, version,
// resource id), then the first attribute (length, type, value).
const (
	offType     = 4
	offFamily   = 16
	offAttrLen  = 20
	offAttrType = 22
	offAttrVal  = 24
)

// eventFilter returns a socket filter for Watch's event socket that drops the events
// Watch never looks at and that the fence causes itself: the changes of the elements of a
// set in the fence's table (every renewal flushes the lease set and adds its element
// again, six times a second on the owner) and the generation notice that ends every
// transaction. Without it each renewal woke the watcher. A datagram is dropped only when
// its first message is one of these (the kernel puts one transaction's notices in a
// datagram, so a datagram that starts with our own set's elements is a renewal, or
// another program's change of our set, which the periodic check still sees); everything
// else passes, including a datagram too short for the offsets read.
func eventFilter(table string) ([]bpf.RawInstruction, error) {
	name := append([]byte(table), 0)
	attrLen := 4 + len(name)
	padded := (len(name) + 3) &^ 3
	need := offAttrVal + padded

	// Jumps name their target; targets are resolved once the program is laid out.
	type jump struct {
		at              int
		ifTrue, ifFalse string
	}
	var (
		prog   []bpf.Instruction
		jumps  []jump
		labels = map[string]int{}
	)
	emit := func(i bpf.Instruction) { prog = append(prog, i) }
	jumpIf := func(cond bpf.JumpTest, val uint32, ifTrue, ifFalse string) {
		jumps = append(jumps, jump{at: len(prog), ifTrue: ifTrue, ifFalse: ifFalse})
		emit(bpf.JumpIf{Cond: cond, Val: val})
	}
	const next = "" // fall through

	emit(bpf.LoadExtension{Num: bpf.ExtLen})
	jumpIf(bpf.JumpLessThan, offType+2, "accept", next)
	emit(bpf.LoadAbsolute{Off: offType, Size: 2})
	jumpIf(bpf.JumpEqual, nlType(unix.NFT_MSG_NEWGEN), "drop", next)
	jumpIf(bpf.JumpEqual, nlType(unix.NFT_MSG_NEWSETELEM), "elements", next)
	jumpIf(bpf.JumpEqual, nlType(unix.NFT_MSG_DELSETELEM), "elements", "accept")
	labels["elements"] = len(prog)
	emit(bpf.LoadExtension{Num: bpf.ExtLen})
	jumpIf(bpf.JumpLessThan, uint32(need), "accept", next)
	emit(bpf.LoadAbsolute{Off: offFamily, Size: 1})
	jumpIf(bpf.JumpNotEqual, unix.NFPROTO_NETDEV, "accept", next)
	emit(bpf.LoadAbsolute{Off: offAttrLen, Size: 2})
	jumpIf(bpf.JumpNotEqual, native16(uint16(attrLen)), "accept", next)
	emit(bpf.LoadAbsolute{Off: offAttrType, Size: 2})
	jumpIf(bpf.JumpNotEqual, native16(unix.NFTA_SET_ELEM_LIST_TABLE), "accept", next)
	word := make([]byte, padded)
	copy(word, name)
	for off := 0; off < padded; off += 4 {
		emit(bpf.LoadAbsolute{Off: uint32(offAttrVal + off), Size: 4})
		jumpIf(bpf.JumpNotEqual, binary.BigEndian.Uint32(word[off:]), "accept", next)
	}
	labels["drop"] = len(prog)
	emit(bpf.RetConstant{Val: 0})
	labels["accept"] = len(prog)
	emit(bpf.RetConstant{Val: 0xffffffff})

	for _, j := range jumps {
		in := prog[j.at].(bpf.JumpIf)
		for _, t := range []struct {
			label string
			skip  *uint8
		}{{j.ifTrue, &in.SkipTrue}, {j.ifFalse, &in.SkipFalse}} {
			if t.label == next {
				continue
			}
			d := labels[t.label] - j.at - 1
			if d < 0 || d > 255 {
				return nil, fmt.Errorf("event filter: jump to %s out of range (%d)", t.label, d)
			}
			*t.skip = uint8(d)
		}
		prog[j.at] = in
	}
	return bpf.Assemble(prog)
}

// nlType is how a filter's 16-bit load reads an nftables message type: the header is in
// host byte order, the load in network order.
func nlType(msg int) uint32 {
	return native16(uint16(unix.NFNL_SUBSYS_NFTABLES<<8 | msg))
}

// native16 is how a filter's 16-bit load reads v stored in host byte order.
func native16(v uint16) uint32 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], v)
	return uint32(binary.BigEndian.Uint16(b[:]))
}
