package healthcheck

import "time"

// health is the rise/fall state of one check, HAProxy style: an up server
// goes down after Fall consecutive failures, a down one comes up after
// Rise consecutive passes; a result of the other kind resets the count.
type health struct {
	up      bool
	checked bool // at least one result
	passes  int  // consecutive
	fails   int  // consecutive
	weight  int  // last dynamic weight, or NoWeight
}

func newHealth(initialUp bool) health {
	return health{up: initialUp, weight: NoWeight}
}

// observe applies one result. It reports whether the up/down state
// changed and whether the dynamic weight changed while up.
func (h *health) observe(r Result, rise, fall int) (flipped, reweighted bool) {
	h.checked = true
	if r.Up {
		h.fails = 0
		if h.passes < 1<<30 {
			h.passes++
		}
		if r.Weight != NoWeight && r.Weight != h.weight {
			h.weight = r.Weight
			reweighted = h.up
		}
		if !h.up && h.passes >= rise {
			h.up = true
			return true, false
		}
		return false, reweighted
	}
	h.passes = 0
	if h.fails < 1<<30 {
		h.fails++
	}
	if h.up && h.fails >= fall {
		h.up = false
		return true, false
	}
	return false, false
}

// interval is the wait before the next check (HAProxy's inter, fastinter,
// downinter): fast while the state is changing, down while settled down.
func (h *health) interval(s *Spec) time.Duration {
	switch {
	case h.up && h.fails == 0:
		return s.Interval
	case !h.up && h.passes == 0 && h.checked:
		return s.DownInterval
	}
	return s.FastInterval
}
