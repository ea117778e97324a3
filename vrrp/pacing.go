package vrrp

import "time"

// How the election leases the advert pacer (internal/pacer) its periodic
// adverts. The lease is how long the pacer keeps advertising for a Go
// side that has stopped renewing it: a stalled election keeps the
// mastership that long, so it should be a few Master_Down_Intervals;
// but a renewal that comes late because this process was not scheduled
// in time must not lapse it, or a busy machine fails over for nothing.
//
// The numbers, from docs/pacer.md (BenchmarkWakeLateness on a shared
// 2-core VM): a Go timer woke up to about 270 ms late with the Go side
// busy (GC churning a 64 MB heap, every P spinning) on a loaded machine,
// against well under 1 ms when idle. A renewal every quarter lease leaves
// three quarters of the lease for a late one: with a 1 s floor that is
// 750 ms, close to three times the worst lateness measured. Above the
// floor the lease is three Master_Down_Intervals (each at most four
// advert intervals: 3 x interval + a skew under one interval).
const (
	// paceBelow: adverts this often or more are paced. At a second and
	// more a Go timer's wake-ups cost nothing worth saving.
	paceBelow = time.Second
	// paceLeaseFloor is the shortest lease, whatever the interval.
	paceLeaseFloor = time.Second
	// leaseMasterDowns is the lease above the floor, in
	// Master_Down_Intervals.
	leaseMasterDowns = 3
	// renewsPerLease: the lease is renewed this many times per lease.
	renewsPerLease = 4
	// paceRenew is the renewal period at the floor, which holds at every
	// interval up to paceLeaseFloor/(4*leaseMasterDowns), about 83 ms.
	paceRenew = paceLeaseFloor / renewsPerLease
)

// paceLease is the pacer's lease for adverts every interval.
func paceLease(interval time.Duration) time.Duration {
	return max(paceLeaseFloor, leaseMasterDowns*4*interval)
}

// paceRenewal is how often the election renews that lease.
func paceRenewal(interval time.Duration) time.Duration {
	return paceLease(interval) / renewsPerLease
}
