package cluster

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// stateRecord is one director's published state, versioned so that an
// older copy (a late push, a push/pull relaying it) never replaces a newer
// one. Epoch is the publisher's start time, so a restarted director's
// records win over those of its previous run.
type stateRecord struct {
	Node    string `json:"node"`
	Epoch   int64  `json:"epoch"`
	Version uint64 `json:"version"`
	State   State  `json:"state"`
}

func (r stateRecord) clone() stateRecord {
	r.State = r.State.Clone()
	return r
}

func (r stateRecord) newerThan(o *stateRecord) bool {
	if o == nil {
		return true
	}
	if r.Epoch != o.Epoch {
		return r.Epoch > o.Epoch
	}
	return r.Version > o.Version
}

func encodeStateFrame(from Peer, recs []stateRecord) ([]byte, error) {
	body, err := json.Marshal(recs)
	if err != nil {
		return nil, fmt.Errorf("encode state records: %w", err)
	}
	return frame{Kind: kindState, From: from, Payload: body}.MarshalBinary()
}

// decodeStateRecords parses and checks the body of a state frame.
func decodeStateRecords(body []byte) ([]stateRecord, error) {
	var recs []stateRecord
	if err := json.Unmarshal(body, &recs); err != nil {
		return nil, fmt.Errorf("%w: state records: %v", errFrame, err)
	}
	for i, r := range recs {
		if r.Node == "" || len(r.Node) > 255 {
			return nil, fmt.Errorf("%w: state record %d has no valid node name", errFrame, i)
		}
		if r.State.Name != "" && r.State.Name != r.Node {
			return nil, fmt.Errorf("%w: state record for %q names %q", errFrame, r.Node, r.State.Name)
		}
	}
	return recs, nil
}

// mergeStateFrame keeps every record in f that is newer than ours.
func (c *Channel) mergeStateFrame(f frame) {
	recs, err := decodeStateRecords(f.Payload)
	if err != nil {
		c.malformed.Add(1)
		c.log.Debug("dropped malformed cluster state", "from", f.From.Name, "error", err)
		return
	}
	now := c.clock.Now()
	c.mu.Lock()
	changed := false
	for _, r := range recs {
		if r.Node == c.cfg.NodeName {
			continue // only we speak for ourselves
		}
		r.State.Name = r.Node
		p := c.peerLocked(r.Node)
		if r.Node == f.From.Name {
			p.lastSeen = now
		}
		if r.newerThan(p.state) {
			rc := r
			p.state = &rc
			changed = true
		}
	}
	var evs []Event
	if changed {
		evs = c.evaluateLocked()
	}
	c.mu.Unlock()
	c.emit(evs...)
}

// SetLocal publishes s as this director's state (Name is set to the node
// name). Peers receive it at once over TCP, and again with every push/pull.
func (c *Channel) SetLocal(s State) {
	c.UpdateLocal(func(cur *State) { *cur = s.Clone() })
}

// UpdateLocal edits this director's state in place and publishes it. fn
// gets a copy; it runs with the channel's lock held, so it must not call
// the channel.
func (c *Channel) UpdateLocal(fn func(*State)) {
	c.mu.Lock()
	s := c.local.State.Clone()
	fn(&s)
	s.Name = c.cfg.NodeName
	c.local.State = s.Clone()
	c.local.Version++
	evs := c.evaluateLocked()
	c.mu.Unlock()
	c.emit(evs...)
	c.requestPush()
}

// Local returns this director's published state.
func (c *Channel) Local() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.local.State.Clone()
}

// Peers returns every other director seen since New, sorted by name.
func (c *Channel) Peers() []PeerView {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]PeerView, 0, len(c.peers))
	for _, p := range c.peers {
		v := PeerView{Name: p.name, Addr: p.addr, Alive: p.alive, LastSeen: p.lastSeen, RTT: p.rtt}
		if p.state != nil {
			v.State, v.StateKnown = p.state.State.Clone(), true
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b PeerView) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Drift lists the peers whose last known config digest differs from ours
// (a peer that is down keeps its report until it publishes a new digest).
func (c *Channel) Drift() []DriftReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.drift.list()
}

// DualMasters lists the instances that several alive directors (this one
// included) have claimed as master for longer than a preemption transient
// (two advert intervals, at least dualMasterFloor).
func (c *Channel) DualMasters() []DualMasterReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dual.list()
}

// DualMasterTransients counts overlaps of master claims that ended before
// they were long enough to be a dual master (preemptions, handovers).
func (c *Channel) DualMasterTransients() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dual.transients
}

// evaluateLocked runs the detectors on the current views.
func (c *Channel) evaluateLocked() []Event {
	now := c.clock.Now()
	var digests []peerDigest
	claims := make(map[string][]masterClaim)
	addClaims := func(s State) {
		for inst, is := range s.Instances {
			if is.Master {
				claims[inst] = append(claims[inst], masterClaim{Node: s.Name, Interval: is.AdvertInterval})
			}
		}
	}
	addClaims(c.local.State)
	for _, p := range c.peers {
		// Drift is judged on every peer's last known digest, dead or
		// alive: a peer that was fixed and restarted clears its drift
		// when its new state arrives. Master claims count only while
		// the claimant is alive.
		d := peerDigest{Peer: Peer{Name: p.name, Addr: p.addr.Addr()}}
		if p.state != nil {
			d.Digest = p.state.State.ConfigDigest
			if p.alive {
				addClaims(p.state.State)
			}
		}
		digests = append(digests, d)
	}
	evs := c.drift.update(now, c.local.State.ConfigDigest, digests)
	evs = append(evs, c.dual.update(now, claims, c.cfg.DefaultAdvertInterval)...)
	if _, pending := c.dual.nextDeadline(); pending {
		select {
		case c.evalCh <- struct{}{}:
		default:
		}
	}
	return evs
}

func (c *Channel) requestPush() {
	select {
	case c.pushCh <- struct{}{}:
	default:
	}
}

// pushLoop sends our state to every member over TCP whenever it changes
// or a peer joins, and retries peers it could not reach.
func (c *Channel) pushLoop() {
	defer c.wg.Done()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-c.pushCh:
		case <-retry.C:
		}
		c.mu.Lock()
		rec := c.local.clone()
		c.mu.Unlock()
		b, err := encodeStateFrame(c.self, []stateRecord{rec})
		if err != nil {
			c.log.Error("encode cluster state", "error", err)
			continue
		}
		var wg sync.WaitGroup
		var failed sync.Map
		for _, n := range c.ml.Members() {
			if n.Name == c.cfg.NodeName {
				continue
			}
			wg.Go(func() {
				if err := c.ml.SendReliable(n, b); err != nil {
					c.pushErrors.Add(1)
					failed.Store(n.Name, err)
					return
				}
				c.pushes.Add(1)
			})
		}
		wg.Wait()
		failedAny := false
		failed.Range(func(k, v any) bool {
			failedAny = true
			c.log.Debug("push cluster state failed; will retry", "peer", k, "error", v)
			return true
		})
		if failedAny {
			retry.Reset(pushRetry)
		}
	}
}

var _ memberlist.Delegate = (*mlDelegate)(nil)
var _ memberlist.EventDelegate = (*mlEvents)(nil)
var _ memberlist.PingDelegate = (*mlPing)(nil)
