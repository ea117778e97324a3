package vrrp

import (
	"testing"
	"time"
)

// The lease scales with the interval above a floor; it is renewed four
// times per lease; it outlasts a few Master_Down_Intervals at any
// priority, and leaves a late renewal three quarters of it.
func TestPaceLease(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		interval     time.Duration
		paced        bool
		lease, renew time.Duration
	}{
		{10 * ms, true, time.Second, 250 * ms}, // the floor: was 3 s, renewed every 1 s
		{20 * ms, true, time.Second, 250 * ms},
		{50 * ms, true, time.Second, 250 * ms},
		{100 * ms, true, 1200 * ms, 300 * ms},
		{200 * ms, true, 2400 * ms, 600 * ms},
		{500 * ms, true, 6 * time.Second, 1500 * ms},
		{999 * ms, true, 11988 * ms, 2997 * ms},
		{time.Second, false, 12 * time.Second, 3 * time.Second}, // timer-sent: not used
	} {
		lease, renew := paceLease(tc.interval), paceRenewal(tc.interval)
		if paced := tc.interval < paceBelow; paced != tc.paced || lease != tc.lease || renew != tc.renew {
			t.Errorf("at %v: paced %v lease %v renew %v, want %v %v %v", tc.interval, paced, lease, renew, tc.paced, tc.lease, tc.renew)
		}
		if m := mdi(1, tc.interval); lease < leaseMasterDowns*m {
			t.Errorf("at %v: lease %v under %d Master_Down_Intervals of %v", tc.interval, lease, leaseMasterDowns, m)
		}
		if lease-renew < 750*ms {
			t.Errorf("at %v: a renewal may be only %v late", tc.interval, lease-renew)
		}
	}
}
