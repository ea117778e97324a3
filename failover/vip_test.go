package failover

import (
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestVIPValidate(t *testing.T) {
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		vip  VIP
		want string // "" = valid, else part of the error
	}{
		{VIP{Prefix: p("10.99.0.100/24"), Interface: "eth0"}, ""},
		{VIP{Prefix: p("10.99.0.100/32"), Interface: "eth0", Label: "eth0:101"}, ""},
		{VIP{Prefix: p("10.99.0.100/32"), Interface: "eth0", Label: "eth0"}, ""},
		{VIP{Prefix: p("fd99::100/128"), Interface: "eth0"}, ""},
		{VIP{Interface: "eth0"}, "not an address"},
		{VIP{Prefix: p("10.99.0.100/24")}, "no interface"},
		{VIP{Prefix: p("10.99.0.100/24"), Interface: "a-very-long-interface"}, "bad interface"},
		{VIP{Prefix: p("10.99.0.100/24"), Interface: "eth0", Label: "eth1:101"}, "must be"},
		{VIP{Prefix: p("10.99.0.100/24"), Interface: "eth0", Label: "eth0:0123456789a"}, "longer than 15"},
		{VIP{Prefix: p("fd99::100/128"), Interface: "eth0", Label: "eth0:6"}, "IPv4 only"},
		{VIP{Prefix: p("0.0.0.0/0"), Interface: "eth0"}, "not a unicast"},
		{VIP{Prefix: p("224.0.0.18/32"), Interface: "eth0"}, "not a unicast"},
		{VIP{Prefix: p("::ffff:10.99.0.1/128"), Interface: "eth0"}, "IPv4-mapped"},
	} {
		err := tc.vip.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.vip, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: err %v, want one saying %q", tc.vip, err, tc.want)
		}
	}
}

func TestVIPNetlinkAddr(t *testing.T) {
	a := vip4.nlAddr(7)
	if a.Label != "eth0:101" || a.LinkIndex != 7 || a.IPNet.String() != "10.99.0.100/24" || a.Flags != 0 {
		t.Fatalf("IPv4 VIP as %+v", a)
	}
	a = vip6.nlAddr(3)
	if a.IPNet.String() != "fd99::100/128" || a.Flags&unix.IFA_F_NODAD == 0 || a.PreferedLft != 0 || a.ValidLft != infiniteLifetime {
		t.Fatalf("IPv6 VIP as %+v: want NODAD, deprecated, valid forever", a)
	}
	if got := vip4.String(); got != "10.99.0.100/24 dev eth0 label eth0:101" {
		t.Fatalf("String() = %q", got)
	}
}

func TestValidateVIPsDuplicates(t *testing.T) {
	dup := vip4
	dup.Prefix = netip.MustParsePrefix("10.99.0.100/32")
	if err := validateVIPs([]VIP{vip4, vip6, dup}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate VIP: err %v", err)
	}
}
