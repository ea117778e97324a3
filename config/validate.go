package config

import (
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// validator checks the decoded site as a whole and fills derived fields.
// It reports a missing value only when the key is absent, so a value that
// failed to decode is not reported twice.
type validator struct {
	*decoder
	raw map[string]any
	s   *Site
	// vipsIncomplete is set when some VIP could not be read, so "not a VIP
	// of any instance" cannot be decided.
	vipsIncomplete bool
}

// rawAt returns the raw value at p and whether it is present in the file.
func (v *validator) rawAt(p path) (any, bool) {
	var cur any = v.raw
	for _, seg := range p {
		switch c := cur.(type) {
		case map[string]any:
			x, ok := c[seg]
			if !ok {
				return nil, false
			}
			cur = x
		case []map[string]any: // array of tables; not via arrayOf, which copies
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

func (v *validator) has(p path) bool { _, ok := v.rawAt(p); return ok }

// missing reports a required key that is absent from the table at p.
func (v *validator) missing(p path, key, fix string) {
	if !v.has(p.child(key)) && !v.misspelt(p, key) {
		v.absentErr(p, key, fix, "missing %s %s", key, where(p.child(key)))
	}
}

// misspelt reports whether the table at p has an unknown key that is a
// misspelling of key (already reported as unknown, with a suggestion).
func (v *validator) misspelt(p path, key string) bool {
	m, ok := v.rawAtMap(p)
	if !ok && len(p) == 0 {
		m, ok = v.raw, true
	}
	if !ok {
		return false
	}
	for k := range m {
		if k != key && suggest(k, []string{key}) != "" {
			return true
		}
	}
	return false
}

var (
	namePattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	schedulers   = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}
	forwardings  = []string{"dr", "nat", "tunnel"}
	protocols    = []string{"tcp", "udp", "sctp"}
	checkTypes   = []string{"tcp", "http", "https", "exec", "none"}
	httpKeys     = []string{"method", "path", "host", "expect_status", "body", "body_regex", "digest"}
	httpsKeys    = []string{"sni", "verify"}
	execKeys     = []string{"command", "dynamic_weight"}
	maxDelay     = time.Hour
	md5HexLength = 32
)

// enum checks that the string at p is one of vals.
func (v *validator) enum(p path, got string, vals []string) {
	if slices.Contains(vals, got) {
		return
	}
	fix := suggest(got, vals)
	if fix == "" {
		fix = "use " + oneOf(vals)
	} else {
		fix += " (one of " + oneOf(vals) + ")"
	}
	v.valErr(p, fix, "%s: unknown value %q", name(p), got)
}

func (v *validator) intRange(p path, n, lo, hi int) bool {
	if n < lo || n > hi {
		v.valErr(p, fmt.Sprintf("use %d..%d", lo, hi), "%s: %d is out of range", name(p), n)
		return false
	}
	return true
}

func (v *validator) ifaceName(p path, s string) {
	if s == "" || len(s) > 15 || s == "." || s == ".." || strings.ContainsAny(s, "/: \t") {
		v.valErr(p, "Linux interface names are 1..15 characters without '/', ':' or spaces", "%s: invalid interface name %q", name(p), s)
	}
}

// hostAddr checks that a is an address a host can have and be reached at.
func (v *validator) hostAddr(p path, a netip.Addr) {
	var what string
	switch {
	case a.IsUnspecified():
		what = "the unspecified address"
	case a.IsMulticast():
		what = "a multicast address"
	case a.IsLoopback():
		what = "a loopback address"
	case a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		what = "the broadcast address"
	default:
		return
	}
	v.valErr(p, "use a unicast address of the host", "%s is %s", a, what)
}

func (v *validator) absPath(p path, s string) {
	if s != "" && !strings.HasPrefix(s, "/") {
		v.valErr(p, "write an absolute path", "%s: %q is not an absolute path", name(p), s)
	}
}

func (v *validator) durRange(p path, d Duration, lo, hi time.Duration) {
	if d.Duration < lo || d.Duration > hi {
		v.valErr(p, fmt.Sprintf("use %v..%v", lo, hi), "%s: %v is out of range", name(p), d.Duration)
	}
}

// resolve fills defaults that depend on other values: real server ports,
// real server checks, names.
func (v *validator) resolve() {
	for i := range v.s.VirtualServers {
		vs := &v.s.VirtualServers[i]
		if vs.Name == "" {
			if vs.Fwmark != 0 {
				vs.Name = fmt.Sprintf("fwmark %d", vs.Fwmark)
			} else if vs.Address.IsValid() {
				vs.Name = vs.Address.String()
			}
		}
		switch {
		case vs.Address.IsValid() && vs.Address.Addr().Is6():
			vs.Family = "ipv6"
		case vs.Address.IsValid() || vs.Family == "":
			vs.Family = "ipv4"
		}
		if vs.SorryServer.IsValid() && vs.SorryServer.Port() == 0 {
			vs.SorryServer = netip.AddrPortFrom(vs.SorryServer.Addr(), vs.Address.Port())
		}
		vsp := path{"virtual_server", strconv.Itoa(i)}
		for j := range vs.RealServers {
			rs := &vs.RealServers[j]
			if rs.Address.IsValid() && rs.Address.Port() == 0 {
				rs.Address = netip.AddrPortFrom(rs.Address.Addr(), vs.Address.Port())
			}
			if rs.Name == "" && rs.Address.IsValid() {
				rs.Name = rs.Address.String()
			}
			if rs.Forwarding == "" {
				rs.Forwarding = vs.Forwarding
			}
			rs.Check = v.mergeCheck(vs.Check, rs.Check, vsp.child("real_servers").index(j).child("check"))
		}
	}
}

// mergeCheck lays the fields own's table sets over base, unless own names
// another type, in which case own (over the defaults) stands alone.
func (v *validator) mergeCheck(base, own Check, p path) Check {
	raw, ok := v.rawAt(p)
	m, isMap := raw.(map[string]any)
	if !ok || !isMap {
		return cloneCheck(base)
	}
	if t, ok := m["type"]; ok && t != base.Type {
		return own
	}
	out := cloneCheck(base)
	idx, _ := v.fields(reflect.TypeOf(Check{}))
	ov, bv := reflect.ValueOf(own), reflect.ValueOf(&out).Elem()
	for k := range m {
		if i, ok := idx[k]; ok {
			bv.Field(i).Set(ov.Field(i))
		}
	}
	return out
}

func cloneCheck(c Check) Check {
	c.ExpectStatus = append([]StatusRange(nil), c.ExpectStatus...)
	c.Command.Argv = append([]string(nil), c.Command.Argv...)
	if len(c.Command.Argv) == 0 {
		c.Command.Argv = nil
	}
	return c
}

func (v *validator) validate() {
	v.settings()
	v.directors()
	v.cluster()
	v.instances()
	v.ipvsSync()
	v.virtualServers()
}

func (v *validator) settings() {
	s, p := &v.s.Settings, path{"site"}
	v.missing(p, "name", `add name = "www" under [site]`)
	if v.has(p.child("name")) && !namePattern.MatchString(s.Name) {
		v.valErr(p.child("name"), "use letters, digits, '.', '_' and '-'", "site name %q is not a valid name", s.Name)
	}
	v.absPath(p.child("control_socket"), s.ControlSocket)
	if v.has(p.child("control_socket")) && s.ControlSocket == "" {
		v.valErr(p.child("control_socket"), "write an absolute path", "control_socket is empty")
	}
	if s.MetricsAddress != "" {
		_, port, err := net.SplitHostPort(s.MetricsAddress)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 1 || n > 65535 {
			v.valErr(p.child("metrics_address"), `write HOST:PORT, e.g. "127.0.0.1:9477" (loopback; a LAN address or ":9477" serves the metrics to the network, so write one only on purpose)`, "metrics_address: invalid address %q", s.MetricsAddress)
		}
	}
	if s.Pprof && s.MetricsAddress == "" {
		v.valErr(p.child("pprof"), `set metrics_address = "127.0.0.1:9477" too, or remove pprof`, "pprof = true needs metrics_address: profiles are served there")
	}
	v.enum(p.child("ipvs_on_stop"), s.IPVSOnStop, []string{"remove", "keep"})
	v.durRange(p.child("reconcile_interval"), s.ReconcileInterval, 100*time.Millisecond, time.Hour)
	v.intRange(p.child("nice"), s.Nice, -20, 19)
	v.intRange(p.child("pacer_rt_priority"), s.PacerRTPriority, 0, 99)
}

func (v *validator) directors() {
	if len(v.s.Directors) == 0 {
		v.errorf(pos{1, 1}, `add a [[director]] table with name, address and interface for each director`, "no [[director]] in the site")
		return
	}
	names := map[string]int{}
	addrs := map[netip.Addr]int{}
	for i := range v.s.Directors {
		d, p := &v.s.Directors[i], path{"director", strconv.Itoa(i)}
		v.missing(p, "name", `add name = "vs1"`)
		v.missing(p, "address", `add address = "192.168.0.1"`)
		v.missing(p, "interface", `add interface = "eth0"`)
		if v.has(p.child("name")) {
			if !namePattern.MatchString(d.Name) {
				v.valErr(p.child("name"), "use letters, digits, '.', '_' and '-'", "director name %q is not a valid name", d.Name)
			} else if j, dup := names[d.Name]; dup {
				v.valErr(p.child("name"), "give each director its own name", "duplicate director name %q (also director #%d)", d.Name, j+1)
			} else {
				names[d.Name] = i
			}
		}
		if d.Address.IsValid() {
			v.hostAddr(p.child("address"), d.Address)
			if j, dup := addrs[d.Address]; dup {
				v.valErr(p.child("address"), "give each director its own address", "director %q has the same address as director %q", d.Name, v.s.Directors[j].Name)
			} else {
				addrs[d.Address] = i
			}
		}
		if v.has(p.child("interface")) {
			v.ifaceName(p.child("interface"), d.Interface)
		}
		v.intRange(p.child("priority"), d.Priority, 1, 254)
	}
}

func (v *validator) cluster() {
	c, p := &v.s.Cluster, path{"cluster"}
	v.intRange(p.child("port"), c.Port, 1, 65535)
	v.absPath(p.child("secret_key_file"), c.SecretKeyFile)
	if c.Insecure && c.SecretKeyFile != "" {
		v.keyErr(p.child("insecure"), "remove insecure = true or secret_key_file", "insecure = true contradicts secret_key_file")
	}
	if len(v.s.Directors) > 1 && !c.Insecure && c.SecretKeyFile == "" && !v.has(p.child("secret_key_file")) &&
		!v.misspelt(nil, "cluster") && !v.misspelt(p, "secret_key_file") {
		v.absentErr(p, "secret_key_file", `add secret_key_file = "/etc/vigil/cluster.key" under [cluster] (or insecure = true in a lab)`,
			"the cluster channel between %d directors needs a secret_key_file", len(v.s.Directors))
	}
}

func (v *validator) ipvsSync() {
	sy := v.s.IPVSSync
	if sy == nil {
		return
	}
	p := path{"ipvs_sync"}
	if v.has(p.child("interface")) {
		v.ifaceName(p.child("interface"), sy.Interface)
	}
	v.intRange(p.child("sync_id"), sy.SyncID, 0, 255)
	if v.has(p.child("instance")) && v.s.Instance(sy.Instance) == nil {
		v.valErr(p.child("instance"), suggest(sy.Instance, v.instanceNames()), "ipvs_sync: no instance named %q", sy.Instance)
	}
}

func (v *validator) instanceNames() []string {
	var n []string
	for _, in := range v.s.Instances {
		n = append(n, in.Name)
	}
	return n
}

func (v *validator) directorNames() []string {
	var n []string
	for _, d := range v.s.Directors {
		n = append(n, d.Name)
	}
	return n
}

func (v *validator) instances() {
	names := map[string]int{}
	vips := map[netip.Addr]string{}
	groups := map[string][]int{}
	type vridKey struct {
		iface string
		v6    bool
		vrid  int
	}
	for i := range v.s.Instances {
		in, p := &v.s.Instances[i], path{"instance", strconv.Itoa(i)}
		v.missing(p, "name", `add name = "www"`)
		if v.has(p.child("name")) {
			if !namePattern.MatchString(in.Name) {
				v.valErr(p.child("name"), "use letters, digits, '.', '_' and '-'", "instance name %q is not a valid name", in.Name)
			} else if _, dup := names[in.Name]; dup {
				v.valErr(p.child("name"), "give each instance its own name", "duplicate instance name %q", in.Name)
			} else {
				names[in.Name] = i
			}
		}
		v.missing(p, "vrid", "add vrid = N (1..255), the same on every director and unique per interface")
		if v.has(p.child("vrid")) {
			v.intRange(p.child("vrid"), in.VRID, 1, 255)
		}
		if in.Interface != "" || v.has(p.child("interface")) {
			v.ifaceName(p.child("interface"), in.Interface)
		}
		versionOK := in.Version == 2 || in.Version == 3
		if !versionOK {
			v.valErr(p.child("version"), "use 3 (VRRPv3, RFC 5798) or 2 (VRRPv2, RFC 3768)", "version: %d is not a VRRP version vigil speaks", in.Version)
		} else {
			v.advert(p.child("advert_interval"), in)
		}
		if in.AuthPass != "" || v.has(p.child("auth_pass")) {
			switch {
			case in.Version == 3:
				v.keyErr(p.child("auth_pass"), "remove auth_pass, or set version = 2", "auth_pass: VRRPv3 has no authentication")
			case len(in.AuthPass) == 0 || len(in.AuthPass) > 8:
				v.valErr(p.child("auth_pass"), "use 1..8 bytes", "auth_pass: VRRPv2 simple text passwords are 1..8 bytes, got %d", len(in.AuthPass))
			}
		}
		for _, dn := range slices.Sorted(maps.Keys(in.Priorities)) {
			pp := p.child("priorities").child(dn)
			if _, err := v.s.Director(dn); err != nil {
				fix := suggest(dn, v.directorNames())
				if fix == "" {
					fix = "name a director: " + oneOf(v.directorNames())
				}
				v.keyErr(pp, fix, "priorities: no director named %q", dn)
			}
			v.intRange(pp, in.Priorities[dn], 1, 254)
		}
		v.enum(p.child("transport"), in.Transport, []string{"vrrp", "gossip"})
		if in.Transport == "gossip" && in.Unicast {
			v.keyErr(p.child("unicast"), "remove unicast: the gossip transport uses the cluster channel", "unicast applies only to transport = \"vrrp\"")
		}
		if len(in.UnicastPeers) > 0 && !in.Unicast {
			v.keyErr(p.child("unicast_peers"), "add unicast = true, or remove unicast_peers", "unicast_peers is set but unicast is off")
		}
		v.delay(p.child("preempt_delay"), in.PreemptDelay)
		v.delay(p.child("startup_delay"), in.StartupDelay)
		if !in.Preempt && v.has(p.child("preempt_delay")) {
			v.keyErr(p.child("preempt_delay"), "remove preempt_delay, or set preempt = true", "preempt_delay has no effect with preempt = false")
		}
		v.durRange(p.child("notify_timeout"), in.NotifyTimeout, 10*time.Millisecond, time.Hour)

		// VIPs: one family, no address twice in the site, labels that Linux accepts.
		if len(in.VIPs) == 0 && !v.has(p.child("vips")) {
			v.absentErr(p, "vips", `add vips = ["192.168.0.101/24"]`, "instance %q has no vips", in.Name)
		}
		if len(in.VIPs) == 0 {
			v.vipsIncomplete = true
		}
		if v.has(p.child("vips")) && len(in.VIPs) == 0 {
			v.valErr(p.child("vips"), `list at least one address`, "vips is empty")
		}
		var fam netip.Addr
		for j, vip := range in.VIPs {
			vp := p.child("vips").index(j)
			if !vip.Prefix.IsValid() {
				v.vipsIncomplete = true
				if _, ok := v.rawAt(vp.child("address")); !ok {
					if _, isMap := v.rawAtMap(vp); isMap {
						v.absentErr(vp, "address", `add address = "192.168.0.101/24"`, "VIP has no address")
					}
				}
				continue
			}
			a := vip.Prefix.Addr()
			v.hostAddr(vp, a)
			if !fam.IsValid() {
				fam = a
			} else if fam.Is4() != a.Is4() {
				v.valErr(vp, "put IPv4 and IPv6 VIPs in separate instances (each family has its own VRRP instance)",
					"instance %q mixes IPv4 and IPv6 VIPs (%s and %s)", in.Name, fam, a)
			}
			if other, dup := vips[a]; dup {
				v.valErr(vp, "list each VIP in one instance only", "VIP %s is also in instance %q", a, other)
			} else {
				vips[a] = in.Name
			}
			if vip.Interface != "" {
				v.ifaceName(vp, vip.Interface)
			}
			if vip.Label != "" {
				v.label(vp, in, vip)
			}
		}
		if fam.IsValid() {
			if fam.Is6() && in.Version == 2 {
				v.valErr(p.child("version"), "use version = 3 for IPv6", "VRRPv2 carries only IPv4 VIPs")
			}
			v.unicast(p, in, fam.Is6())
		}
		v.garp(p.child("garp"), &in.GARP)
		v.tracks(p, in)
		if in.SyncGroup != "" {
			groups[in.SyncGroup] = append(groups[in.SyncGroup], i)
		}
	}

	// sync groups: one member is almost surely a misspelt group name.
	gnames := slices.Collect(maps.Keys(groups))
	for g, members := range groups {
		if len(members) == 1 {
			i := members[0]
			others := make([]string, 0, len(gnames))
			for _, o := range gnames {
				if o != g {
					others = append(others, o)
				}
			}
			fix := suggest(g, others)
			if fix == "" {
				fix = "give the instances that move together the same sync_group, or remove it"
			}
			v.valErr(path{"instance", strconv.Itoa(i), "sync_group"}, fix, "sync_group %q has only one instance", g)
		}
	}

	// VRIDs: unique per interface and family on every director.
	for _, d := range v.s.Directors {
		seen := map[vridKey]int{}
		for i := range v.s.Instances {
			in := &v.s.Instances[i]
			if in.VRID == 0 || len(in.VIPs) == 0 || !in.VIPs[0].Prefix.IsValid() {
				continue
			}
			k := vridKey{in.InterfaceOf(&d), in.VIPs[0].Prefix.Addr().Is6(), in.VRID}
			if j, dup := seen[k]; dup {
				msg := fmt.Sprintf("vrid %d is also used by instance %q on %s", in.VRID, v.s.Instances[j].Name, k.iface)
				if !v.seenMsg(msg) {
					v.valErr(path{"instance", strconv.Itoa(i), "vrid"}, "give each instance on an interface its own vrid", "%s", msg)
				}
				continue
			}
			seen[k] = i
		}
	}
}

// seenMsg reports whether an error with this message was already recorded.
func (v *validator) seenMsg(msg string) bool {
	for _, e := range v.errs {
		if e.Msg == msg {
			return true
		}
	}
	return false
}

func (v *validator) rawAtMap(p path) (map[string]any, bool) {
	raw, ok := v.rawAt(p)
	m, isMap := raw.(map[string]any)
	return m, ok && isMap
}

func (v *validator) delay(p path, d Duration) { v.durRange(p, d, 0, maxDelay) }

// advert checks what the VRRP wire can carry: v3 has a 12-bit field in
// centiseconds (10ms..40.95s), v2 an 8-bit field in seconds.
func (v *validator) advert(p path, in *Instance) {
	d := in.AdvertInterval.Duration
	if in.Version == 3 {
		switch {
		case d < 10*time.Millisecond || d > 4095*10*time.Millisecond:
			v.valErr(p, "VRRPv3 carries 10ms..40.95s", "advert_interval %v is out of range", d)
		case d%(10*time.Millisecond) != 0:
			v.valErr(p, fmt.Sprintf("VRRPv3 counts in centiseconds: use %q", (d/(10*time.Millisecond)*10*time.Millisecond+10*time.Millisecond).String()),
				"advert_interval %v is not a multiple of 10ms", d)
		}
		return
	}
	switch {
	case d < time.Second || d > 255*time.Second:
		v.valErr(p, "VRRPv2 carries whole seconds 1..255; use version = 3 for shorter intervals", "advert_interval %v is out of range for VRRPv2", d)
	case d%time.Second != 0:
		v.valErr(p, "VRRPv2 carries whole seconds; use version = 3 for sub-second intervals", "advert_interval %v is not a whole number of seconds", d)
	}
}

func (v *validator) label(vp path, in *Instance, vip VIP) {
	if vip.Prefix.Addr().Is6() {
		v.valErr(vp, "remove the label: Linux labels only IPv4 addresses", "VIP %s: IPv6 addresses have no labels", vip.Prefix.Addr())
		return
	}
	if len(vip.Label) > 15 {
		v.valErr(vp, "use at most 15 characters", "VIP label %q is too long", vip.Label)
		return
	}
	for i := range v.s.Directors {
		d := &v.s.Directors[i]
		iface := in.VIPInterface(vip, d)
		if iface == "" {
			continue
		}
		if vip.Label != iface && !strings.HasPrefix(vip.Label, iface+":") {
			v.valErr(vp, fmt.Sprintf("Linux requires the label to start with the interface name: use %q", iface+":"+labelSuffix(vip.Label)),
				"VIP label %q does not match interface %s (director %q)", vip.Label, iface, d.Name)
			return
		}
	}
}

func labelSuffix(l string) string {
	if _, s, ok := strings.Cut(l, ":"); ok {
		return s
	}
	return "1"
}

func (v *validator) unicast(p path, in *Instance, v6 bool) {
	if !in.Unicast {
		return
	}
	if len(in.UnicastPeers) > 0 {
		for j, a := range in.UnicastPeers {
			if a.Is6() != v6 {
				v.valErr(p.child("unicast_peers").index(j), "use peers of the VIPs' address family", "unicast peer %s is not of the instance's address family", a)
			}
		}
		return
	}
	for _, d := range v.s.Directors {
		if d.Address.IsValid() && d.Address.Is6() != v6 {
			fam := "IPv4"
			if v6 {
				fam = "IPv6"
			}
			v.keyErr(p.child("unicast"), "list the peers' "+fam+" addresses in unicast_peers",
				"unicast %s instance %q cannot default its peers: director %q has the address %s", fam, in.Name, d.Name, d.Address)
			return
		}
	}
}

func (v *validator) garp(p path, g *GARP) {
	v.intRange(p.child("repeat"), g.Repeat, 1, 100)
	v.durRange(p.child("interval"), g.Interval, 10*time.Millisecond, time.Minute)
	if g.Interval.Duration < time.Second && g.Repeat > 1 && !g.IgnoreLocktime {
		v.valErr(p.child("interval"), `use "1100ms" or more, or set ignore_locktime = true if the neighbours' arp locktime is shorter`,
			"garp interval %v is under 1s: Linux ignores a second ARP update within its 1s locktime", g.Interval.Duration)
	}
	if g.Refresh.Duration != 0 {
		v.durRange(p.child("refresh"), g.Refresh, time.Second, 24*time.Hour)
	}
	v.intRange(p.child("lower_prio_repeat"), g.LowerPrioRepeat, 0, 100)
}

func (v *validator) tracks(p path, in *Instance) {
	seen := map[string]bool{}
	for j, t := range in.TrackInterfaces {
		tp := p.child("track_interfaces").index(j)
		v.missing(tp, "name", `add name = "eth1"`)
		if v.has(tp.child("name")) {
			v.ifaceName(tp.child("name"), t.Name)
			if seen[t.Name] {
				v.valErr(tp.child("name"), "track each interface once", "interface %q is tracked twice", t.Name)
			}
			seen[t.Name] = true
		}
		v.intRange(tp.child("weight"), t.Weight, -254, 254)
	}
	for j, t := range in.TrackScripts {
		tp := p.child("track_scripts").index(j)
		v.missing(tp, "command", `add command = "/usr/local/bin/check-uplink"`)
		v.durRange(tp.child("interval"), t.Interval, 10*time.Millisecond, time.Hour)
		v.durRange(tp.child("timeout"), t.Timeout, time.Millisecond, time.Hour)
		if t.Timeout.Duration > t.Interval.Duration {
			v.valErr(tp.child("timeout"), "use a timeout no longer than the interval", "track script timeout %v is longer than its interval %v", t.Timeout.Duration, t.Interval.Duration)
		}
		v.intRange(tp.child("rise"), t.Rise, 1, 100)
		v.intRange(tp.child("fall"), t.Fall, 1, 100)
		v.intRange(tp.child("weight"), t.Weight, -254, 254)
	}
}

func (v *validator) virtualServers() {
	names := map[string]bool{}
	services := map[string]string{}
	for i := range v.s.VirtualServers {
		vs, p := &v.s.VirtualServers[i], path{"virtual_server", strconv.Itoa(i)}
		hasAddr, hasMark := v.has(p.child("address")), v.has(p.child("fwmark"))
		switch {
		case !hasAddr && !hasMark:
			v.absentErr(p, "address", `add address = "VIP:PORT" (or fwmark = N)`, "virtual server has no address")
		case hasAddr && hasMark:
			v.keyErr(p.child("fwmark"), "remove address or fwmark", "virtual server %q has both address and fwmark", vs.Name)
		}
		if hasMark && vs.Fwmark == 0 {
			v.valErr(p.child("fwmark"), "use a mark of 1 or more", "fwmark 0 matches nothing")
		}
		if v.has(p.child("family")) && !hasMark {
			v.keyErr(p.child("family"), "remove family: the address says it", "family applies only to fwmark virtual servers")
		}
		v.enum(p.child("family"), vs.Family, []string{"ipv4", "ipv6"})
		if hasMark && v.has(p.child("protocol")) {
			v.keyErr(p.child("protocol"), "remove protocol: the firewall mark selects the packets", "protocol does not apply to fwmark virtual servers")
		}
		v6 := vs.Family == "ipv6"
		if vs.Address.IsValid() {
			v6 = vs.Address.Addr().Is6()
			v.hostAddr(p.child("address"), vs.Address.Addr())
			if vs.Address.Port() == 0 {
				v.valErr(p.child("address"), fmt.Sprintf("write %q", netip.AddrPortFrom(vs.Address.Addr(), 80).String()), "virtual server address %s has no port", vs.Address.Addr())
			} else if v.s.InstanceOfVIP(vs.Address.Addr()) == nil && !v.vipsIncomplete {
				v.valErr(p.child("address"), "add "+vs.Address.Addr().String()+" to the vips of an instance, so a director claims it",
					"virtual server address %s is not a VIP of any instance", vs.Address.Addr())
			}
		}
		if vs.Name != "" {
			if names[vs.Name] {
				v.valErr(p.child("name"), "give each virtual server its own name", "duplicate virtual server name %q", vs.Name)
			}
			names[vs.Name] = true
		}
		key := ""
		if vs.Fwmark != 0 {
			key = fmt.Sprintf("fwmark %d %s", vs.Fwmark, vs.Family)
		} else if vs.Address.IsValid() {
			key = vs.Protocol + " " + vs.Address.String()
		}
		if other, dup := services[key]; dup && key != "" {
			v.valErr(p.child("address"), "merge the two, or change the address, port or protocol", "virtual server %q is the same service as %q", vs.Name, other)
		} else if key != "" {
			services[key] = vs.Name
		}
		v.enum(p.child("protocol"), vs.Protocol, protocols)
		v.enum(p.child("scheduler"), vs.Scheduler, schedulers)
		v.enum(p.child("forwarding"), vs.Forwarding, forwardings)
		if ps := vs.Persistence; ps != nil {
			v.durRange(p.child("persistence").child("timeout"), ps.Timeout, time.Second, 30*24*time.Hour)
			ps.Bits = v.netmask(p.child("persistence").child("netmask"), ps.Netmask, v6)
		}
		if vs.Quorum < 1 || (len(vs.RealServers) > 0 && vs.Quorum > len(vs.RealServers)) {
			v.valErr(p.child("quorum"), fmt.Sprintf("use 1..%d", max(len(vs.RealServers), 1)), "quorum %d: the virtual server has %d real servers", vs.Quorum, len(vs.RealServers))
		}
		if vs.Hysteresis < 0 || vs.Hysteresis > 0 && len(vs.RealServers) > 0 && vs.Quorum+vs.Hysteresis > len(vs.RealServers) {
			v.valErr(p.child("hysteresis"), fmt.Sprintf("use 0..%d", max(len(vs.RealServers)-vs.Quorum, 0)),
				"hysteresis %d: quorum %d + hysteresis could never be regained with %d real servers", vs.Hysteresis, vs.Quorum, len(vs.RealServers))
		}
		if vs.SorryServer.IsValid() && (vs.Forwarding == "dr" || vs.Forwarding == "tunnel") && vs.Address.Port() != 0 && vs.SorryServer.Port() != vs.Address.Port() {
			v.valErr(p.child("sorry_server"), fmt.Sprintf("use port %d, or forwarding = \"nat\"", vs.Address.Port()),
				"sorry_server %s: %s forwarding cannot change the port %d", vs.SorryServer, vs.Forwarding, vs.Address.Port())
		}
		if vs.SorryServer.IsValid() && vs.SorryServer.Addr().Is6() != v6 {
			v.valErr(p.child("sorry_server"), "use a sorry server of the virtual server's address family", "sorry_server %s is of another address family", vs.SorryServer.Addr())
		}
		v.delay(p.child("slow_start"), vs.SlowStart)
		v.check(p.child("check"), vs.Check, nil)
		if len(vs.RealServers) == 0 && !vs.SorryServer.IsValid() && !v.has(p.child("real_servers")) {
			v.absentErr(p, "real_servers", "add real_servers = [ { address = \"IP:PORT\" } ]", "virtual server %q has no real servers", vs.Name)
		}
		v.realServers(p, vs, v6)
	}
}

// netmask returns the persistence granularity as a prefix length.
func (v *validator) netmask(p path, s string, v6 bool) int {
	full := 32
	if v6 {
		full = 128
	}
	if s == "" {
		return full
	}
	if strings.HasPrefix(s, "/") {
		n, err := strconv.Atoi(s[1:])
		if err == nil && n >= 1 && n <= full {
			return n
		}
	} else if a, err := netip.ParseAddr(s); err == nil && a.Is4() && !v6 {
		m := net.IPMask(a.AsSlice())
		if ones, bits := m.Size(); bits == 32 && ones > 0 {
			return ones
		}
	}
	v.valErr(p, fmt.Sprintf(`write a contiguous mask such as "255.255.255.0", or a prefix length "/1".."/%d"`, full), "persistence netmask %q is invalid", s)
	return full
}

func (v *validator) realServers(p path, vs *VirtualServer, v6 bool) {
	seen := map[netip.AddrPort]bool{}
	names := map[string]bool{}
	for j := range vs.RealServers {
		rs, rp := &vs.RealServers[j], p.child("real_servers").index(j)
		v.missing(rp, "address", `add address = "IP:PORT"`)
		if v.has(rp.child("name")) { // default names are addresses, checked below
			if names[rs.Name] {
				v.valErr(rp.child("name"), "give each real server of a virtual server its own name", "duplicate real server name %q", rs.Name)
			}
			names[rs.Name] = true
		}
		if rs.Address.IsValid() {
			v.hostAddr(rp.child("address"), rs.Address.Addr())
			if rs.Address.Addr().Is6() != v6 {
				v.valErr(rp.child("address"), "use a real server of the virtual server's address family", "real server %s is of another address family than the virtual server", rs.Address.Addr())
			}
			if seen[rs.Address] {
				v.valErr(rp.child("address"), "list each real server once", "real server %s is listed twice", rs.Address)
			}
			seen[rs.Address] = true
			if (rs.Forwarding == "dr" || rs.Forwarding == "tunnel") && vs.Address.Port() != 0 && rs.Address.Port() != vs.Address.Port() {
				v.valErr(rp.child("address"), fmt.Sprintf("use port %d, or forwarding = \"nat\" to change ports", vs.Address.Port()),
					"real server %s: %s forwarding cannot change the port %d", rs.Address, rs.Forwarding, vs.Address.Port())
			}
		}
		v.intRange(rp.child("weight"), rs.Weight, 0, 65535)
		v.intRange(rp.child("upper_threshold"), rs.UpperThreshold, 0, 1<<30)
		v.intRange(rp.child("lower_threshold"), rs.LowerThreshold, 0, 1<<30)
		if rs.UpperThreshold > 0 && rs.LowerThreshold > rs.UpperThreshold {
			v.valErr(rp.child("lower_threshold"), "use a lower_threshold below upper_threshold", "lower_threshold %d is above upper_threshold %d", rs.LowerThreshold, rs.UpperThreshold)
		}
		if v.has(rp.child("forwarding")) { // else the virtual server's, checked there
			v.enum(rp.child("forwarding"), rs.Forwarding, forwardings)
		}
		if m, ok := v.rawAtMap(rp.child("check")); ok {
			v.check(rp.child("check"), rs.Check, m)
		}
		// a fwmark service's real server without a port takes the client's
		// port, so a connecting check has no port to connect to.
		if rs.Address.IsValid() && rs.Address.Port() == 0 && rs.Check.Port == 0 && rs.Check.Type != "exec" && rs.Check.Type != "none" {
			v.valErr(rp.child("address"), "give the real server a port, or the check a port (check = { port = 80 })",
				"real server %s has no port for its %s check", rs.Address.Addr(), rs.Check.Type)
		}
	}
}

// check validates c, the check at p. own is the table written at p when c
// was laid over another check: only problems involving keys written there
// are reported (the rest were reported where they were written).
func (v *validator) check(p path, c Check, own map[string]any) {
	if own == nil {
		own, _ = v.rawAtMap(p)
		if own == nil {
			own = map[string]any{}
		}
		// the base check: report every problem, written or default.
		v.checkRules(p, c, func(keys ...string) (path, bool) {
			for _, k := range keys {
				if _, ok := own[k]; ok {
					return p.child(k), true
				}
			}
			return p.child(keys[0]), true
		}, own)
		return
	}
	v.checkRules(p, c, func(keys ...string) (path, bool) {
		for _, k := range keys {
			if _, ok := own[k]; ok {
				return p.child(k), true
			}
		}
		return nil, false
	}, own)
}

func (v *validator) checkRules(p path, c Check, at func(keys ...string) (path, bool), own map[string]any) {
	bad := func(keys []string, fix, format string, args ...any) {
		if q, ok := at(keys...); ok {
			v.valErr(q, fix, format, args...)
		}
	}
	k := func(s ...string) []string { return s }
	if !slices.Contains(checkTypes, c.Type) {
		fix := suggest(c.Type, checkTypes)
		if fix == "" {
			fix = "use " + oneOf(checkTypes)
		}
		bad(k("type"), fix, "check type %q is unknown", c.Type)
		return
	}
	// keys that only some types read: an error, so a typo in the type or a
	// stray key is not silently ignored.
	for key := range own {
		var need []string
		switch {
		case slices.Contains(httpKeys, key):
			need = []string{"http", "https"}
		case slices.Contains(httpsKeys, key):
			need = []string{"https"}
		case slices.Contains(execKeys, key):
			need = []string{"exec"}
		default:
			continue
		}
		if !slices.Contains(need, c.Type) {
			v.keyErr(p.child(key), "remove it, or use type "+oneOf(need), "check key %q does not apply to a %s check", key, c.Type)
		}
	}
	if c.Type == "none" {
		return
	}
	if c.Interval.Duration < 10*time.Millisecond || c.Interval.Duration > time.Hour {
		bad(k("interval"), "use 10ms..1h", "check interval %v is out of range", c.Interval.Duration)
	}
	if c.Timeout.Duration <= 0 {
		bad(k("timeout"), `use a positive timeout such as "1s"`, "check timeout must be positive")
	} else if c.Timeout.Duration > c.Interval.Duration {
		bad(k("timeout", "interval"), "use a timeout no longer than the interval", "check timeout %v is longer than the interval %v", c.Timeout.Duration, c.Interval.Duration)
	}
	if c.Rise < 1 || c.Rise > 100 {
		bad(k("rise"), "use 1..100", "check rise %d is out of range", c.Rise)
	}
	if c.Fall < 1 || c.Fall > 100 {
		bad(k("fall"), "use 1..100", "check fall %d is out of range", c.Fall)
	}
	for key, d := range map[string]time.Duration{"fast_interval": c.FastInterval.Duration, "down_interval": c.DownInterval.Duration, "warmup": c.Warmup.Duration} {
		if d > time.Hour || key != "warmup" && d != 0 && d < 10*time.Millisecond {
			bad(k(key), "use 10ms..1h (0 = the interval)", "check %s %v is out of range", key, d)
		}
	}
	if c.InitialState != "down" && c.InitialState != "up" {
		fix := suggest(c.InitialState, []string{"down", "up"})
		if fix == "" {
			fix = `use "down" or "up"`
		}
		bad(k("initial_state"), fix, "check initial_state %q is unknown", c.InitialState)
	}
	if c.Port < 0 || c.Port > 65535 {
		bad(k("port"), "use 1..65535 (0 = the real server's port)", "check port %d is out of range", c.Port)
	}
	switch c.Type {
	case "http", "https":
		if c.Method != "GET" && c.Method != "HEAD" {
			fix := suggest(c.Method, []string{"GET", "HEAD"})
			if fix == "" {
				fix = `use "GET" or "HEAD"`
			}
			bad(k("method"), fix, "check method %q is not supported", c.Method)
		}
		if !strings.HasPrefix(c.Path, "/") {
			bad(k("path"), fmt.Sprintf("write %q", "/"+c.Path), "check path %q does not start with '/'", c.Path)
		}
		if len(c.ExpectStatus) == 0 {
			bad(k("expect_status"), `list at least one status, e.g. [200] or ["200-399"]`, "expect_status is empty")
		}
		if c.BodyRegex != "" {
			if _, err := regexp.Compile(c.BodyRegex); err != nil {
				bad(k("body_regex"), "write a Go (RE2) regular expression", "body_regex: %v", err)
			}
		}
		if c.Digest != "" {
			if _, err := hex.DecodeString(c.Digest); err != nil || len(c.Digest) != md5HexLength {
				bad(k("digest"), "write the MD5 of the body as 32 hex digits (md5sum prints it)", "digest %q is not an MD5 hex digest", c.Digest)
			}
		}
		if c.Method == "HEAD" && (c.Body != "" || c.BodyRegex != "" || c.Digest != "") {
			bad(k("method", "body", "body_regex", "digest"), `use method = "GET" to check the body`, "a HEAD response has no body to match")
		}
	case "exec":
		if _, written := own["command"]; !written && len(c.Command.Argv) == 0 && c.Command.Shell == "" {
			bad(k("type", "command"), `add command = ["/usr/local/bin/check-app", "--quiet"]`, "an exec check needs a command")
		}
	}
}
