// Package vrrp owns VRRPv2/v3 on the segment: the packet codec, the owner's advert speaker
// and the listener that tracks foreign routers.
//
// The codec ([Packet.Marshal], [Unmarshal]) follows RFC 3768 (v2, with the RFC 2338 simple
// password that keepalived still implements) and RFC 5798 (v3). For v3 over IPv4 the checksum
// includes the IPv4 pseudo-header by default, as keepalived does; [Packet.ChecksumAsV2]
// selects the RFC 9568 / keepalived v3_checksum_as_v2 variant.
//
// [Conn] is a raw IPv4 protocol-112 socket bound to one interface. [Speaker] sends adverts
// while the local node owns the VIP and [Listener] validates every received advert, counts
// drops per reason and tracks foreign routers. Both take small interfaces so that their timer
// logic is tested without sockets.
package vrrp
