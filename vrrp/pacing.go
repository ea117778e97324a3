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
// 2-core VM kept busy by other work): a Go timer, as the renewal is, woke
// up to 350 ms late with the collector churning a 64 MB heap, against
// about a millisecond on a quiet machine. A renewal every quarter lease
// leaves three quarters of the lease for a late one: 750 ms at a 1 s
// floor, twice that. Only a Go side spinning on every P of a machine at
// load 15 was later (2 s); there the pacer itself, without a real-time
// priority, was 360 ms late, ten Master_Down_Intervals at 10 ms adverts,
// so a lapse costs nothing the backup had not already taken. Above the
// floor the lease is three Master_Down_Intervals (each at most four
// advert intervals: 3 x interval + a skew under one interval); at 10 ms
// adverts the floor is about 28 of them, against 83 for the old fixed 3 s.
const (
	// paceBelow: intervals shorter than this are paced. At a second and
	// more a Go timer's wake-ups cost nothing worth saving.
	paceBelow = time.Second
	// paceLeaseFloor is the shortest lease, whatever the interval.
	paceLeaseFloor = time.Second
	// leaseMasterDowns is the lease above the floor, in
	// Master_Down_Intervals.
	leaseMasterDowns = 3
	// renewsPerLease: the lease is renewed this many times per lease.
	renewsPerLease = 4
)

// paceLease is the pacer's lease for adverts every interval.
func paceLease(interval time.Duration) time.Duration {
	return max(paceLeaseFloor, leaseMasterDowns*4*interval)
}

// paceRenewal is how often the election renews that lease.
func paceRenewal(interval time.Duration) time.Duration {
	return paceLease(interval) / renewsPerLease
}
