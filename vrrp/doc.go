// Package vrrp owns the election: the VRRP wire format (VRRPv3 of RFC 5798
// for IPv4 and IPv6, VRRPv2 of RFC 3768 for IPv4 with keepalived's simple
// text authentication), the state machine of RFC 5798 section 6 with its
// timers, and the transports that carry adverts.
package vrrp
