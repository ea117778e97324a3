package healthcheck

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// TCPChecker passes when a listener accepts a connection at Addr. The
// check is half-open (SYN, SYN-ACK, RST): it proves a listener exists and
// costs the server application nothing, as HAProxy's does.
type TCPChecker struct {
	Addr netip.AddrPort

	// Cached by the engine (the scheduler's goroutine only).
	target sockTarget
	ok     string
}

// engineTarget makes TCPChecker an engineChecker.
func (t *TCPChecker) engineTarget() (*sockTarget, bool) { return t.target.resolve(t.Addr) }

// connected ends the check: the handshake is all it asks for.
func (t *TCPChecker) connected(start time.Time) (Result, conversation, bool) {
	return t.passResult(start), nil, true
}

// passResult is the passing result, its reason built once.
func (t *TCPChecker) passResult(start time.Time) Result {
	if t.ok == "" {
		t.ok = "connected to " + t.Addr.String()
	}
	return Result{Up: true, Reason: t.ok, Latency: time.Since(start), Weight: NoWeight}
}

// Check connects and resets.
func (t *TCPChecker) Check(ctx context.Context, deadline time.Time) Result {
	start := time.Now()
	c, err := dial(ctx, t.Addr, deadline)
	if err != nil {
		return connectFailure(start, deadline, t.Addr, err)
	}
	c.Close()
	return pass(start, "connected to %s", t.Addr)
}

// connectFailure words a failed connect.
func connectFailure(start, deadline time.Time, addr netip.AddrPort, err error) Result {
	if errors.Is(err, errTimeout) {
		return fail(start, "timeout after %v connecting to %s", roundDur(deadline.Sub(start)), addr)
	}
	if isLocal(err) {
		return localFailure(start, "cannot check %s here: %v", addr, err)
	}
	return fail(start, "connect %s: %v", addr, err)
}
