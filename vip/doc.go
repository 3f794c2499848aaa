// Package vip owns the virtual IP on the host: netlink add, renew and remove with a finite
// kernel lifetime, gratuitous ARP, and an idempotent reconcile of desired against actual.
package vip
