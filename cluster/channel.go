package cluster

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/vigil-lb/vigil/internal/clock"
)

// Channel is one director's membership in its site's cluster channel.
type Channel struct {
	cfg     Config
	timings Timings
	log     *slog.Logger
	label   string
	ml      *memberlist.Memberlist
	self    Peer
	selfAP  netip.AddrPort
	epoch   int64 // start time: orders our state records across restarts
	clock   clock.Clock

	mu         sync.Mutex
	local      stateRecord
	peers      map[string]*peerRecord
	handlers   map[string]func(Peer, []byte)
	drift      driftDetector
	dual       dualMasterDetector
	started    bool
	missedJoin map[netip.AddrPort]int   // consecutive failed joins per peer
	replay     map[string]*replayWindow // topic messages seen, by sender
	seq        atomic.Uint64            // our topic message counter

	authFailures, labelMismatches atomic.Uint64
	malformed, unknownTopic       atomic.Uint64
	sent, received, sendErrors    atomic.Uint64
	pushes, pushErrors            atomic.Uint64
	inboxDropped, eventsDropped   atomic.Uint64
	handlerPanics, replayed       atomic.Uint64

	inbox  chan inbound
	events chan Event
	pushCh chan struct{}
	// evalCh wakes evalLoop when a dual-master claim starts pending.
	evalCh chan struct{}
	done   chan struct{}
	wg     sync.WaitGroup
	closed sync.Once
}

type peerRecord struct {
	name     string
	addr     netip.AddrPort
	alive    bool
	state    *stateRecord
	lastSeen time.Time
	rtt      time.Duration
	bye      time.Time // when it said it was leaving (Leave)
}

// byeTopic carries the goodbye of Leave; a PeerLeave within byeValid of
// it is Graceful.
const (
	byeTopic = "_bye"
	byeValid = 30 * time.Second
)

type inbound struct {
	from    Peer
	topic   string
	payload []byte
}

const (
	queueLen = 1024
	// evalLate is how long after its threshold a pending dual-master
	// claim is looked at again (timers fire a little late, never early).
	evalLate = 5 * time.Millisecond
	// pushRetry is the delay before re-sending our state to a peer that
	// could not be reached.
	pushRetry = time.Second
	// deadNodeReclaim is how long a dead director's name stays bound to
	// its old address.
	deadNodeReclaim = 10 * time.Second
)

// New validates cfg, loads the key and creates the memberlist (binding
// its sockets, so a port clash is reported here). Call Start to join the
// peers. Create it on the thread/namespace it should listen in.
func New(cfg Config) (*Channel, error) {
	keys, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	c := &Channel{
		cfg:        cfg,
		timings:    cfg.Timings.withDefaults(),
		log:        cfg.Logger,
		label:      Label(cfg.Site),
		clock:      clock.System(),
		peers:      make(map[string]*peerRecord),
		handlers:   make(map[string]func(Peer, []byte)),
		missedJoin: make(map[netip.AddrPort]int),
		replay:     make(map[string]*replayWindow),
		inbox:      make(chan inbound, queueLen),
		events:     make(chan Event, queueLen),
		pushCh:     make(chan struct{}, 1),
		evalCh:     make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	c.cfg.Peers = slices.Clone(cfg.Peers)
	if c.log == nil {
		c.log = slog.Default()
	}
	c.log = c.log.With("site", cfg.Site, "node", cfg.NodeName)
	if c.cfg.DefaultAdvertInterval <= 0 {
		c.cfg.DefaultAdvertInterval = time.Second
	}
	c.epoch = c.clock.Now().UnixNano()
	c.local = stateRecord{Node: cfg.NodeName, Epoch: c.epoch, State: State{Name: cfg.NodeName}}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeName
	mc.BindAddr = cfg.BindAddr.String()
	mc.BindPort = cfg.Port
	mc.AdvertisePort = cfg.Port
	if cfg.AdvertiseAddr.IsValid() {
		mc.AdvertiseAddr = cfg.AdvertiseAddr.String()
	} else if !cfg.BindAddr.IsUnspecified() {
		mc.AdvertiseAddr = cfg.BindAddr.String()
	}
	mc.Label = c.label
	if len(keys) > 0 {
		kr, err := memberlist.NewKeyring(keys, keys[0])
		if err != nil {
			return nil, fmt.Errorf("cluster channel keyring: %w", err)
		}
		mc.Keyring = kr
	}
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true
	t := c.timings
	mc.ProbeInterval = t.ProbeInterval
	mc.ProbeTimeout = t.ProbeTimeout
	mc.SuspicionMult = t.SuspicionMult
	mc.GossipInterval = t.GossipInterval
	mc.PushPullInterval = t.PushPullInterval
	mc.TCPTimeout = t.TCPTimeout
	// A director that died may come back on another address (a new
	// site file); without this memberlist refuses it forever.
	mc.DeadNodeReclaimTime = deadNodeReclaim
	mc.Delegate = (*mlDelegate)(c)
	mc.Events = (*mlEvents)(c)
	mc.Ping = (*mlPing)(c)
	mc.Transport = cfg.Transport
	mc.Logger = log.New(&mlLog{
		log: c.log, auth: &c.authFailures, label: &c.labelMismatches, clock: c.clock,
		last: make(map[rejectKind]time.Time), quiet: make(map[rejectKind]int),
	}, "", 0)

	if cfg.InNamespace != nil {
		nt, err := newNetnsTransport(cfg.InNamespace, cfg.BindAddr, cfg.Port, mc.Logger)
		if err != nil {
			return nil, fmt.Errorf("start cluster channel on %s port %d: %w", cfg.BindAddr, cfg.Port, err)
		}
		mc.Transport = nt
		mc.BindPort = nt.GetAutoBindPort()
		mc.AdvertisePort = mc.BindPort
	}

	ml, err := memberlist.Create(mc)
	if err != nil {
		if mc.Transport != nil && cfg.Transport == nil {
			mc.Transport.Shutdown()
		}
		return nil, fmt.Errorf("start cluster channel on %s port %d: %w", cfg.BindAddr, cfg.Port, err)
	}
	c.ml = ml
	ln := ml.LocalNode()
	addr, _ := netip.AddrFromSlice(ln.Addr)
	c.self = Peer{Name: cfg.NodeName, Addr: addr.Unmap()}
	c.selfAP = netip.AddrPortFrom(c.self.Addr, ln.Port)

	c.wg.Add(4)
	go c.dispatchInbox()
	go c.dispatchEvents()
	go c.pushLoop()
	go c.evalLoop()
	return c, nil
}

// LocalAddr is the address and port the others reach this director at.
func (c *Channel) LocalAddr() netip.AddrPort { return c.selfAP }

// Self is this director as peers see it.
func (c *Channel) Self() Peer { return c.self }

// Start joins the configured peers and keeps re-joining any that are
// missing every Timings.RejoinInterval until ctx is done or the channel is
// closed. A peer that cannot be reached is not an error: it may start
// later. Start returns at once.
func (c *Channel) Start(ctx context.Context) error {
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		return errors.New("cluster channel already started")
	}
	c.started = true
	c.mu.Unlock()
	select {
	case <-c.done:
		return errors.New("cluster channel is closed")
	default:
	}
	if c.cfg.Insecure {
		c.log.Warn("cluster channel is UNENCRYPTED and UNAUTHENTICATED (insecure = true): anyone on the network can join the site and forge adverts; set a key file")
	}
	c.log.Info("cluster channel started", "addr", c.selfAP, "label", c.label, "peers", len(c.cfg.Peers), "encrypted", !c.cfg.Insecure)
	c.wg.Add(1)
	go c.rejoinLoop(ctx)
	return nil
}

// Leave tells the others that this director leaves (they see it gone at
// once instead of after failure detection) and waits up to timeout for the
// message to spread. Call Close afterwards.
func (c *Channel) Leave(timeout time.Duration) error {
	// memberlist's leave message does not tell the others it was one (its
	// NotifyLeave looks the same as for a failed node): say it first, so
	// that a planned stop is not reported as a failure.
	_ = c.Broadcast(byeTopic, nil)
	if err := c.ml.Leave(timeout); err != nil {
		return fmt.Errorf("leave cluster channel: %w", err)
	}
	return nil
}

// Close stops the channel without a goodbye (peers detect the departure
// by failure detection unless Leave was called first) and waits for its
// goroutines. It is safe to call more than once.
func (c *Channel) Close() error {
	var err error
	c.closed.Do(func() {
		close(c.done)
		err = c.ml.Shutdown()
		c.wg.Wait()
	})
	if err != nil {
		return fmt.Errorf("shut down cluster channel: %w", err)
	}
	return nil
}

// Stats returns the counters.
func (c *Channel) Stats() Stats {
	return Stats{
		AuthFailures:     c.authFailures.Load(),
		LabelMismatches:  c.labelMismatches.Load(),
		MalformedFrames:  c.malformed.Load(),
		UnknownTopic:     c.unknownTopic.Load(),
		MessagesSent:     c.sent.Load(),
		MessagesReceived: c.received.Load(),
		SendErrors:       c.sendErrors.Load(),
		StatePushes:      c.pushes.Load(),
		StatePushErrors:  c.pushErrors.Load(),
		InboxDropped:     c.inboxDropped.Load(),
		EventsDropped:    c.eventsDropped.Load(),
		HandlerPanics:    c.handlerPanics.Load(),
		Replayed:         c.replayed.Load(),
	}
}

// rejoinLoop joins every configured peer that is not a member, now and
// then every RejoinInterval: memberlist stops probing dead nodes, so after
// a long partition only a new join brings the pair back together.
func (c *Channel) rejoinLoop(ctx context.Context) {
	defer c.wg.Done()
	tick := time.NewTicker(c.timings.RejoinInterval)
	defer tick.Stop()
	for {
		c.joinMissing()
		select {
		case <-ctx.Done():
			return
		case <-c.done:
			return
		case <-tick.C:
		}
	}
}

// Missing lists the configured peers that are not members right now
// (never joined, dead, or left): the drill's "every director present"
// check, and what the re-join loop works on.
func (c *Channel) Missing() []netip.AddrPort {
	present := make(map[netip.AddrPort]bool)
	for _, n := range c.ml.Members() {
		if ap, ok := nodeAddrPort(n); ok {
			present[ap] = true
		}
	}
	var out []netip.AddrPort
	for _, p := range c.cfg.Peers {
		if p != c.selfAP && !present[p] && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

func (c *Channel) joinMissing() {
	missing := c.Missing()
	c.mu.Lock()
	for p := range c.missedJoin {
		if !slices.Contains(missing, p) {
			delete(c.missedJoin, p)
		}
	}
	c.mu.Unlock()
	for _, p := range missing {
		select {
		case <-c.done:
			return
		default:
		}
		_, err := c.ml.Join([]string{p.String()})
		c.mu.Lock()
		if err == nil {
			delete(c.missedJoin, p)
		} else {
			c.missedJoin[p]++
		}
		missed := c.missedJoin[p]
		c.mu.Unlock()
		switch {
		case err == nil:
			c.log.Info("joined cluster peer", "peer", p)
		case classify(err.Error()) == rejectAuth:
			c.authFailures.Add(1)
			if missed == 1 || missed%12 == 0 {
				c.log.Warn("cluster peer refused: authentication failed (its cluster key differs, or one side is insecure)", "peer", p, "error", err)
			}
		case missed == 3:
			// Not at once: the peer may simply start a little later.
			c.log.Warn("cluster peer unreachable; will keep trying", "peer", p, "every", c.timings.RejoinInterval, "error", err)
		default:
			c.log.Debug("join cluster peer failed", "peer", p, "error", err)
		}
	}
}

func nodeAddrPort(n *memberlist.Node) (netip.AddrPort, bool) {
	a, ok := netip.AddrFromSlice(n.Addr)
	if !ok {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), n.Port), true
}

// emit queues events for OnEvent and logs them. Never blocks.
func (c *Channel) emit(evs ...Event) {
	for _, e := range evs {
		c.logEvent(e)
		if c.cfg.OnEvent == nil {
			continue
		}
		select {
		case c.events <- e:
		default:
			c.eventsDropped.Add(1)
		}
	}
}

func (c *Channel) logEvent(e Event) {
	switch e.Kind {
	case PeerJoin:
		c.log.Info("cluster peer joined", "peer", e.Peer.Name, "addr", e.Peer.Addr)
	case PeerLeave:
		if e.Graceful {
			c.log.Info("cluster peer left", "peer", e.Peer.Name, "addr", e.Peer.Addr)
		} else {
			c.log.Warn("cluster peer failed: it stopped answering", "peer", e.Peer.Name, "addr", e.Peer.Addr)
		}
	case Drift:
		c.log.Warn("config drift: peer runs a different site file", "peer", e.Peer.Name, "local_digest", e.LocalDigest, "peer_digest", e.PeerDigest)
	case DriftCleared:
		c.log.Info("config drift cleared: peer runs the same site file", "peer", e.Peer.Name, "digest", e.LocalDigest)
	case DualMaster:
		c.log.Error("dual master: several directors claim master", "instance", e.Instance, "masters", strings.Join(e.Masters, ","))
	case DualMasterCleared:
		c.log.Info("dual master cleared", "instance", e.Instance)
	}
}

func (c *Channel) dispatchEvents() {
	defer c.wg.Done()
	for {
		select {
		case <-c.done:
			return
		case e := <-c.events:
			c.safeCall("event callback", func() { c.cfg.OnEvent(e) })
		}
	}
}

func (c *Channel) dispatchInbox() {
	defer c.wg.Done()
	for {
		select {
		case <-c.done:
			return
		case m := <-c.inbox:
			c.mu.Lock()
			fn := c.handlers[m.topic]
			c.mu.Unlock()
			if fn == nil {
				c.unknownTopic.Add(1)
				continue
			}
			c.safeCall("topic handler "+strconv.Quote(m.topic), func() { fn(m.from, m.payload) })
		}
	}
}

// safeCall runs user code so that a panic in it is logged and counted
// instead of taking the director down.
func (c *Channel) safeCall(what string, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			c.handlerPanics.Add(1)
			c.log.Error("cluster "+what+" panicked", "panic", r)
		}
	}()
	fn()
}

// evalLoop re-evaluates dual-master claims when one of them reaches its
// threshold. Every state change evaluates at once; this loop only covers
// the passing of time, and sleeps while no claim is pending (an idle
// director should not wake up for nothing).
func (c *Channel) evalLoop() {
	defer c.wg.Done()
	due := make(chan struct{}, 1)
	fire := func() {
		select {
		case due <- struct{}{}:
		default:
		}
	}
	var timer clock.Timer // on c.clock, whose time the deadlines are in
	stop := func() {
		if timer != nil {
			timer.Stop()
			timer = nil
		}
	}
	defer stop()
	for {
		select {
		case <-c.done:
			return
		case <-c.evalCh:
		case <-due:
			c.mu.Lock()
			evs := c.evaluateLocked()
			c.mu.Unlock()
			c.emit(evs...)
		}
		c.mu.Lock()
		next, ok := c.dual.nextDeadline()
		c.mu.Unlock()
		stop()
		if ok {
			timer = c.clock.AfterFunc(max(0, next.Sub(c.clock.Now()))+evalLate, fire)
		}
	}
}

// mlEvents receives memberlist's membership events. memberlist calls them
// with its node lock held, so they only touch c.mu and queues.
type mlEvents Channel

func (e *mlEvents) NotifyJoin(n *memberlist.Node) {
	c := (*Channel)(e)
	if n.Name == c.cfg.NodeName {
		return
	}
	ap, _ := nodeAddrPort(n)
	c.mu.Lock()
	p := c.peerLocked(n.Name)
	p.addr, p.alive, p.lastSeen = ap, true, c.clock.Now()
	evs := append([]Event{{Kind: PeerJoin, Time: c.clock.Now(), Peer: Peer{Name: n.Name, Addr: ap.Addr()}}}, c.evaluateLocked()...)
	c.mu.Unlock()
	c.emit(evs...)
	c.requestPush() // a new peer gets our state at once
}

func (e *mlEvents) NotifyLeave(n *memberlist.Node) {
	c := (*Channel)(e)
	if n.Name == c.cfg.NodeName {
		return
	}
	ap, _ := nodeAddrPort(n)
	c.mu.Lock()
	p := c.peerLocked(n.Name)
	p.alive = false
	now := c.clock.Now()
	graceful := !p.bye.IsZero() && now.Sub(p.bye) < byeValid
	p.bye = time.Time{}
	left := Event{Kind: PeerLeave, Time: now, Peer: Peer{Name: n.Name, Addr: ap.Addr()}, Graceful: graceful}
	evs := append([]Event{left}, c.evaluateLocked()...)
	c.mu.Unlock()
	c.emit(evs...)
}

func (e *mlEvents) NotifyUpdate(n *memberlist.Node) {
	c := (*Channel)(e)
	if n.Name == c.cfg.NodeName {
		return
	}
	ap, _ := nodeAddrPort(n)
	c.mu.Lock()
	p := c.peerLocked(n.Name)
	p.addr, p.lastSeen = ap, c.clock.Now()
	c.mu.Unlock()
}

func (c *Channel) peerLocked(name string) *peerRecord {
	p := c.peers[name]
	if p == nil {
		p = &peerRecord{name: name}
		c.peers[name] = p
	}
	return p
}

// mlPing records when a peer last answered a probe.
type mlPing Channel

func (p *mlPing) AckPayload() []byte { return nil }

func (p *mlPing) NotifyPingComplete(n *memberlist.Node, rtt time.Duration, _ []byte) {
	c := (*Channel)(p)
	c.mu.Lock()
	if r := c.peers[n.Name]; r != nil {
		r.lastSeen, r.rtt = c.clock.Now(), rtt
	}
	c.mu.Unlock()
}

// mlDelegate carries our user messages and state.
type mlDelegate Channel

func (d *mlDelegate) NodeMeta(int) []byte { return nil }

func (d *mlDelegate) GetBroadcasts(int, int) [][]byte { return nil }

// NotifyMsg receives topic messages (UDP) and state pushes (TCP). It must
// not block: topic messages go to the inbox goroutine.
func (d *mlDelegate) NotifyMsg(b []byte) {
	c := (*Channel)(d)
	var f frame
	if err := f.UnmarshalBinary(b); err != nil {
		c.malformed.Add(1)
		c.log.Debug("dropped malformed cluster message", "error", err)
		return
	}
	if f.From.Name == c.cfg.NodeName {
		return // our own, e.g. our address listed among the peers
	}
	switch f.Kind {
	case kindTopic:
		c.mu.Lock()
		w := c.replay[f.From.Name]
		if w == nil {
			w = &replayWindow{}
			c.replay[f.From.Name] = w
		}
		fresh := w.accept(f.Epoch, f.Seq)
		if p := c.peers[f.From.Name]; p != nil && fresh {
			p.lastSeen = c.clock.Now()
		}
		c.mu.Unlock()
		if !fresh {
			c.replayed.Add(1)
			c.log.Debug("dropped replayed or stale cluster message", "from", f.From.Name, "topic", f.Topic, "seq", f.Seq)
			return
		}
		c.received.Add(1)
		if f.Topic == byeTopic {
			c.mu.Lock()
			if p := c.peers[f.From.Name]; p != nil {
				p.bye = c.clock.Now()
			}
			c.mu.Unlock()
			return
		}
		select {
		case c.inbox <- inbound{from: f.From, topic: f.Topic, payload: append([]byte(nil), f.Payload...)}:
		default:
			c.inboxDropped.Add(1)
		}
	case kindState:
		c.mergeStateFrame(f)
	}
}

// LocalState sends every state record we know in a push/pull, so state
// spreads even between peers that cannot push to each other directly.
func (d *mlDelegate) LocalState(bool) []byte {
	c := (*Channel)(d)
	c.mu.Lock()
	recs := []stateRecord{c.local.clone()}
	for _, p := range c.peers {
		if p.state != nil {
			recs = append(recs, p.state.clone())
		}
	}
	c.mu.Unlock()
	b, err := encodeStateFrame(c.self, recs)
	if err != nil {
		c.log.Error("encode cluster state", "error", err)
		return nil
	}
	return b
}

func (d *mlDelegate) MergeRemoteState(b []byte, _ bool) {
	c := (*Channel)(d)
	var f frame
	if err := f.UnmarshalBinary(b); err != nil || f.Kind != kindState {
		c.malformed.Add(1)
		c.log.Debug("dropped malformed cluster state", "error", err)
		return
	}
	c.mergeStateFrame(f)
}

func memberlistAddress(p netip.AddrPort) memberlist.Address {
	return memberlist.Address{Addr: p.String()}
}
