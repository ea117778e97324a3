package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/vigil-lb/vigil/config"
)

func init() {
	extraCommands["check"] = command{"validate a site file and print what it means for a director", func(args []string, stdout, stderr io.Writer) int {
		return runCheck(args, stdout, stderr, os.Hostname)
	}}
}

// runCheck is `vigil check -c FILE [--node NAME]`. Exit codes: 0 the site is
// valid, 1 it is not (every problem is listed), 2 the file cannot be read or
// the flags are wrong.
//
// Without --node the director is the one named like this host. When no
// director has the host's name (a laptop, a CI runner) the file is still
// validated and the site is printed for every director, because "is this
// file right?" is the common question there.
func runCheck(args []string, stdout, stderr io.Writer, hostname func() (string, error)) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("c", "/etc/vigil/site.toml", "site file")
	node := fs.String("node", "", "director to show the site for (default: the hostname; every director when no director has that name)")
	quiet := fs.Bool("q", false, "print nothing when the site is valid")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vigil check: unexpected argument %q (the file goes after -c)\n", fs.Arg(0))
		return 2
	}
	site, err := config.Load(*file)
	if err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			// The first errors and a count of the rest (Errors caps itself):
			// a file of a million mistakes must not print a million lines.
			fmt.Fprintln(stderr, errs.Error())
			fmt.Fprintf(stderr, "vigil check: %s: %d %s\n", *file, errs.Total(), plural(errs.Total(), "error", "errors"))
			return 1
		}
		fmt.Fprintf(stderr, "vigil check: %v\n", err)
		return 2
	}

	var dirs []*config.Director
	all := false // no --node and no director named like this host
	switch {
	case *node != "":
		d, err := site.Director(*node)
		if err != nil {
			fmt.Fprintf(stderr, "%s: --node: %v\n", *file, err)
			return 1
		}
		dirs = append(dirs, d)
	default:
		if h, err := hostname(); err == nil {
			for _, name := range []string{h, strings.SplitN(h, ".", 2)[0]} {
				if d, err := site.Director(name); err == nil {
					dirs = append(dirs, d)
					break
				}
			}
		}
		if dirs == nil {
			all = true
			for i := range site.Directors {
				dirs = append(dirs, &site.Directors[i])
			}
		}
	}
	if !*quiet {
		writeSite(stdout, site, dirs, all)
	}
	return 0
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// writeSite prints what the site means for each of dirs.
func writeSite(w io.Writer, s *config.Site, dirs []*config.Director, all bool) {
	fmt.Fprintf(w, "site %s: %s is valid (digest %s)\n", s.Settings.Name, s.File, s.Digest()[:16])
	if all {
		fmt.Fprintln(w, "no director is named like this host: showing every director (choose one with --node)")
	}
	for _, d := range dirs {
		fmt.Fprintf(w, "\ndirector %s  address %s  interface %s  priority %d\n", d.Name, d.Address, d.Interface, d.Priority)
		fmt.Fprintf(w, "  cluster channel %s port %d, %s\n", s.ClusterBindAddress(d), s.Cluster.Port, clusterSecurity(s))
		for i := range s.Instances {
			writeInstance(w, s, &s.Instances[i], d)
		}
	}
	for i := range s.VirtualServers {
		writeVirtualServer(w, s, &s.VirtualServers[i])
	}
	writeConnSync(w, s, dirs)
}

// writeConnSync says whether established connections survive a failover
// of the site, and why not when they do not.
func writeConnSync(w io.Writer, s *config.Site, dirs []*config.Director) {
	if len(dirs) == 0 {
		return
	}
	c := s.ConnSyncOf(dirs[0])
	if !c.On {
		fmt.Fprintf(w, "\nconnections: a failover resets established connections: %s\n", c.Why)
		return
	}
	ifaces := map[string]bool{}
	var names []string
	for _, d := range dirs {
		if i := s.ConnSyncOf(d).Interface; !ifaces[i] {
			ifaces[i] = true
			names = append(names, i)
		}
	}
	roles := "master and backup roles on each director"
	if c.Instance != "" {
		roles = "sync master where instance " + c.Instance + " is master"
	}
	fmt.Fprintf(w, "\nconnections: established connections survive a failover: IPVS connection sync on %s, sync id %d, %s;\n"+
		"  idle ones too: a full resync before a planned handover and before a returning director takes the VIP back\n",
		strings.Join(names, ", "), c.SyncID, roles)
}

func clusterSecurity(s *config.Site) string {
	if s.Cluster.Insecure {
		return "UNENCRYPTED (insecure = true)"
	}
	if s.Cluster.SecretKeyFile == "" {
		return "single director"
	}
	return "key " + s.Cluster.SecretKeyFile
}

func writeInstance(w io.Writer, s *config.Site, in *config.Instance, d *config.Director) {
	prio := in.PriorityOf(d)
	transport := in.Transport
	if in.Transport == "vrrp" {
		group := "224.0.0.18"
		if in.IPv6() {
			group = "ff02::12"
		}
		transport = fmt.Sprintf("VRRPv%d multicast to %s", in.Version, group)
		if in.Unicast {
			transport = fmt.Sprintf("VRRPv%d unicast to %s", in.Version, joinAddrs(s.UnicastPeers(in, d)))
		}
	} else {
		transport = "gossip over the cluster channel"
	}
	fmt.Fprintf(w, "\n  instance %s  vrid %d  on %s  %s\n", in.Name, in.VRID, in.InterfaceOf(d), transport)
	rank := s.Ranking(in)
	role := s.Role(in, d)
	line := fmt.Sprintf("    role %s, priority %d", role, prio)
	if role == "backup" && len(rank) > 0 {
		line += fmt.Sprintf(" (master: %s with %d)", rank[0].Name, in.PriorityOf(rank[0]))
	}
	if in.Preempt {
		line += ", preempt"
		if in.PreemptDelay.Duration > 0 {
			line += " after " + in.PreemptDelay.String()
		}
	} else {
		line += ", no preempt"
	}
	if in.StartupDelay.Duration > 0 {
		line += ", startup delay " + in.StartupDelay.String()
	}
	if in.SyncGroup != "" {
		line += ", sync group " + in.SyncGroup
	}
	fmt.Fprintln(w, line)
	fmt.Fprintf(w, "    advert interval %v; Master_Down_Interval here %v (3 x %v + skew %v)\n",
		in.AdvertInterval.Duration, round(in.MasterDownInterval(prio)), in.AdvertInterval.Duration, round(in.Skew(prio)))
	if ft, next := s.FailoverTime(in); next != nil {
		fmt.Fprintf(w, "    failover time if %s fails: %v (%s takes over)\n", rank[0].Name, round(ft), next.Name)
	} else {
		fmt.Fprintln(w, "    failover time: none, this site has one director")
	}
	for _, v := range in.VIPs {
		vip := "    vip " + v.Prefix.String() + " on " + in.VIPInterface(v, d)
		if v.Label != "" {
			vip += " label " + v.Label
		}
		fmt.Fprintln(w, vip)
	}
	fmt.Fprintf(w, "    announce: %d gratuitous %s %v apart", in.GARP.Repeat, map[bool]string{false: "ARP", true: "NA"}[in.IPv6()], in.GARP.Interval.Duration)
	if in.GARP.Refresh.Duration > 0 {
		fmt.Fprintf(w, ", refresh every %v", in.GARP.Refresh.Duration)
	}
	fmt.Fprintln(w)
	for _, t := range in.TrackInterfaces {
		fmt.Fprintf(w, "    track interface %s: %s\n", t.Name, weightEffect(t.Weight))
	}
	for _, t := range in.TrackScripts {
		fmt.Fprintf(w, "    track script %s every %v: %s\n", commandString(t.Command), t.Interval.Duration, weightEffect(t.Weight))
	}
	for _, n := range []struct {
		what string
		c    config.Command
	}{{"master", in.NotifyMaster}, {"backup", in.NotifyBackup}, {"fault", in.NotifyFault}, {"any change", in.Notify}} {
		if s := commandString(n.c); s != "" {
			fmt.Fprintf(w, "    on %s run %s (timeout %v)\n", n.what, s, in.NotifyTimeout.Duration)
		}
	}
}

func weightEffect(wt int) string {
	if wt == 0 {
		return "fault while down"
	}
	return fmt.Sprintf("priority %+d while down", wt)
}

func round(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Microsecond)
}

func joinAddrs[T fmt.Stringer](as []T) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	if len(s) == 0 {
		return "nobody"
	}
	return strings.Join(s, ", ")
}

func commandString(c config.Command) string {
	if c.Shell != "" {
		return fmt.Sprintf("%q (sh -c)", c.Shell)
	}
	if len(c.Argv) > 0 {
		return fmt.Sprintf("%q", c.Argv)
	}
	return ""
}

func writeVirtualServer(w io.Writer, s *config.Site, vs *config.VirtualServer) {
	svc := vs.Protocol + " " + vs.Address.String()
	owner := ""
	if vs.Fwmark != 0 {
		svc = fmt.Sprintf("fwmark %d (%s)", vs.Fwmark, vs.Family)
	} else if in := s.InstanceOfVIP(vs.Address.Addr()); in != nil {
		owner = ", VIP of instance " + in.Name
	}
	fmt.Fprintf(w, "\nvirtual server %s  %s  scheduler %s  forwarding %s%s\n", vs.Name, svc, vs.Scheduler, vs.Forwarding, owner)
	var extras []string
	if p := vs.Persistence; p != nil {
		extras = append(extras, fmt.Sprintf("persistence %v per /%d", p.Timeout.Duration, p.Bits))
	}
	if vs.OnePacket {
		extras = append(extras, "one-packet scheduling")
	}
	extras = append(extras, fmt.Sprintf("quorum %d", vs.Quorum))
	if vs.Hysteresis > 0 {
		extras = append(extras, fmt.Sprintf("hysteresis %d", vs.Hysteresis))
	}
	if vs.SorryServer.IsValid() {
		extras = append(extras, "sorry server "+vs.SorryServer.String())
	}
	if vs.Drain {
		extras = append(extras, "failed servers drained to weight 0")
	} else {
		extras = append(extras, "failed servers removed")
	}
	if vs.SlowStart.Duration > 0 {
		extras = append(extras, "slow start "+vs.SlowStart.String())
	}
	fmt.Fprintf(w, "  %s\n", strings.Join(extras, ", "))
	for _, rs := range vs.RealServers {
		addr := rs.Address.String()
		if rs.Address.Port() == 0 {
			addr = rs.Address.Addr().String() + " (client's port)"
		}
		line := "  real server " + addr
		if rs.Name != rs.Address.String() {
			line = "  real server " + rs.Name + "  " + addr
		}
		line += fmt.Sprintf("  weight %d", rs.Weight)
		if rs.Forwarding != vs.Forwarding {
			line += "  forwarding " + rs.Forwarding
		}
		if rs.UpperThreshold > 0 || rs.LowerThreshold > 0 {
			line += fmt.Sprintf("  thresholds %d/%d", rs.LowerThreshold, rs.UpperThreshold)
		}
		fmt.Fprintln(w, line)
		fmt.Fprintf(w, "    check %s\n", checkString(rs.Check, rs.Address.Port()))
	}
}

func checkString(c config.Check, port uint16) string {
	if c.Type == "none" {
		return "none (always up)"
	}
	var b strings.Builder
	b.WriteString(c.Type)
	if c.Port != 0 {
		port = uint16(c.Port)
	}
	switch c.Type {
	case "tcp":
		fmt.Fprintf(&b, " connect to port %d", port)
	case "http", "https":
		fmt.Fprintf(&b, " %s %s on port %d", c.Method, c.Path, port)
		if c.Host != "" {
			fmt.Fprintf(&b, " host %s", c.Host)
		}
		var st []string
		for _, r := range c.ExpectStatus {
			if r.Lo == r.Hi {
				st = append(st, fmt.Sprint(r.Lo))
			} else {
				st = append(st, fmt.Sprintf("%d-%d", r.Lo, r.Hi))
			}
		}
		fmt.Fprintf(&b, " expect %s", strings.Join(st, ","))
		if c.Body != "" {
			fmt.Fprintf(&b, " body contains %q", c.Body)
		}
		if c.BodyRegex != "" {
			fmt.Fprintf(&b, " body matches %q", c.BodyRegex)
		}
		if c.Digest != "" {
			fmt.Fprintf(&b, " body md5 %s", c.Digest)
		}
		if c.Type == "https" && !c.Verify {
			b.WriteString(" (certificate not verified)")
		}
	case "exec":
		fmt.Fprintf(&b, " %s", commandString(c.Command))
	}
	fmt.Fprintf(&b, "; every %v, timeout %v, up after %d, down after %d, starts %s",
		c.Interval.Duration, c.Timeout.Duration, c.Rise, c.Fall, c.InitialState)
	return b.String()
}
