// Package failover owns what a director does when its role in an election
// changes: it claims the virtual IP addresses (VIPs) of an instance and
// announces them, gives them up, and tells operators' scripts about it.
//
//   - VIPs are added and removed with netlink, always through a
//     *netlink.Handle bound to the namespace given (so the same code works in
//     test namespaces): IPv4 with an optional label such as "eth0:101",
//     IPv6 with IFA_F_NODAD (and preferred_lft 0, like keepalived, so the
//     VIP is never picked as a source address). Adding a present VIP or
//     removing an absent one is not an error. RemoveStale deletes our VIPs
//     left over from an earlier run before the election starts;
//     WriteRecord and RemoveRecorded keep them in a runtime file so a start
//     can remove them before it reads the site file. While a VIP is held, a
//     watcher (RTNLGRP_*_IFADDR) puts it back if someone deletes it by
//     hand; while it is not held, the watcher removes it if it appears on
//     its interface (a director that is not master holds no VIP).
//   - The Announcer sends gratuitous ARP (a request and a reply, like
//     MetalLB) over a send-only AF_PACKET socket bound to ETH_P_RARP (like
//     keepalived, so it never receives ARP) and IPv6 unsolicited neighbour
//     advertisements with the Override flag (marshalled by mdlayher/ndp, sent
//     on a send-only raw ICMPv6 socket): one round at once, Repeat more
//     rounds Interval apart (default 1100 ms: Linux ignores a second ARP
//     update inside its 1 s locktime), an optional periodic Refresh, and
//     Reannounce for "a lower priority master was heard". Stop cancels
//     every round still pending, and no packet leaves after it returns.
//   - The Notifier runs notify commands on every transition, in order, one
//     at a time, each with a timeout that kills its process group; the
//     caller (the election) never waits for them.
//   - A Claimer ties the three together for one instance.
//
// The package does not read the site file: the wiring converts it into
// the small input types here (VIP, AnnounceConfig, NotifyCommand).
package failover
