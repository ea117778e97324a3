// Package healthcheck decides whether real servers are up.
//
// It owns the checkers (one small type per kind behind the Checker
// interface: tcp, http, https, exec) and the Scheduler that runs them with
// HAProxy's semantics: interval, fast interval while a server changes
// state, down interval while it is down, rise/fall hysteresis, jitter
// (spread), an initial state and a warm-up delay.
//
// The Scheduler runs one checker per distinct Spec.Key, however many
// virtual servers name the same real server with the same check; it bounds
// the number of checks in flight; a check never outlives its timeout; a
// panicking checker counts as a failed check. Set replaces the check list
// at run time (reloads) and keeps unchanged checks and their state.
//
// Output is a stream of Change values (up/down, reason, counts, dynamic
// weight) for the IPVS side and Snapshot for status and metrics.
//
// The TCP and HTTP checkers use raw non-blocking sockets on Go's network
// poller: the TCP check is half-open like HAProxy's (delayed ACK, then
// close with SO_LINGER 0, so the server application never accepts it), the
// HTTP check writes one HTTP/1.0 request and parses the status line itself.
// This keeps a check to a handful of system calls, so 10,000 servers at a
// 1 s interval cost a fraction of one core. The package is Linux-only.
//
// It does not import vigil's config package: the wiring package converts
// the site file into Spec values.
package healthcheck
