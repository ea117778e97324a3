package director

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/vigil-lb/vigil/config"
	"github.com/vigil-lb/vigil/failover"
	"github.com/vigil-lb/vigil/healthcheck"
	"github.com/vigil-lb/vigil/ipvs"
	"github.com/vigil-lb/vigil/vrrp"
)

// This file converts the site file into the small input types of the
// packages director wires. Nothing here has side effects.

// argv turns a config command into an argv (a string runs under /bin/sh).
func argv(c config.Command) []string {
	switch {
	case len(c.Argv) > 0:
		return append([]string(nil), c.Argv...)
	case c.Shell != "":
		return []string{"/bin/sh", "-c", c.Shell}
	}
	return nil
}

// notifyArgv is argv for a notify command; withArgs: failover appends
// keepalived's arguments (INSTANCE name state priority). Under sh -c
// those would become $0..$3 of the shell, not $1..$4 of the command the
// string names, so the string form passes them on with "$@" at the end
// of its command line (shell syntax in it keeps working).
func notifyArgv(c config.Command, withArgs bool) []string {
	if !withArgs || len(c.Argv) > 0 || c.Shell == "" {
		return argv(c)
	}
	// A trailing newline (a TOML multi-line string) or ';' would make
	// "$@" a command of its own.
	line := strings.TrimRight(c.Shell, " \t\r\n;")
	return []string{"/bin/sh", "-c", line + ` "$@"`, "vigil-notify"}
}

// vrrpConfig is the election config of instance in at director me.
func vrrpConfig(in *config.Instance, me *config.Director) vrrp.Config {
	vips := make([]netip.Addr, len(in.VIPs))
	for i, v := range in.VIPs {
		vips[i] = v.Prefix.Addr()
	}
	return vrrp.Config{
		Name:         in.Name,
		VRID:         uint8(in.VRID),
		Version:      in.Version,
		Priority:     uint8(in.PriorityOf(me)),
		Interval:     in.AdvertInterval.Duration,
		NoPreempt:    !in.Preempt,
		PreemptDelay: in.PreemptDelay.Duration,
		StartupDelay: in.StartupDelay.Duration,
		VIPs:         vips,
		AuthPass:     in.AuthPass,
	}
}

// claimerConfig is what failover needs for instance in at director me.
func claimerConfig(in *config.Instance, me *config.Director) failover.ClaimerConfig {
	cc := failover.ClaimerConfig{
		Instance: in.Name,
		Announce: failover.AnnounceConfig{
			Repeat:   in.GARP.Repeat,
			Interval: in.GARP.Interval.Duration,
			Refresh:  in.GARP.Refresh.Duration,
		},
		NotifyTimeout: in.NotifyTimeout.Duration,
	}
	for _, v := range in.VIPs {
		cc.VIPs = append(cc.VIPs, failover.VIP{Prefix: v.Prefix, Interface: in.VIPInterface(v, me), Label: v.Label})
	}
	add := func(c config.Command, states ...failover.State) {
		if a := notifyArgv(c, len(states) == 0); a != nil {
			cc.Notify = append(cc.Notify, failover.NotifyCommand{Argv: a, States: states})
		}
	}
	add(in.NotifyMaster, failover.StateMaster)
	add(in.NotifyBackup, failover.StateBackup)
	add(in.NotifyFault, failover.StateFault)
	add(in.Notify)
	return cc
}

// failoverState maps an election state to failover's.
func failoverState(s vrrp.State) failover.State {
	switch s {
	case vrrp.Master:
		return failover.StateMaster
	case vrrp.Backup:
		return failover.StateBackup
	case vrrp.Fault:
		return failover.StateFault
	}
	return failover.StateInit
}

// states is every VRRP state, in the order metrics list them.
var states = []vrrp.State{vrrp.Initialize, vrrp.Backup, vrrp.Master, vrrp.Fault}

// stateName is the lower-case state name used in status and metrics.
func stateName(s vrrp.State) string {
	switch s {
	case vrrp.Master:
		return "master"
	case vrrp.Backup:
		return "backup"
	case vrrp.Fault:
		return "fault"
	}
	return "init"
}

// ParseState reads a state as status and metrics spell it: the one
// mapping back, so that a client of the status compares typed states,
// not strings. A name it does not know (a daemon of another version) is
// an error, never a silent "not master".
func ParseState(s string) (vrrp.State, error) {
	for _, st := range states {
		if stateName(st) == s {
			return st, nil
		}
	}
	return 0, fmt.Errorf("unknown VRRP state %q", s)
}

// checkSpec is the health check of one real server; ok is false for
// check type "none" (the server is always up).
func checkSpec(vs *config.VirtualServer, rs *config.RealServer) (healthcheck.Spec, bool) {
	c := rs.Check
	if c.Type == "none" {
		return healthcheck.Spec{}, false
	}
	target := rs.Address
	if target.Port() == 0 {
		target = netip.AddrPortFrom(rs.Address.Addr(), vs.Address.Port())
	}
	s := healthcheck.Spec{
		Kind:         healthcheck.Kind(c.Type),
		Target:       target,
		CheckPort:    uint16(c.Port),
		Name:         rs.Name,
		Interval:     c.Interval.Duration,
		FastInterval: c.FastInterval.Duration,
		DownInterval: c.DownInterval.Duration,
		Timeout:      c.Timeout.Duration,
		Warmup:       c.Warmup.Duration,
		Rise:         c.Rise,
		Fall:         c.Fall,
		InitialUp:    c.InitialState == "up",
	}
	switch c.Type {
	case "http", "https":
		h := &healthcheck.HTTPSpec{
			Method: c.Method, Path: c.Path, Host: c.Host,
			BodyContains: c.Body, BodyRegexp: c.BodyRegex, BodyMD5: c.Digest,
		}
		if c.Type == "https" {
			h.ServerName, h.Verify = c.SNI, c.Verify
		}
		for _, r := range c.ExpectStatus {
			h.Expect = append(h.Expect, healthcheck.StatusRange{Min: r.Lo, Max: r.Hi})
		}
		s.HTTP = h
	case "exec":
		s.Exec = &healthcheck.ExecSpec{Command: argv(c.Command), Dynamic: c.DynamicWeight}
	}
	return s, true
}

// serverRef names a real server of a virtual server in the health view.
func serverRef(vs *config.VirtualServer, rs *config.RealServer) ipvs.ServerRef {
	return ipvs.ServerRef{VirtualServer: vs.Name, Server: rs.Address}
}

// healthKey is the key of a real server in the cluster's health view.
func healthKey(r ipvs.ServerRef) string { return r.VirtualServer + "/" + r.Server.String() }

// checkPlan is every check of the site and which real servers each one
// decides for.
type checkPlan struct {
	specs  []healthcheck.Spec
	refs   map[string][]ipvs.ServerRef // Spec.Key -> servers
	always []ipvs.ServerRef            // check "none": always up
	initUp map[ipvs.ServerRef]bool     // initial state before the first result
}

func planChecks(site *config.Site) checkPlan {
	p := checkPlan{refs: map[string][]ipvs.ServerRef{}, initUp: map[ipvs.ServerRef]bool{}}
	for i := range site.VirtualServers {
		vs := &site.VirtualServers[i]
		for j := range vs.RealServers {
			rs := &vs.RealServers[j]
			ref := serverRef(vs, rs)
			spec, ok := checkSpec(vs, rs)
			if !ok {
				p.always = append(p.always, ref)
				p.initUp[ref] = true
				continue
			}
			k := spec.Key()
			if _, seen := p.refs[k]; !seen {
				p.specs = append(p.specs, spec)
			}
			p.refs[k] = append(p.refs[k], ref)
			p.initUp[ref] = spec.InitialUp
		}
	}
	sort.Slice(p.specs, func(i, j int) bool { return p.specs[i].Key() < p.specs[j].Key() })
	return p
}

// virtualServers converts the site's virtual servers for ipvs.Build.
func virtualServers(site *config.Site) ([]ipvs.VirtualServer, error) {
	var out []ipvs.VirtualServer
	for i := range site.VirtualServers {
		vs := &site.VirtualServers[i]
		v, err := virtualServer(vs)
		if err != nil {
			return nil, fmt.Errorf("virtual server %s: %w", vs.Name, err)
		}
		out = append(out, v)
	}
	return out, nil
}

func virtualServer(vs *config.VirtualServer) (ipvs.VirtualServer, error) {
	proto, err := ipvs.ParseProtocol(vs.Protocol)
	if err != nil {
		return ipvs.VirtualServer{}, err
	}
	fwd, err := ipvs.ParseForwarding(vs.Forwarding)
	if err != nil {
		return ipvs.VirtualServer{}, err
	}
	v := ipvs.VirtualServer{
		Name:           vs.Name,
		Scheduler:      vs.Scheduler,
		OnePacket:      vs.OnePacket,
		Forwarding:     fwd,
		DrainOnFailure: vs.Drain,
		Quorum:         vs.Quorum,
		Hysteresis:     vs.Hysteresis,
		SlowStart:      vs.SlowStart.Duration,
		// The director seeds the health view with each check's initial
		// state, so a server the view lacks is one being removed.
		UnknownIsDown: true,
	}
	if vs.Fwmark != 0 {
		fam := ipvs.IPv4
		if vs.Family == "ipv6" {
			fam = ipvs.IPv6
		}
		v.Key = ipvs.MarkKey(fam, vs.Fwmark)
	} else {
		v.Key = ipvs.AddrKey(proto, vs.Address)
	}
	if vs.Persistence != nil {
		v.Persistence = vs.Persistence.Timeout.Duration
		v.PersistenceNetmask = vs.Persistence.Bits
	}
	if vs.SorryServer.IsValid() {
		v.SorryServer = &ipvs.RealServer{Addr: vs.SorryServer.Addr(), Port: vs.SorryServer.Port(), Weight: 1}
	}
	for j := range vs.RealServers {
		rs := &vs.RealServers[j]
		r := ipvs.RealServer{
			Addr: rs.Address.Addr(), Port: rs.Address.Port(), Weight: rs.Weight,
			UpperThreshold: uint32(rs.UpperThreshold), LowerThreshold: uint32(rs.LowerThreshold),
		}
		if rs.Forwarding != "" {
			f, err := ipvs.ParseForwarding(rs.Forwarding)
			if err != nil {
				return ipvs.VirtualServer{}, fmt.Errorf("real server %s: %w", rs.Address, err)
			}
			r.Forwarding = &f
		}
		v.RealServers = append(v.RealServers, r)
	}
	return v, nil
}
