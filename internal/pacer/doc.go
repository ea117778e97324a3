// Package pacer sends a fixed set of datagrams on a socket at a fixed
// interval from a thread of its own that the Go runtime does not schedule.
//
// Why: a VRRP master sends an advert every 10 ms to 1 s for as long as it
// runs, and nothing else happens in an idle director. Woken by a Go timer,
// each advert costs the runtime several thread wake-ups (the netpoller
// waking early because it sleeps in whole milliseconds, an idle P's
// thread spinning up, sysmon polling until the timer has run), about four
// times what keepalived's single-threaded loop spends on one. The pacer's
// thread sleeps on a monotonic deadline and wakes once per advert, as
// keepalived does. The protocol stays in Go: the election decides what
// to send and hands the marshalled packets over; the thread only keeps
// the schedule.
//
// Safety: a pacer holds a lease. It stops sending when the lease runs out
// without being renewed, so a director whose Go side has stopped
// working stops advertising (and its backup takes over) instead of being
// kept master by a thread that knows nothing of the election. Stop
// returns only once no further datagram can leave.
//
// The thread needs cgo; without it (CGO_ENABLED=0) New returns
// ErrUnavailable and callers keep their own timers.
package pacer
