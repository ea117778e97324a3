package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vigil-lb/vigil/internal/clock"
)

// ClaimerConfig describes one instance's VIPs and what to do on its
// transitions.
type ClaimerConfig struct {
	Instance string
	VIPs     []VIP
	Announce AnnounceConfig
	// Notify commands and their timeout (0: DefaultNotifyTimeout).
	Notify        []NotifyCommand
	NotifyTimeout time.Duration
	// Netns holds the interfaces; nil: the process's namespace.
	Netns *netns.NsHandle
	// Resync is how often the watcher checks that held VIPs are present
	// besides following deletions; 0: 10 s.
	Resync time.Duration
	Logger *slog.Logger // nil: slog.Default()
	Clock  clock.Clock  // nil: the system clock
}

// ClaimStatus is a Claimer's view for `vigil status`.
type ClaimStatus struct {
	Instance string
	State    State      // the last state given to Transition
	Last     Transition // the last transition
	LastAt   time.Time
	Master   bool // VIPs claimed and announced
	// VIPsAdded is when the VIPs were last added on becoming master
	// (before the first announcement; the drill's "VIP added").
	VIPsAdded time.Time
	VIPs      []VIPStatus
	Restored  uint64 // VIPs the watcher put back after someone removed them
	// Evicted counts VIPs the watcher removed because they were present
	// while this director was not master.
	Evicted  uint64
	Announce AnnounceStats
	Notify   NotifyStats
}

// Claimer claims and gives up the VIPs of one instance: netlink
// addresses, their announcements and the notify commands. Its methods are
// safe to call from several goroutines; they run one at a time.
type Claimer struct {
	cfg      ClaimerConfig
	log      *slog.Logger
	clock    clock.Clock
	h        *netlink.Handle
	vips     *vipSet
	ann      *Announcer
	notifier *Notifier
	stop     context.CancelFunc
	watching sync.WaitGroup

	mu        sync.Mutex // serialises transitions
	master    bool
	quiet     bool // master, announcements stopped (Quiet)
	vipsAdded time.Time
	state     State
	last      Transition
	lastAt    time.Time
}

// NewClaimer checks cfg, opens a netlink handle in cfg.Netns and starts
// the watcher and the notify worker. It changes no address: call
// RemoveStale before the election starts. Close it.
func NewClaimer(cfg ClaimerConfig) (*Claimer, error) {
	if err := validateVIPs(cfg.VIPs); err != nil {
		return nil, fmt.Errorf("instance %s: %w", cfg.Instance, err)
	}
	if err := cfg.Announce.Validate(); err != nil {
		return nil, fmt.Errorf("instance %s: %w", cfg.Instance, err)
	}
	if cfg.Resync < 0 {
		return nil, fmt.Errorf("instance %s: resync %s: negative", cfg.Instance, cfg.Resync)
	}
	if cfg.Resync == 0 {
		cfg.Resync = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	// The notifier names the instance on each line itself.
	notifyLog := log
	log = log.With("instance", cfg.Instance)
	clk := cfg.Clock
	if clk == nil {
		clk = clock.System()
	}
	notifier, err := NewNotifier(NotifyConfig{Commands: cfg.Notify, Timeout: cfg.NotifyTimeout, Logger: notifyLog})
	if err != nil {
		return nil, fmt.Errorf("instance %s: %w", cfg.Instance, err)
	}
	var h *netlink.Handle
	if cfg.Netns != nil {
		h, err = netlink.NewHandleAt(*cfg.Netns, unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err == nil {
		// A kernel that never answers must not hang the election.
		err = h.SetSocketTimeout(5 * time.Second)
	}
	if err != nil {
		if h != nil {
			h.Close()
		}
		notifier.Close(context.Background())
		return nil, fmt.Errorf("instance %s: netlink handle: %w", cfg.Instance, err)
	}
	c := &Claimer{
		cfg:      cfg,
		log:      log,
		clock:    clk,
		h:        h,
		vips:     newVIPSet(h, cfg.VIPs, log),
		notifier: notifier,
		state:    StateInit,
	}
	c.ann = newAnnouncer(AnnouncerConfig{AnnounceConfig: cfg.Announce, VIPs: cfg.VIPs, Netns: cfg.Netns, Logger: log, Clock: clk},
		newPacketSender(cfg.Netns))
	ctx, stop := context.WithCancel(context.Background())
	c.stop = stop
	c.watching.Add(1)
	go func() {
		defer c.watching.Done()
		c.vips.watch(ctx, cfg.Netns, cfg.Resync)
	}()
	return c, nil
}

func validateVIPs(vips []VIP) error {
	var errs []error
	seen := map[netip.Addr]bool{}
	for _, v := range vips {
		if err := v.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[v.Prefix.Addr()] {
			errs = append(errs, fmt.Errorf("VIP %s: listed twice", v.Prefix.Addr()))
		}
		seen[v.Prefix.Addr()] = true
	}
	return errors.Join(errs...)
}

// Reconfigure applies a reloaded configuration of the same instance
// without a transition: while master, VIPs no longer listed (or changed)
// are removed, new ones added and announced; announce settings and
// notify commands apply from now on. Netns, Resync, Logger and Clock
// cannot change. On a validation error nothing changes.
func (c *Claimer) Reconfigure(ctx context.Context, cfg ClaimerConfig) error {
	if cfg.Instance != c.cfg.Instance {
		return fmt.Errorf("instance %s: reconfigure as %q", c.cfg.Instance, cfg.Instance)
	}
	if err := validateVIPs(cfg.VIPs); err != nil {
		return fmt.Errorf("instance %s: %w", cfg.Instance, err)
	}
	if err := cfg.Announce.Validate(); err != nil {
		return fmt.Errorf("instance %s: %w", cfg.Instance, err)
	}
	if _, err := checkNotify(cfg.Notify, cfg.NotifyTimeout); err != nil {
		return fmt.Errorf("instance %s: %w", cfg.Instance, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.notifier.SetCommands(cfg.Notify, cfg.NotifyTimeout); err != nil {
		return fmt.Errorf("instance %s: %w", cfg.Instance, err)
	}
	_, err := c.vips.replace(cfg.VIPs)
	c.ann.reconfigure(cfg.Announce, cfg.VIPs)
	c.cfg.VIPs, c.cfg.Announce, c.cfg.Notify, c.cfg.NotifyTimeout = slices.Clone(cfg.VIPs), cfg.Announce, cfg.Notify, cfg.NotifyTimeout
	if err != nil {
		return fmt.Errorf("instance %s: reconfigure: %w", cfg.Instance, err)
	}
	return nil
}

// RemoveStale removes this instance's VIPs wherever they are present, as
// left by an earlier run that did not stop cleanly; call it before the
// election starts so a backup never holds a VIP. It returns the VIPs it
// removed.
func (c *Claimer) RemoveStale(ctx context.Context) ([]VIP, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.master {
		return nil, fmt.Errorf("instance %s: remove stale VIPs while master", c.cfg.Instance)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c.vips.release("removed stale VIP left from an earlier run")
}

// BecomeMaster adds the VIPs, then announces them (the first round before
// it returns). Called again while master, it puts back missing VIPs and
// reannounces. It returns the VIPs that could not be added; the others
// are claimed and announced anyway.
func (c *Claimer) BecomeMaster(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.becomeMasterLocked(ctx)
}

func (c *Claimer) becomeMasterLocked(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := c.vips.claim()
	if c.master && !c.quiet {
		c.ann.Reannounce()
	} else {
		c.vipsAdded = c.clock.Now()
		c.ann.Start()
	}
	c.master, c.quiet = true, false
	return err
}

// Quiet stops the announcements of a master that resigned and keeps its
// VIPs until its successor has them (a make-before-break handover): a
// gratuitous ARP or NA from here after the successor's would point
// clients back at the director about to let go. The VIPs stay, and keep
// answering; a later claim starts a new announcement series.
func (c *Claimer) Quiet() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.master {
		c.ann.Stop()
		c.quiet = true
	}
}

// Release gives the VIPs up on every way of leaving master (backup,
// fault, stop, instance deleted): it cancels every pending announcement
// first, then removes the VIPs.
func (c *Claimer) Release(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.releaseLocked(ctx)
}

func (c *Claimer) releaseLocked(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.ann.Stop()
	c.master, c.quiet = false, false
	_, err := c.vips.release("VIP removed")
	return err
}

// Transition applies a state change (MASTER claims, every other state
// releases), then queues the notify commands; they run after the VIPs
// moved and never delay the caller. An empty t.Instance or t.From (the
// last state applied) and nil t.VIPs are filled in.
func (c *Claimer) Transition(ctx context.Context, t Transition) error {
	if t.Instance == "" {
		t.Instance = c.cfg.Instance
	}
	c.mu.Lock()
	if t.From == "" {
		t.From = c.state
	}
	if t.VIPs == nil {
		for _, v := range c.cfg.VIPs {
			t.VIPs = append(t.VIPs, v.Prefix)
		}
	}
	var err error
	switch {
	case t.To == StateMaster && c.master && !c.quiet:
		// Claimed already (the election's BeforeMaster hook): make sure
		// the VIPs are there, without a second announcement series.
		err = c.vips.claim()
	case t.To == StateMaster:
		err = c.becomeMasterLocked(ctx)
	default:
		err = c.releaseLocked(ctx)
	}
	c.state, c.last, c.lastAt = t.To, t, c.clock.Now()
	c.notifier.Notify(t) // under mu: queued in the order applied; it never blocks
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("instance %s to %s: %w", t.Instance, t.To, err)
	}
	return nil
}

// Reannounce starts a new announcement series if master, for "heard a
// lower priority master". It reports whether we were master.
func (c *Claimer) Reannounce() bool { return c.ann.Reannounce() }

// Status returns the Claimer's view.
func (c *Claimer) Status() ClaimStatus {
	c.mu.Lock()
	s := ClaimStatus{Instance: c.cfg.Instance, State: c.state, Last: c.last, LastAt: c.lastAt, Master: c.master, VIPsAdded: c.vipsAdded}
	c.mu.Unlock()
	s.VIPs, s.Restored, s.Evicted = c.vips.status()
	s.Announce = c.ann.Stats()
	s.Notify = c.notifier.Stats()
	return s
}

// Close stops the watcher and the announcements and waits for queued
// notify commands until ctx ends. It leaves the VIPs as they are: call
// Release first to give them up.
func (c *Claimer) Close(ctx context.Context) error {
	c.stop()
	c.watching.Wait()
	c.ann.Close()
	err := c.notifier.Close(ctx)
	c.h.Close()
	return err
}
