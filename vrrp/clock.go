package vrrp

import "github.com/vigil-lb/vigil/internal/clock"

// Clock is the time source of an instance; tests inject a fake one so the
// state machine is exercised without sleeping.
type Clock = clock.Clock

// Timer is a pending AfterFunc call.
type Timer = clock.Timer

// SystemClock is the real clock.
func SystemClock() Clock { return clock.System() }
