// Package testenv owns the network-namespace lab: a bridge, hosts, MariaDB instances,
// keepalived peers, fault injection and an event-driven tracker of VIP holders.
package testenv
