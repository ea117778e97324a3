package vrrp

import "time"

// Clock is the time source of an instance; tests inject a fake one so the
// state machine is exercised without sleeping.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d (like time.AfterFunc).
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call if it has not started; it reports whether it did.
	Stop() bool
}

// SystemClock is the real clock.
func SystemClock() Clock { return systemClock{} }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }
func (systemClock) AfterFunc(d time.Duration, f func()) Timer {
	return time.AfterFunc(d, f)
}
