package director

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sort"
	"time"

	"github.com/vigil-lb/vigil/healthcheck"
	"github.com/vigil-lb/vigil/ipvs"
)

// Status gathers what `vigil status` shows. It reads the kernel's IPVS
// table once (one dump) and never writes.
func (d *Daemon) Status() Status {
	d.mu.Lock()
	site, me := d.site, d.me
	s := Status{
		Site: site.Settings.Name, Node: me.Name, ConfigPath: d.opts.ConfigPath, Digest: site.Digest(),
		Started: d.started, LastReload: d.lastReload, ReloadErr: d.reloadErr, Reconcile: d.recStat,
		Elections: int(d.elections.Load()), Goroutines: runtime.NumGoroutine(), OpenFDs: countOpenFDs(),
	}
	for _, w := range d.warnings {
		s.Warnings = append(s.Warnings, w)
	}
	insts := make(map[string]*instance, len(d.instances))
	for k, v := range d.instances {
		insts[k] = v
	}
	health := make(ipvs.Health, len(d.health))
	for k, v := range d.health {
		health[k] = v
	}
	keyOf := map[ipvs.ServerRef]string{}
	for k, refs := range d.plan.refs {
		for _, r := range refs {
			keyOf[r] = k
		}
	}
	s.Health = map[string]bool{}
	for ref, h := range d.health {
		s.Health[healthKey(ref)] = h.Up
	}
	s.IPVSDigest = d.ipvsDigest
	lost := map[string]bool{}
	for _, n := range d.quorumLost {
		lost[n] = true
	}
	d.mu.Unlock()
	sort.Strings(s.Warnings)

	switch {
	case d.backend == nil:
		s.IPVS = "not used (VIP-only site)"
	case d.kernel != nil:
		s.IPVS = "kernel"
	default:
		s.IPVS = "in-memory (test)"
	}

	for i := range site.Instances {
		cfg := &site.Instances[i]
		in, ok := insts[cfg.Name]
		if !ok {
			continue
		}
		vs := in.vrrp.Status()
		cs := in.claim.Status()
		is := InstanceStatus{
			Name: cfg.Name, VRID: cfg.VRID, State: stateName(vs.State), Priority: int(vs.Priority),
			Interval: cfg.AdvertInterval.Duration, Transport: cfg.Transport, Since: vs.Since,
			AdvertsSent: vs.Counters.AdvertsSent, AdvertsRecv: vs.Counters.AdvertsReceived,
			Transitions: vs.Counters.Transitions, FirstGARP: cs.Announce.FirstSent, GARPSent: cs.Announce.Sent,
			HandoverHeld:   in.held,
			AnswersSkipped: vs.Counters.AnswersSkipped, Repairs: in.repairs.Load(), VIPsEvicted: cs.Evicted,
		}
		if vs.MasterAddr.IsValid() {
			is.MasterAddr = vs.MasterAddr.String()
		}
		d.mu.Lock()
		is.Reason = in.last.Reason
		d.mu.Unlock()
		for _, v := range cfg.VIPs {
			is.VIPs = append(is.VIPs, v.Prefix.String())
		}
		for _, v := range cs.VIPs {
			if v.Held {
				is.VIPsHeld = append(is.VIPsHeld, v.VIP.Prefix.String())
			}
		}
		if len(vs.Counters.Dropped) > 0 {
			is.Invalid = map[string]uint64{}
			for r, n := range vs.Counters.Dropped {
				is.Invalid[r.String()] = n
			}
		}
		s.Instances = append(s.Instances, is)
	}

	// IPVS as the kernel has it, beside the checks' verdicts.
	var table ipvs.Table
	inKernel := false
	if d.rec != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		t, err := d.rec.Snapshot(ctx, false)
		cancel()
		if err == nil {
			table, inKernel = t, true
		} else {
			s.Warnings = append(s.Warnings, "read IPVS table: "+err.Error())
		}
	}
	checks := map[string]int{}
	var hs []healthcheck.Status
	if d.checks != nil {
		hs = d.checks.Snapshot()
	}
	for i, st := range hs {
		checks[st.Key] = i
	}
	for i := range site.VirtualServers {
		cvs := &site.VirtualServers[i]
		v := VSStatus{Name: cvs.Name, Protocol: cvs.Protocol, Scheduler: cvs.Scheduler, Forwarding: cvs.Forwarding, SorryActive: lost[cvs.Name]}
		var svc *ipvs.Service
		if i < len(d.vss) {
			k := d.vss[i].Key
			v.Address = cvs.Address.String()
			if cvs.Fwmark != 0 {
				v.Address = fmt.Sprintf("fwmark %d", cvs.Fwmark)
			}
			if inKernel {
				svc, v.InKernel = table.Lookup(k)
			}
		}
		if svc != nil {
			v.Scheduler = svc.Scheduler
			v.Conns, v.InPkts, v.OutPkts = uint64(svc.Stats.Connections), uint64(svc.Stats.PacketsIn), uint64(svc.Stats.PacketsOut)
			v.InBytes, v.OutBytes = svc.Stats.BytesIn, svc.Stats.BytesOut
		}
		for j := range cvs.RealServers {
			crs := &cvs.RealServers[j]
			ref := serverRef(cvs, crs)
			rs := RSStatus{Address: crs.Address.String(), Weight: crs.Weight, IPVSWeight: -1, Health: "unknown"}
			port := crs.Address.Port()
			if port == 0 && cvs.Fwmark == 0 {
				port = cvs.Address.Port()
			}
			if svc != nil {
				for _, dst := range svc.Destinations {
					if dst.Addr == crs.Address.Addr() && dst.Port == port {
						rs.IPVSWeight, rs.ActiveConn, rs.InactConn = dst.Weight, dst.ActiveConns, dst.InactiveConns
						rs.Conns, rs.InPkts, rs.OutPkts = uint64(dst.Stats.Connections), uint64(dst.Stats.PacketsIn), uint64(dst.Stats.PacketsOut)
					}
				}
			}
			if h, ok := health[ref]; ok {
				rs.Health = "down"
				if h.Up {
					rs.Health = "up"
				}
			}
			if k, ok := keyOf[ref]; ok {
				if idx, ok := checks[k]; ok {
					st := hs[idx]
					rs.Passes, rs.Fails, rs.Latency, rs.LastCheck, rs.Reason = st.Passes, st.Fails, st.Last.Latency, st.LastCheck, st.Last.Reason
				}
			} else {
				rs.Reason = "no check (always up)"
			}
			v.RealServers = append(v.RealServers, rs)
		}
		s.VirtualServers = append(s.VirtualServers, v)
	}
	if d.ch != nil {
		drift := map[string]bool{}
		for _, r := range d.ch.Drift() {
			drift[r.Peer.Name] = true
		}
		for _, p := range d.ch.Peers() {
			ps := PeerStatus{Name: p.Name, Addr: p.Addr.String(), Alive: p.Alive, Drift: drift[p.Name], LastSeen: p.LastSeen}
			if p.StateKnown {
				ps.Digest = p.State.ConfigDigest
				ps.Instances = map[string]string{}
				ps.InstanceDetail = map[string]PeerInstance{}
				for n, st := range p.State.Instances {
					ps.Instances[n] = st.State
					ps.InstanceDetail[n] = PeerInstance{State: st.State, Priority: st.Priority, Since: st.Since,
						VIPsAdded: st.VIPsAdded, FirstGARP: st.FirstGARP}
				}
				ps.Health, ps.IPVSDigest = p.State.Health, p.State.IPVSDigest
			}
			s.Peers = append(s.Peers, ps)
		}
		s.DualMasterTransients = d.ch.DualMasterTransients()
	}
	return s
}

// countOpenFDs counts this process's open file descriptors (-1: unknown).
func countOpenFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents) - 1 // the directory being read
}
