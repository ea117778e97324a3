package ipvs

import (
	"fmt"
	"math"
	"net/netip"
	"time"
)

// VirtualServer is one virtual server of the site, as the wiring package
// hands it over (this package does not read the site file).
type VirtualServer struct {
	// Name identifies the virtual server in the health view and in logs;
	// unique within the site.
	Name string
	// Key is the IPVS service: AddrKey(TCP, addr:port) or MarkKey(IPv4, mark).
	Key       ServiceKey
	Scheduler string
	// SchedFlags: FlagSched1/2/3 (see ParseSchedFlag).
	SchedFlags uint32
	OnePacket  bool
	// Persistence > 0 makes the service persistent for that long (whole
	// seconds); PersistenceNetmask is the client prefix length (0 = host).
	Persistence        time.Duration
	PersistenceNetmask int
	// Forwarding is the default for real servers that do not set one.
	Forwarding Forwarding
	// DrainOnFailure keeps a failed real server at weight 0 instead of
	// removing it (keepalived's inhibit_on_failure): established
	// connections carry on, new ones go elsewhere.
	DrainOnFailure bool
	// Quorum is the smallest sum of live weights at which the real servers
	// serve; below it the sorry server (if any) replaces them. 0 means 1.
	// Hysteresis: quorum is lost below Quorum-Hysteresis and regained at
	// Quorum+Hysteresis (keepalived semantics).
	Quorum     int
	Hysteresis int
	// SorryServer, if set, takes the traffic while the quorum is lost.
	SorryServer *RealServer
	// SlowStart > 0 ramps a recovered server's weight linearly from 1 to
	// its full weight over this long.
	SlowStart time.Duration
	// UnknownIsDown treats real servers missing from the health view as
	// down (keepalived's alpha mode); otherwise they count as up.
	UnknownIsDown bool
	RealServers   []RealServer
}

// RealServer is a destination of a virtual server.
type RealServer struct {
	Addr netip.Addr
	// Port 0 means the virtual service's port (as ipvsadm does); for a
	// fwmark service it stays 0.
	Port uint16
	// Weight 0..65535 (the wiring package supplies the default, 1).
	Weight int
	// Forwarding; nil means the virtual server's default.
	Forwarding     *Forwarding
	UpperThreshold uint32
	LowerThreshold uint32
}

// ServerRef names a real server within a virtual server in the health view.
type ServerRef struct {
	VirtualServer string
	Server        netip.AddrPort // as declared (port 0 stays 0)
}

// ServerHealth is what the checkers and the operator say about one server.
type ServerHealth struct {
	Up bool
	// Since is when the server last came up; it drives slow start.
	Since time.Time
	// Drain puts a live server at weight 0 (operator drain).
	Drain bool
	// Weight, if WeightSet, overrides the configured weight (dynamic
	// weights, e.g. from an agent check).
	Weight    int
	WeightSet bool
}

// Health is the health view: servers absent from it are unknown.
type Health map[ServerRef]ServerHealth

// QuorumState remembers, per virtual server name, whether its quorum is
// currently met; Build needs it for hysteresis and returns the new one.
type QuorumState map[string]bool

// BuildInput is everything Build depends on.
type BuildInput struct {
	VirtualServers []VirtualServer
	Health         Health
	Now            time.Time
	Quorum         QuorumState // from the previous Build; nil at start
}

// BuildOutput is the desired table and what the caller keeps for next time.
type BuildOutput struct {
	Table  Table
	Quorum QuorumState
	// QuorumLost lists the virtual servers whose quorum is lost.
	QuorumLost []string
	// NextChange is when slow start next changes a weight (zero if none):
	// the caller should Build and Apply again then.
	NextChange time.Time
}

// Build computes the desired IPVS table from the virtual servers and the
// health view. It is pure: same input, same output.
func Build(in BuildInput) (BuildOutput, error) {
	out := BuildOutput{Quorum: QuorumState{}}
	names := map[string]bool{}
	for i := range in.VirtualServers {
		vs := &in.VirtualServers[i]
		if vs.Name == "" {
			return BuildOutput{}, fmt.Errorf("virtual server %d (%s): no name", i+1, vs.Key)
		}
		if names[vs.Name] {
			return BuildOutput{}, fmt.Errorf("virtual server %q: name used twice", vs.Name)
		}
		names[vs.Name] = true
		svc, up, next, err := buildOne(vs, in)
		if err != nil {
			return BuildOutput{}, fmt.Errorf("virtual server %q: %w", vs.Name, err)
		}
		out.Quorum[vs.Name] = up
		if !up {
			out.QuorumLost = append(out.QuorumLost, vs.Name)
		}
		if !next.IsZero() && (out.NextChange.IsZero() || next.Before(out.NextChange)) {
			out.NextChange = next
		}
		out.Table.Services = append(out.Table.Services, svc)
	}
	out.Table.Sort()
	if err := out.Table.Validate(); err != nil {
		return BuildOutput{}, err
	}
	return out, nil
}

func (vs *VirtualServer) dest(rs *RealServer, weight int) Destination {
	fwd := vs.Forwarding
	if rs.Forwarding != nil {
		fwd = *rs.Forwarding
	}
	port := rs.Port
	if port == 0 && vs.Key.FWMark == 0 {
		port = vs.Key.Port
	}
	return Destination{Addr: rs.Addr.Unmap(), Port: port, Weight: weight, Forwarding: fwd,
		UpperThreshold: rs.UpperThreshold, LowerThreshold: rs.LowerThreshold}
}

func buildOne(vs *VirtualServer, in BuildInput) (svc Service, quorumUp bool, next time.Time, err error) {
	if err := vs.Key.validate(); err != nil {
		return svc, false, next, err
	}
	if vs.Persistence < 0 || vs.Persistence > math.MaxUint32*time.Second {
		return svc, false, next, fmt.Errorf("persistence %v out of range", vs.Persistence)
	}
	if vs.Quorum < 0 || vs.Hysteresis < 0 {
		return svc, false, next, fmt.Errorf("negative quorum or hysteresis")
	}
	svc = Service{Key: vs.Key, Scheduler: vs.Scheduler, Flags: vs.SchedFlags &^ (FlagPersistent | FlagHashed | FlagOnePacket),
		Netmask: vs.PersistenceNetmask}
	if vs.OnePacket {
		svc.Flags |= FlagOnePacket
	}
	if vs.Persistence > 0 {
		svc.Timeout = uint32((vs.Persistence + time.Second - 1) / time.Second)
	}
	live := 0 // sum of the full weights of live, undrained servers
	var dests []Destination
	for i := range vs.RealServers {
		rs := &vs.RealServers[i]
		if rs.Weight < 0 || rs.Weight > 65535 {
			return svc, false, next, fmt.Errorf("real server %s: weight %d out of range 0..65535", rs.Addr, rs.Weight)
		}
		h, known := in.Health[ServerRef{vs.Name, netip.AddrPortFrom(rs.Addr, rs.Port)}]
		up := h.Up || (!known && !vs.UnknownIsDown)
		weight := rs.Weight
		if known && h.WeightSet {
			if h.Weight < 0 || h.Weight > 65535 {
				return svc, false, next, fmt.Errorf("real server %s: health weight %d out of range", rs.Addr, h.Weight)
			}
			weight = h.Weight
		}
		switch {
		case !up:
			if vs.DrainOnFailure {
				dests = append(dests, vs.dest(rs, 0))
			}
		case known && h.Drain:
			dests = append(dests, vs.dest(rs, 0))
		default:
			live += weight
			w, n := slowStart(weight, h.Since, in.Now, vs.SlowStart, known)
			if !n.IsZero() && (next.IsZero() || n.Before(next)) {
				next = n
			}
			dests = append(dests, vs.dest(rs, w))
		}
	}
	quorum := max(vs.Quorum, 1)
	prev, hadPrev := in.Quorum[vs.Name]
	switch {
	case !hadPrev:
		quorumUp = live >= quorum
	case prev:
		quorumUp = live >= quorum-vs.Hysteresis
	default:
		quorumUp = live >= quorum+vs.Hysteresis
	}
	if !quorumUp && vs.SorryServer != nil {
		// Like keepalived: the sorry server replaces the pool while the
		// quorum is lost (the remaining live servers are too few to serve).
		w := vs.SorryServer.Weight
		if w == 0 {
			w = 1
		}
		dests = []Destination{vs.dest(vs.SorryServer, w)}
		next = time.Time{}
	}
	svc.Destinations = dests
	return svc, quorumUp, next, nil
}

// slowStart returns the ramped weight and when it next changes. The ramp
// is linear from 1 to full over d, counted from since; a weight never
// drops to 0 during the ramp (0 would mean drained).
func slowStart(full int, since, now time.Time, d time.Duration, known bool) (int, time.Time) {
	if d <= 0 || full <= 1 || !known || since.IsZero() {
		return full, time.Time{}
	}
	elapsed := now.Sub(since)
	if elapsed >= d {
		return full, time.Time{}
	}
	if elapsed < 0 {
		elapsed = 0
	}
	w := int(int64(full) * int64(elapsed) / int64(d))
	w = max(w, 1)
	// The weight becomes w+1 at since + d*(w+1)/full (rounded up).
	at := since.Add(time.Duration((int64(d)*int64(w+1) + int64(full) - 1) / int64(full)))
	if at.After(since.Add(d)) {
		at = since.Add(d)
	}
	return w, at
}
