package config

import (
	"net/netip"
	"time"
)

// Site is a loaded, validated site file. Field comments name the TOML key;
// examples/reference.toml documents every key with its default.
type Site struct {
	Settings       Settings        `toml:"site"`
	Directors      []Director      `toml:"director"`
	Cluster        Cluster         `toml:"cluster"`
	IPVSSync       *IPVSSync       `toml:"ipvs_sync"`
	Instances      []Instance      `toml:"instance"`
	VirtualServers []VirtualServer `toml:"virtual_server"`

	// File is the name the site was loaded from (for messages only).
	File string `toml:"-" json:"-"`
}

// Settings is the [site] table.
type Settings struct {
	Name              string   `toml:"name"`
	ControlSocket     string   `toml:"control_socket"`     // default /run/vigil/vigil.sock
	MetricsAddress    string   `toml:"metrics_address"`    // host:port; "" = no metrics endpoint
	IPVSOnStop        string   `toml:"ipvs_on_stop"`       // "remove" (default) or "keep"
	ReconcileInterval Duration `toml:"reconcile_interval"` // default 5s
	Nice              int      `toml:"nice"`               // scheduling niceness of the daemon, -20..19; 0 = unchanged
	// PacerRTPriority runs the advert pacer's thread (adverts below 1 s)
	// in the SCHED_RR real-time class at this priority, 1..99; 0 = off.
	// Left out of the digest when 0, like pprof.
	PacerRTPriority int `toml:"pacer_rt_priority" json:",omitzero"`

	// Pprof also serves /debug/pprof/ on metrics_address; default false.
	// Left out of the digest when false, so a site without the key keeps
	// the digest older directors compute (no drift in a rolling upgrade).
	Pprof bool `toml:"pprof" json:",omitzero"`
}

// Director is one [[director]]: a machine of the site.
type Director struct {
	Name      string     `toml:"name"`
	Address   netip.Addr `toml:"address"`   // primary address: VRRP source for unicast, cluster channel
	Interface string     `toml:"interface"` // default interface of its instances
	Priority  int        `toml:"priority"`  // 1..254, default 100
}

// Cluster is the [cluster] table: the memberlist channel between directors.
type Cluster struct {
	Port          int        `toml:"port"`            // default 7946
	BindAddress   netip.Addr `toml:"bind_address"`    // default: the director's address
	SecretKeyFile string     `toml:"secret_key_file"` // required with two or more directors unless insecure
	Insecure      bool       `toml:"insecure"`        // run the channel unencrypted
}

// IPVSSync is the [ipvs_sync] table: the kernel's connection
// synchronisation daemon. It runs by default on a site with virtual
// servers and two or more directors (Site.ConnSyncOf); the table only
// changes how, or turns it off.
type IPVSSync struct {
	Enabled   bool   `toml:"enabled"`   // default true
	Interface string `toml:"interface"` // default: each director's interface
	SyncID    int    `toml:"sync_id"`   // 0..255, default 0
	// Instance, if set, makes the sync master follow that instance's
	// master (keepalived's lvs_sync_daemon); "" runs both roles on every
	// director, which serves active/active sites too.
	Instance string `toml:"instance"`
}

// Instance is one [[instance]]: a VRRP virtual router (one VRID) whose VIPs
// move together.
type Instance struct {
	Name            string           `toml:"name"`
	VRID            int              `toml:"vrid"`
	Interface       string           `toml:"interface"` // default: the director's
	Version         int              `toml:"version"`   // 3 (default) or 2
	AdvertInterval  Duration         `toml:"advert_interval"`
	Priorities      map[string]int   `toml:"priorities"` // director name -> priority
	Preempt         bool             `toml:"preempt"`    // default true
	PreemptDelay    Duration         `toml:"preempt_delay"`
	StartupDelay    Duration         `toml:"startup_delay"`
	Transport       string           `toml:"transport"` // "vrrp" (default) or "gossip"
	Unicast         bool             `toml:"unicast"`
	UnicastPeers    []netip.Addr     `toml:"unicast_peers"` // default: the other directors' addresses
	AuthPass        string           `toml:"auth_pass"`     // VRRPv2 simple text, up to 8 bytes
	VIPs            []VIP            `toml:"vips"`
	GARP            GARP             `toml:"garp"`
	NotifyMaster    Command          `toml:"notify_master"`
	NotifyBackup    Command          `toml:"notify_backup"`
	NotifyFault     Command          `toml:"notify_fault"`
	Notify          Command          `toml:"notify"` // any transition; gets instance and state as arguments
	NotifyTimeout   Duration         `toml:"notify_timeout"`
	TrackInterfaces []TrackInterface `toml:"track_interfaces"`
	TrackScripts    []TrackScript    `toml:"track_scripts"`
	SyncGroup       string           `toml:"sync_group"` // instances with the same group move together
}

// VIP is a virtual address of an instance. In the file it is either a string
// "ADDR[/LEN] [dev IFACE] [label LABEL]" or a table {address, interface, label}.
type VIP struct {
	Prefix    netip.Prefix `toml:"address"`   // address with its prefix length (default /32 or /128)
	Interface string       `toml:"interface"` // default: the instance's
	Label     string       `toml:"label"`     // IPv4 only, e.g. "eth0:101"
}

// GARP is how a new master announces its VIPs (gratuitous ARP request and
// reply for IPv4, unsolicited neighbour advertisements for IPv6).
type GARP struct {
	Repeat          int      `toml:"repeat"`            // announcements per transition, default 3
	Interval        Duration `toml:"interval"`          // between them, default 1100ms
	Refresh         Duration `toml:"refresh"`           // re-announce periodically while master; 0 = off
	LowerPrioRepeat int      `toml:"lower_prio_repeat"` // announcements when a lower-priority master is heard, default 1
	IgnoreLocktime  bool     `toml:"ignore_locktime"`   // allow interval < 1s
}

// TrackInterface lowers the priority (or faults the instance) when an
// interface goes down.
type TrackInterface struct {
	Name   string `toml:"name"`
	Weight int    `toml:"weight"` // added to the priority while down; 0 = fault
}

// TrackScript runs a command periodically; while it fails the weight is
// added to the priority (0 = fault).
type TrackScript struct {
	Command  Command  `toml:"command"`
	Interval Duration `toml:"interval"` // default 2s
	Timeout  Duration `toml:"timeout"`  // default 1s
	Rise     int      `toml:"rise"`     // default 2
	Fall     int      `toml:"fall"`     // default 2
	Weight   int      `toml:"weight"`   // default 0 = fault
}

// VirtualServer is one [[virtual_server]]: an IPVS virtual service.
type VirtualServer struct {
	Name        string         `toml:"name"`    // default: the address, or "fwmark N"
	Address     netip.AddrPort `toml:"address"` // VIP:port; or Fwmark
	Fwmark      uint32         `toml:"fwmark"`
	Family      string         `toml:"family"`     // with fwmark: "ipv4" (default) or "ipv6"
	Protocol    string         `toml:"protocol"`   // "tcp" (default), "udp", "sctp"
	Scheduler   string         `toml:"scheduler"`  // default "wlc"
	Forwarding  string         `toml:"forwarding"` // "dr" (default), "nat", "tunnel"
	Persistence *Persistence   `toml:"persistence"`
	OnePacket   bool           `toml:"one_packet"`
	Quorum      int            `toml:"quorum"`     // healthy real servers needed, default 1
	Hysteresis  int            `toml:"hysteresis"` // default 0
	SorryServer netip.AddrPort `toml:"sorry_server"`
	Drain       bool           `toml:"drain"` // failed servers get weight 0 instead of removal
	SlowStart   Duration       `toml:"slow_start"`
	Check       Check          `toml:"check"`
	RealServers []RealServer   `toml:"real_servers"`
}

// Persistence makes a client stick to one real server.
type Persistence struct {
	Timeout Duration `toml:"timeout"` // default 300s
	Netmask string   `toml:"netmask"` // "255.255.255.0" or "/24"; default a single address
	Bits    int      `toml:"-"`       // Netmask as a prefix length, filled by validation
}

// RealServer is one real server behind a virtual server.
type RealServer struct {
	Name           string         `toml:"name"`    // default: the address
	Address        netip.AddrPort `toml:"address"` // "IP:PORT" or "IP" (port of the virtual server)
	Weight         int            `toml:"weight"`  // default 1
	UpperThreshold int            `toml:"upper_threshold"`
	LowerThreshold int            `toml:"lower_threshold"`
	Forwarding     string         `toml:"forwarding"` // default: the virtual server's
	// Check is the effective check: the virtual server's, with the fields this
	// server's own check table sets laid over it (or, when that table names a
	// different type, that table alone over the defaults).
	Check Check `toml:"check"`
}

// Check is a health check. Which fields apply depends on Type.
type Check struct {
	Type         string   `toml:"type"` // "tcp" (default), "http", "https", "exec", "none"
	Interval     Duration `toml:"interval"`
	Timeout      Duration `toml:"timeout"`
	Rise         int      `toml:"rise"`
	Fall         int      `toml:"fall"`
	FastInterval Duration `toml:"fast_interval"` // while a server is changing state; 0 = interval
	DownInterval Duration `toml:"down_interval"` // while a server is down; 0 = interval
	InitialState string   `toml:"initial_state"` // "down" (default) or "up"
	Warmup       Duration `toml:"warmup"`        // results are ignored this long after start
	Port         int      `toml:"port"`          // connect here instead of the real server's port

	// http and https
	Method       string        `toml:"method"` // GET (default) or HEAD
	Path         string        `toml:"path"`   // default "/"
	Host         string        `toml:"host"`
	ExpectStatus []StatusRange `toml:"expect_status"` // default 200-399
	Body         string        `toml:"body"`          // substring the body must contain
	BodyRegex    string        `toml:"body_regex"`
	Digest       string        `toml:"digest"` // md5 of the body, hex
	// https
	SNI    string `toml:"sni"`
	Verify bool   `toml:"verify"` // verify the server certificate, default true

	// exec
	Command       Command `toml:"command"`
	DynamicWeight bool    `toml:"dynamic_weight"` // exit code 2..255 sets the weight
}

// StatusRange is an inclusive range of HTTP status codes.
type StatusRange struct{ Lo, Hi int }

// Command is a command line. Written as a string it runs with /bin/sh -c;
// as a list it runs directly, without a shell. Empty means none.
type Command struct {
	Shell string   `json:",omitempty"`
	Argv  []string `json:",omitempty"`
}

// Duration is a time.Duration written in the file as a string ("1s", "500ms").
type Duration struct{ time.Duration }

func dur(d time.Duration) Duration { return Duration{d} }

// Defaults. examples/reference.toml repeats them; a test keeps the two equal.
const (
	DefaultControlSocket     = "/run/vigil/vigil.sock"
	DefaultIPVSOnStop        = "remove"
	DefaultReconcileInterval = 5 * time.Second
	DefaultPriority          = 100
	DefaultClusterPort       = 7946
	DefaultVersion           = 3
	DefaultAdvertInterval    = time.Second
	DefaultNotifyTimeout     = 10 * time.Second
	DefaultGARPRepeat        = 3
	DefaultGARPInterval      = 1100 * time.Millisecond
	DefaultScheduler         = "wlc"
	DefaultPersistence       = 300 * time.Second
	DefaultCheckInterval     = 2 * time.Second
	DefaultCheckTimeout      = time.Second
	DefaultCheckRise         = 2
	DefaultCheckFall         = 3
)

func (s *Site) setDefaults() {
	s.Settings = Settings{
		ControlSocket:     DefaultControlSocket,
		IPVSOnStop:        DefaultIPVSOnStop,
		ReconcileInterval: dur(DefaultReconcileInterval),
	}
	s.Cluster = Cluster{Port: DefaultClusterPort}
}

func (d *Director) setDefaults() { d.Priority = DefaultPriority }

func (s *IPVSSync) setDefaults() { s.Enabled = true }

func (i *Instance) setDefaults() {
	i.Version = DefaultVersion
	i.AdvertInterval = dur(DefaultAdvertInterval)
	i.Preempt = true
	i.Transport = "vrrp"
	i.NotifyTimeout = dur(DefaultNotifyTimeout)
	i.GARP = GARP{Repeat: DefaultGARPRepeat, Interval: dur(DefaultGARPInterval), LowerPrioRepeat: 1}
}

func (t *TrackScript) setDefaults() {
	t.Interval = dur(2 * time.Second)
	t.Timeout = dur(time.Second)
	t.Rise, t.Fall = 2, 2
}

func (v *VirtualServer) setDefaults() {
	v.Protocol = "tcp"
	v.Scheduler = DefaultScheduler
	v.Forwarding = "dr"
	v.Quorum = 1
	v.Check.setDefaults()
}

func (p *Persistence) setDefaults() { p.Timeout = dur(DefaultPersistence) }

func (r *RealServer) setDefaults() {
	r.Weight = 1
	r.Check.setDefaults()
}

func (c *Check) setDefaults() {
	*c = Check{
		Type:         "tcp",
		Interval:     dur(DefaultCheckInterval),
		Timeout:      dur(DefaultCheckTimeout),
		Rise:         DefaultCheckRise,
		Fall:         DefaultCheckFall,
		InitialState: "down",
		Method:       "GET",
		Path:         "/",
		ExpectStatus: []StatusRange{{200, 399}},
		Verify:       true,
	}
}
