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
