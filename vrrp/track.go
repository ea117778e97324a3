package vrrp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Tracked is what trackers act on; *Instance implements it.
type Tracked interface {
	SetFault(reason string, on bool)
	SetWeight(name string, delta int)
}

// applyTrack turns one tracker's state into a fault or a weight, the way
// keepalived does: weight 0 means "down is a fault"; a positive weight is
// added while up; a negative weight is added while down.
func applyTrack(name string, weight int, up bool, targets []Tracked) {
	for _, t := range targets {
		switch {
		case weight == 0:
			t.SetFault(name+" down", !up)
		case weight > 0 && up, weight < 0 && !up:
			t.SetWeight(name, weight)
		default:
			t.SetWeight(name, 0)
		}
	}
}

// InterfaceTrack tracks one interface's operational state.
type InterfaceTrack struct {
	Interface string
	Weight    int // 0: down is a fault; else -253..253
}

// WatchInterfaces follows link updates (netlink) in namespace ns (use
// netns.None() for the current one) and applies each tracked interface's
// operational state to targets until ctx is done. A missing or deleted
// interface counts as down.
func WatchInterfaces(ctx context.Context, ns netns.NsHandle, tracks []InterfaceTrack, log *slog.Logger, targets ...Tracked) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ch := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	opts := netlink.LinkSubscribeOptions{ErrorCallback: func(err error) { log.Warn("link updates", "error", err) }}
	if ns.IsOpen() {
		opts.Namespace = &ns
	}
	// Subscribe first, then read the current state: no change is missed.
	if err := netlink.LinkSubscribeWithOptions(ch, done, opts); err != nil {
		return fmt.Errorf("track interfaces: subscribe to link updates: %w", err)
	}
	defer close(done)
	var hd *netlink.Handle
	var err error
	if ns.IsOpen() {
		hd, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	} else {
		hd, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		return fmt.Errorf("track interfaces: netlink handle: %w", err)
	}
	it := newIfaceTracker(tracks, log, targets)
	for _, t := range tracks {
		l, err := hd.LinkByName(t.Interface)
		up := err == nil && linkUp(l.Attrs().OperState, l.Attrs().RawFlags)
		it.update(t.Interface, up)
	}
	hd.Close()
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-ch:
			if !ok {
				return errors.New("track interfaces: link update channel closed")
			}
			up := u.Header.Type != unix.RTM_DELLINK && linkUp(u.Attrs().OperState, u.IfInfomsg.Flags)
			it.update(u.Attrs().Name, up)
		}
	}
}

func linkUp(op netlink.LinkOperState, flags uint32) bool {
	if op == netlink.OperUp {
		return true
	}
	// Loopback and some virtual links report "unknown": trust the flags.
	return op == netlink.OperUnknown && flags&unix.IFF_UP != 0 && flags&unix.IFF_RUNNING != 0
}

// ifaceTracker is the logic of WatchInterfaces, without netlink.
type ifaceTracker struct {
	tracks  map[string]InterfaceTrack
	state   map[string]bool
	log     *slog.Logger
	targets []Tracked
}

func newIfaceTracker(tracks []InterfaceTrack, log *slog.Logger, targets []Tracked) *ifaceTracker {
	it := &ifaceTracker{tracks: map[string]InterfaceTrack{}, state: map[string]bool{}, log: log, targets: targets}
	for _, t := range tracks {
		it.tracks[t.Interface] = t
	}
	return it
}

func (it *ifaceTracker) update(name string, up bool) {
	t, ok := it.tracks[name]
	if !ok {
		return
	}
	if was, seen := it.state[name]; seen && was == up {
		return
	}
	it.state[name] = up
	it.log.Info("tracked interface", "interface", name, "up", up)
	applyTrack("interface "+name, t.Weight, up, it.targets)
}

// ScriptTrack runs a command at an interval; its exit status (0 = up),
// filtered by rise/fall, becomes a fault or a weight.
type ScriptTrack struct {
	Name     string
	Command  []string      // argv, run without a shell
	Interval time.Duration // default 1s
	Timeout  time.Duration // default Interval
	Rise     int           // successes in a row to go up, default 1
	Fall     int           // failures in a row to go down, default 1
	Weight   int           // 0: down is a fault
	InitDown bool          // start down (keepalived init_fail); default up
}

// RunScript runs st until ctx is done, applying its state to targets.
func RunScript(ctx context.Context, st ScriptTrack, log *slog.Logger, targets ...Tracked) error {
	if len(st.Command) == 0 {
		return fmt.Errorf("track script %q: no command", st.Name)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if st.Interval <= 0 {
		st.Interval = time.Second
	}
	if st.Timeout <= 0 {
		st.Timeout = st.Interval
	}
	check := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, st.Timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, st.Command[0], st.Command[1:]...)
		cmd.WaitDelay = time.Second
		return cmd.Run()
	}
	return runScript(ctx, st, check, log, targets)
}

func runScript(ctx context.Context, st ScriptTrack, check func(context.Context) error, log *slog.Logger, targets []Tracked) error {
	h := newHysteresis(st.Rise, st.Fall, !st.InitDown)
	name := "script " + st.Name
	applyTrack(name, st.Weight, h.up, targets)
	t := time.NewTicker(st.Interval)
	defer t.Stop()
	for {
		err := check(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if changed := h.observe(err == nil); changed {
			log.Info("tracked script", "script", st.Name, "up", h.up, "error", err)
			applyTrack(name, st.Weight, h.up, targets)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// hysteresis is rise/fall: the state flips after rise successes (or fall
// failures) in a row.
type hysteresis struct {
	rise, fall int
	up         bool
	streak     int
}

func newHysteresis(rise, fall int, up bool) *hysteresis {
	return &hysteresis{rise: max(rise, 1), fall: max(fall, 1), up: up}
}

func (h *hysteresis) observe(ok bool) (changed bool) {
	if ok == h.up {
		h.streak = 0
		return false
	}
	h.streak++
	need := h.fall
	if ok {
		need = h.rise
	}
	if h.streak >= need {
		h.up, h.streak = ok, 0
		return true
	}
	return false
}

// SyncGroup keeps instances in step (keepalived vrrp_sync_group), e.g. the
// external VIP and the internal gateway VIP of a NAT site: when a member
// becomes master on its own, the others are made master; when a member
// steps down, the other masters step down; while any member has a fault of
// its own, every member is in Fault. Members must have consistent
// priorities on every director, or the group flaps (as in keepalived).
// Create it before the members Run.
type SyncGroup struct {
	name    string
	members []*Instance
	mu      sync.Mutex
	faulted bool
}

// NewSyncGroup joins members into a group.
func NewSyncGroup(name string, members ...*Instance) *SyncGroup {
	g := &SyncGroup{name: name, members: members}
	for _, m := range members {
		m.addHook(func(ev Event) { g.observe(m, ev) })
	}
	return g
}

func (g *SyncGroup) faultName() string { return "sync group " + g.name }

func (g *SyncGroup) observe(from *Instance, ev Event) {
	if ev.Kind != Transition && ev.Kind != faultsChanged {
		return
	}
	// Faults: the group is faulted while any member has a fault of its own.
	faulted := false
	for _, m := range g.members {
		faulted = faulted || m.ownFaults(g.faultName()) > 0
	}
	g.mu.Lock()
	changed := faulted != g.faulted
	g.faulted = faulted
	g.mu.Unlock()
	if changed {
		for _, m := range g.members {
			m.SetFault(g.faultName(), faulted)
		}
		return
	}
	// Transitions we forced ourselves do not propagate (no ping-pong).
	if ev.Kind != Transition || ev.forcedBy == g || faulted {
		return
	}
	reason := fmt.Sprintf("%s: %s is %v", g.faultName(), ev.Instance, ev.To)
	switch {
	case ev.To == Master:
		for _, m := range g.members {
			if m != from {
				m.force(g, Master, reason, false)
			}
		}
	case ev.To == Backup && ev.From == Master:
		for _, m := range g.members {
			if m != from {
				m.force(g, Backup, reason, ev.Resigned)
			}
		}
	}
}
