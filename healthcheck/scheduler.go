package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
)

// DefaultMaxConcurrent bounds checks in flight: well below the 20,000
// open files a process may have here, with room for the rest of vigil.
const DefaultMaxConcurrent = 4096

// DefaultMaxExec bounds exec checks running at once: forks are dear.
const DefaultMaxExec = 64

// Options configure a Scheduler. The zero value is usable.
type Options struct {
	// Clock drives intervals, check starts and the engine's timeouts;
	// nil means the real clock. Tests inject a clock.Fake.
	Clock clock.Clock
	// MaxConcurrent bounds checks in flight (each holds a socket or a
	// process); default DefaultMaxConcurrent. A due check waits for a
	// free slot, which shows as lateness.
	MaxConcurrent int
	// Spread randomly lengthens or shortens each interval by up to this
	// fraction (HAProxy's spread-checks, as a fraction): 0 means
	// DefaultSpread, a negative value none. The first check of a new
	// check is always placed at random within its first interval.
	Spread float64
	// MaxExec bounds exec checks running at once (each is a process);
	// default DefaultMaxExec. A due exec check beyond it waits a little.
	MaxExec int
	// NewChecker builds the checker of a spec; nil means New. A Checker
	// from here runs on a goroutine of its own per check, bounded by
	// MaxConcurrent (tests inject fakes here).
	NewChecker func(Spec) (Checker, error)
	// Observe, if set, is called on the scheduler's goroutine after every
	// check (for metrics and benchmarks); it must be quick.
	Observe func(Observation)
	// Logger receives state changes at Info; nil means slog.Default().
	Logger *slog.Logger
}

// Change is a change of a check's verdict: up/down, or the weight a
// dynamic check asked for while up.
type Change struct {
	Key  string // Spec.Key(): every real server sharing this check is affected
	Spec Spec   // with defaults applied
	Up   bool
	// Initial marks the first Change of a check added by Set: its initial
	// state, before any check ran.
	Initial bool
	Reason  string // of the result that caused the change
	Passes  int    // consecutive, after the result
	Fails   int    // consecutive, after the result
	Weight  int    // dynamic weight, or NoWeight
	At      time.Time
}

// Status is the state of one check, for `vigil status` and metrics.
type Status struct {
	Key        string
	Spec       Spec // with defaults applied
	Up         bool
	Checked    bool // at least one check has completed
	Passes     int  // consecutive
	Fails      int  // consecutive
	Weight     int  // dynamic weight, or NoWeight
	Last       Result
	LastCheck  time.Time // start of the last completed check
	LastChange time.Time // last up/down change (or when the check was added)
}

// Observation describes one completed check.
type Observation struct {
	Key       string
	Scheduled time.Time // when the check was due
	Started   time.Time // when it actually started
	Result    Result
}

// Scheduler runs checks. Create it with NewScheduler, give it checks with
// Set (any time), run it with Run, and read Changes.
type Scheduler struct {
	opts   Options
	clock  clock.Clock
	log    *slog.Logger
	spread float64

	setMu   sync.Mutex // serializes Set
	mu      sync.Mutex // guards checks, added and the shared fields of check
	checks  map[string]*check
	added   []*check
	kick    chan struct{}
	changes chan Change
	running atomic.Bool
	execs   int // exec checks running (run loop only)

	// How Set and goroutine checks wake the run loop.
	wakeFn func() // guarded by mu
	goMu   sync.Mutex
	goDone []done // results of goroutine checks, guarded by goMu

	// newEngine makes the run loop's engine (tests make it fail).
	newEngine func(clock.Clock) (*engine, error)

	// testIdle, when set by a test, receives the next due time once per
	// idle moment of the run loop (nothing in flight, every change read):
	// tests step the fake clock event by event.
	testIdle chan time.Time
}

type check struct {
	key     string
	spec    Spec
	checker Checker
	removed atomic.Bool

	// Written by the run loop under Scheduler.mu; the loop reads them
	// without the lock (it is the only writer).
	h          health
	last       Result
	lastCheck  time.Time
	lastChange time.Time

	// Run loop only.
	due time.Time
	idx int
}

type done struct {
	c         *check
	scheduled time.Time
	started   time.Time
	r         Result
}

// NewScheduler returns a Scheduler with no checks.
func NewScheduler(opts Options) *Scheduler {
	if opts.Clock == nil {
		opts.Clock = clock.System()
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = DefaultMaxConcurrent
	}
	if opts.MaxExec <= 0 {
		opts.MaxExec = DefaultMaxExec
	}
	if opts.NewChecker == nil {
		opts.NewChecker = New
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	spread := opts.Spread
	switch {
	case spread == 0:
		spread = DefaultSpread
	case spread < 0:
		spread = 0
	case spread > 0.5:
		spread = 0.5
	}
	return &Scheduler{
		opts:      opts,
		clock:     opts.Clock,
		log:       opts.Logger,
		spread:    spread,
		checks:    make(map[string]*check),
		kick:      make(chan struct{}, 1),
		changes:   make(chan Change),
		newEngine: newEngine,
	}
}

// Set replaces the list of checks. Specs with equal keys collapse into one
// check. Checks whose key is unchanged keep running with their state;
// new ones start in their initial state; missing ones stop. On an invalid
// spec Set returns an error naming it and changes nothing.
func (s *Scheduler) Set(specs []Spec) error {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	want := make(map[string]Spec, len(specs))
	for i, sp := range specs {
		if err := sp.Validate(); err != nil {
			return fmt.Errorf("check %d: %w", i, err)
		}
		k := sp.Key()
		if _, dup := want[k]; !dup {
			want[k] = sp.WithDefaults()
		}
	}
	s.mu.Lock()
	var fresh []*check
	for k, sp := range want {
		if _, ok := s.checks[k]; ok {
			continue
		}
		fresh = append(fresh, &check{key: k, spec: sp})
	}
	s.mu.Unlock()
	for _, c := range fresh {
		ch, err := s.opts.NewChecker(c.spec)
		if err != nil {
			return fmt.Errorf("%s check of %s: %w", c.spec.Kind, c.spec.Target, err)
		}
		c.checker = ch
		c.h = newHealth(c.spec.InitialUp)
	}
	s.mu.Lock()
	for k, c := range s.checks {
		if _, ok := want[k]; !ok {
			c.removed.Store(true)
			delete(s.checks, k)
		}
	}
	for _, c := range fresh {
		s.checks[c.key] = c
		s.added = append(s.added, c)
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
	if s.wakeFn != nil {
		s.wakeFn()
	}
	s.mu.Unlock()
	return nil
}

// Changes delivers every Change in order, starting with the initial state
// of each added check. Changes queue inside the scheduler until read, so a
// slow reader delays nothing; read them.
func (s *Scheduler) Changes() <-chan Change { return s.changes }

// Snapshot returns the state of every check, sorted by key.
func (s *Scheduler) Snapshot() []Status {
	s.mu.Lock()
	out := make([]Status, 0, len(s.checks))
	for _, c := range s.checks {
		out = append(out, Status{
			Key: c.key, Spec: c.spec, Up: c.h.up, Checked: c.h.checked,
			Passes: c.h.passes, Fails: c.h.fails, Weight: c.h.weight,
			Last: c.last, LastCheck: c.lastCheck, LastChange: c.lastChange,
		})
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Run runs checks until ctx ends, then waits for the checks in flight
// (each ends by its deadline, and sooner since ctx is cancelled) and
// returns nil. It may be called once. It returns an error only if the
// event loop fails (epoll_wait).
//
// TCP and plain HTTP checks run on an epoll engine on Run's goroutine (see
// runEngine); other kinds, and injected checkers, on a goroutine each. If
// the engine cannot be made (no file descriptors left), Run says so and
// tries again every engineRetry, so checks start once the shortage ends.
func (s *Scheduler) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("healthcheck: Scheduler.Run called twice")
	}
	for failed := false; ; failed = true {
		e, err := s.newEngine(s.clock)
		if err == nil {
			if failed {
				s.log.Info("health checks started")
			}
			return s.runEngine(ctx, e)
		}
		if !failed {
			s.log.Warn("health checks cannot start; retrying", "every", engineRetry, "error", err)
		}
		retry := make(chan struct{})
		t := s.clock.AfterFunc(engineRetry, func() { close(retry) })
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-retry:
		}
	}
}

// engineRetry is how often Run tries again to make its engine.
const engineRetry = time.Second

// admit schedules the checks added by Set.
func (s *Scheduler) admit(due *checkHeap, pending *[]Change) {
	s.mu.Lock()
	added := s.added
	s.added = nil
	now := s.clock.Now()
	for _, c := range added {
		c.lastChange = now
	}
	s.mu.Unlock()
	for _, c := range added {
		if c.removed.Load() {
			continue
		}
		// Spread first checks over one interval, so a start or a reload
		// does not fire thousands of checks at once.
		c.due = now.Add(c.spec.Warmup + time.Duration(rand.Float64()*float64(c.spec.Interval)))
		due.push(c)
		reason := "initial state: down until proven up"
		if c.spec.InitialUp {
			reason = "initial state: up"
		}
		*pending = append(*pending, Change{Key: c.key, Spec: c.spec, Up: c.spec.InitialUp, Initial: true,
			Reason: reason, Weight: NoWeight, At: now})
	}
}

// deferExec counts a due exec check in, or, when MaxExec are running,
// puts it back a little later and reports true.
func (s *Scheduler) deferExec(c *check, now time.Time, due *checkHeap) bool {
	if c.spec.Kind != KindExec {
		return false
	}
	if s.execs >= s.opts.MaxExec {
		c.due = now.Add(10 * time.Millisecond)
		due.push(c)
		return true
	}
	s.execs++
	return false
}

// complete records a result and schedules the next check.
func (s *Scheduler) complete(d done, due *checkHeap, pending *[]Change) {
	c := d.c
	if c.spec.Kind == KindExec {
		s.execs--
	}
	if c.removed.Load() {
		return
	}
	now := s.clock.Now()
	sp := &c.spec
	if d.r.Local && !c.last.Local {
		s.log.Warn("health check could not run; not counted", "check", sp.Kind, "target", sp.Target, "reason", d.r.Reason)
	}
	s.mu.Lock()
	var flipped, reweighted bool
	if !d.r.Local {
		flipped, reweighted = c.h.observe(d.r, sp.Rise, sp.Fall)
	}
	c.last = d.r
	c.lastCheck = d.started
	if flipped {
		c.lastChange = now
	}
	s.mu.Unlock()
	if flipped || reweighted {
		ch := Change{Key: c.key, Spec: c.spec, Up: c.h.up, Reason: d.r.Reason,
			Passes: c.h.passes, Fails: c.h.fails, Weight: c.h.weight, At: now}
		*pending = append(*pending, ch)
		if flipped {
			state := "down"
			if ch.Up {
				state = "up"
			}
			s.log.Info("health check changed", "check", sp.Kind, "target", sp.Target, "state", state,
				"reason", d.r.Reason, "passes", ch.Passes, "fails", ch.Fails)
		}
	}
	// Fixed rate from the scheduled time, so lateness does not accumulate;
	// a check that overran its interval runs again in the next round of
	// the loop, never in this one (a check failing at once must not spin).
	next := d.scheduled.Add(s.jitter(c.h.interval(sp)))
	if !next.After(now) {
		next = now.Add(time.Nanosecond)
	}
	c.due = next
	due.push(c)
	if s.opts.Observe != nil {
		s.opts.Observe(Observation{Key: c.key, Scheduled: d.scheduled, Started: d.started, Result: d.r})
	}
}

func (s *Scheduler) jitter(d time.Duration) time.Duration {
	if s.spread == 0 {
		return d
	}
	return time.Duration(float64(d) * (1 + s.spread*(2*rand.Float64()-1)))
}

// runCheck runs one check on its own goroutine; a panic is a failure.
func (s *Scheduler) runCheck(ctx context.Context, c *check, scheduled time.Time, deliver func(done)) {
	started := s.clock.Now()
	deadline := time.Now().Add(c.spec.Timeout)
	var r Result
	func() {
		defer func() {
			if p := recover(); p != nil {
				r = Result{Reason: fmt.Sprintf("check panicked: %v", p), Weight: NoWeight}
			}
		}()
		r = c.checker.Check(ctx, deadline)
	}()
	deliver(done{c: c, scheduled: scheduled, started: started, r: r})
}

// checkHeap is a min-heap of checks by due time.
type checkHeap = timeHeap[*check]

func (c *check) heapKey() time.Time { return c.due }
func (c *check) setHeapIndex(i int) { c.idx = i }
