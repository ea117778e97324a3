package clock

import (
	"testing"
	"time"
)

func TestFakeFiresInOrderAndStops(t *testing.T) {
	c := NewFake(time.Unix(0, 0))
	var got []string
	c.AfterFunc(2*time.Second, func() { got = append(got, "b") })
	c.AfterFunc(time.Second, func() {
		got = append(got, "a")
		c.AfterFunc(500*time.Millisecond, func() { got = append(got, "a2") })
	})
	stopped := c.AfterFunc(1500*time.Millisecond, func() { got = append(got, "never") })
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop should report true once")
	}
	c.Advance(1600 * time.Millisecond)
	if len(got) != 2 || got[0] != "a" || got[1] != "a2" || !c.Now().Equal(time.Unix(1, 600e6)) {
		t.Fatalf("after 1.6s: %v at %v", got, c.Now())
	}
	if c.Pending() != 1 {
		t.Fatalf("pending %d, want 1", c.Pending())
	}
	c.Stall(time.Second)
	if len(got) != 3 || got[2] != "b" {
		t.Fatalf("after the stall: %v", got)
	}
}

func TestAfterFuncPreciseNeverEarly(t *testing.T) {
	for _, d := range []time.Duration{0, 300 * time.Microsecond, 3 * time.Millisecond, 20 * time.Millisecond} {
		start := time.Now()
		fired := make(chan time.Duration, 1)
		AfterFuncPrecise(System(), d, func() { fired <- time.Since(start) })
		select {
		case got := <-fired:
			if got < d {
				t.Errorf("d=%v: fired after %v, early", d, got)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("d=%v: never fired", d)
		}
	}
}

func TestAfterFuncPreciseStop(t *testing.T) {
	fired := make(chan struct{}, 1)
	tm := AfterFuncPrecise(System(), 50*time.Millisecond, func() { fired <- struct{}{} })
	if !tm.Stop() {
		t.Fatal("Stop before the deadline reported false")
	}
	select {
	case <-fired:
		t.Fatal("stopped timer fired")
	case <-time.After(150 * time.Millisecond):
	}
}

func TestAfterFuncPreciseFakeClock(t *testing.T) {
	c := NewFake(time.Unix(0, 0))
	n := 0
	AfterFuncPrecise(c, time.Second, func() { n++ })
	c.Advance(999 * time.Millisecond)
	if n != 0 {
		t.Fatal("fired early on the fake clock")
	}
	c.Advance(time.Millisecond)
	if n != 1 {
		t.Fatalf("fired %d times at the deadline, want 1", n)
	}
}

func TestIsSystem(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Clock
		want bool
	}{
		{"system", System(), true},
		{"fake", NewFake(time.Unix(0, 0)), false},
		{"nil", nil, false},
	} {
		if got := IsSystem(tc.c); got != tc.want {
			t.Errorf("IsSystem(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}
