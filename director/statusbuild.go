package director

import (
	"context"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/vigil-lb/vigil/cluster"
	"github.com/vigil-lb/vigil/config"
	"github.com/vigil-lb/vigil/failover"
	"github.com/vigil-lb/vigil/healthcheck"
	"github.com/vigil-lb/vigil/ipvs"
	"github.com/vigil-lb/vigil/vrrp"
)

// Status gathers what `vigil status` shows. It reads the kernel's IPVS
// table once (one dump) and never writes. Each section has its own
// builder below; this only collects their inputs.
func (d *Daemon) Status() Status {
	d.mu.Lock()
	site := d.site
	s := Status{
		Site: site.Settings.Name, Node: d.me.Name, ConfigPath: d.opts.ConfigPath, Digest: site.Digest(),
		Started: d.started, LastReload: d.lastReload, ReloadErr: d.reloadErr,
	}
	warnings := slices.Sorted(maps.Values(d.warnings))
	running := d.runningInstances(site)
	d.mu.Unlock()
	runs := make([]instanceRun, len(running))
	for i, r := range running {
		runs[i] = r.read()
	}

	s.IPVS = ipvsName(d.pipe.programs(), d.kernel != nil)
	s.Elections = int(d.elections.Load())
	s.Goroutines, s.OpenFDs = runtime.NumGoroutine(), countOpenFDs()
	s.Instances = instancesStatus(runs)

	ps := d.pipe.status()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	table, inKernel, err := d.pipe.table(ctx)
	cancel()
	if err != nil {
		warnings = append(warnings, err.Error())
	}
	s.Warnings = warnings
	s.VirtualServers = virtualServersStatus(site.VirtualServers, ps, table, inKernel)
	s.Reconcile, s.Health, s.IPVSDigest = ps.Reconcile, healthView(ps.Health), ps.Digest

	if d.ch != nil {
		s.Peers = peersStatus(d.ch.Peers(), d.ch.Drift())
		s.DualMasterTransients = d.ch.DualMasterTransients()
	}
	return s
}

// ipvsName says which IPVS backend the director programs.
func ipvsName(programs, kernel bool) string {
	switch {
	case !programs:
		return "not used (VIP-only site)"
	case kernel:
		return "kernel"
	}
	return "in-memory (test)"
}

// countOpenFDs counts this process's open file descriptors (-1: unknown).
func countOpenFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents) - 1 // the directory being read
}

// instanceRun is what the instances section shows of one running
// instance: its config, the election's and the claimer's status, and
// what the daemon keeps beside them.
type instanceRun struct {
	cfg       *config.Instance
	election  vrrp.Status
	claim     failover.ClaimStatus
	held      bool   // a handover holds it out of the election
	reason    string // of its last transition
	repairs   uint64 // guard repairs
	lingering bool   // resigned, VIPs kept until the successor is heard
	resync    string // how the last wait for the master's connections ended
}

// runningInstance is a running instance with the fields d.mu guards.
type runningInstance struct {
	cfg    *config.Instance
	in     *instance
	held   bool
	reason string
	resync string
}

// runningInstances lists the running instances in site order; called
// with d.mu held.
func (d *Daemon) runningInstances(site *config.Site) []runningInstance {
	var out []runningInstance
	for i := range site.Instances {
		cfg := &site.Instances[i]
		if in, ok := d.instances[cfg.Name]; ok {
			out = append(out, runningInstance{cfg: cfg, in: in, held: in.held, reason: in.last.Reason, resync: d.resync.lastOf(cfg.Name)})
		}
	}
	return out
}

// read asks the election and the claimer for their status: without
// d.mu, which their events take.
func (r runningInstance) read() instanceRun {
	return instanceRun{cfg: r.cfg, election: r.in.vrrp.Status(), claim: r.in.claim.Status(),
		held: r.held, reason: r.reason, repairs: r.in.repairs.Load(), lingering: r.in.lingering.Load(), resync: r.resync}
}

// instancesStatus is the instances section.
func instancesStatus(runs []instanceRun) []InstanceStatus {
	var out []InstanceStatus
	for _, r := range runs {
		out = append(out, instanceStatus(r))
	}
	return out
}

// instanceStatus is one instance's line.
func instanceStatus(r instanceRun) InstanceStatus {
	cfg, vs, cs := r.cfg, r.election, r.claim
	is := InstanceStatus{
		Name: cfg.Name, VRID: cfg.VRID, State: stateName(vs.State), Priority: int(vs.Priority),
		Interval: cfg.AdvertInterval.Duration, Transport: cfg.Transport, Since: vs.Since, Reason: r.reason,
		AdvertsSent: vs.Counters.AdvertsSent, AdvertsRecv: vs.Counters.AdvertsReceived,
		Transitions: vs.Counters.Transitions, FirstGARP: cs.Announce.FirstSent, GARPSent: cs.Announce.Sent,
		HandoverHeld:   r.held,
		AnswersSkipped: vs.Counters.AnswersSkipped, Repairs: r.repairs, VIPsEvicted: cs.Evicted,
		PreemptHolds: vs.PreemptHolds, Resync: r.resync, Lingering: r.lingering,
	}
	if slices.Contains(vs.PreemptHolds, resyncHold) {
		is.ResyncWait = resyncWait
	}
	if vs.MasterAddr.IsValid() {
		is.MasterAddr = vs.MasterAddr.String()
	}
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
	return is
}

// virtualServersStatus is the virtual servers section: each virtual
// server of the site as IPVS has it (table, when inKernel) beside the
// pipeline's health view and checks.
func virtualServersStatus(vss []config.VirtualServer, ps pipelineStatus, table ipvs.Table, inKernel bool) []VSStatus {
	checks := make(map[string]healthcheck.Status, len(ps.Checks))
	for _, st := range ps.Checks {
		checks[st.Key] = st
	}
	var out []VSStatus
	for i := range vss {
		cvs := &vss[i]
		v := VSStatus{Name: cvs.Name, Address: cvs.Address.String(), Protocol: cvs.Protocol, Scheduler: cvs.Scheduler,
			Forwarding: cvs.Forwarding, SorryActive: slices.Contains(ps.QuorumLost, cvs.Name)}
		if cvs.Fwmark != 0 {
			v.Address = fmt.Sprintf("fwmark %d", cvs.Fwmark)
		}
		var svc *ipvs.Service
		if k, ok := ps.Keys[cvs.Name]; ok && inKernel {
			svc, v.InKernel = table.Lookup(k)
		}
		if svc != nil {
			v.Scheduler = svc.Scheduler
			v.Conns, v.InPkts, v.OutPkts = uint64(svc.Stats.Connections), uint64(svc.Stats.PacketsIn), uint64(svc.Stats.PacketsOut)
			v.InBytes, v.OutBytes = svc.Stats.BytesIn, svc.Stats.BytesOut
		}
		for j := range cvs.RealServers {
			crs := &cvs.RealServers[j]
			ref := serverRef(cvs, crs)
			rs := realServerStatus(cvs, crs, svc)
			if h, ok := ps.Health[ref]; ok {
				rs.Health = "down"
				if h.Up {
					rs.Health = "up"
				}
			}
			if k, ok := ps.CheckOf[ref]; ok {
				if st, ok := checks[k]; ok {
					rs.Passes, rs.Fails, rs.Latency, rs.LastCheck, rs.Reason = st.Passes, st.Fails, st.Last.Latency, st.LastCheck, st.Last.Reason
				}
			} else {
				rs.Reason = "no check (always up)"
			}
			v.RealServers = append(v.RealServers, rs)
		}
		out = append(out, v)
	}
	return out
}

// realServerStatus is one real server as IPVS has it (svc nil: the
// service is not in the table), health unknown until the caller sets it.
func realServerStatus(cvs *config.VirtualServer, crs *config.RealServer, svc *ipvs.Service) RSStatus {
	rs := RSStatus{Address: crs.Address.String(), Weight: crs.Weight, IPVSWeight: -1, Health: "unknown"}
	if svc == nil {
		return rs
	}
	port := crs.Address.Port()
	if port == 0 && cvs.Fwmark == 0 {
		port = cvs.Address.Port()
	}
	for _, dst := range svc.Destinations {
		if dst.Addr == crs.Address.Addr() && dst.Port == port {
			rs.IPVSWeight, rs.ActiveConn, rs.InactConn = dst.Weight, dst.ActiveConns, dst.InactiveConns
			rs.Conns, rs.InPkts, rs.OutPkts = uint64(dst.Stats.Connections), uint64(dst.Stats.PacketsIn), uint64(dst.Stats.PacketsOut)
		}
	}
	return rs
}

// peersStatus is the peers section: the directors seen on the cluster
// channel (in the channel's order) and whether each runs another config.
func peersStatus(peers []cluster.PeerView, drift []cluster.DriftReport) []PeerStatus {
	drifting := map[string]bool{}
	for _, r := range drift {
		drifting[r.Peer.Name] = true
	}
	var out []PeerStatus
	for _, p := range peers {
		out = append(out, peerStatus(p, drifting[p.Name]))
	}
	return out
}

// peerStatus is one peer and what it last published.
func peerStatus(p cluster.PeerView, drift bool) PeerStatus {
	ps := PeerStatus{Name: p.Name, Addr: p.Addr.String(), Alive: p.Alive, Drift: drift, LastSeen: p.LastSeen}
	if !p.StateKnown {
		return ps
	}
	ps.Digest = p.State.ConfigDigest
	ps.Instances = map[string]string{}
	ps.InstanceDetail = map[string]PeerInstance{}
	for n, st := range p.State.Instances {
		ps.Instances[n] = st.State
		ps.InstanceDetail[n] = PeerInstance{State: st.State, Priority: st.Priority, Since: st.Since,
			VIPsAdded: st.VIPsAdded, FirstGARP: st.FirstGARP}
	}
	ps.Health, ps.IPVSDigest = p.State.Health, p.State.IPVSDigest
	return ps
}
