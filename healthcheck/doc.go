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
// Cost. The scheduler's goroutine is an event loop (like HAProxy's), on
// every clock (tests drive the same loop with internal/clock's Fake): TCP
// and plain HTTP checks are state machines on one epoll set (engine.go),
// with no goroutine, timer or channel per check. The TCP check
// is half-open like HAProxy's (delayed ACK, then RST, so the server
// application never accepts it); the HTTP check writes one HTTP/1.0 request
// and parses the status line itself; a check ends with connect(AF_UNSPEC),
// which resets the connection and keeps the socket for the next check. A
// TCP check is then three system calls plus a share of epoll_wait. A
// checker runs on the loop if it implements the optional engineChecker
// interface (TCPChecker, HTTPChecker without TLS); exec, HTTPS and any
// injected Checker run on a goroutine each and wake the loop through an
// eventfd. scripts/bench-healthcheck.sh measures the CPU per check, the
// memory and the lateness against HAProxy on 10,000 servers;
// docs/benchmarks.md has the figures.
//
// The Check methods also work on their own (blocking, on Go's network
// poller), for one-off checks and tests. The package is Linux-only.
//
// It does not import vigil's config package: the wiring package converts
// the site file into Spec values.
package healthcheck
