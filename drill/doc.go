// Package drill rehearses a failover, as `vigil drill` does: it runs a
// preflight on a director's status, asks that director to hand an
// instance over (a priority-0 advert), waits for another director to
// become master while probes through the VIP measure what clients saw,
// and optionally hands mastership back.
//
// Run drives a Director: the three control-socket operations a drill
// needs (status, handover, resume). ControlSocket is the production
// Director, talking to a daemon's control socket; tests use a fake. The
// status carries VRRP states as strings; they are parsed once, into
// vrrp.State, when a status is read (see parseStatus).
//
// A Prober probes one target (http://, https:// or tcp://HOST:PORT) at a
// steady rate, each probe in its own goroutine so that one hanging until
// its timeout does not hide the ones after it; summarize turns its
// results into a ProbeReport (the longest interruption is measured from
// the first failure of a run to the next success).
//
// Time comes from an internal/clock.Clock (Options.Clock), so tests run a
// whole drill, timeouts included, on a fake clock without sleeping.
//
// The Report is what `vigil drill --json` prints: its JSON field names
// are an interface (scripts and tests read them) and do not change.
package drill
