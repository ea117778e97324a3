// Package ipvsadm parses the listings of Debian's ipvsadm (`ipvsadm -Ln`,
// `-Ln --thresholds`, `-L --daemon`, `-L --timeout`) into the ipvs
// package's types. Tests use it as an independent witness: ipvsadm reads
// the kernel through libnl, not through moby/ipvs, so a table that only
// exists in vigil's handle (or a write the kernel silently ignored) shows.
package ipvsadm

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-lb/vigil/ipvs"
)

// ParseList parses `ipvsadm -Ln` (weights, forwarding, connections) or,
// with thresholds set, `ipvsadm -Ln --thresholds` (then Weight and
// Forwarding are not set, UpperThreshold and LowerThreshold are).
// Netmask is only known for persistent services (ipvsadm prints it only
// for them); it is 0 otherwise.
func ParseList(out string, thresholds bool) (ipvs.Table, error) {
	var t ipvs.Table
	var cur *ipvs.Service
	sc := bufio.NewScanner(strings.NewReader(out))
	ln := 0
	for sc.Scan() {
		ln++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "IP Virtual Server") || strings.HasPrefix(line, "Prot ") ||
			line == "-> RemoteAddress:Port" || strings.HasPrefix(line, "-> RemoteAddress:Port ") {
			continue
		}
		f := strings.Fields(line)
		if f[0] == "->" {
			if cur == nil {
				return t, fmt.Errorf("line %d: destination before any service", ln)
			}
			d, err := parseDest(f[1:], thresholds)
			if err != nil {
				return t, fmt.Errorf("line %d: %q: %w", ln, line, err)
			}
			cur.Destinations = append(cur.Destinations, d)
			continue
		}
		s, err := parseService(f)
		if err != nil {
			return t, fmt.Errorf("line %d: %q: %w", ln, line, err)
		}
		t.Services = append(t.Services, s)
		cur = &t.Services[len(t.Services)-1]
	}
	t.Sort()
	return t, sc.Err()
}

func parseService(f []string) (ipvs.Service, error) {
	var s ipvs.Service
	if len(f) < 3 {
		return s, fmt.Errorf("too few fields")
	}
	i := 2
	switch f[0] {
	case "TCP", "UDP", "SCTP":
		p, err := ipvs.ParseProtocol(f[0])
		if err != nil {
			return s, err
		}
		a, err := netip.ParseAddrPort(f[1])
		if err != nil {
			return s, err
		}
		s.Key = ipvs.AddrKey(p, a)
	case "FWM":
		m, err := strconv.ParseUint(f[1], 10, 32)
		if err != nil {
			return s, err
		}
		fam := ipvs.IPv4
		if f[2] == "IPv6" {
			fam = ipvs.IPv6
			i++
		}
		s.Key = ipvs.MarkKey(fam, uint32(m))
	default:
		return s, fmt.Errorf("unknown protocol %q", f[0])
	}
	if i >= len(f) {
		return s, fmt.Errorf("no scheduler")
	}
	s.Scheduler = f[i]
	i++
	for ; i < len(f); i++ {
		switch tok := f[i]; {
		case strings.HasPrefix(tok, "("):
			for _, name := range strings.Split(strings.Trim(tok, "()"), ",") {
				bit, err := ipvs.ParseSchedFlag(name)
				if err != nil {
					return s, err
				}
				s.Flags |= bit
			}
		case tok == "persistent" && i+1 < len(f):
			n, err := strconv.ParseUint(f[i+1], 10, 32)
			if err != nil {
				return s, err
			}
			s.Timeout = uint32(n)
			s.Flags |= ipvs.FlagPersistent
			i++
		case tok == "mask" && i+1 < len(f):
			m := f[i+1]
			if ip := net.ParseIP(m); ip != nil && ip.To4() != nil {
				ones, bits := net.IPMask(ip.To4()).Size()
				if bits == 0 {
					return s, fmt.Errorf("non-contiguous mask %s", m)
				}
				s.Netmask = ones
			} else {
				n, err := strconv.Atoi(m)
				if err != nil {
					return s, fmt.Errorf("mask %q: %w", m, err)
				}
				s.Netmask = n
			}
			i++
		case tok == "ops":
			s.Flags |= ipvs.FlagOnePacket
		case tok == "pe" && i+1 < len(f):
			i++ // persistence engine: not modelled
		default:
			return s, fmt.Errorf("unknown service field %q", tok)
		}
	}
	return s, nil
}

func parseDest(f []string, thresholds bool) (ipvs.Destination, error) {
	var d ipvs.Destination
	if len(f) < 5 {
		return d, fmt.Errorf("too few fields")
	}
	a, err := netip.ParseAddrPort(f[0])
	if err != nil {
		return d, err
	}
	d.Addr, d.Port = a.Addr().Unmap(), a.Port()
	nums := make([]int, 0, 4)
	start := 2
	if thresholds {
		start = 1
	}
	for _, x := range f[start:] {
		n, err := strconv.Atoi(x)
		if err != nil {
			return d, fmt.Errorf("number %q: %w", x, err)
		}
		nums = append(nums, n)
	}
	if thresholds {
		if len(nums) < 4 {
			return d, fmt.Errorf("too few numbers")
		}
		d.UpperThreshold, d.LowerThreshold = uint32(nums[0]), uint32(nums[1])
		d.ActiveConns, d.InactiveConns = nums[2], nums[3]
		return d, nil
	}
	switch f[1] {
	case "Route":
		d.Forwarding = ipvs.DR
	case "Masq":
		d.Forwarding = ipvs.NAT
	case "Tunnel":
		d.Forwarding = ipvs.Tunnel
	case "Local":
		d.Forwarding = ipvs.Local
	default:
		return d, fmt.Errorf("unknown forwarding %q", f[1])
	}
	if len(nums) < 3 {
		return d, fmt.Errorf("too few numbers")
	}
	d.Weight, d.ActiveConns, d.InactiveConns = nums[0], nums[1], nums[2]
	return d, nil
}

// ParseDaemons parses `ipvsadm -L --daemon`, e.g.
// "master sync daemon (mcast=s0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)".
func ParseDaemons(out string) ([]ipvs.SyncDaemon, error) {
	var ds []ipvs.SyncDaemon
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		var d ipvs.SyncDaemon
		switch {
		case strings.HasPrefix(line, "master sync daemon"):
			d.Role = ipvs.SyncMaster
		case strings.HasPrefix(line, "backup sync daemon"):
			d.Role = ipvs.SyncBackup
		default:
			return nil, fmt.Errorf("unexpected line %q", line)
		}
		open, end := strings.Index(line, "("), strings.LastIndex(line, ")")
		if open < 0 || end < open {
			return nil, fmt.Errorf("no (fields) in %q", line)
		}
		for _, kv := range strings.Split(line[open+1:end], ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok {
				return nil, fmt.Errorf("field %q in %q", kv, line)
			}
			var err error
			var n uint64
			switch k {
			case "mcast":
				d.Interface = v
			case "syncid":
				n, err = strconv.ParseUint(v, 10, 8)
				d.SyncID = uint8(n)
			case "maxlen":
				n, err = strconv.ParseUint(v, 10, 16)
				d.MaxLen = uint16(n)
			case "group":
				d.Group, err = netip.ParseAddr(v)
			case "port":
				n, err = strconv.ParseUint(v, 10, 16)
				d.Port = uint16(n)
			case "ttl":
				n, err = strconv.ParseUint(v, 10, 8)
				d.TTL = uint8(n)
			}
			if err != nil {
				return nil, fmt.Errorf("field %s=%s: %w", k, v, err)
			}
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// ParseTimeouts parses `ipvsadm -L --timeout`:
// "Timeout (tcp tcpfin udp): 900 120 300".
func ParseTimeouts(out string) (ipvs.Timeouts, error) {
	var t ipvs.Timeouts
	_, rest, ok := strings.Cut(strings.TrimSpace(out), "):")
	if !ok {
		return t, fmt.Errorf("unexpected timeout line %q", out)
	}
	f := strings.Fields(rest)
	if len(f) != 3 {
		return t, fmt.Errorf("unexpected timeout line %q", out)
	}
	var n [3]int
	for i := range f {
		var err error
		if n[i], err = strconv.Atoi(f[i]); err != nil {
			return t, fmt.Errorf("timeout %q: %w", f[i], err)
		}
	}
	return ipvs.Timeouts{TCP: time.Duration(n[0]) * time.Second, TCPFin: time.Duration(n[1]) * time.Second, UDP: time.Duration(n[2]) * time.Second}, nil
}
