// Package vrrp owns VRRPv2/v3 on the segment: the packet codec, the owner's advert speaker
// and the listener that tracks foreign routers.
package vrrp
