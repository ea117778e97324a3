package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Director returns the director called name, or an error naming the
// directors the site has.
func (s *Site) Director(name string) (*Director, error) {
	for i := range s.Directors {
		if s.Directors[i].Name == name {
			return &s.Directors[i], nil
		}
	}
	names := make([]string, len(s.Directors))
	for i, d := range s.Directors {
		names[i] = d.Name
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	msg := fmt.Sprintf("no director named %q in the site (it has %s)", name, strings.Join(q, ", "))
	if fix := suggest(name, names); fix != "" {
		msg += "; " + fix
	}
	return nil, fmt.Errorf("%s", msg)
}

// Instance returns the instance called name, or nil.
func (s *Site) Instance(name string) *Instance {
	for i := range s.Instances {
		if s.Instances[i].Name == name {
			return &s.Instances[i]
		}
	}
	return nil
}

// InstanceOfVIP returns the instance that has a as a VIP, or nil.
func (s *Site) InstanceOfVIP(a netip.Addr) *Instance {
	for i := range s.Instances {
		for _, v := range s.Instances[i].VIPs {
			if v.Prefix.Addr() == a {
				return &s.Instances[i]
			}
		}
	}
	return nil
}

// ClusterBindAddress is the address d's cluster channel listens on.
func (s *Site) ClusterBindAddress(d *Director) netip.Addr {
	if s.Cluster.BindAddress.IsValid() {
		return s.Cluster.BindAddress
	}
	return d.Address
}

// PriorityOf is d's priority in the instance: its override in priorities,
// or the director's own priority.
func (in *Instance) PriorityOf(d *Director) int {
	if p, ok := in.Priorities[d.Name]; ok {
		return p
	}
	return d.Priority
}

// InterfaceOf is the interface the instance runs on at d.
func (in *Instance) InterfaceOf(d *Director) string {
	if in.Interface != "" {
		return in.Interface
	}
	return d.Interface
}

// VIPInterface is the interface v is added to at d.
func (in *Instance) VIPInterface(v VIP, d *Director) string {
	if v.Interface != "" {
		return v.Interface
	}
	return in.InterfaceOf(d)
}

// IPv6 reports whether the instance's VIPs are IPv6.
func (in *Instance) IPv6() bool {
	return len(in.VIPs) > 0 && in.VIPs[0].Prefix.Addr().Is6()
}

// Skew is the RFC 5798 Skew_Time for a backup of priority prio:
// (256-prio)*Master_Adver_Interval/256; for VRRPv2 (RFC 3768)
// (256-prio)/256 seconds.
func (in *Instance) Skew(prio int) time.Duration {
	if in.Version == 2 {
		return time.Duration(256-prio) * time.Second / 256
	}
	return time.Duration(256-prio) * in.AdvertInterval.Duration / 256
}

// MasterDownInterval is how long a backup of priority prio waits without
// adverts before it becomes master: 3*advert_interval + Skew. It is the
// worst-case failover time when that backup is next in line.
func (in *Instance) MasterDownInterval(prio int) time.Duration {
	return 3*in.AdvertInterval.Duration + in.Skew(prio)
}

// UnicastPeers are the addresses d sends adverts to when the instance is
// unicast: unicast_peers, or the other directors' addresses.
func (s *Site) UnicastPeers(in *Instance, d *Director) []netip.Addr {
	if len(in.UnicastPeers) > 0 {
		var out []netip.Addr
		for _, a := range in.UnicastPeers {
			if a != d.Address {
				out = append(out, a)
			}
		}
		return out
	}
	var out []netip.Addr
	for _, o := range s.Directors {
		if o.Name != d.Name && o.Address.Is6() == in.IPv6() {
			out = append(out, o.Address)
		}
	}
	return out
}

// Ranking is the directors of the site in the order they would be master of
// in: highest priority first; on a tie the higher address wins (RFC 5798
// 6.4.3 compares primary addresses).
func (s *Site) Ranking(in *Instance) []*Director {
	out := make([]*Director, len(s.Directors))
	for i := range s.Directors {
		out[i] = &s.Directors[i]
	}
	better := func(a, b *Director) bool {
		pa, pb := in.PriorityOf(a), in.PriorityOf(b)
		if pa != pb {
			return pa > pb
		}
		return a.Address.Compare(b.Address) > 0
	}
	for i := 1; i < len(out); i++ { // insertion sort: a handful of directors
		for j := i; j > 0 && better(out[j], out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// Role is "master" when d is expected to be master of in with every
// director healthy, "backup" otherwise.
func (s *Site) Role(in *Instance, d *Director) string {
	if r := s.Ranking(in); len(r) > 0 && r[0].Name == d.Name {
		return "master"
	}
	return "backup"
}

// FailoverTime is the worst-case time for the instance to get a new master
// when its expected master dies, and the director that takes over; zero and
// nil for a single-director site.
func (s *Site) FailoverTime(in *Instance) (time.Duration, *Director) {
	r := s.Ranking(in)
	if len(r) < 2 {
		return 0, nil
	}
	return in.MasterDownInterval(in.PriorityOf(r[1])), r[1]
}

// Digest is the SHA-256 (hex) of a canonical encoding of the site with
// every default filled in: the same for two files that mean the same site,
// whatever their formatting, comments or key order.
func (s *Site) Digest() string {
	b, err := json.Marshal(s) // struct fields in fixed order, map keys sorted
	if err != nil {
		panic("config: digest: " + err.Error()) // only plain data: cannot fail
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// ConnSync is what IPVS connection sync does on one director.
type ConnSync struct {
	On        bool
	Interface string
	SyncID    int
	// Instance: the sync master follows this instance's master; "": both
	// roles run all the time.
	Instance string
	// Why says, when On is false, why established connections will not
	// survive a failover.
	Why string
}

// ConnSyncOf says whether and how director d runs the kernel's
// connection sync. It is on wherever the site has virtual servers and
// another director to take them over, unless [ipvs_sync] enabled = false.
func (s *Site) ConnSyncOf(d *Director) ConnSync {
	c := ConnSync{Interface: d.Interface}
	if sy := s.IPVSSync; sy != nil {
		if sy.Interface != "" {
			c.Interface = sy.Interface
		}
		c.SyncID, c.Instance = sy.SyncID, sy.Instance
		if !sy.Enabled {
			c.Why = "[ipvs_sync] enabled = false: every established connection is reset when the VIP moves"
			return c
		}
	}
	switch {
	case len(s.VirtualServers) == 0:
		c.Why = "the site has no virtual servers (VIPs only): no connection state to sync"
	case len(s.Directors) < 2:
		c.Why = "a single director: no other director to take connections over"
	default:
		c.On = true
	}
	return c
}
