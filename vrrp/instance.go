package vrrp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
	"github.com/vigil-lb/vigil/internal/pacer"
)

// State is an instance's VRRP state.
type State int

// States of RFC 5798 section 6.4, plus Fault (a tracked interface or script
// is down: the instance neither sends nor takes over).
const (
	Initialize State = iota
	Backup
	Master
	Fault
)

func (s State) String() string {
	switch s {
	case Initialize:
		return "INIT"
	case Backup:
		return "BACKUP"
	case Master:
		return "MASTER"
	case Fault:
		return "FAULT"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Config describes one virtual router. The zero value of every optional
// field is the keepalived / RFC default.
type Config struct {
	Name     string
	VRID     uint8         // 1..255
	Version  int           // 3 (default) or 2 (IPv4 only, whole-second intervals)
	Priority uint8         // 1..255, default 100; 255 = address owner
	Interval time.Duration // advert interval, default 1s
	// NoPreempt keeps a lower-priority master in place (keepalived
	// nopreempt). By default a higher-priority backup preempts.
	NoPreempt bool
	// PreemptDelay: a backup that hears a lower-priority master waits this
	// long before preempting it.
	PreemptDelay time.Duration
	// StartupDelay: after Run starts, the instance neither preempts nor
	// becomes master for lack of adverts during this time, so a node whose
	// link is still coming up does not grab the VIPs.
	StartupDelay time.Duration
	// DownAdverts is how many advert intervals a backup waits before the
	// skew (RFC: 3, the default; keepalived down_timer_adverts 1..100):
	// more rides out lossy links and short stalls at the cost of a slower
	// failover.
	DownAdverts int
	// BeforeMaster, if set, is called on becoming master before the first
	// advert leaves. The daemon claims and announces the VIPs here: the
	// advert makes the old master drop them at once, and clients must
	// already be sent to us by then, or a preemption loses the requests
	// of that gap. It must be quick; a panic in it is logged and survived.
	BeforeMaster func()
	// LeftMaster, if set, is called when the instance stops being master,
	// in the step itself, before anything else it sends: the daemon stops
	// announcing the VIPs there, so no gratuitous ARP of ours follows the
	// new master's while the release is still on its way. Quick, like
	// BeforeMaster.
	LeftMaster func()
	VIPs       []netip.Addr // sent in adverts (keepalived checks them)
	AuthPass   string       // v2 simple-text password (auth_type PASS), at most 8 bytes
	Logger     *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Version == 0 {
		c.Version = 3
	}
	if c.Priority == 0 {
		c.Priority = 100
	}
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	if c.DownAdverts == 0 {
		c.DownAdverts = 3
	}
	if c.Name == "" {
		c.Name = fmt.Sprintf("vrid%d", c.VRID)
	}
	var errs []error
	if c.VRID == 0 {
		errs = append(errs, errors.New("vrid must be 1..255"))
	}
	switch c.Version {
	case 3:
		if c.Interval < 10*time.Millisecond || c.Interval > maxV3Interval || c.Interval%(10*time.Millisecond) != 0 {
			errs = append(errs, fmt.Errorf("interval %v: VRRPv3 needs a multiple of 10ms in 10ms..40.95s", c.Interval))
		}
		if c.AuthPass != "" {
			errs = append(errs, errors.New("authentication exists only in VRRPv2"))
		}
	case 2:
		if c.Interval < time.Second || c.Interval > maxV2Interval || c.Interval%time.Second != 0 {
			errs = append(errs, fmt.Errorf("interval %v: VRRPv2 needs whole seconds 1..255", c.Interval))
		}
	default:
		errs = append(errs, fmt.Errorf("version %d: want 2 or 3", c.Version))
	}
	if len(c.AuthPass) > 8 {
		errs = append(errs, errors.New("auth password longer than 8 bytes"))
	}
	if len(c.VIPs) > 255 {
		errs = append(errs, errors.New("more than 255 VIPs"))
	}
	if c.DownAdverts < 1 || c.DownAdverts > 100 {
		errs = append(errs, fmt.Errorf("down adverts %d: want 1..100", c.DownAdverts))
	}
	if c.PreemptDelay < 0 || c.StartupDelay < 0 {
		errs = append(errs, errors.New("negative delay"))
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("vrrp instance %s: %w", c.Name, err)
	}
	return nil
}

// EventKind tells what an Event reports.
type EventKind int

const (
	// Transition: the state changed from From to To.
	Transition EventKind = iota
	// Reannounce: we are master and heard a lower-priority master (a
	// healed split brain); announce the VIPs again (GARP/NA) so caches
	// that learnt the other node's MAC are corrected.
	Reannounce
	// Successor: after Resign, the first advert of another master
	// (priority above 0), whatever its priority; Peer sent it. The daemon
	// keeps the VIPs until then, so the new master has them before the
	// old one lets go (make-before-break).
	Successor

	// faultsChanged goes to sync-group hooks only.
	faultsChanged EventKind = 100
)

func (k EventKind) String() string {
	switch k {
	case Reannounce:
		return "reannounce"
	case Successor:
		return "successor"
	}
	return "transition"
}

// Event is published to the daemon on every state change and re-announce.
type Event struct {
	Kind           EventKind
	Instance       string
	VRID           uint8
	From, To       State
	Reason         string
	Priority       uint8      // our effective priority
	MasterAddr     netip.Addr // the master: us when To is Master, else the last one heard
	MasterPriority uint8
	// Peer sent the advert that caused the event, if one did: for
	// Reannounce the lower-priority master heard, for a step-down the
	// higher-priority one.
	Peer netip.Addr
	Time time.Time
	// Resigned marks a Master->Backup transition of a planned handover
	// (Resign): a priority-0 advert went out, and a Successor event
	// follows when the new master is heard.
	Resigned bool

	// forcedBy is the sync group that forced this transition (force), so
	// the group does not propagate its own transitions back.
	forcedBy *SyncGroup
}

// Counters are an instance's running totals.
type Counters struct {
	AdvertsSent     uint64
	AdvertsReceived uint64 // valid adverts for our VRID
	SendErrors      uint64
	Transitions     uint64
	Reannounces     uint64
	// AddrMismatch counts valid adverts whose address list differs from
	// our VIPs. They are used (RFC 5798 says MAY check), but keepalived
	// drops such adverts: a mixed site must list the same VIPs.
	AddrMismatch uint64
	// LateTimers counts master down timers that fired late (the process
	// was not scheduled) and were given a short grace for queued adverts.
	LateTimers uint64
	// LapsedLeases counts times the advert pacer stopped because this
	// process did not renew its lease in time (it was not scheduled).
	LapsedLeases uint64
	// AnswersSkipped counts adverts of other masters (lower priority or
	// resigning) not answered because we had answered one less than an
	// advert interval before.
	AnswersSkipped uint64
	Dropped        map[DropReason]uint64 // invalid packets by reason (non-zero only)
}

// Status is a snapshot of an instance.
type Status struct {
	Name           string
	VRID           uint8
	State          State
	Since          time.Time
	Priority       uint8 // effective (after tracking)
	MasterAddr     netip.Addr
	MasterPriority uint8
	MasterInterval time.Duration // learnt from the master's adverts (v3)
	Faults         []string
	// PreemptHolds name what keeps this backup from preempting a
	// lower-priority master right now (SetPreemptHold).
	PreemptHolds []string
	Counters     Counters
}

// Instance runs one virtual router.
type Instance struct {
	cfg     Config
	tr      Transport
	clk     clock.Clock
	log     *slog.Logger
	onEvent func(Event)
	local   netip.Addr
	// pc sends a master's periodic adverts off the Go scheduler, when the
	// transport can (RawTransport with cgo) and the interval is below
	// paceBelow; nil means the advert timer does it.
	pc advertPacer

	// stepMu orders the steps: one step decides under mu, then applies
	// its effects (BeforeMaster, sends, the advert schedule, events)
	// before the next step starts, so effects leave in the order the
	// steps were taken. mu alone guards the fields, for readers.
	stepMu sync.Mutex

	mu             sync.Mutex
	state          State
	since          time.Time
	prio           uint8
	masterInterval time.Duration
	masterAddr     netip.Addr
	masterPrio     uint8
	timer          clock.Timer
	paced          bool // pc is sending our adverts
	pacedErrors    uint64
	timerGen       uint64
	timerDue       time.Time // when the pending timer should fire
	inGrace        bool      // the pending down timer is a late-timer grace
	downReason     string    // why the pending down timer would make us master
	faults         map[string]bool
	weights        map[string]int
	holds          map[string]bool // SetPreemptHold: reasons not to preempt now
	awaitSuccessor bool            // resigned; the next other master's advert is a Successor
	resigning      bool            // the transition being made is a resignation
	withdrawn      bool            // Withdraw: stays Backup until stopped
	hooks          []func(Event)   // sync groups: called inline, after the lock
	startedAt      time.Time
	lowerSince     time.Time // first advert of the current lower-priority master (preempt delay)
	lastReannounce time.Time
	lastLower      time.Time  // last advert of a lower-priority master, as master
	lastAnswer     time.Time  // last advert sent to answer another master, as master
	forcing        *SyncGroup // the group whose force step is running
	running        bool
	done           chan struct{}
	c              Counters
	dropped        [numDropReasons]uint64

	evmu    sync.Mutex
	evq     []Event
	evWake  chan struct{}
	evAsync atomic.Bool // set by Run; unit tests drive start() and get events inline
}

// NewInstance checks cfg and returns an instance that will use tr to talk
// to its peers and clk for its timers (clock.System() in production).
// onEvent receives every Event, in order, from a goroutine of its own: it
// must not block for long, and a panic in it is logged and survived.
func NewInstance(cfg Config, tr Transport, clk clock.Clock, onEvent func(Event)) (*Instance, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if tr == nil || clk == nil {
		return nil, fmt.Errorf("vrrp instance %s: transport and clock are required", cfg.Name)
	}
	local := tr.LocalAddr()
	if !local.IsValid() {
		return nil, fmt.Errorf("vrrp instance %s: transport has no local address", cfg.Name)
	}
	if cfg.Version == 2 && !local.Unmap().Is4() {
		return nil, fmt.Errorf("vrrp instance %s: VRRPv2 is IPv4 only", cfg.Name)
	}
	for _, v := range cfg.VIPs {
		if v.Unmap().Is4() != local.Unmap().Is4() {
			return nil, fmt.Errorf("vrrp instance %s: VIP %s is not of the family of %s", cfg.Name, v, local)
		}
	}
	if onEvent == nil {
		onEvent = func(Event) {}
	}
	in := &Instance{
		cfg: cfg, tr: tr, clk: clk, onEvent: onEvent, local: local.Unmap(),
		log:     cfg.Logger.With("instance", cfg.Name, "vrid", cfg.VRID),
		prio:    cfg.Priority,
		faults:  map[string]bool{},
		weights: map[string]int{},
		holds:   map[string]bool{},
		evWake:  make(chan struct{}, 1),
	}
	in.masterInterval = cfg.Interval
	in.c.Dropped = nil
	if pc, ok := tr.(advertPacer); ok && cfg.Interval < paceBelow {
		in.pc = pc
	}
	return in, nil
}

// advertPacer is a Transport that can send a master's periodic adverts
// from a thread of its own (see internal/pacer for why).
type advertPacer interface {
	// Pace sends a every interval, the first an interval from now, until
	// Unpace, another Pace, or lease passes without Renew.
	Pace(a Advert, interval, lease time.Duration) error
	// Renew extends the lease; false means the pacer is not sending.
	Renew(lease time.Duration) bool
	// Unpace stops; when it returns no paced advert will leave.
	Unpace()
	PacedStats() pacer.Stats
}

// Run starts the election (Initialize -> Backup, or Master for priority
// 255) and runs it until ctx is done or Stop is called. Cancelling ctx
// stops silently, as a crash would (no priority-0 advert): use Stop for a
// graceful handover. Run returns after the last event was delivered.
func (in *Instance) Run(ctx context.Context) error {
	in.evAsync.Store(true)
	dispatched := make(chan struct{})
	stopDispatch := make(chan struct{})
	go func() { defer close(dispatched); in.dispatch(stopDispatch) }()
	if err := in.start(); err != nil {
		close(stopDispatch)
		<-dispatched
		return err
	}
	select {
	case <-ctx.Done():
		in.halt("context done")
	case <-in.done:
	}
	close(stopDispatch)
	<-dispatched
	return nil
}

// start enters Initialize and takes the Startup event.
func (in *Instance) start() error {
	var err error
	in.step(func(fx *effects) {
		if in.running || in.done != nil {
			err = fmt.Errorf("vrrp instance %s: already started", in.cfg.Name)
			return
		}
		in.running = true
		in.done = make(chan struct{})
		in.startedAt = in.clk.Now()
		in.since = in.startedAt
		in.startup(fx, "startup")
	})
	if err == nil {
		in.tr.SetHandler(in.receive)
	}
	return err
}

// Stop hands over gracefully: a master sends a priority-0 advert (so a
// backup takes over after Skew_Time), then the instance stops and Run
// returns. It returns the send error, if any.
func (in *Instance) Stop(ctx context.Context) error {
	err := in.step(func(fx *effects) {
		if !in.running {
			return
		}
		if in.state == Master {
			fx.send = append(fx.send, in.advert(0))
		}
		in.shutdown(fx, "stopped")
	})
	if ctx.Err() != nil && err == nil {
		err = ctx.Err()
	}
	return err
}

// halt stops without a priority-0 advert.
func (in *Instance) halt(reason string) {
	in.step(func(fx *effects) {
		if in.running {
			in.shutdown(fx, reason)
		}
	})
}

func (in *Instance) shutdown(fx *effects, reason string) {
	in.cancelTimer()
	in.transition(fx, Initialize, reason, netip.Addr{})
	in.running = false
	close(in.done)
}

// SetPriority changes the configured (base) priority, 1..254; an address
// owner (255) keeps 255. The effective priority is the base plus the
// tracking weights (SetWeight), clamped to 1..254. A master announces a new
// effective priority at once so a better backup can preempt without delay.
func (in *Instance) SetPriority(p uint8) {
	in.step(func(fx *effects) {
		if in.cfg.Priority != 255 {
			in.cfg.Priority = min(max(p, 1), 254)
		}
		in.reprioritize(fx)
	})
}

// SetWeight sets the priority adjustment of one tracker (by name); 0
// removes it. Trackers never move an address owner (255).
func (in *Instance) SetWeight(name string, delta int) {
	in.step(func(fx *effects) {
		if delta == 0 {
			delete(in.weights, name)
		} else {
			in.weights[name] = delta
		}
		in.reprioritize(fx)
	})
}

// reprioritize recomputes the effective priority.
func (in *Instance) reprioritize(fx *effects) {
	p := int(in.cfg.Priority)
	if p != 255 {
		for _, w := range in.weights {
			p += w
		}
		p = min(max(p, 1), 254)
	}
	if uint8(p) == in.prio {
		return
	}
	in.log.Info("priority changed", "from", in.prio, "to", p)
	in.prio = uint8(p)
	if in.running && in.state == Master {
		in.advertiseNow(fx)
	}
}

// SetFault raises (on=true) or clears a fault named by reason (an
// interface or a script). While any fault is raised the instance is in
// Fault: a master first resigns with a priority-0 advert.
func (in *Instance) SetFault(reason string, on bool) {
	in.step(func(fx *effects) {
		if in.faults[reason] == on {
			return
		}
		if on {
			in.faults[reason] = true
		} else {
			delete(in.faults, reason)
		}
		fx.events = append(fx.events, Event{Kind: faultsChanged, Instance: in.cfg.Name, VRID: in.cfg.VRID, From: in.state, To: in.state, Reason: reason})
		if !in.running {
			return
		}
		switch {
		case len(in.faults) > 0 && in.state != Fault:
			if in.state == Master {
				fx.send = append(fx.send, in.advert(0))
			}
			in.cancelTimer()
			in.transition(fx, Fault, "fault: "+reason, netip.Addr{})
		case len(in.faults) == 0 && in.state == Fault:
			in.startup(fx, "fault cleared: "+reason)
		}
	})
}

// Resign steps down from Master for a planned handover: a priority-0
// advert, so the best backup takes over after its Skew_Time (RFC 5798,
// as on shutdown), and then Backup, not Fault: no notify_fault runs and
// a sync group follows as it does for any step-down. The Transition
// event has Resigned set, and the first advert of another master heard
// afterwards is a Successor event, so the daemon can keep the VIPs until
// the new master has them. Resign reports whether the instance was
// master. The caller lowers the priority first (SetPriority) when the
// instance must not take mastership back.
func (in *Instance) Resign(reason string) bool {
	was := false
	in.step(func(fx *effects) {
		if !in.running || in.state != Master {
			return
		}
		was = true
		in.resign(fx, reason)
	})
	return was
}

// Withdraw is Resign for a director that is stopping: it stays Backup
// whatever it hears or does not hear (no down timer), so it cannot take
// the VIPs back while its successor is still taking over; it still
// reports the Successor.
func (in *Instance) Withdraw(reason string) bool {
	was := false
	in.step(func(fx *effects) {
		if !in.running || in.state != Master {
			return
		}
		was = true
		in.resign(fx, reason)
		in.withdrawn = true
		in.cancelTimer()
	})
	return was
}

// resign is Resign's step (also a sync group's, for its other members).
func (in *Instance) resign(fx *effects, reason string) {
	fx.send = append(fx.send, in.advert(0))
	in.masterAddr, in.masterPrio = netip.Addr{}, 0
	in.masterInterval = in.cfg.Interval
	in.resigning = true
	in.becomeBackup(fx, reason, netip.Addr{})
	in.resigning = false
	in.awaitSuccessor = true
}

// SetPreemptHold raises (on=true) or clears a reason not to preempt: while
// any is raised, a backup takes a lower-priority master's adverts as it
// does with preempt off, so it does not take mastership back; it still
// takes over a master that goes silent or resigns. The daemon holds
// preemption while a returning director receives the connections it
// would otherwise reset.
func (in *Instance) SetPreemptHold(reason string, on bool) {
	in.step(func(fx *effects) {
		if on {
			in.holds[reason] = true
		} else {
			delete(in.holds, reason)
		}
	})
}

// State is the current state.
func (in *Instance) State() State {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.state
}

// Status is a snapshot of the instance.
func (in *Instance) Status() Status {
	in.mu.Lock()
	defer in.mu.Unlock()
	s := Status{
		Name: in.cfg.Name, VRID: in.cfg.VRID, State: in.state, Since: in.since,
		Priority: in.prio, MasterAddr: in.masterAddr, MasterPriority: in.masterPrio,
		MasterInterval: in.masterInterval, Counters: in.c,
	}
	if in.pc != nil {
		ps := in.pc.PacedStats()
		s.Counters.AdvertsSent += ps.Sent
		s.Counters.SendErrors += ps.Errors
	}
	if in.state == Master {
		s.MasterAddr, s.MasterPriority = in.local, in.prio
	}
	s.Faults = slices.Sorted(maps.Keys(in.faults))
	s.PreemptHolds = slices.Sorted(maps.Keys(in.holds))
	s.Counters.Dropped = map[DropReason]uint64{}
	for r, n := range in.dropped {
		if n > 0 {
			s.Counters.Dropped[DropReason(r)] = n
		}
	}
	return s
}

// effects are what a step decided to do once mu is released.
type effects struct {
	master bool     // became master: BeforeMaster runs before anything else
	left   bool     // stopped being master: LeftMaster runs before anything else
	send   []Advert // sent in order, after BeforeMaster
	// schedule (re)starts the periodic adverts after the sends: a new
	// master's first periodic advert must not leave before BeforeMaster
	// has claimed the VIPs, however long that takes.
	schedule bool
	events   []Event
}

// step is the one way the election moves: f decides under mu (and may
// only record effects, never act on them), then the effects are applied,
// all under stepMu so that the effects of one step are out before the
// next step decides. That order is what keeps the VIPs off a backup: a
// step-down that races a takeover is applied after the takeover's
// BeforeMaster, and its events are queued after the takeover's.
// Sync-group hooks run last, outside stepMu, since they step the other
// members and may step this one.
func (in *Instance) step(f func(fx *effects)) error {
	var fx effects
	in.stepMu.Lock()
	in.mu.Lock()
	f(&fx)
	in.mu.Unlock()
	err := in.apply(&fx)
	in.stepMu.Unlock()
	in.runHooks(fx.events)
	return err
}

// apply carries out a step's effects (under stepMu).
func (in *Instance) apply(fx *effects) error {
	var errs []error
	if fx.left && in.cfg.LeftMaster != nil {
		in.safely(func(Event) { in.cfg.LeftMaster() }, Event{})
	}
	if fx.master && in.cfg.BeforeMaster != nil {
		in.safely(func(Event) { in.cfg.BeforeMaster() }, Event{})
	}
	for _, a := range fx.send {
		err := in.tr.Send(a)
		in.mu.Lock()
		if err != nil {
			in.c.SendErrors++
		} else {
			in.c.AdvertsSent++
		}
		in.mu.Unlock()
		if err != nil {
			in.log.Warn("send advert", "error", err)
			errs = append(errs, fmt.Errorf("send advert of %s: %w", in.cfg.Name, err))
		}
	}
	if fx.schedule {
		in.mu.Lock()
		if in.running && in.state == Master {
			in.scheduleAdverts()
		}
		in.mu.Unlock()
	}
	in.publish(fx.events)
	return errors.Join(errs...)
}

// publish queues events for onEvent (faultsChanged is for hooks only).
func (in *Instance) publish(events []Event) {
	pub := make([]Event, 0, len(events))
	for _, ev := range events {
		if ev.Kind != faultsChanged {
			pub = append(pub, ev)
		}
	}
	if len(pub) == 0 {
		return
	}
	if !in.evAsync.Load() {
		for _, ev := range pub {
			in.deliver(ev)
		}
		return
	}
	in.evmu.Lock()
	in.evq = append(in.evq, pub...)
	if len(in.evq) > 1000 {
		in.log.Warn("event consumer is slow", "queued", len(in.evq))
	}
	in.evmu.Unlock()
	select {
	case in.evWake <- struct{}{}:
	default:
	}
}

// runHooks gives a step's events to the sync-group hooks.
func (in *Instance) runHooks(events []Event) {
	if len(events) == 0 {
		return
	}
	in.mu.Lock()
	hooks := in.hooks
	in.mu.Unlock()
	for _, h := range hooks {
		for _, ev := range events {
			in.safely(h, ev)
		}
	}
}

// dispatch delivers queued events until stop is closed and the queue is empty.
func (in *Instance) dispatch(stop <-chan struct{}) {
	for {
		in.evmu.Lock()
		q := in.evq
		in.evq = nil
		in.evmu.Unlock()
		for _, ev := range q {
			in.deliver(ev)
		}
		if len(q) > 0 {
			continue
		}
		select {
		case <-in.evWake:
		case <-stop:
			in.evmu.Lock()
			empty := len(in.evq) == 0
			in.evmu.Unlock()
			if empty {
				return
			}
		}
	}
}

func (in *Instance) deliver(ev Event) { in.safely(in.onEvent, ev) }

func (in *Instance) safely(f func(Event), ev Event) {
	defer func() {
		if r := recover(); r != nil {
			in.log.Error("event callback panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	f(ev)
}

// force moves a running Backup to Master or a Master to Backup on behalf
// of sync group g; other states are left alone. resign makes a step-down
// a resignation (Resign), as the member's that the group follows was.
func (in *Instance) force(g *SyncGroup, to State, reason string, resign bool) {
	in.step(func(fx *effects) {
		if !in.running {
			return
		}
		in.forcing = g
		defer func() { in.forcing = nil }()
		switch {
		case to == Master && in.state == Backup:
			in.becomeMaster(fx, reason)
		case to == Backup && in.state == Master && resign:
			in.resign(fx, reason)
		case to == Backup && in.state == Master:
			in.masterAddr, in.masterPrio = netip.Addr{}, 0
			in.becomeBackup(fx, reason, netip.Addr{})
		}
	})
}

func (in *Instance) addHook(h func(Event)) {
	in.mu.Lock()
	in.hooks = append(in.hooks, h)
	in.mu.Unlock()
}

// ownFaults lists the faults whose name does not start with prefix.
func (in *Instance) ownFaults(prefix string) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	n := 0
	for f := range in.faults {
		if !strings.HasPrefix(f, prefix) {
			n++
		}
	}
	return n
}

// ---- the state machine (every method below runs under in.mu) ----

func (in *Instance) advert(prio uint8) Advert {
	a := Advert{Version: uint8(in.cfg.Version), VRID: in.cfg.VRID, Priority: prio, Interval: in.cfg.Interval, Addrs: in.cfg.VIPs}
	if in.cfg.Version == 2 {
		a.SetPassword(in.cfg.AuthPass)
	}
	return a
}

// skew is Skew_Time: RFC 5798 (256-Priority)*Master_Adver_Interval/256;
// RFC 3768 (v2) (256-Priority)/256 seconds.
func (in *Instance) skew() time.Duration {
	base := in.masterInterval
	if in.cfg.Version == 2 {
		base = time.Second
	}
	return time.Duration(256-int(in.prio)) * base / 256
}

// masterDown is Master_Down_Interval.
func (in *Instance) masterDown() time.Duration {
	return time.Duration(in.cfg.DownAdverts)*in.masterInterval + in.skew()
}

// transition changes the state and records the event; peer is the
// sender of the advert that caused it, if one did.
func (in *Instance) transition(fx *effects, to State, reason string, peer netip.Addr) {
	from := in.state
	if from == to {
		return
	}
	if from == Master {
		in.stopPacing()
		fx.left = true
	}
	in.state = to
	in.awaitSuccessor = false
	in.since = in.clk.Now()
	in.lowerSince = time.Time{}
	in.c.Transitions++
	ev := Event{Kind: Transition, Instance: in.cfg.Name, VRID: in.cfg.VRID, From: from, To: to, Reason: reason,
		Priority: in.prio, MasterAddr: in.masterAddr, MasterPriority: in.masterPrio, Peer: peer, Time: in.since,
		forcedBy: in.forcing, Resigned: in.resigning}
	if to == Master {
		ev.MasterAddr, ev.MasterPriority = in.local, in.prio
	}
	in.log.Info("transition", "from", from, "to", to, "reason", reason, "priority", in.prio)
	fx.events = append(fx.events, ev)
}

// startup is the Startup event of RFC 5798 6.4.1 (also used when a fault clears).
func (in *Instance) startup(fx *effects, reason string) {
	if len(in.faults) > 0 {
		in.transition(fx, Fault, "fault: "+strings.Join(slices.Sorted(maps.Keys(in.faults)), ", "), netip.Addr{})
		return
	}
	in.masterAddr, in.masterPrio = netip.Addr{}, 0
	if in.prio == 255 {
		in.becomeMaster(fx, reason+": address owner (priority 255)")
		return
	}
	in.masterInterval = in.cfg.Interval
	d := in.masterDown()
	if rest := in.cfg.StartupDelay - in.clk.Now().Sub(in.startedAt); rest > d {
		d = rest
	}
	in.armTimer(d, in.downTimer, true)
	in.transition(fx, Backup, reason, netip.Addr{})
}

func (in *Instance) becomeMaster(fx *effects, reason string) {
	fx.master = true
	in.advertiseNow(fx)
	in.transition(fx, Master, reason, netip.Addr{})
}

// advertiseNow sends an advert at once and restarts the periodic ones
// from it (scheduleAdverts, once the advert is out). The pending timer
// (a down timer, or the old schedule) is cancelled now.
func (in *Instance) advertiseNow(fx *effects) {
	fx.send = append(fx.send, in.advert(in.prio))
	fx.schedule = true
	in.cancelTimer()
}

// scheduleAdverts starts the periodic adverts, the next an interval from
// now: by the pacer when there is one, else by the advert timer.
func (in *Instance) scheduleAdverts() {
	if in.pc != nil {
		err := in.pc.Pace(in.advert(in.prio), in.cfg.Interval, paceLease(in.cfg.Interval))
		if err == nil {
			in.paced = true
			in.armTimer(paceRenewal(in.cfg.Interval), in.renewTimer, false)
			return
		}
		if errors.Is(err, pacer.ErrUnavailable) {
			// A pure-Go build: a fact of the binary, not an incident.
			in.log.Info("advert pacer not in this build; sending adverts from a timer")
		} else {
			in.log.Warn("advert pacer unavailable; sending adverts from a timer", "error", err)
		}
		in.pc, in.paced = nil, false
	}
	in.armTimer(in.cfg.Interval, in.adverTimer, false)
}

// stopPacing stops the pacer's adverts before any later send (a
// priority-0 advert must be the last one a leaving master sends).
func (in *Instance) stopPacing() {
	if in.paced {
		in.pc.Unpace()
		in.paced = false
	}
}

func (in *Instance) becomeBackup(fx *effects, reason string, peer netip.Addr) {
	in.armTimer(in.masterDown(), in.downTimer, true)
	in.transition(fx, Backup, reason, peer)
}

// armTimer replaces the pending timer; when it fires, f is a step. A
// callback of a replaced timer that already started finds its generation
// stale and does nothing.
func (in *Instance) armTimer(d time.Duration, f func(fx *effects), precise bool) {
	in.cancelTimer()
	in.downReason = "master down timer expired"
	in.inGrace = false
	in.timerDue = in.clk.Now().Add(d)
	gen := in.timerGen
	// The down timer's lateness is added to every failover; the advert
	// timer fires all the time and a millisecond does not matter there.
	after := in.clk.AfterFunc
	if precise {
		after = func(d time.Duration, f func()) clock.Timer { return clock.AfterFuncPrecise(in.clk, d, f) }
	}
	in.timer = after(d, func() {
		in.step(func(fx *effects) {
			if in.timerGen != gen || !in.running {
				return
			}
			in.timer = nil
			f(fx)
		})
	})
}

func (in *Instance) cancelTimer() {
	in.timerGen++
	if in.timer != nil {
		in.timer.Stop()
		in.timer = nil
	}
}

// downTimer: Master_Down_Timer fired.
func (in *Instance) downTimer(fx *effects) {
	if in.state == Backup {
		// Fired late: this process was not running (a descheduled VM,
		// keepalived's "thread timer expired" of pain point 8), and the
		// master's adverts may be waiting in the socket. Give the reader
		// a short grace to deliver them before taking over.
		late := in.clk.Now().Sub(in.timerDue)
		if !in.inGrace && late > max(in.masterInterval/2, 10*time.Millisecond) {
			g := min(max(in.masterInterval/4, 5*time.Millisecond), 250*time.Millisecond)
			in.log.Warn("master down timer fired late; waiting for queued adverts", "late", late, "grace", g)
			in.c.LateTimers++
			reason := in.downReason
			in.armTimer(g, in.downTimer, true)
			in.inGrace, in.downReason = true, reason
			return
		}
		in.becomeMaster(fx, in.downReason)
	}
}

// adverTimer: Adver_Timer fired.
func (in *Instance) adverTimer(fx *effects) {
	if in.state == Master {
		fx.send = append(fx.send, in.advert(in.prio))
		// Keep to the schedule: a timer that fired late must not push every
		// later advert back too, since the backups count Master_Down from
		// the last advert they heard (at 10 ms, 0.3 ms late per advert was
		// a lost millisecond every three). More than an interval late, start
		// a new schedule rather than send a burst.
		next := in.cfg.Interval
		if late := in.clk.Now().Sub(in.timerDue); late > 0 && late < in.cfg.Interval {
			next -= late
		}
		in.armTimer(next, in.adverTimer, false)
	}
}

// renewTimer: renew the pacer's lease.
func (in *Instance) renewTimer(fx *effects) {
	if in.state == Master && in.paced {
		ps := in.pc.PacedStats()
		if ps.Errors > in.pacedErrors {
			in.log.Warn("send advert", "failed", ps.Errors-in.pacedErrors, "error", syscall.Errno(ps.LastErrno))
			in.pacedErrors = ps.Errors
		}
		if in.pc.Renew(paceLease(in.cfg.Interval)) {
			in.armTimer(paceRenewal(in.cfg.Interval), in.renewTimer, false)
		} else {
			// The lease ran out: this process was not scheduled for
			// its lease (pacing.go). Advertise at once and start again.
			in.c.LapsedLeases++
			in.log.Warn("advert pacer lease ran out (the process did not run); advertising again", "lease", paceLease(in.cfg.Interval))
			in.advertiseNow(fx)
		}
	}
}

func (in *Instance) countDrop(r DropReason, detail string, p Packet) {
	in.dropped[r]++
	if r != DropVRID {
		in.log.Debug("dropped advert", "reason", r, "detail", detail, "src", p.Src)
	}
}

// receive is the transport's handler.
func (in *Instance) receive(p Packet) {
	in.step(func(fx *effects) {
		if in.running {
			in.receiveLocked(fx, p)
		}
	})
}

func (in *Instance) receiveLocked(fx *effects, p Packet) {
	a, err := Unmarshal(p.Payload, p.Src, p.Dst)
	if g := groupOf(p.Dst.Unmap()); ReasonOf(err) == DropChecksum && p.Dst.Unmap() != g {
		// keepalived before 2.0 (and unicast_checksum_compat) computes
		// unicast v3 checksums with the multicast group as destination.
		if a2, err2 := Unmarshal(p.Payload, p.Src, g); err2 == nil {
			a, err = a2, nil
		}
	}
	if err != nil {
		in.countDrop(ReasonOf(err), err.Error(), p)
		return
	}
	src := p.Src.Unmap()
	switch {
	case a.VRID != in.cfg.VRID:
		in.countDrop(DropVRID, fmt.Sprintf("vrid %d", a.VRID), p)
		return
	case p.TTL >= 0 && p.TTL != TTL:
		in.countDrop(DropTTL, fmt.Sprintf("ttl %d", p.TTL), p)
		return
	case int(a.Version) != in.cfg.Version:
		in.countDrop(DropVersion, fmt.Sprintf("version %d, ours %d", a.Version, in.cfg.Version), p)
		return
	case src == in.local:
		in.countDrop(DropSelf, "own advert", p)
		return
	}
	if a.Version == 2 {
		want := passwordData(in.cfg.AuthPass)
		wantType := uint8(AuthNone)
		if in.cfg.AuthPass != "" {
			wantType = AuthSimpleText
		}
		if a.AuthType != wantType || (wantType == AuthSimpleText && a.AuthData != want) {
			in.countDrop(DropAuth, fmt.Sprintf("auth type %d or password mismatch", a.AuthType), p)
			return
		}
		// RFC 3768: a v2 interval must equal ours, else two masters could
		// coexist unnoticed.
		if a.Interval != in.cfg.Interval {
			in.countDrop(DropInterval, fmt.Sprintf("interval %v, ours %v", a.Interval, in.cfg.Interval), p)
			return
		}
	}
	in.c.AdvertsReceived++
	if !sameAddrs(a.Addrs, in.cfg.VIPs) {
		if in.c.AddrMismatch == 0 {
			in.log.Warn("advert lists other VIPs than ours (keepalived would drop ours)", "src", src, "theirs", a.Addrs, "ours", in.cfg.VIPs)
		}
		in.c.AddrMismatch++
	}
	now := in.clk.Now()

	switch in.state {
	case Backup:
		if in.awaitSuccessor && a.Priority > 0 {
			in.awaitSuccessor = false
			fx.events = append(fx.events, Event{Kind: Successor, Instance: in.cfg.Name, VRID: in.cfg.VRID,
				From: Backup, To: Backup, Priority: in.prio, MasterAddr: src, MasterPriority: a.Priority, Peer: src, Time: now,
				Reason: fmt.Sprintf("new master %s (priority %d)", src, a.Priority)})
		}
		if in.withdrawn {
			return // stopping: never takes over again
		}
		if a.Priority == 0 {
			// The master resigned: take over after Skew_Time only.
			in.masterAddr, in.masterPrio = src, 0
			in.armTimer(in.skew(), in.downTimer, true)
			in.downReason = fmt.Sprintf("master %s resigned (priority 0)", src)
			return
		}
		if in.shouldAccept(a, now) {
			in.masterAddr, in.masterPrio = src, a.Priority
			if in.cfg.Version == 3 {
				in.masterInterval = a.Interval
			}
			in.armTimer(in.masterDown(), in.downTimer, true)
		}
		// Else: a lower-priority master we preempt; ignoring it lets the
		// down timer expire.
	case Master:
		if a.Priority == 0 {
			// Another master resigned: make sure the backups hear us now.
			in.answer(fx, now)
			return
		}
		if a.Priority > in.prio || (a.Priority == in.prio && src.Compare(in.local) > 0) {
			// Tell the winner a split brain existed before stepping down
			// (keepalived's higher_prio_send_advert): it then hears a
			// lower-priority master and re-announces the VIPs whose ARP
			// entries we may have taken over.
			fx.send = append(fx.send, in.advert(in.prio))
			in.masterAddr, in.masterPrio = src, a.Priority
			if in.cfg.Version == 3 {
				in.masterInterval = a.Interval
			}
			in.becomeBackup(fx, fmt.Sprintf("higher priority master %s (priority %d)", src, a.Priority), src)
			return
		}
		// A lower-priority master: a split brain is healing. Answer so it
		// steps down, and re-announce our VIPs (rate limited).
		in.answer(fx, now)
		// At most one per second while the same node keeps sending, but
		// always for a new episode (silence of 3 intervals before: a
		// partition that healed) so a short split brain is never missed.
		episode := in.lastLower.IsZero() || now.Sub(in.lastLower) > 3*in.cfg.Interval
		in.lastLower = now
		if episode || now.Sub(in.lastReannounce) >= time.Second {
			in.lastReannounce = now
			in.c.Reannounces++
			fx.events = append(fx.events, Event{Kind: Reannounce, Instance: in.cfg.Name, VRID: in.cfg.VRID,
				From: Master, To: Master, Priority: in.prio, MasterAddr: in.local, MasterPriority: in.prio, Peer: src, Time: now,
				Reason: fmt.Sprintf("lower priority master %s (priority %d)", src, a.Priority)})
		}
	}
}

// answer sends an advert at once to another master (a lower-priority one,
// or one that resigned), at most once per advert interval: every such
// advert could be spoofed, and answering each one made a flood of them a
// flood of ours. Our own schedule goes on meanwhile.
func (in *Instance) answer(fx *effects, now time.Time) {
	if !in.lastAnswer.IsZero() && now.Sub(in.lastAnswer) < in.cfg.Interval {
		in.c.AnswersSkipped++
		return
	}
	in.lastAnswer = now
	in.advertiseNow(fx)
}

// shouldAccept says whether a backup takes a (non-zero priority) advert as
// coming from its master, resetting the down timer (RFC 5798 6.4.2):
// always for a higher or equal priority; for a lower one only while it
// must not preempt (nopreempt, startup delay, preempt delay).
func (in *Instance) shouldAccept(a Advert, now time.Time) bool {
	if a.Priority >= in.prio {
		in.lowerSince = time.Time{}
		return true
	}
	if in.cfg.NoPreempt || len(in.holds) > 0 {
		return true
	}
	if now.Sub(in.startedAt) < in.cfg.StartupDelay {
		return true
	}
	if in.cfg.PreemptDelay > 0 {
		if in.lowerSince.IsZero() {
			in.lowerSince = now
		}
		if now.Sub(in.lowerSince) < in.cfg.PreemptDelay {
			return true
		}
	}
	return false
}

// sameAddrs compares address lists as sets.
func sameAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	seen := make(map[netip.Addr]int, len(a))
	for _, x := range a {
		seen[x.Unmap()]++
	}
	for _, x := range b {
		if seen[x.Unmap()] == 0 {
			return false
		}
		seen[x.Unmap()]--
	}
	return true
}
