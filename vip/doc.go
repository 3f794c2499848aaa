// Package vip owns the virtual IP on the host: netlink add, renew and remove with a finite
// kernel lifetime, gratuitous ARP, an RFC 5227-style conflict probe, and an idempotent
// reconcile of desired against actual.
//
// A [Manager] works on one interface and a fixed set of managed prefixes
// ([Options].Managed). [Manager.Set] is the only verb that changes addresses: it is
// idempotent in the style of tailscale's router Set and may be called with the same
// desired set as often as the caller likes; each call renews the kernel lifetime of every
// desired prefix, removes every managed prefix that is not desired, and announces every
// prefix it acquired with gratuitous ARP. Addresses that are not managed are never touched.
//
// The kernel lifetime (valid_lft) is the backstop of the quorum lease described in
// docs/design.md: if the daemon freezes or dies, the kernel deletes the VIP by itself once
// [Options].KernelLease has passed without a renew. The caller enforces the holding
// conjunction (applied state names this node owner, lease valid, promotion finished)
// before every Set that keeps a prefix; this package does not know about leases.
//
// Only IPv4 is supported: gratuitous ARP and the ARP probe have no IPv6 meaning here.
//
// All sockets of a Manager live in [Options].NetNS when it is set: the netlink handle is
// made with netlink.NewHandleAt, and the AF_PACKET sockets are opened on a locked OS
// thread that has been switched into the namespace.
package vip
