package failover

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netns"

	"github.com/vigil-lb/vigil/internal/clock"
)

// DefaultInterval spaces announcement rounds: just over Linux's 1 s
// neighbour locktime, inside which a second ARP update is ignored
// (MetalLB chose 1.1 s for the same reason, metallb#172).
const DefaultInterval = 1100 * time.Millisecond

// AnnounceConfig says how a new master announces its VIPs. A round is one
// ARP request and one ARP reply per IPv4 VIP and one unsolicited
// neighbour advertisement per IPv6 VIP.
type AnnounceConfig struct {
	// Repeat is the number of rounds after the first one (0: the first
	// round only).
	Repeat int
	// Interval between rounds; 0 means DefaultInterval. Below 1 s a
	// Linux neighbour ignores the later rounds (locktime).
	Interval time.Duration
	// Refresh, when positive, sends one more round every Refresh for as
	// long as we are master (keepalived's garp_master_refresh), so a
	// neighbour that missed the move still learns it.
	Refresh time.Duration
	// Router sets the Router flag of the neighbour advertisements:
	// needed when the IPv6 VIP is a default gateway, or hosts drop it
	// from their router list.
	Router bool
}

// Validate reports what is wrong with c, if anything.
func (c AnnounceConfig) Validate() error {
	switch {
	case c.Repeat < 0 || c.Repeat > 1000:
		return fmt.Errorf("announce repeat %d: want 0 to 1000", c.Repeat)
	case c.Interval < 0:
		return fmt.Errorf("announce interval %s: negative", c.Interval)
	case c.Interval > 0 && c.Interval < 10*time.Millisecond:
		return fmt.Errorf("announce interval %s: below 10ms", c.Interval)
	case c.Refresh < 0:
		return fmt.Errorf("announce refresh %s: negative", c.Refresh)
	case c.Refresh > 0 && c.Refresh < 100*time.Millisecond:
		return fmt.Errorf("announce refresh %s: below 100ms", c.Refresh)
	}
	return nil
}

func (c AnnounceConfig) withDefaults() AnnounceConfig {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	return c
}

// AnnounceStats counts what an Announcer sent.
type AnnounceStats struct {
	Active    bool      // between Start and Stop
	Started   time.Time // the last Start
	FirstSent time.Time // first packet sent after the last Start ("first GARP")
	LastSent  time.Time
	Rounds    uint64 // rounds sent, over the Announcer's life
	Sent      uint64 // packets sent
	Errors    uint64 // packets or sockets that failed
	LastError string
}

// AnnouncerConfig configures an Announcer.
type AnnouncerConfig struct {
	AnnounceConfig
	// VIPs to announce; each on its own interface.
	VIPs []VIP
	// Netns the interfaces are in; nil: the process's namespace.
	Netns *netns.NsHandle
	// Logger, nil: slog.Default(). Clock, nil: the system clock.
	Logger *slog.Logger
	Clock  clock.Clock
}

// sender puts announcement packets on the wire. The real one is
// packetSender; unit tests record instead.
type sender interface {
	// announce sends one round for addr on ifname and says how many
	// packets went out.
	announce(ifname string, addr netip.Addr, router bool) (int, error)
	// close releases the sockets; a later announce reopens them.
	close()
}

// preparer is a sender that can open its sockets before the first round
// (packetSender; the unit tests' recorder need not).
type preparer interface {
	// prepare opens what announcing addr on ifname needs, if not open.
	prepare(ifname string, addr netip.Addr) error
}

// Announcer sends gratuitous ARP and unsolicited neighbour
// advertisements for a set of VIPs, in rounds scheduled on its Clock.
// Every round runs with the lock held and checks it is still wanted, so
// once Stop has returned no packet leaves until the next Start.
type Announcer struct {
	cfg     AnnounceConfig
	targets []VIP
	clock   clock.Clock
	log     *slog.Logger
	send    sender

	mu           sync.Mutex
	active       bool
	left         int    // rounds left in the current series
	roundGen     uint64 // identifies the one timer allowed to run a series round
	refreshGen   uint64 // same for the refresh timer
	roundTimer   clock.Timer
	refreshTimer clock.Timer
	lastRound    time.Time
	stats        AnnounceStats
}

func newAnnouncer(cfg AnnouncerConfig, s sender) *Announcer {
	a := &Announcer{
		cfg:     cfg.AnnounceConfig.withDefaults(),
		targets: append([]VIP(nil), cfg.VIPs...),
		clock:   cfg.Clock,
		log:     cfg.Logger,
		send:    s,
	}
	if a.clock == nil {
		a.clock = clock.System()
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	a.mu.Lock()
	a.prepareLocked()
	a.mu.Unlock()
	return a
}

// prepareLocked opens the sockets the targets need, ahead of a takeover:
// opening one then costs a file descriptor (more for the namespace switch
// and the interface lookup) that a process short of them would not get,
// and no GARP would leave. Failures are logged; the round retries.
func (a *Announcer) prepareLocked() {
	p, ok := a.send.(preparer)
	if !ok {
		return
	}
	for _, v := range a.targets {
		if err := p.prepare(v.Interface, v.Prefix.Addr()); err != nil {
			a.log.Warn("announcement socket not opened ahead; trying again at takeover", "vip", v.String(), "error", err)
		}
	}
}

// Start begins announcing: the first round is sent before Start returns,
// then Repeat more Interval apart, then one every Refresh if set. Start
// on an active Announcer does nothing.
func (a *Announcer) Start() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.active {
		return
	}
	a.active = true
	a.stats.Active = true
	a.stats.Started = a.clock.Now()
	a.stats.FirstSent = time.Time{}
	a.left = 1 + a.cfg.Repeat
	a.roundLocked()
	if a.cfg.Refresh > 0 {
		a.scheduleRefreshLocked()
	}
}

// Reannounce starts a new series (a round, then Repeat more) on an
// active Announcer, for "a lower priority master was heard": its
// neighbours may have learnt the other MAC. A round sent less than
// Interval ago delays the new one to Interval after it, so repeated
// calls cannot flood the link. It reports whether the Announcer was
// active.
func (a *Announcer) Reannounce() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.active {
		return false
	}
	a.reannounceLocked()
	return true
}

func (a *Announcer) reannounceLocked() {
	a.left = 1 + a.cfg.Repeat
	if a.roundTimer != nil {
		a.roundTimer.Stop()
		a.roundTimer = nil
	}
	a.roundGen++
	wait := a.cfg.Interval - a.clock.Now().Sub(a.lastRound)
	if a.lastRound.IsZero() || wait <= 0 {
		a.roundLocked()
	} else {
		a.scheduleRoundLocked(wait)
	}
}

// reconfigure takes a new configuration and VIP list (a reload). While
// active, a changed VIP list starts a new series at once so new VIPs
// are announced, and a changed refresh period takes effect at once.
func (a *Announcer) reconfigure(cfg AnnounceConfig, vips []VIP) {
	a.mu.Lock()
	defer a.mu.Unlock()
	cfg = cfg.withDefaults()
	refreshChanged := cfg.Refresh != a.cfg.Refresh
	vipsChanged := !slices.Equal(vips, a.targets)
	a.cfg = cfg
	a.targets = slices.Clone(vips)
	if vipsChanged {
		a.prepareLocked() // a VIP on a new interface needs its socket now
	}
	if !a.active {
		return
	}
	if refreshChanged {
		a.refreshGen++
		if a.refreshTimer != nil {
			a.refreshTimer.Stop()
			a.refreshTimer = nil
		}
		if cfg.Refresh > 0 {
			a.scheduleRefreshLocked()
		}
	}
	if vipsChanged {
		// A new series at once: the new VIPs have not been announced,
		// so no locktime argues for waiting.
		if a.roundTimer != nil {
			a.roundTimer.Stop()
			a.roundTimer = nil
		}
		a.roundGen++
		a.left = 1 + a.cfg.Repeat
		a.roundLocked()
	}
}

// Stop cancels every pending round. When it returns no round is running
// and none will run until Start. The sockets stay open for the next
// Start, and one closed after a failed send is opened again here, before
// the next takeover needs it; Close releases them.
func (a *Announcer) Stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopLocked() {
		a.prepareLocked()
	}
}

// stopLocked cancels the rounds and reports whether a was active.
func (a *Announcer) stopLocked() bool {
	if !a.active {
		return false
	}
	a.active = false
	a.stats.Active = false
	a.left = 0
	a.roundGen++
	a.refreshGen++
	for _, t := range []clock.Timer{a.roundTimer, a.refreshTimer} {
		if t != nil {
			t.Stop()
		}
	}
	a.roundTimer, a.refreshTimer = nil, nil
	return true
}

// Close stops the Announcer and closes its sockets.
func (a *Announcer) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopLocked()
	a.send.close()
}

// Stats returns the counters and timestamps.
func (a *Announcer) Stats() AnnounceStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

// roundLocked sends one round of the series and schedules the next.
func (a *Announcer) roundLocked() {
	if a.left <= 0 {
		return
	}
	a.left--
	a.sendLocked()
	if a.left > 0 {
		a.scheduleRoundLocked(a.cfg.Interval)
	}
}

func (a *Announcer) scheduleRoundLocked(d time.Duration) {
	a.roundGen++
	gen := a.roundGen
	a.roundTimer = a.clock.AfterFunc(d, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		// A timer that fired while Stop or Reannounce held the lock
		// finds its generation gone and sends nothing.
		if !a.active || gen != a.roundGen {
			return
		}
		a.roundTimer = nil
		a.roundLocked()
	})
}

func (a *Announcer) scheduleRefreshLocked() {
	a.refreshGen++
	gen := a.refreshGen
	a.refreshTimer = a.clock.AfterFunc(a.cfg.Refresh, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if !a.active || gen != a.refreshGen {
			return
		}
		a.sendLocked()
		a.scheduleRefreshLocked()
	})
}

// sendLocked sends one round for every VIP.
func (a *Announcer) sendLocked() {
	a.lastRound = a.clock.Now()
	a.stats.Rounds++
	for _, v := range a.targets {
		n, err := a.send.announce(v.Interface, v.Prefix.Addr(), a.cfg.Router)
		if n > 0 {
			now := a.clock.Now()
			a.stats.Sent += uint64(n)
			a.stats.LastSent = now
			if a.stats.FirstSent.IsZero() {
				a.stats.FirstSent = now
			}
		}
		if err != nil {
			a.stats.Errors++
			a.stats.LastError = err.Error()
			a.log.Warn("cannot announce VIP", "vip", v.String(), "error", err)
		}
	}
}
