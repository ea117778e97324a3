package director

import "testing"

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
