package ipvsadm

import (
	"net/netip"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/ipvs"
)

// Captured from ipvsadm 1.31 (Debian 12) against Debian's 6.1 kernel.
const list = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.99.0.100:23 rr persistent 300 mask 255.255.255.0
  -> 10.99.0.3:23                 Tunnel  1      0          0         
TCP  10.99.0.100:80 wrr
  -> 10.99.0.3:80                 Route   2      0          0         
  -> 10.99.0.4:8080               Masq    0      3          7         
UDP  [fd99::100]:53 lc persistent 60 mask 64
  -> [fd99::3]:53                 Tunnel  1      0          0         
FWM  5 sh (sh-fallback,sh-port)
  -> 10.99.0.5:0                  Route   1      0          0         
FWM  6 IPv6 mh ops
  -> [fd99::5]:0                  Route   1      0          0         
`

const thresholds = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  10.99.0.100:80 wrr
  -> 10.99.0.3:80                 100        50         0          0         
  -> 10.99.0.4:8080               0          0          0          0         
`

func TestParseList(t *testing.T) {
	tab, err := ParseList(list, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Services) != 5 {
		t.Fatalf("%d services", len(tab.Services))
	}
	telnet, ok := tab.Lookup(ipvs.AddrKey(ipvs.TCP, netip.MustParseAddrPort("10.99.0.100:23")))
	if !ok || telnet.Scheduler != "rr" || telnet.Timeout != 300 || telnet.Netmask != 24 || telnet.Flags != ipvs.FlagPersistent {
		t.Fatalf("telnet: %+v", telnet)
	}
	if d := telnet.Destinations[0]; d.Forwarding != ipvs.Tunnel || d.Weight != 1 {
		t.Fatalf("telnet dest %+v", d)
	}
	www, _ := tab.Lookup(ipvs.AddrKey(ipvs.TCP, netip.MustParseAddrPort("10.99.0.100:80")))
	if d := www.Destinations[1]; d.Port != 8080 || d.Forwarding != ipvs.NAT || d.Weight != 0 || d.ActiveConns != 3 || d.InactiveConns != 7 {
		t.Fatalf("www dest %+v", d)
	}
	dns, _ := tab.Lookup(ipvs.AddrKey(ipvs.UDP, netip.MustParseAddrPort("[fd99::100]:53")))
	if dns == nil || dns.Netmask != 64 || dns.Destinations[0].Addr != netip.MustParseAddr("fd99::3") {
		t.Fatalf("dns %+v", dns)
	}
	m5, _ := tab.Lookup(ipvs.MarkKey(ipvs.IPv4, 5))
	if m5 == nil || m5.Flags != ipvs.FlagSched1|ipvs.FlagSched2 || m5.Destinations[0].Port != 0 {
		t.Fatalf("fwmark 5 %+v", m5)
	}
	m6, _ := tab.Lookup(ipvs.MarkKey(ipvs.IPv6, 6))
	if m6 == nil || m6.Scheduler != "mh" || m6.Flags != ipvs.FlagOnePacket {
		t.Fatalf("fwmark 6 %+v", m6)
	}
	th, err := ParseList(thresholds, true)
	if err != nil {
		t.Fatal(err)
	}
	if d := th.Services[0].Destinations[0]; d.UpperThreshold != 100 || d.LowerThreshold != 50 {
		t.Fatalf("thresholds %+v", d)
	}
	for _, bad := range []string{"  -> 10.0.0.1:80 Route 1 0 0\n", "XYZ 1.2.3.4:5 rr\n", "TCP 10.0.0.1:80 rr bogus\n", "TCP 10.0.0.1:80 rr\n  -> 10.0.0.2:80 Bridge 1 0 0\n"} {
		if _, err := ParseList(bad, false); err == nil {
			t.Errorf("ParseList(%q) accepted", bad)
		}
	}
}

func TestParseDaemons(t *testing.T) {
	ds, err := ParseDaemons(`master sync daemon (mcast=s0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)
backup sync daemon (mcast=s0, syncid=9, maxlen=1472, group=239.1.2.3, port=9000, ttl=2)
`)
	if err != nil {
		t.Fatal(err)
	}
	want := []ipvs.SyncDaemon{
		{Role: ipvs.SyncMaster, Interface: "s0", SyncID: 7, MaxLen: 1472, Group: netip.MustParseAddr("224.0.0.81"), Port: 8848, TTL: 1},
		{Role: ipvs.SyncBackup, Interface: "s0", SyncID: 9, MaxLen: 1472, Group: netip.MustParseAddr("239.1.2.3"), Port: 9000, TTL: 2},
	}
	if len(ds) != 2 || ds[0] != want[0] || ds[1] != want[1] {
		t.Fatalf("got %+v", ds)
	}
	if ds, err := ParseDaemons(""); err != nil || len(ds) != 0 {
		t.Fatalf("empty: %v %v", ds, err)
	}
	if _, err := ParseDaemons("something else\n"); err == nil {
		t.Fatal("garbage accepted")
	}
}

func TestParseTimeouts(t *testing.T) {
	got, err := ParseTimeouts("Timeout (tcp tcpfin udp): 900 120 300\n")
	if err != nil || got != (ipvs.Timeouts{TCP: 900 * time.Second, TCPFin: 120 * time.Second, UDP: 300 * time.Second}) {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := ParseTimeouts("Timeout: 1 2"); err == nil {
		t.Fatal("garbage accepted")
	}
}
