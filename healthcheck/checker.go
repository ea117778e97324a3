package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// NoWeight is Result.Weight (and Change.Weight) when the check says
// nothing about the real server's weight.
const NoWeight = -1

// Result is the outcome of one check.
type Result struct {
	Up bool
	// Reason says why, for a human: "HTTP 503 from 10.0.0.3:80",
	// "connect 10.0.0.3:80: connection refused", "timeout after 1s".
	Reason  string
	Latency time.Duration
	// Weight is the weight a dynamic exec check asked for, or NoWeight.
	Weight int
	// Local means the check could not run here (out of file descriptors,
	// ports or memory): it says nothing about the server, and the
	// scheduler does not count it as a pass or a failure.
	Local bool
}

// Checker runs one check of one real server. Check must return by
// deadline (a check never outlives its timeout) and as soon as it can
// after ctx is cancelled; it must be safe to call from one goroutine at a
// time (the scheduler never overlaps checks of one Checker).
//
// The Scheduler runs any Checker, each check on a goroutine of its own;
// the package's TCP and plain HTTP checkers also implement engineChecker,
// which lets them run on the scheduler's event loop instead.
type Checker interface {
	Check(ctx context.Context, deadline time.Time) Result
}

// New returns the checker for s (after defaults), or an error if s is
// invalid.
func New(s Spec) (Checker, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	s = s.WithDefaults()
	switch s.Kind {
	case KindTCP:
		return &TCPChecker{Addr: s.checkAddr()}, nil
	case KindHTTP, KindHTTPS:
		return newHTTPChecker(s)
	case KindExec:
		return &ExecChecker{Command: s.Exec.Command, Dynamic: s.Exec.Dynamic, Target: s.Target, Name: s.Name}, nil
	}
	return nil, fmt.Errorf("check of %s: unknown kind %q", s.Target, s.Kind)
}

func pass(start time.Time, format string, args ...any) Result {
	return Result{Up: true, Reason: fmt.Sprintf(format, args...), Latency: time.Since(start), Weight: NoWeight}
}

func fail(start time.Time, format string, args ...any) Result {
	return Result{Up: false, Reason: fmt.Sprintf(format, args...), Latency: time.Since(start), Weight: NoWeight}
}

// isLocal reports whether err is this host's shortage rather than the
// server's answer.
func isLocal(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.EADDRNOTAVAIL, syscall.EAGAIN} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// localFailure is a Result for a check that could not run here.
func localFailure(start time.Time, format string, args ...any) Result {
	r := fail(start, format, args...)
	r.Local = true
	return r
}

// roundDur prints durations for humans: 1s, 250ms, 1.5ms.
func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
