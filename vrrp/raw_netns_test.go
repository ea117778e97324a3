package vrrp

import (
	"net/netip"
	osexec "os/exec"
	"sync"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/netlab"
	"github.com/vigil-lb/vigil/internal/testenv"
)

type recorder struct {
	mu sync.Mutex
	ps []Packet
}

func (r *recorder) handle(p Packet) { r.mu.Lock(); r.ps = append(r.ps, p); r.mu.Unlock() }
func (r *recorder) packets() []Packet {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Packet(nil), r.ps...)
}

// TestNetnsRawTransportFilters: vs1 has eth0 (the lab bridge) and e1 (a
// direct link to a third host). Adverts arriving on e1 reach the e1
// transport with TTL 255 and a verifiable checksum, and are ignored by the
// eth0 transport, whose socket sees them too; nobody hears itself.
func TestNetnsRawTransportFilters(t *testing.T) {
	testenv.NeedNetns(t)
	lab := netlab.New(t)
	h1 := lab.AddHost("vs1", "10.99.0.1/24", "fd99::1/64")
	h3 := lab.AddHost("other", "10.99.0.3/24", "fd99::3/64")
	if o, err := runIP("link", "add", "e1", "netns", h1.Netns, "type", "veth", "peer", "name", "e1", "netns", h3.Netns); err != nil {
		t.Fatal(err, o)
	}
	for _, h := range []*netlab.Host{h1, h3} {
		h.Sysctl("net.ipv6.conf.e1.accept_dad", "0")
	}
	h1.MustRun(t, "ip", "addr", "add", "10.99.1.1/24", "dev", "e1")
	h3.MustRun(t, "ip", "addr", "add", "10.99.1.3/24", "dev", "e1")
	h1.MustRun(t, "ip", "link", "set", "e1", "up")
	h3.MustRun(t, "ip", "link", "set", "e1", "up")

	for _, v6 := range []bool{false, true} {
		name := map[bool]string{false: "ipv4", true: "ipv6"}[v6]
		t.Run(name, func(t *testing.T) {
			open := func(h *netlab.Host, ifname, src string) (*RawTransport, *recorder) {
				t.Helper()
				rc := RawConfig{Interface: ifname, Netns: h.NS, IPv6: v6}
				if !v6 {
					rc.Source = netip.MustParseAddr(src)
				}
				var tr *RawTransport
				var err error
				// The link-local address of a fresh link can lag a little.
				for i := 0; i < 50; i++ {
					if tr, err = NewRawTransport(rc); err == nil {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { tr.Close() })
				r := &recorder{}
				tr.SetHandler(r.handle)
				return tr, r
			}
			t0, r0 := open(h1, "eth0", "10.99.0.1")
			t1, r1 := open(h1, "e1", "10.99.1.1")
			t3, _ := open(h3, "e1", "10.99.1.3")
			a := Advert{Version: 3, VRID: 7, Priority: 100, Interval: time.Second}
			for range 3 {
				if err := t3.Send(a); err != nil {
					t.Fatal(err)
				}
				if err := t0.Send(a); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for len(r1.packets()) < 3 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond)
			ps := r1.packets()
			if len(ps) != 3 {
				t.Fatalf("e1 transport got %d packets, want 3", len(ps))
			}
			for _, p := range ps {
				if p.Src != t3.LocalAddr() || p.TTL != TTL || p.Dst != groupOf(p.Src) {
					t.Fatalf("packet %+v", p)
				}
				if _, err := Unmarshal(p.Payload, p.Src, p.Dst); err != nil {
					t.Fatal(err)
				}
			}
			if v6 && !ps[0].Src.IsLinkLocalUnicast() {
				t.Fatalf("IPv6 advert from %s, want a link-local source", ps[0].Src)
			}
			if n := len(r0.packets()); n != 0 {
				t.Fatalf("eth0 transport got %d packets (own or from e1)", n)
			}
			// The eth0 socket did see the e1 packets (a raw socket gets
			// protocol 112 from every interface) and dropped them.
			if n := t0.Ignored.Load(); n < 3 {
				t.Fatalf("eth0 transport ignored %d packets, want >= 3", n)
			}
			if n := t1.Ignored.Load(); n != 0 {
				t.Logf("e1 transport ignored %d", n)
			}
		})
	}
}

func runIP(args ...string) (string, error) {
	out, err := osexec.Command("ip", args...).CombinedOutput()
	return string(out), err
}
