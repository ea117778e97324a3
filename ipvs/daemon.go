package ipvs

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// SyncRole is the role of an IPVS connection-sync daemon.
type SyncRole uint32

const (
	SyncMaster SyncRole = 1 // IP_VS_STATE_MASTER: sends connection state
	SyncBackup SyncRole = 2 // IP_VS_STATE_BACKUP: receives it
)

func (r SyncRole) String() string {
	switch r {
	case SyncMaster:
		return "master"
	case SyncBackup:
		return "backup"
	}
	return fmt.Sprintf("role(%d)", uint32(r))
}

// SyncDaemon is one kernel connection-sync daemon (ipvsadm
// --start-daemon). Master and backup run independently; a director pair
// usually runs both so that either can take over with the connections the
// other has seen.
type SyncDaemon struct {
	Role      SyncRole
	Interface string // multicast interface, at most 15 bytes
	SyncID    uint8  // ipvsadm --syncid (0..255)
	// Optional; zero values take the kernel defaults (group 224.0.0.81,
	// port 8848, ttl 1, maxlen from the interface MTU).
	MaxLen uint16
	Group  netip.Addr // IPv4 or IPv6 multicast group
	Port   uint16
	TTL    uint8
}

// Generic netlink ids (linux/ip_vs.h); moby/ipvs declares the commands but
// never uses them.
const (
	cmdNewDaemon = 9
	cmdDelDaemon = 10
	cmdGetDaemon = 11

	attrDaemon = 3 // IPVS_CMD_ATTR_DAEMON (nested)

	daemonState      = 1 // u32
	daemonMcastIfn   = 2 // string
	daemonSyncID     = 3 // u32
	daemonSyncMaxLen = 4 // u16
	daemonMcastGroup = 5 // u32 in_addr
	daemonMcastGrp6  = 6 // 16 bytes
	daemonMcastPort  = 7 // u16
	daemonMcastTTL   = 8 // u8
)

func (d *SyncDaemon) validate() error {
	if d.Role != SyncMaster && d.Role != SyncBackup {
		return fmt.Errorf("sync daemon: unknown role %d", d.Role)
	}
	if d.Interface == "" || len(d.Interface) > 15 {
		return fmt.Errorf("sync daemon: interface %q must be 1..15 bytes", d.Interface)
	}
	if d.Group.IsValid() && !d.Group.IsMulticast() {
		return fmt.Errorf("sync daemon: group %s is not a multicast address", d.Group)
	}
	return nil
}

// StartSyncDaemon starts a master or backup sync daemon. Starting a role
// that already runs fails with EEXIST.
func (k *Kernel) StartSyncDaemon(ctx context.Context, d SyncDaemon) error {
	if err := d.validate(); err != nil {
		return err
	}
	a := nl.NewRtAttr(attrDaemon, nil)
	a.AddRtAttr(daemonState, nl.Uint32Attr(uint32(d.Role)))
	a.AddRtAttr(daemonMcastIfn, nl.ZeroTerminated(d.Interface))
	a.AddRtAttr(daemonSyncID, nl.Uint32Attr(uint32(d.SyncID)))
	if d.MaxLen != 0 {
		a.AddRtAttr(daemonSyncMaxLen, nl.Uint16Attr(d.MaxLen))
	}
	if d.Group.IsValid() {
		g := d.Group.Unmap()
		if g.Is4() {
			b := g.As4()
			a.AddRtAttr(daemonMcastGroup, b[:])
		} else {
			b := g.As16()
			a.AddRtAttr(daemonMcastGrp6, b[:])
		}
	}
	if d.Port != 0 {
		a.AddRtAttr(daemonMcastPort, nl.Uint16Attr(d.Port))
	}
	if d.TTL != 0 {
		a.AddRtAttr(daemonMcastTTL, nl.Uint8Attr(d.TTL))
	}
	_, err := k.genl(ctx, "start IPVS sync daemon ("+d.Role.String()+" on "+d.Interface+")", cmdNewDaemon, 0, a)
	return err
}

// StopSyncDaemon stops the daemon of that role. Stopping one that does not
// run fails with ESRCH.
func (k *Kernel) StopSyncDaemon(ctx context.Context, role SyncRole) error {
	a := nl.NewRtAttr(attrDaemon, nil)
	a.AddRtAttr(daemonState, nl.Uint32Attr(uint32(role)))
	_, err := k.genl(ctx, "stop IPVS sync daemon ("+role.String()+")", cmdDelDaemon, 0, a)
	return err
}

// SyncDaemons reads back the running sync daemons.
func (k *Kernel) SyncDaemons(ctx context.Context) ([]SyncDaemon, error) {
	msgs, err := k.genl(ctx, "list IPVS sync daemons", cmdGetDaemon, unix.NLM_F_DUMP, nil)
	if err != nil {
		return nil, err
	}
	var out []SyncDaemon
	for _, m := range msgs {
		ds, err := parseDaemonMsg(m)
		if err != nil {
			return nil, fmt.Errorf("list IPVS sync daemons: %w", err)
		}
		out = append(out, ds...)
	}
	return out, nil
}

// parseDaemonMsg decodes one GET_DAEMON reply (generic netlink header and
// attributes).
func parseDaemonMsg(m []byte) ([]SyncDaemon, error) {
	if len(m) < nl.SizeofGenlmsg {
		return nil, fmt.Errorf("short generic netlink message (%d bytes)", len(m))
	}
	attrs, err := parseAttrs(m[nl.SizeofGenlmsg:])
	if err != nil {
		return nil, err
	}
	var out []SyncDaemon
	for _, a := range attrs {
		if a.typ != attrDaemon {
			continue
		}
		inner, err := parseAttrs(a.value)
		if err != nil {
			return nil, err
		}
		var d SyncDaemon
		for _, f := range inner {
			v := f.value
			switch f.typ {
			case daemonState:
				if len(v) >= 4 {
					d.Role = SyncRole(binary.NativeEndian.Uint32(v))
				}
			case daemonMcastIfn:
				d.Interface = string(trimNUL(v))
			case daemonSyncID:
				if len(v) >= 4 {
					d.SyncID = uint8(binary.NativeEndian.Uint32(v))
				}
			case daemonSyncMaxLen:
				if len(v) >= 2 {
					d.MaxLen = binary.NativeEndian.Uint16(v)
				}
			case daemonMcastGroup:
				if len(v) >= 4 {
					d.Group = netip.AddrFrom4([4]byte(v[:4]))
				}
			case daemonMcastGrp6:
				if len(v) >= 16 {
					d.Group = netip.AddrFrom16([16]byte(v[:16]))
				}
			case daemonMcastPort:
				if len(v) >= 2 {
					d.Port = binary.NativeEndian.Uint16(v)
				}
			case daemonMcastTTL:
				if len(v) >= 1 {
					d.TTL = v[0]
				}
			}
		}
		if d.Role == 0 {
			return nil, fmt.Errorf("daemon attribute without a state")
		}
		out = append(out, d)
	}
	return out, nil
}

type attr struct {
	typ   uint16 // without the nested / byte-order flags
	value []byte
}

// parseAttrs splits netlink attributes, rejecting malformed lengths
// (nl.ParseRouteAttr panics on some, as fuzzing showed).
func parseAttrs(b []byte) ([]attr, error) {
	var out []attr
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		t := binary.NativeEndian.Uint16(b[2:4]) & nl.NLA_TYPE_MASK
		if l < 4 || l > len(b) {
			return nil, fmt.Errorf("malformed netlink attribute (length %d, %d bytes left)", l, len(b))
		}
		out = append(out, attr{typ: t, value: b[4:l]})
		next := (l + 3) &^ 3
		if next > len(b) {
			break
		}
		b = b[next:]
	}
	return out, nil
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

// genl sends one IPVS generic netlink command on the daemon socket, under
// the mutex and the call timeout, and returns the reply payloads.
func (k *Kernel) genl(ctx context.Context, what string, cmd uint8, flags int, attr *nl.RtAttr) ([][]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.gsock == nil {
		ns := netns.None()
		if k.opts.Netns != "" {
			var err error
			if ns, err = netns.GetFromPath(k.opts.Netns); err != nil {
				return nil, fmt.Errorf("%s: open netns %s: %w", what, k.opts.Netns, err)
			}
			defer ns.Close()
		}
		s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_GENERIC)
		if err != nil {
			return nil, fmt.Errorf("%s: open generic netlink socket: %w", what, err)
		}
		k.gsock = s
	}
	sock := k.gsock
	req := nl.NewNetlinkRequest(int(k.familyID), unix.NLM_F_ACK|flags)
	req.AddData(&nl.Genlmsg{Command: cmd, Version: 1})
	if attr != nil {
		req.AddData(attr)
	}
	ctx, cancel := context.WithTimeout(ctx, k.opts.CallTimeout)
	defer cancel()
	type result struct {
		msgs [][]byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		msgs, err := genlExchange(sock, req)
		done <- result{msgs, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("%s: %w", what, r.err)
		}
		return r.msgs, nil
	case <-ctx.Done():
		sock.Close() // unblocks the reader
		k.gsock = nil
		return nil, fmt.Errorf("%s: %w", what, ctx.Err())
	}
}

// genlExchange sends req and collects the replies with its sequence number
// until the ACK, NLMSG_DONE, or an error.
func genlExchange(s *nl.NetlinkSocket, req *nl.NetlinkRequest) ([][]byte, error) {
	if err := s.Send(req); err != nil {
		return nil, err
	}
	pid, err := s.GetPid()
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for {
		msgs, _, err := s.Receive()
		if err != nil {
			if err == syscall.EAGAIN {
				continue
			}
			return nil, err
		}
		for _, m := range msgs {
			if m.Header.Seq != req.Seq || m.Header.Pid != pid {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return nil, fmt.Errorf("short netlink error message")
				}
				if e := int32(binary.NativeEndian.Uint32(m.Data[:4])); e != 0 {
					return nil, syscall.Errno(-e)
				}
				return out, nil
			}
			out = append(out, m.Data)
			if m.Header.Flags&unix.NLM_F_MULTI == 0 {
				return out, nil
			}
		}
	}
}
