package cluster

import (
	"slices"
	"strings"
	"time"
)

// The detectors below are pure: they take the current views and the time
// and return the events to raise, so they are tested without sleeping.

// driftDetector tracks, per peer, whether its config digest differs from
// ours, and raises an event once per change of the pair of digests.
type driftDetector struct {
	reports map[string]DriftReport // by peer name
}

// peerDigest is one peer's last published digest ("" = unknown).
type peerDigest struct {
	Peer   Peer
	Digest string
}

// update compares local with every peer's last known digest. Peers no
// longer listed lose their report without an event.
func (d *driftDetector) update(now time.Time, local string, peers []peerDigest) []Event {
	if d.reports == nil {
		d.reports = make(map[string]DriftReport)
	}
	var events []Event
	seen := make(map[string]bool, len(peers))
	for _, p := range peers {
		seen[p.Peer.Name] = true
		if local == "" || p.Digest == "" {
			continue // no verdict without both digests
		}
		old, had := d.reports[p.Peer.Name]
		switch {
		case local != p.Digest:
			if had && old.LocalDigest == local && old.PeerDigest == p.Digest {
				continue
			}
			d.reports[p.Peer.Name] = DriftReport{Peer: p.Peer, LocalDigest: local, PeerDigest: p.Digest, Since: now}
			events = append(events, Event{Kind: Drift, Time: now, Peer: p.Peer, LocalDigest: local, PeerDigest: p.Digest})
		case had:
			delete(d.reports, p.Peer.Name)
			events = append(events, Event{Kind: DriftCleared, Time: now, Peer: p.Peer, LocalDigest: local, PeerDigest: p.Digest})
		}
	}
	for name := range d.reports {
		if !seen[name] {
			delete(d.reports, name)
		}
	}
	return events
}

func (d *driftDetector) list() []DriftReport {
	out := make([]DriftReport, 0, len(d.reports))
	for _, r := range d.reports {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b DriftReport) int { return strings.Compare(a.Peer.Name, b.Peer.Name) })
	return out
}

// masterClaim is one director claiming master for an instance.
type masterClaim struct {
	Node     string
	Interval time.Duration // its advert interval; 0 = default
}

// dualMasterFloor is the shortest overlap of master claims reported as a
// dual master. A preemption overlaps the claims for a moment in the VRRP
// world (make-before-break), and for longer in the channel's view: a
// restarted director learns its peers' current states by its join and
// their pushes, which took up to about 160 ms in the netns lab; a claim
// seen there is stale, not a second master.
const dualMasterFloor = time.Second

// dualMasterDetector raises DualMaster when two or more directors claim
// master for one instance for longer than a preemption transient: two
// advert intervals (the largest among the claimants), and at least
// dualMasterFloor. It raises DualMasterCleared when at most one claims it
// again. Shorter overlaps are counted as transients, not alarmed.
type dualMasterDetector struct {
	instances  map[string]*dualMasterState
	transients uint64
}

// dualMasterThreshold is how long claims of the given largest advert
// interval must overlap to be a dual master.
func dualMasterThreshold(interval time.Duration) time.Duration {
	return max(2*interval, dualMasterFloor)
}

type dualMasterState struct {
	since     time.Time
	threshold time.Duration
	masters   []string
	raised    bool
}

// update takes every instance's current claims (local and alive peers).
func (d *dualMasterDetector) update(now time.Time, claims map[string][]masterClaim, def time.Duration) []Event {
	if d.instances == nil {
		d.instances = make(map[string]*dualMasterState)
	}
	var events []Event
	for inst, cs := range claims {
		if len(cs) < 2 {
			continue
		}
		masters := make([]string, 0, len(cs))
		threshold := time.Duration(0)
		for _, c := range cs {
			masters = append(masters, c.Node)
			iv := c.Interval
			if iv <= 0 {
				iv = def
			}
			threshold = max(threshold, dualMasterThreshold(iv))
		}
		slices.Sort(masters)
		st := d.instances[inst]
		if st == nil {
			st = &dualMasterState{since: now}
			d.instances[inst] = st
		}
		st.masters, st.threshold = masters, threshold
		if !st.raised && now.Sub(st.since) > threshold {
			st.raised = true
			events = append(events, Event{Kind: DualMaster, Time: now, Instance: inst, Masters: slices.Clone(masters)})
		}
	}
	for inst, st := range d.instances {
		if len(claims[inst]) >= 2 {
			continue
		}
		delete(d.instances, inst)
		if st.raised {
			events = append(events, Event{Kind: DualMasterCleared, Time: now, Instance: inst})
		} else {
			d.transients++
		}
	}
	slices.SortFunc(events, func(a, b Event) int { return strings.Compare(a.Instance, b.Instance) })
	return events
}

// nextDeadline is the earliest moment a pending claim (two masters, not
// yet raised) crosses its threshold; ok is false when none is pending.
func (d *dualMasterDetector) nextDeadline() (next time.Time, ok bool) {
	for _, st := range d.instances {
		if st.raised {
			continue
		}
		if t := st.since.Add(st.threshold); !ok || t.Before(next) {
			next, ok = t, true
		}
	}
	return next, ok
}

func (d *dualMasterDetector) list() []DualMasterReport {
	var out []DualMasterReport
	for inst, st := range d.instances {
		if st.raised {
			out = append(out, DualMasterReport{Instance: inst, Masters: slices.Clone(st.masters), Since: st.since})
		}
	}
	slices.SortFunc(out, func(a, b DualMasterReport) int { return strings.Compare(a.Instance, b.Instance) })
	return out
}
