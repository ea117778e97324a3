package director

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Status is everything `vigil status` shows: the election, the VIPs, the
// IPVS table beside the health of each real server, and the peers.
type Status struct {
	Site       string    `json:"site"`
	Node       string    `json:"node"`
	ConfigPath string    `json:"config_path"`
	Digest     string    `json:"digest"`
	Started    time.Time `json:"started"`
	LastReload time.Time `json:"last_reload,omitzero"`
	ReloadErr  string    `json:"last_reload_error,omitempty"`
	IPVS       string    `json:"ipvs"` // "kernel", "absent (VIP-only site)", ...
	// Elections is how many VRRP elections run in this process: one per
	// instance, never more (a reload that restarts one replaces it).
	Elections int `json:"elections_running"`
	// Goroutines and OpenFDs are the process's own: both stay flat on a
	// healthy director, whatever it is asked to do.
	Goroutines int `json:"goroutines"`
	OpenFDs    int `json:"open_fds"`

	Instances      []InstanceStatus `json:"instances"`
	VirtualServers []VSStatus       `json:"virtual_servers"`
	Peers          []PeerStatus     `json:"peers,omitempty"`
	Reconcile      ReconcileStatus  `json:"reconcile"`
	// Health is this director's health view (virtual server/real server ->
	// up) and IPVSDigest the table it last programmed: what a drill
	// compares with the peers'.
	Health     map[string]bool `json:"health,omitempty"`
	IPVSDigest string          `json:"ipvs_digest,omitempty"`
	Warnings   []string        `json:"warnings,omitempty"`
	// DualMasterTransients counts overlaps of master claims on the cluster
	// channel too short to be a dual master (preemptions, handovers): they
	// are counted here, and only a longer one is a warning.
	DualMasterTransients uint64 `json:"dual_master_transients"`
}

// InstanceStatus is one VRRP instance as this director sees it.
type InstanceStatus struct {
	Name         string            `json:"name"`
	VRID         int               `json:"vrid"`
	State        string            `json:"state"`
	Priority     int               `json:"priority"`
	Interval     time.Duration     `json:"advert_interval"`
	Transport    string            `json:"transport"`
	MasterAddr   string            `json:"master,omitempty"`
	VIPs         []string          `json:"vips"`
	VIPsHeld     []string          `json:"vips_held"`
	Since        time.Time         `json:"since"`
	Reason       string            `json:"reason,omitempty"`
	AdvertsSent  uint64            `json:"adverts_sent"`
	AdvertsRecv  uint64            `json:"adverts_received"`
	Invalid      map[string]uint64 `json:"invalid,omitempty"`
	Transitions  uint64            `json:"transitions"`
	FirstGARP    time.Time         `json:"first_garp,omitzero"`
	GARPSent     uint64            `json:"garp_sent"`
	HandoverHeld bool              `json:"handover_held,omitempty"`
	// AnswersSkipped counts adverts of other masters not answered (at
	// most one answer per advert interval).
	AnswersSkipped uint64 `json:"answers_skipped"`
	// Repairs counts times the guard found the VIPs out of step with the
	// election and fixed them; VIPsEvicted counts VIPs removed because
	// they were present while this director was not master. Both stay 0
	// in a healthy director.
	Repairs     uint64 `json:"invariant_repairs"`
	VIPsEvicted uint64 `json:"vips_evicted"`
	// PreemptHolds name what keeps this backup from taking the instance
	// back right now ("resync": it waits, at most ResyncWait, for the
	// master's connection table); Resync is how the last wait ended.
	PreemptHolds []string      `json:"preempt_holds,omitempty"`
	ResyncWait   time.Duration `json:"resync_wait,omitempty"`
	Resync       string        `json:"resync,omitempty"`
	// Lingering: this director resigned and keeps the VIPs until the new
	// master is heard (make-before-break handover).
	Lingering bool `json:"lingering,omitempty"`
}

// VSStatus is one virtual server: IPVS's view and the checks'.
type VSStatus struct {
	Name        string     `json:"name"`
	Address     string     `json:"address"`
	Protocol    string     `json:"protocol"`
	Scheduler   string     `json:"scheduler"`
	Forwarding  string     `json:"forwarding"`
	InKernel    bool       `json:"in_kernel"`
	Conns       uint64     `json:"conns"`
	InPkts      uint64     `json:"in_pkts"`
	OutPkts     uint64     `json:"out_pkts"`
	InBytes     uint64     `json:"in_bytes"`
	OutBytes    uint64     `json:"out_bytes"`
	SorryActive bool       `json:"sorry_active,omitempty"`
	RealServers []RSStatus `json:"real_servers"`
}

// RSStatus is one real server of a virtual server.
type RSStatus struct {
	Address    string        `json:"address"`
	Weight     int           `json:"weight"`      // configured
	IPVSWeight int           `json:"ipvs_weight"` // in the kernel, -1 if absent
	ActiveConn int           `json:"active_conns"`
	InactConn  int           `json:"inactive_conns"`
	Conns      uint64        `json:"conns"`
	InPkts     uint64        `json:"in_pkts"`
	OutPkts    uint64        `json:"out_pkts"`
	Health     string        `json:"health"` // up | down | unknown
	Reason     string        `json:"reason,omitempty"`
	Passes     int           `json:"passes"`
	Fails      int           `json:"fails"`
	Latency    time.Duration `json:"latency"`
	LastCheck  time.Time     `json:"last_check,omitzero"`
}

// PeerStatus is another director seen on the cluster channel.
type PeerStatus struct {
	Name      string            `json:"name"`
	Addr      string            `json:"addr"`
	Alive     bool              `json:"alive"`
	Digest    string            `json:"digest,omitempty"`
	Drift     bool              `json:"drift"`
	Instances map[string]string `json:"instances,omitempty"` // name -> state
	LastSeen  time.Time         `json:"last_seen,omitzero"`
	// What the peer published, for drills.
	Health         map[string]bool         `json:"health,omitempty"`
	IPVSDigest     string                  `json:"ipvs_digest,omitempty"`
	InstanceDetail map[string]PeerInstance `json:"instance_detail,omitempty"`
}

// PeerInstance is a peer's view of one instance, with the times a drill
// puts on its timeline (the peer's clock).
type PeerInstance struct {
	State     string    `json:"state"`
	Priority  int       `json:"priority"`
	Since     time.Time `json:"since,omitzero"`
	VIPsAdded time.Time `json:"vips_added,omitzero"`
	FirstGARP time.Time `json:"first_garp,omitzero"`
}

// ReconcileStatus summarises the IPVS reconciler.
type ReconcileStatus struct {
	Passes    uint64    `json:"passes"`
	LastPass  time.Time `json:"last_pass,omitzero"`
	Creates   uint64    `json:"creates"`
	Updates   uint64    `json:"updates"`
	Deletes   uint64    `json:"deletes"`
	Errors    uint64    `json:"errors"`
	LastError string    `json:"last_error,omitempty"`
}

// WriteText renders s for a terminal, in the spirit of `ipvsadm -Ln --stats`
// with the health of each real server beside its IPVS row.
func (s Status) WriteText(w io.Writer, now time.Time) {
	fmt.Fprintf(w, "site %s, director %s, config %s (digest %s), up %s, IPVS: %s\n",
		s.Site, s.Node, s.ConfigPath, short(s.Digest), since(s.Started, now), s.IPVS)
	if s.ReloadErr != "" {
		fmt.Fprintf(w, "last reload FAILED (running config kept): %s\n", s.ReloadErr)
	}
	for _, warn := range s.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", warn)
	}
	fmt.Fprintln(w, "\nINSTANCES")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tVRID\tSTATE\tPRIO\tADVERT\tMASTER\tVIPS HELD\tSINCE\tWHY")
	for _, in := range s.Instances {
		held := strings.Join(in.VIPsHeld, ",")
		if held == "" {
			held = "-"
		}
		state := in.State
		if in.HandoverHeld {
			state += " (handover)"
		}
		if in.Lingering {
			state += " (resigned, VIPs kept until the new master is heard)"
		}
		if slices.Contains(in.PreemptHolds, "resync") {
			state += fmt.Sprintf(" (waiting up to %v for the master's connections)", in.ResyncWait)
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", in.Name, in.VRID, state, in.Priority,
			in.Interval, dash(in.MasterAddr), held, since(in.Since, now), dash(in.Reason))
	}
	tw.Flush()
	for _, in := range s.Instances {
		if in.Resync != "" {
			fmt.Fprintf(w, "  %s: last resync: %s\n", in.Name, in.Resync)
		}
	}
	if len(s.VirtualServers) > 0 {
		fmt.Fprintln(w, "\nVIRTUAL SERVERS (IPVS beside health)")
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  Prot LocalAddress:Port Scheduler\tFwd\tWeight\tActConn\tInActConn\tConns\tInPkts\tOutPkts\tHealth\tLatency\tLast result")
		for _, vs := range s.VirtualServers {
			kernel := ""
			if !vs.InKernel {
				kernel = "  (not in kernel)"
			}
			if vs.SorryActive {
				kernel += "  (sorry server active)"
			}
			fmt.Fprintf(tw, "  %s %s %s [%s]%s\t\t\t\t\t%d\t%d\t%d\t\t\t\n", strings.ToUpper(vs.Protocol), vs.Address,
				vs.Scheduler, vs.Name, kernel, vs.Conns, vs.InPkts, vs.OutPkts)
			for _, rs := range vs.RealServers {
				wt := fmt.Sprint(rs.IPVSWeight)
				if rs.IPVSWeight < 0 {
					wt = "-"
				}
				fmt.Fprintf(tw, "    -> %s\t%s\t%s/%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", rs.Address, vs.Forwarding, wt, rs.Weight,
					rs.ActiveConn, rs.InactConn, rs.Conns, rs.InPkts, rs.OutPkts,
					health(rs), latency(rs), dash(rs.Reason))
			}
		}
		tw.Flush()
		r := s.Reconcile
		fmt.Fprintf(w, "reconcile: %d passes, last %s ago; writes: %d create, %d update, %d delete; %d errors %s\n",
			r.Passes, since(r.LastPass, now), r.Creates, r.Updates, r.Deletes, r.Errors, dash(r.LastError))
	}
	if len(s.Peers) > 0 {
		fmt.Fprintln(w, "\nPEERS (cluster channel)")
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tADDRESS\tALIVE\tDIGEST\tINSTANCES")
		for _, p := range s.Peers {
			d := short(p.Digest)
			if p.Drift {
				d += " DRIFT"
			}
			var names []string
			for n, st := range p.Instances {
				names = append(names, n+"="+st)
			}
			sort.Strings(names)
			fmt.Fprintf(tw, "  %s\t%s\t%v\t%s\t%s\n", p.Name, p.Addr, p.Alive, d, dash(strings.Join(names, " ")))
		}
		tw.Flush()
	}
}

func health(rs RSStatus) string {
	switch rs.Health {
	case "up":
		return fmt.Sprintf("UP %d/%d", rs.Passes, rs.Fails)
	case "down":
		return fmt.Sprintf("DOWN %d/%d", rs.Passes, rs.Fails)
	}
	return rs.Health
}

func latency(rs RSStatus) string {
	if rs.LastCheck.IsZero() {
		return "-"
	}
	return rs.Latency.Round(10 * time.Microsecond).String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func short(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return dash(d)
}

func since(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Round(time.Second).String()
}
