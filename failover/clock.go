package failover

import (
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
)

// Clock is the time source of the announcer and the status timestamps.
// Tests inject a fake one to drive timers without sleeping.
type Clock = clock.Clock

// Timer is a timer made by a Clock.
type Timer = clock.Timer

// SystemClock is the real Clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// AfterFunc wraps time.AfterFunc.
func (SystemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
