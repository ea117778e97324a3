package director

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/vigil-lb/vigil/cluster"
	"github.com/vigil-lb/vigil/vrrp"
)

// The kernel's sync daemon sends a connection only when it carries
// packets, so a backup never learns the idle ones. vigil adds a full
// resync in the kernel's own sync format (ipvs.Resync): the outgoing
// master sends its whole table before a planned handover, and a returning
// director holds its preemption (vrrp.SetPreemptHold) until the master
// has sent it the whole table and its kernel holds that many connections.

// resyncTopic carries resync requests and answers on the cluster channel.
const resyncTopic = "resync"

// resyncHold names the preemption hold of a director waiting for the
// master's connections.
const resyncHold = "resync"

// resyncWait bounds how long a returning director holds back from taking
// the VIP: a master that never answers (not a vigil director, sync off
// there, a partition) must not keep the better director out for long.
const resyncWait = 10 * time.Second

// resyncMsg is one message on resyncTopic.
type resyncMsg struct {
	Op       string `json:"op"` // "request" or "done"
	ID       uint64 `json:"id"`
	From     string `json:"from,omitempty"` // the requester (request) or the master (done)
	To       string `json:"to,omitempty"`   // done: the requester
	Instance string `json:"instance"`
	Sent     int    `json:"sent"`
	Error    string `json:"error,omitempty"`
}

// connResync is what a director needs from its kernel for a full resync.
type connResync interface {
	// SendTable sends every connection of the local IPVS table to the
	// sync group and returns how many it sent.
	SendTable(ctx context.Context) (int, error)
	// CountConns counts the connections in the local IPVS table.
	CountConns(ctx context.Context) (int, error)
}

// resyncState is the daemon's side of the protocol.
type resyncState struct {
	mu      sync.Mutex
	waiters map[uint64]chan resyncMsg // request id -> the requester's inbox
	served  map[uint64]resyncMsg      // answers already sent, by request id (retries get the same)
	last    map[string]string         // instance -> last result, for status
}

// lastOf says how the last wait for instance's connections ended.
func (r *resyncState) lastOf(instance string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last[instance]
}

func (r *resyncState) init() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waiters == nil {
		r.waiters, r.served, r.last = map[uint64]chan resyncMsg{}, map[uint64]resyncMsg{}, map[string]string{}
	}
}

// startResync registers the resync handler on the cluster channel.
func (d *Daemon) startResync() {
	d.resync.init()
	if d.ch == nil {
		return
	}
	d.ch.Handle(resyncTopic, func(from cluster.Peer, payload []byte) {
		var m resyncMsg
		if err := json.Unmarshal(payload, &m); err != nil {
			d.log.Warn("resync: malformed message", "from", from.String(), "error", err)
			return
		}
		switch m.Op {
		case "request":
			go d.serveResync(m)
		case "done":
			if m.To != d.me.Name {
				return
			}
			d.resync.mu.Lock()
			ch := d.resync.waiters[m.ID]
			d.resync.mu.Unlock()
			if ch != nil {
				select {
				case ch <- m:
				default:
				}
			}
		}
	})
}

// serveResync answers a request when this director is master of the
// instance: it sends its whole connection table, once per request id.
func (d *Daemon) serveResync(m resyncMsg) {
	in := d.instance(m.Instance)
	if in == nil || in.vrrp.State() != vrrp.Master || d.resyncer == nil {
		return
	}
	d.resync.mu.Lock()
	ans, seen := d.resync.served[m.ID]
	d.resync.mu.Unlock()
	if !seen {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		n, err := d.resyncer.SendTable(ctx)
		cancel()
		ans = resyncMsg{Op: "done", ID: m.ID, From: d.me.Name, To: m.From, Instance: m.Instance, Sent: n}
		if err != nil {
			ans.Error = err.Error()
			d.log.Warn("resync: sending the connection table failed", "to", m.From, "error", err)
		} else {
			d.log.Info("resync: sent the connection table", "to", m.From, "instance", m.Instance, "connections", n)
		}
		d.resync.mu.Lock()
		if len(d.resync.served) > 64 {
			clear(d.resync.served)
		}
		d.resync.served[m.ID] = ans
		d.resync.mu.Unlock()
	}
	d.broadcastResync(ans)
}

func (d *Daemon) broadcastResync(m resyncMsg) {
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	if err := d.ch.Broadcast(resyncTopic, b); err != nil {
		d.log.Debug("resync: broadcast", "error", err)
	}
}

// instance returns the running instance of that name, or nil.
func (d *Daemon) instance(name string) *instance {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.instances[name]
}

// resyncBeforeHandover sends the whole connection table before a planned
// handover, so the backup that takes over has the idle connections too.
func (d *Daemon) resyncBeforeHandover(ins []*instance) {
	if d.resyncer == nil {
		return
	}
	master := false
	for _, in := range ins {
		master = master || in.vrrp.State() == vrrp.Master
	}
	if !master {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	n, err := d.resyncer.SendTable(ctx)
	if err != nil {
		d.log.Warn("resync before handover failed; idle connections may be reset", "error", err)
		return
	}
	d.log.Info("resync before handover: sent the connection table", "connections", n, "took", time.Since(start).Round(time.Microsecond))
}

// holdForResync keeps a returning director from taking an instance back
// until it holds the master's connections (at most resyncWait): it asks
// the master for its whole table and waits until its own kernel has that
// many connections.
func (d *Daemon) holdForResync(ctx context.Context, in *instance, why string) {
	if d.resyncer == nil || d.ch == nil {
		return
	}
	in.vrrp.SetPreemptHold(resyncHold, true)
	go func() {
		res := d.awaitResync(ctx, in)
		in.vrrp.SetPreemptHold(resyncHold, false)
		d.resync.mu.Lock()
		d.resync.last[in.cfg.Name] = res
		d.resync.mu.Unlock()
		d.log.Info("resync: preemption allowed", "instance", in.cfg.Name, "why", why, "result", res)
	}()
}

// awaitResync runs the requester's side and says how it ended.
func (d *Daemon) awaitResync(ctx context.Context, in *instance) string {
	start := time.Now()
	deadline := start.Add(resyncWait)
	id := rand.Uint64()
	inbox := make(chan resyncMsg, 4)
	d.resync.mu.Lock()
	d.resync.waiters[id] = inbox
	d.resync.mu.Unlock()
	defer func() {
		d.resync.mu.Lock()
		delete(d.resync.waiters, id)
		d.resync.mu.Unlock()
	}()
	// A new request id asks for a new send (the master answers a retry of
	// the same id from its cache).
	renew := func() {
		d.resync.mu.Lock()
		delete(d.resync.waiters, id)
		id = rand.Uint64()
		d.resync.waiters[id] = inbox
		d.resync.mu.Unlock()
	}
	noMasterSince := time.Time{}
	for time.Now().Before(deadline) {
		known, master := d.peerMasters(in)
		if !known {
			noMasterSince = time.Time{} // no peer's state yet: the channel is still joining
		} else if !master {
			// Nobody to take connections from (a cold start, or we are
			// master ourselves): allow preemption once that has lasted a
			// second, in case the gossip is only late.
			if noMasterSince.IsZero() {
				noMasterSince = time.Now()
			}
			if time.Since(noMasterSince) > time.Second {
				return "no other director is master: nothing to resync"
			}
		} else {
			noMasterSince = time.Time{}
			d.broadcastResync(resyncMsg{Op: "request", ID: id, From: d.me.Name, Instance: in.cfg.Name})
		}
		select {
		case m := <-inbox:
			if m.Error != "" {
				return fmt.Sprintf("master %s could not send its table (%s); preempting without it", m.From, m.Error)
			}
			if res, ok := d.awaitConns(in, m, start); ok {
				return res
			}
			// Some datagrams were lost (the kernel does not acknowledge
			// them): ask again.
			renew()
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			return "stopped"
		}
	}
	return fmt.Sprintf("no complete resync from the master within %v; preempting without all its connections", resyncWait)
}

// awaitConns waits up to a second until the local table holds at least
// as many connections as the master sent.
func (d *Daemon) awaitConns(in *instance, m resyncMsg, start time.Time) (string, bool) {
	until := time.Now().Add(time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		n, err := d.resyncer.CountConns(ctx)
		cancel()
		if err == nil && n >= m.Sent {
			return fmt.Sprintf("holds %d connections (master %s sent %d) after %v", n, m.From, m.Sent, time.Since(start).Round(time.Millisecond)), true
		}
		if time.Now().After(until) {
			d.log.Info("resync: fewer connections here than the master sent; asking again", "instance", in.cfg.Name, "here", n, "sent", m.Sent)
			return "", false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// peerMasters says whether the state of some live peer is known, and
// whether one reports itself master of the instance.
func (d *Daemon) peerMasters(in *instance) (known, master bool) {
	for _, p := range d.ch.Peers() {
		if p.Alive && p.StateKnown {
			known = true
			if st, ok := p.State.Instances[in.cfg.Name]; ok && st.Master {
				master = true
			}
		}
	}
	return known, master
}
