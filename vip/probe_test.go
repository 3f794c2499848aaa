package vip

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

var peerMAC = net.HardwareAddr{0x02, 0, 0x5e, 0, 0, 0x99}

func mustPacket(t *testing.T, op arp.Operation, srcHW net.HardwareAddr, srcIP netip.Addr, dstHW net.HardwareAddr, dstIP netip.Addr) *arp.Packet {
	t.Helper()
	p, err := arp.NewPacket(op, srcHW, srcIP, dstHW, dstIP)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// probeWindow is how long a probe listens in all: until probeListen after the last one.
const probeWindow = (probeCount-1)*probeInterval + probeListen

func TestProbeConflict(t *testing.T) {
	ownMAC := newFakeLinks("eth0").mac
	vip := vipA.Addr()
	other := netip.MustParseAddr("198.18.0.2")
	zero := netip.IPv4Unspecified()
	tests := []struct {
		name     string
		give     func(t *testing.T) []scripted
		wantMAC  net.HardwareAddr
		wantTook time.Duration
	}{
		{
			name:     "nobody answers",
			give:     func(t *testing.T) []scripted { return nil },
			wantTook: probeWindow,
		},
		{
			name: "holder replies",
			give: func(t *testing.T) []scripted {
				return []scripted{{after: 3 * time.Millisecond, pkt: mustPacket(t, arp.OperationReply, peerMAC, vip, ownMAC, zero)}}
			},
			wantMAC:  peerMAC,
			wantTook: 3 * time.Millisecond,
		},
		{
			name: "holder replies to the second probe, late in the window",
			give: func(t *testing.T) []scripted {
				return []scripted{{after: probeWindow - time.Millisecond, pkt: mustPacket(t, arp.OperationReply, peerMAC, vip, ownMAC, zero)}}
			},
			wantMAC:  peerMAC,
			wantTook: probeWindow - time.Millisecond,
		},
		{
			name: "holder announces itself",
			give: func(t *testing.T) []scripted {
				return []scripted{{after: 12 * time.Millisecond, pkt: mustPacket(t, arp.OperationRequest, peerMAC, vip, zeroMAC, vip)}}
			},
			wantMAC:  peerMAC,
			wantTook: 12 * time.Millisecond,
		},
		{
			name: "another host probes for it at the same time",
			give: func(t *testing.T) []scripted {
				return []scripted{{after: 3 * time.Millisecond, pkt: mustPacket(t, arp.OperationRequest, peerMAC, zero, zeroMAC, vip)}}
			},
			wantMAC:  peerMAC,
			wantTook: 3 * time.Millisecond,
		},
		{
			name: "reply after the window is ignored",
			give: func(t *testing.T) []scripted {
				return []scripted{{after: probeWindow + time.Millisecond, pkt: mustPacket(t, arp.OperationReply, peerMAC, vip, ownMAC, zero)}}
			},
			wantTook: probeWindow,
		},
		{
			name: "own packets and unrelated traffic are ignored",
			give: func(t *testing.T) []scripted {
				return []scripted{
					{after: 1 * time.Millisecond, pkt: mustPacket(t, arp.OperationRequest, ownMAC, vip, zeroMAC, vip)},
					{after: 2 * time.Millisecond, pkt: mustPacket(t, arp.OperationReply, peerMAC, other, ownMAC, zero)},
					{after: 3 * time.Millisecond, pkt: mustPacket(t, arp.OperationRequest, peerMAC, other, zeroMAC, vip)},
					{after: 4 * time.Millisecond, pkt: mustPacket(t, arp.OperationRequest, peerMAC, zero, zeroMAC, other)},
				}
			},
			wantTook: probeWindow,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m, _, fd := newTestManager(t, testOpts)
				conn := &fakeConn{incoming: tt.give(t)}
				fd.next = conn
				start := time.Now()
				mac, found, err := m.ProbeConflict(t.Context(), vip)
				took := time.Since(start)
				if err != nil {
					t.Fatalf("ProbeConflict: %v", err)
				}
				if found != (tt.wantMAC != nil) || !bytes.Equal(mac, tt.wantMAC) || took != tt.wantTook {
					t.Fatalf("ProbeConflict = %s, %v after %s; want %s after %s", mac, found, took, tt.wantMAC, tt.wantTook)
				}
				if !conn.closed {
					t.Errorf("probe socket not closed")
				}
				// Probes: requests, broadcast, sender 0.0.0.0 with our MAC, target the VIP,
				// probeInterval apart, as many as were due before the answer.
				sent := conn.packets()
				wantProbes := 2
				if took < probeInterval {
					wantProbes = 1
				}
				if len(sent) != wantProbes {
					t.Fatalf("sent %d probes, want %d", len(sent), wantProbes)
				}
				for i, s := range sent {
					p := s.pkt
					if p.Operation != arp.OperationRequest || !p.SenderIP.IsUnspecified() || p.TargetIP != vip ||
						!bytes.Equal(p.SenderHardwareAddr, ownMAC) || !bytes.Equal(s.dst, ethernet.Broadcast) ||
						s.at.Sub(start) != time.Duration(i)*probeInterval {
						t.Errorf("probe %d at +%s: %+v to %s", i, s.at.Sub(start), p, s.dst)
					}
				}
			})
		})
	}
}

func TestProbeConflictErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, _, fd := newTestManager(t, testOpts)
		if _, _, err := m.ProbeConflict(t.Context(), netip.MustParseAddr("198.18.0.99")); !errors.Is(err, ErrUnmanaged) {
			t.Fatalf("unmanaged: %v", err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		fd.next = &fakeConn{}
		if _, _, err := m.ProbeConflict(ctx, vipA.Addr()); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled: %v", err)
		}
		fd.err = errFake
		if _, _, err := m.ProbeConflict(t.Context(), vipA.Addr()); !errors.Is(err, errFake) {
			t.Fatalf("dial failure: %v", err)
		}
	})
}
