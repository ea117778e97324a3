package failbench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vigil-lb/vigil/internal/netlab"
	"github.com/vishvananda/netlink"
)

// Lab addresses: only inside the namespaces this package creates.
const (
	clientAddr = "10.99.0.10/24"
	vipAddr    = "10.99.0.100/24"
	vipIP      = "10.99.0.100"
	vrid       = 51
)

// store holds what the client agent reported, in arrival order.
type store struct {
	mu      sync.Mutex
	probes  []Event
	adverts []Event
	arps    []Event
	vips    []Event // 'V': the VIP added (OK) on or removed from director From
	bad     int
}

func (s *store) add(e Event) {
	s.mu.Lock()
	switch e.Kind {
	case 'A':
		s.adverts = append(s.adverts, e)
	case 'G':
		s.arps = append(s.arps, e)
	case 'V':
		s.vips = append(s.vips, e)
	default:
		s.probes = append(s.probes, e)
	}
	s.mu.Unlock()
}

// view calls f with the events under the lock.
func (s *store) view(f func(probes, adverts []Event)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.probes, s.adverts)
}

// arpView calls f with the ARP events under the lock.
func (s *store) arpView(f func(arps []Event)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.arps)
}

// trim drops events that ended before t, to bound memory on long runs.
func (s *store) trim(t int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := 0
	for i < len(s.probes) && s.probes[i].End < t {
		i++
	}
	s.probes = append([]Event(nil), s.probes[i:]...)
	j := 0
	for j < len(s.adverts) && s.adverts[j].End < t {
		j++
	}
	s.adverts = append([]Event(nil), s.adverts[j:]...)
	k := 0
	for k < len(s.arps) && s.arps[k].End < t {
		k++
	}
	s.arps = append([]Event(nil), s.arps[k:]...)
	v := 0
	for v < len(s.vips) && s.vips[v].End < t {
		v++
	}
	s.vips = append([]Event(nil), s.vips[v:]...)
}

// vipView calls f with the VIP events under the lock.
func (s *store) vipView(f func(vips []Event)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.vips)
}

// rig is one lab with responders, the client agent and a daemon per
// director of one site.
type rig struct {
	log    *slog.Logger
	self   string // this binary, re-executed for serve and agent modes
	dir    string
	sc     *scope
	lab    *netlab.Lab
	client *netlab.Host
	hosts  map[string]*netlab.Host // by director name
	ports  map[string]*port
	site   Site
	impl   Impl
	ev     *store
	agent  *process
	procs  []*process // responders
	daemon map[string]*process
	dirs   map[string]string // the directory of each director's current daemon
	runs   map[string]int    // daemon starts per director, for log names
	cfg    RigConfig
	traces int
	done   chan struct{} // closed by close: ends the VIP watchers
}

// RigConfig is what a rig needs besides the implementation and advert.
type RigConfig struct {
	Self    string        // path of the failbench binary
	WorkDir string        // where configs and logs go (one subdir per rig)
	Port    int           // responder port
	Every   time.Duration // probe spacing
	Timeout time.Duration // probe timeout
	Version int           // VRRP version
	Log     *slog.Logger
}

func directors() []Director {
	return []Director{
		{Name: "vs1", Address: "10.99.0.1", Priority: 150},
		{Name: "vs2", Address: "10.99.0.2", Priority: 100},
	}
}

// newRig builds the lab and starts responders and the agent (no daemons).
func newRig(ctx context.Context, cfg RigConfig, impl Impl, advert time.Duration, label string) (r *rig, err error) {
	r = &rig{cfg: cfg, log: cfg.Log, self: cfg.Self, sc: newScope(cfg.Log), impl: impl, ev: &store{},
		hosts: map[string]*netlab.Host{}, ports: map[string]*port{}, daemon: map[string]*process{}, dirs: map[string]string{}, runs: map[string]int{}, done: make(chan struct{})}
	r.site = Site{VRID: vrid, Advert: advert, Version: cfg.Version, VIP: vipAddr, Iface: "eth0", Directors: directors()}
	defer func() {
		if err != nil {
			r.close()
			r = nil
		}
	}()
	r.dir = filepath.Join(cfg.WorkDir, label)
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return r, fmt.Errorf("rig dir: %w", err)
	}
	err = guard(func() error {
		r.lab = netlab.New(r.sc)
		r.client = r.lab.AddHost("client", clientAddr)
		for _, d := range r.site.Directors {
			h := r.lab.AddHost(d.Name, d.Address+"/24")
			r.hosts[d.Name] = h
			p, err := bridgePort(r.lab, h)
			if err != nil {
				return err
			}
			r.ports[d.Name] = p
		}
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("build lab: %w", err)
	}
	for _, d := range r.site.Directors {
		if err := r.watchVIP(d.Name); err != nil {
			return r, err
		}
	}
	for _, d := range r.site.Directors {
		p, err := startProcess(ctx, "responder "+d.Name, r.hosts[d.Name].Netns,
			[]string{r.self, "serve", "-name", d.Name, "-port", strconv.Itoa(cfg.Port)},
			filepath.Join(r.dir, "responder-"+d.Name+".log"))
		if err != nil {
			return r, err
		}
		r.procs = append(r.procs, p)
	}
	// The agent's stdout is the event stream. It is the measuring
	// instrument: niced up, so that other work on a busy machine stalls
	// it (and its probe times) less; the daemons and responders, which
	// are measured, keep the default priority.
	args := []string{"netns", "exec", r.client.Netns, "nice", "-n", "-10", r.self, "agent",
		"-vip", vipIP, "-port", strconv.Itoa(cfg.Port), "-every", cfg.Every.String(), "-timeout", cfg.Timeout.String(), "-iface", "eth0"}
	cmd := exec.Command("ip", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return r, fmt.Errorf("agent pipe: %w", err)
	}
	alog, err := os.Create(filepath.Join(r.dir, "agent.log"))
	if err != nil {
		return r, fmt.Errorf("agent log: %w", err)
	}
	cmd.Stderr = alog
	if err := cmd.Start(); err != nil {
		alog.Close()
		return r, fmt.Errorf("start client agent: %w", err)
	}
	r.agent = &process{name: "agent", cmd: cmd, done: make(chan struct{}), logf: alog}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		r.readEvents(stdout)
	}()
	go func() {
		<-readDone
		r.agent.err = cmd.Wait()
		alog.Close()
		close(r.agent.done)
	}()
	// The responders must answer on their own addresses before we go on.
	for _, d := range r.site.Directors {
		if err := r.waitResponder(ctx, d); err != nil {
			return r, err
		}
	}
	return r, nil
}

func (r *rig) readEvents(rd io.Reader) {
	sc := bufio.NewScanner(rd)
	for sc.Scan() {
		e, err := ParseEvent(sc.Text())
		if err != nil {
			r.ev.mu.Lock()
			r.ev.bad++
			r.ev.mu.Unlock()
			continue
		}
		r.ev.add(e)
	}
}

// waitResponder checks from the client namespace that d's responder
// answers on d's own address.
func (r *rig) waitResponder(ctx context.Context, d Director) error {
	deadline := time.Now().Add(10 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		var got string
		last = r.client.Do(func() error {
			c, err := net.DialTimeout("tcp4", net.JoinHostPort(d.Address, strconv.Itoa(r.port())), 500*time.Millisecond)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(time.Second))
			b, err := io.ReadAll(c)
			got = strings.TrimSpace(string(b))
			return err
		})
		if last == nil && got == d.Name {
			return nil
		}
		if last == nil {
			last = fmt.Errorf("answered %q", got)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("responder on %s does not answer: %w", d.Name, last)
}

func (r *rig) port() int { return r.cfg.Port }

// startDaemon starts the implementation on director name.
func (r *rig) startDaemon(ctx context.Context, name string) error {
	d, ok := r.director(name)
	if !ok {
		return fmt.Errorf("no director %s", name)
	}
	r.runs[name]++
	dir := filepath.Join(r.dir, fmt.Sprintf("%s-%s-%d", r.impl.Name(), name, r.runs[name]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("daemon dir: %w", err)
	}
	argv, err := r.impl.Prepare(r.site, d, dir)
	if err != nil {
		return err
	}
	p, err := startProcess(ctx, r.impl.Name()+" "+name, r.hosts[name].Netns, argv, filepath.Join(dir, "daemon.log"))
	if err != nil {
		return err
	}
	r.daemon[name] = p
	r.dirs[name] = dir
	return nil
}

func (r *rig) director(name string) (Director, bool) {
	for _, d := range r.site.Directors {
		if d.Name == name {
			return d, true
		}
	}
	return Director{}, false
}

func (r *rig) addrOf(name string) string {
	d, _ := r.director(name)
	return d.Address
}

// onEth0 runs f with a netlink handle inside name's namespace and its eth0.
func (r *rig) onEth0(name string, f func(h *netlink.Handle, l netlink.Link) error) error {
	var err error
	gerr := guard(func() error {
		h := r.hosts[name].Handle()
		defer h.Close()
		l, lerr := h.LinkByName("eth0")
		if lerr != nil {
			return lerr
		}
		err = f(h, l)
		return nil
	})
	if gerr != nil {
		return gerr
	}
	return err
}

// dropVIP removes the VIP from name's eth0, as a reboot would.
func (r *rig) dropVIP(name string) error {
	return r.onEth0(name, func(h *netlink.Handle, l netlink.Link) error {
		a, err := netlink.ParseAddr(vipAddr)
		if err != nil {
			return err
		}
		if err := h.AddrDel(l, a); err != nil && err != syscall.EADDRNOTAVAIL {
			return fmt.Errorf("remove VIP from %s: %w", name, err)
		}
		return nil
	})
}

// flushNeighbours empties name's neighbour table, as a reboot would. A
// "crashed" director's kernel lives on in its namespace, and entries that
// failed while its port was cut (the client's, for answers it could not
// send) would otherwise delay its first answers after it comes back.
func (r *rig) flushNeighbours(name string) error {
	return r.onEth0(name, func(h *netlink.Handle, l netlink.Link) error {
		ns, err := h.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		var errs []error
		for _, n := range ns {
			if err := h.NeighDel(&n); err != nil && err != syscall.ENOENT {
				errs = append(errs, fmt.Errorf("flush neighbour %s on %s: %w", n.IP, name, err))
			}
		}
		return errors.Join(errs...)
	})
}

// hasVIP reports whether name holds the VIP.
func (r *rig) hasVIP(name string) bool {
	found := false
	_ = r.onEth0(name, func(h *netlink.Handle, l netlink.Link) error {
		addrs, err := h.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if a.IP.String() == vipIP {
				found = true
			}
		}
		return nil
	})
	return found
}

// watchVIP records when the VIP is added to or removed from name's
// interfaces, from the namespace's own netlink notifications: when a
// master claimed it and when the old one let go, to the millisecond (the
// time is when this process read the notification).
func (r *rig) watchVIP(name string) error {
	ch := make(chan netlink.AddrUpdate, 64)
	ns := r.hosts[name].NS
	opts := netlink.AddrSubscribeOptions{Namespace: &ns, ErrorCallback: func(err error) {
		select {
		case <-r.done: // the socket is being closed
		default:
			r.log.Warn("VIP watcher", "director", name, "error", err)
		}
	}}
	if err := netlink.AddrSubscribeWithOptions(ch, r.done, opts); err != nil {
		return fmt.Errorf("watch addresses of %s: %w", name, err)
	}
	go func() {
		for u := range ch {
			if u.LinkAddress.IP.String() != vipIP {
				continue
			}
			now := time.Now().UnixNano()
			r.ev.add(Event{Kind: 'V', Start: now, End: now, From: name, OK: u.NewAddr})
		}
	}()
	return nil
}

func (r *rig) close() {
	select {
	case <-r.done:
	default:
		close(r.done)
	}
	for _, p := range r.daemon {
		p.stop(3 * time.Second)
	}
	for _, p := range r.procs {
		p.stop(time.Second)
	}
	if r.agent != nil {
		r.agent.stop(time.Second)
	}
	for _, p := range r.ports {
		p.close()
	}
	r.sc.close()
}

// daemonLogTail is the end of name's current daemon log, for errors.
func (r *rig) daemonLogTail(name string) string {
	p := r.daemon[name]
	if p == nil || p.logf == nil {
		return ""
	}
	b, err := os.ReadFile(p.logf.Name())
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 1500 {
		s = "..." + s[len(s)-1500:]
	}
	return s
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
