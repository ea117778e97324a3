// Package pacer sends a fixed set of datagrams on a socket at a fixed
// interval from a thread of its own that the Go runtime does not schedule.
//
// Why: a VRRP master sends an advert every 10 ms to 1 s for as long as it
// runs, and a backup takes over when adverts stop for three intervals
// and a bit. Sent from a Go timer, an advert waits for the runtime: the
// timer runs only when a P gets to it, so it is late when the process is
// busy (garbage collection, goroutines on every P), and each one costs
// the runtime several thread wake-ups besides. The pacer's thread sleeps
// on a monotonic deadline and wakes once per advert, as keepalived's loop
// does, whatever the Go side is doing. docs/pacer.md has the measured
// lateness of both (BenchmarkWakeLateness) and points at the CPU
// figures. The protocol stays in Go: the election decides what to send
// and hands the marshalled packets over; the thread only keeps the
// schedule.
//
// The thread is started by the first Start, so a pacer that is never
// used (an instance at one-second adverts, sent from a timer) costs no
// thread. SetRealtime puts it in a real-time scheduling class
// (keepalived's vrrp_rt_priority), so that other processes on a busy
// machine delay it little; it needs CAP_SYS_NICE, and says so at once
// when it is missing.
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
