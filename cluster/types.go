package cluster

import (
	"fmt"
	"maps"
	"net/netip"
	"time"
)

// Peer names the sender of a message: its node name and the address it
// advertises on the cluster channel (its director address).
type Peer struct {
	Name string
	Addr netip.Addr
}

func (p Peer) String() string { return fmt.Sprintf("%s (%s)", p.Name, p.Addr) }

// State is what one director publishes to the others.
type State struct {
	// Name is the director's node name; the channel fills it in.
	Name string `json:"name"`
	// ConfigDigest identifies the site file the director runs; two
	// directors with different digests are in drift.
	ConfigDigest string `json:"config_digest,omitempty"`
	// Instances is the election state per VRRP instance name.
	Instances map[string]InstanceState `json:"instances,omitempty"`
	// Health is the director's view of its real servers: key (for
	// example "www/192.168.0.3:80") -> up.
	Health map[string]bool `json:"health,omitempty"`
	// IPVSDigest identifies the IPVS table the director last programmed
	// (services, destinations, weights); a drill compares it.
	IPVSDigest string `json:"ipvs_digest,omitempty"`
}

// InstanceState is one director's view of one VRRP instance.
type InstanceState struct {
	State    string    `json:"state"` // "master", "backup", "fault", ...
	Priority int       `json:"priority"`
	Master   bool      `json:"master"`
	Since    time.Time `json:"since"`
	// AdvertInterval is the instance's advert interval. Two directors
	// claiming master for longer than it raise DualMaster; zero means
	// Config.DefaultAdvertInterval.
	AdvertInterval time.Duration `json:"advert_interval,omitempty"`
	// VIPsAdded and FirstGARP are when the director last added the VIPs
	// and sent its first announcement on becoming master (a drill's
	// timeline).
	VIPsAdded time.Time `json:"vips_added,omitzero"`
	FirstGARP time.Time `json:"first_garp,omitzero"`
}

// Clone returns a deep copy of s.
func (s State) Clone() State {
	s.Instances = maps.Clone(s.Instances)
	s.Health = maps.Clone(s.Health)
	return s
}

// PeerView is what this director knows about another director.
type PeerView struct {
	Name string
	Addr netip.AddrPort
	// Alive is memberlist's verdict (alive or suspect, not dead or left).
	Alive bool
	// State is the last state the peer published; StateKnown is false
	// until one arrived.
	State      State
	StateKnown bool
	// LastSeen is the last time the peer was heard: a probe answered, a
	// message or a state received, a membership event.
	LastSeen time.Time
	// RTT is the round-trip time of the last probe it answered.
	RTT time.Duration
}

// DriftReport says that a peer runs another site file than this director.
type DriftReport struct {
	Peer        Peer
	LocalDigest string
	PeerDigest  string
	Since       time.Time // when this pair of digests was first seen
}

// DualMasterReport says that several directors claim master for one
// instance, for longer than its advert interval.
type DualMasterReport struct {
	Instance string
	Masters  []string  // node names, sorted
	Since    time.Time // when the claims were first seen together
}

// EventKind says what an Event reports.
type EventKind int

const (
	PeerJoin EventKind = iota + 1
	PeerLeave
	Drift
	DriftCleared
	DualMaster
	DualMasterCleared
)

func (k EventKind) String() string {
	switch k {
	case PeerJoin:
		return "peer-join"
	case PeerLeave:
		return "peer-leave"
	case Drift:
		return "drift"
	case DriftCleared:
		return "drift-cleared"
	case DualMaster:
		return "dual-master"
	case DualMasterCleared:
		return "dual-master-cleared"
	}
	return fmt.Sprintf("event(%d)", int(k))
}

// Event is a change the channel reports through Config.OnEvent.
type Event struct {
	Kind EventKind
	Time time.Time
	// Peer is the other director (PeerJoin, PeerLeave, Drift, DriftCleared).
	Peer Peer
	// Graceful is set for a PeerLeave the peer announced (a stop), as
	// opposed to one that failed (stopped answering probes).
	Graceful bool
	// LocalDigest and PeerDigest are set for Drift and DriftCleared.
	LocalDigest, PeerDigest string
	// Instance and Masters are set for DualMaster and DualMasterCleared
	// (Masters: the claimants when raised; empty when cleared).
	Instance string
	Masters  []string
}

// Stats are counters since New. Rejections by memberlist itself are
// counted from its log lines, since it drops such packets before any
// delegate sees them.
type Stats struct {
	// AuthFailures: packets or streams that failed decryption (wrong key)
	// or were plaintext where encryption is required.
	AuthFailures uint64
	// LabelMismatches: packets or streams carrying another site's label.
	LabelMismatches uint64
	// MalformedFrames: authenticated user messages that did not decode
	// (bad frame or state records).
	MalformedFrames uint64
	// UnknownTopic: topic messages with no handler.
	UnknownTopic uint64
	// MessagesSent / MessagesReceived: topic messages (per peer sent).
	MessagesSent     uint64
	MessagesReceived uint64
	// SendErrors: topic messages that could not be sent to a peer.
	SendErrors uint64
	// StatePushes / StatePushErrors: state records sent to peers.
	StatePushes     uint64
	StatePushErrors uint64
	// Replayed: topic messages dropped as replays (seen before, too old,
	// or from a sender's earlier run).
	Replayed uint64
	// Dropped: topic messages or events dropped because a queue was full,
	// and handler or event callback panics.
	InboxDropped  uint64
	EventsDropped uint64
	HandlerPanics uint64
}
