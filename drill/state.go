package drill

import (
	"fmt"
	"time"

	"github.com/vigil-lb/vigil/director"
	"github.com/vigil-lb/vigil/vrrp"
)

// status is the part of a director.Status a drill reads, with every VRRP
// state parsed into a vrrp.State.
type status struct {
	raw       director.Status // digests, warnings, health: compared as they are
	node      string
	instances []instance
	peers     []peer
}

type instance struct {
	raw   director.InstanceStatus // its State only for messages
	state vrrp.State
}

type peer struct {
	raw    director.PeerStatus     // its states only for messages
	states map[string]vrrp.State   // instance -> state, as the peer published it
	detail map[string]peerInstance // instance -> details, with the peer's clock
}

type peerInstance struct {
	state                       vrrp.State
	since, vipsAdded, firstGARP time.Time
}

// parseStatus parses every state of st with director.ParseState; a state
// it does not know is an error (a daemon of another version), never a
// silent "not master".
func parseStatus(st director.Status) (status, error) {
	out := status{raw: st, node: st.Node}
	for _, in := range st.Instances {
		s, err := director.ParseState(in.State)
		if err != nil {
			return status{}, fmt.Errorf("status of %s, instance %s: %w", st.Node, in.Name, err)
		}
		out.instances = append(out.instances, instance{raw: in, state: s})
	}
	for _, p := range st.Peers {
		q := peer{raw: p, states: map[string]vrrp.State{}, detail: map[string]peerInstance{}}
		for name, v := range p.Instances {
			s, err := director.ParseState(v)
			if err != nil {
				return status{}, fmt.Errorf("status of peer %s, instance %s: %w", p.Name, name, err)
			}
			q.states[name] = s
		}
		for name, d := range p.InstanceDetail {
			s, err := director.ParseState(d.State)
			if err != nil {
				return status{}, fmt.Errorf("status of peer %s, instance %s: %w", p.Name, name, err)
			}
			q.detail[name] = peerInstance{state: s, since: d.Since, vipsAdded: d.VIPsAdded, firstGARP: d.FirstGARP}
		}
		out.peers = append(out.peers, q)
	}
	return out, nil
}
