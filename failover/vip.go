package failover

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// VIP is one virtual address an instance moves between directors.
type VIP struct {
	// Prefix is the address with the prefix length it gets on the
	// interface, e.g. 10.99.0.100/24 or fd99::100/128 (not masked).
	Prefix netip.Prefix
	// Interface carries the VIP, e.g. "eth0".
	Interface string
	// Label is the IPv4 address label, e.g. "eth0:101" (the
	// <ifname>:<suffix> convention of iproute2, at most 15 bytes).
	// Empty: none. IPv6 has no labels.
	Label string
}

// maxIfName is IFNAMSIZ-1: the longest interface name or label.
const maxIfName = 15

// Validate reports what is wrong with v, if anything.
func (v VIP) Validate() error {
	a := v.Prefix.Addr()
	switch {
	case !v.Prefix.IsValid():
		return fmt.Errorf("VIP %q: not an address/prefix", v.Prefix)
	case a.Zone() != "":
		return fmt.Errorf("VIP %s: an address zone is not allowed", v.Prefix)
	case a.Is4In6():
		return fmt.Errorf("VIP %s: IPv4-mapped IPv6 address; write it as IPv4", v.Prefix)
	case a.IsUnspecified() || a.IsMulticast() || a.IsLoopback():
		return fmt.Errorf("VIP %s: not a unicast address", v.Prefix)
	case v.Interface == "":
		return fmt.Errorf("VIP %s: no interface", v.Prefix)
	case len(v.Interface) > maxIfName || strings.ContainsAny(v.Interface, "/ \t"):
		return fmt.Errorf("VIP %s: bad interface name %q", v.Prefix, v.Interface)
	}
	if v.Label == "" {
		return nil
	}
	if a.Is6() {
		return fmt.Errorf("VIP %s: labels are IPv4 only (got %q)", v.Prefix, v.Label)
	}
	if len(v.Label) > maxIfName {
		return fmt.Errorf("VIP %s: label %q longer than %d bytes", v.Prefix, v.Label, maxIfName)
	}
	if v.Label != v.Interface && !strings.HasPrefix(v.Label, v.Interface+":") {
		return fmt.Errorf("VIP %s: label %q must be %q or start with %q", v.Prefix, v.Label, v.Interface, v.Interface+":")
	}
	return nil
}

// String formats v like `ip addr`: "10.99.0.100/24 dev eth0 label eth0:1".
func (v VIP) String() string {
	s := v.Prefix.String() + " dev " + v.Interface
	if v.Label != "" {
		s += " label " + v.Label
	}
	return s
}

// ipNet converts the VIP's prefix for netlink.
func (v VIP) ipNet() *net.IPNet {
	a := v.Prefix.Addr()
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(v.Prefix.Bits(), a.BitLen())}
}

// infiniteLifetime is the "forever" value of IFA_CACHEINFO lifetimes.
const infiniteLifetime = 0xffffffff

// nlAddr is the address to add for v on the link with the given index.
func (v VIP) nlAddr(index int) *netlink.Addr {
	a := &netlink.Addr{IPNet: v.ipNet(), Label: v.Label, LinkIndex: index}
	if v.Prefix.Addr().Is6() {
		// No DAD: the VIP must be usable at once, never tentative or
		// dadfailed because the old master still answered for it.
		a.Flags = unix.IFA_F_NODAD
		// Deprecated (preferred_lft 0) like keepalived's IPv6 VIPs, so
		// the kernel never picks it as the source of our own traffic.
		a.PreferedLft = 0
		a.ValidLft = infiniteLifetime
	}
	return a
}

// vipSet adds, removes and watches the VIPs of one instance. Every
// change goes through mu, so the watcher can never put back a VIP that a
// release is taking away.
type vipSet struct {
	h   *netlink.Handle
	log *slog.Logger

	mu       sync.Mutex
	vips     []VIP
	held     bool    // claimed: the watcher keeps them present
	index    []int   // link index each VIP was last added on
	errs     []error // last add error of each VIP
	restored uint64  // VIPs the watcher had to put back
	evicted  uint64  // VIPs the watcher took away: present while not held
}

func newVIPSet(h *netlink.Handle, vips []VIP, log *slog.Logger) *vipSet {
	return &vipSet{h: h, log: log, vips: slices.Clone(vips), index: make([]int, len(vips)), errs: make([]error, len(vips))}
}

// claim marks the VIPs held and adds every one that is missing.
func (s *vipSet) claim() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held = true
	var errs []error
	links := map[string]netlink.Link{}
	for i, v := range s.vips {
		added, err := s.addLocked(i, links)
		if err != nil {
			errs = append(errs, err)
			s.log.Error("cannot add VIP", "vip", v.String(), "error", err)
		} else if added {
			s.log.Info("VIP added", "vip", v.String())
		}
	}
	return errors.Join(errs...)
}

// addLocked adds VIP i; added is false when it was already there.
func (s *vipSet) addLocked(i int, links map[string]netlink.Link) (added bool, err error) {
	v := s.vips[i]
	link, err := s.link(v.Interface, links)
	if err != nil {
		s.errs[i] = err
		return false, err
	}
	s.index[i] = link.Attrs().Index
	err = s.h.AddrAdd(link, v.nlAddr(link.Attrs().Index))
	switch {
	case errors.Is(err, unix.EEXIST):
		err = nil
	case err != nil:
		err = fmt.Errorf("add VIP %s: %w", v, err)
	default:
		added = true
	}
	s.errs[i] = err
	return added, err
}

// link looks up an interface once per operation.
func (s *vipSet) link(name string, cache map[string]netlink.Link) (netlink.Link, error) {
	if l, ok := cache[name]; ok {
		return l, nil
	}
	l, err := s.h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", name, err)
	}
	cache[name] = l
	return l, nil
}

// release marks the VIPs not held and removes every one present; it
// returns those it removed. why says what for, in the logs.
func (s *vipSet) release(why string) ([]VIP, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held = false
	for i := range s.errs {
		s.errs[i] = nil
	}
	return s.removeLocked(s.vips, why)
}

// removeLocked deletes the addresses of vips wherever present.
func (s *vipSet) removeLocked(vips []VIP, why string) ([]VIP, error) {
	var (
		removed []VIP
		errs    []error
	)
	byIf := map[string][]VIP{}
	var order []string
	for _, v := range vips {
		if _, ok := byIf[v.Interface]; !ok {
			order = append(order, v.Interface)
		}
		byIf[v.Interface] = append(byIf[v.Interface], v)
	}
	for _, ifname := range order {
		link, err := s.h.LinkByName(ifname)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) {
				continue // the interface is gone, and its addresses with it
			}
			errs = append(errs, fmt.Errorf("remove VIPs from %s: %w", ifname, err))
			continue
		}
		present, err := s.list(link)
		if err != nil {
			errs = append(errs, fmt.Errorf("remove VIPs from %s: %w", ifname, err))
			continue
		}
		for _, v := range byIf[ifname] {
			for _, a := range present {
				// Match on the address alone: whatever prefix length
				// or label it carries now, it must go.
				if ip, ok := netip.AddrFromSlice(a.IP); !ok || ip.Unmap() != v.Prefix.Addr() {
					continue
				}
				del := &netlink.Addr{IPNet: a.IPNet, LinkIndex: link.Attrs().Index}
				err := s.h.AddrDel(link, del)
				switch {
				case errors.Is(err, unix.EADDRNOTAVAIL):
				case err != nil:
					errs = append(errs, fmt.Errorf("remove VIP %s: %w", v, err))
					s.log.Error("cannot remove VIP", "vip", v.String(), "error", err)
				default:
					removed = append(removed, v)
					s.log.Info(why, "vip", v.String())
				}
			}
		}
	}
	return removed, errors.Join(errs...)
}

// replace makes vips the set (a reload). While held, VIPs no longer
// listed (or changed) are removed and new ones added; it returns whether
// the set changed.
func (s *vipSet) replace(vips []VIP) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Equal(s.vips, vips) {
		return false, nil
	}
	var gone []VIP
	for _, v := range s.vips {
		if !slices.Contains(vips, v) {
			gone = append(gone, v)
		}
	}
	s.vips = slices.Clone(vips)
	s.index = make([]int, len(vips))
	s.errs = make([]error, len(vips))
	if !s.held {
		return true, nil
	}
	_, err := s.removeLocked(gone, "VIP removed from the instance")
	errs := []error{err}
	links := map[string]netlink.Link{}
	for i, v := range s.vips {
		added, err := s.addLocked(i, links)
		if err != nil {
			errs = append(errs, err)
			s.log.Error("cannot add VIP", "vip", v.String(), "error", err)
		} else if added {
			s.log.Info("VIP added", "vip", v.String())
		}
	}
	return true, errors.Join(errs...)
}

// list dumps the addresses of link, retrying an interrupted dump.
func (s *vipSet) list(link netlink.Link) ([]netlink.Addr, error) {
	var err error
	for try := 0; try < 5; try++ {
		var addrs []netlink.Addr
		addrs, err = s.h.AddrList(link, netlink.FAMILY_ALL)
		if err == nil {
			return addrs, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return nil, fmt.Errorf("list addresses of %s: %w", link.Attrs().Name, err)
}

// changed handles an address update. While the VIPs are held, one of
// ours that was deleted is put back. While they are not, one of ours that
// appears on its interface is taken away: a director that is not master
// holds no VIP, whoever added it (a claim that lost a race with a
// step-down, or a hand).
func (s *vipSet) changed(u netlink.AddrUpdate) {
	ip, ok := netip.AddrFromSlice(u.LinkAddress.IP)
	if !ok {
		return
	}
	ip = ip.Unmap()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held == u.NewAddr {
		return // held and added, or not held and deleted: as it should be
	}
	links := map[string]netlink.Link{}
	for i, v := range s.vips {
		if v.Prefix.Addr() != ip {
			continue
		}
		if !u.NewAddr && (s.index[i] == 0 || s.index[i] == u.LinkIndex) {
			s.restoreLocked(i, links)
		}
		if u.NewAddr {
			s.evictLocked([]VIP{v})
		}
	}
}

// resync makes the interfaces match the held flag (after a lost
// subscription, or periodically as a safety net): every held VIP
// present, none present while not held.
func (s *vipSet) resync() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.held {
		s.evictLocked(s.vips)
		return
	}
	links := map[string]netlink.Link{}
	for i := range s.vips {
		s.restoreLocked(i, links)
	}
}

// evictLocked removes those of vips present on their interfaces while
// not held, counting and logging each.
func (s *vipSet) evictLocked(vips []VIP) {
	removed, err := s.removeLocked(vips, "VIP present while not master; removed it")
	s.evicted += uint64(len(removed))
	if err != nil {
		s.log.Error("VIP present while not master and cannot be removed", "error", err)
	}
}

func (s *vipSet) restoreLocked(i int, links map[string]netlink.Link) {
	v := s.vips[i]
	added, err := s.addLocked(i, links)
	switch {
	case err != nil:
		s.log.Error("VIP missing while master and cannot be put back", "vip", v.String(), "error", err)
	case added:
		s.restored++
		s.log.Warn("VIP was removed by someone else while master; put it back", "vip", v.String())
	}
}

// status reports each VIP and whether we hold it, and how many the
// watcher put back and took away.
func (s *vipSet) status() ([]VIPStatus, uint64, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]VIPStatus, len(s.vips))
	for i, v := range s.vips {
		out[i] = VIPStatus{VIP: v, Held: s.held && s.errs[i] == nil}
		if s.errs[i] != nil {
			out[i].Error = s.errs[i].Error()
		}
	}
	return out, s.restored, s.evicted
}

// VIPStatus is one VIP as a Claimer sees it.
type VIPStatus struct {
	VIP   VIP
	Held  bool   // claimed and present as far as we know
	Error string // last error adding it, if any
}
