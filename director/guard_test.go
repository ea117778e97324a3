package director

import (
	"testing"
	"time"
)

func TestGuardRepairsOnlyAPersistentMismatch(t *testing.T) {
	type check struct{ electionMaster, claimerMaster, idle, repair bool }
	for _, tc := range []struct {
		name   string
		checks []check
	}{
		{"in step", []check{{true, true, true, false}, {false, false, true, false}, {false, false, false, false}}},
		{"a transition in flight settles", []check{{false, true, false, false}, {false, false, true, false}, {false, true, false, false}, {false, false, true, false}}},
		{"VIPs held by a backup, nothing in flight", []check{{false, true, true, false}, {false, true, true, true}}},
		{"master without VIPs, nothing in flight", []check{{true, false, true, false}, {true, false, true, true}}},
		{"a blip is forgotten", []check{{false, true, true, false}, {false, false, true, false}, {false, true, true, false}, {false, true, true, true}}},
		{"stuck worker: repaired after guardPatience checks", func() []check {
			var cs []check
			for i := 1; i <= guardPatience; i++ {
				cs = append(cs, check{false, true, false, i == guardPatience})
			}
			return append(cs, check{false, true, false, false})
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g guardState
			for i, c := range tc.checks {
				if got := g.observe(c.electionMaster, c.claimerMaster, c.idle); got != c.repair {
					t.Fatalf("check %d (%+v): repair %v, want %v", i+1, c, got, c.repair)
				}
			}
		})
	}
}

// The README promises a check every five advert intervals, 250 ms to 1 s.
func TestGuardInterval(t *testing.T) {
	for _, tc := range []struct{ advert, want time.Duration }{
		{10 * time.Millisecond, 250 * time.Millisecond},
		{100 * time.Millisecond, 500 * time.Millisecond},
		{time.Second, time.Second},
		{3 * time.Second, time.Second},
	} {
		if got := guardInterval(tc.advert); got != tc.want {
			t.Errorf("guardInterval(%v) = %v, want %v", tc.advert, got, tc.want)
		}
	}
}
