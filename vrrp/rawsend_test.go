package vrrp

import (
	"net/netip"
	"testing"
	"time"
)

// The sender reuses marshalled packets: every change of content must
// marshal again (a stale cache would, say, never send the priority-0
// advert of a stepping-down master).
func TestRawSenderPrepare(t *testing.T) {
	src := netip.MustParseAddr("10.99.0.1")
	grp := []netip.Addr{Group4}
	base := Advert{Version: 3, VRID: 51, Priority: 150, Interval: 100 * time.Millisecond,
		Addrs: []netip.Addr{netip.MustParseAddr("10.99.0.100")}}
	withPrio := func(p uint8) Advert { a := base; a.Priority = p; return a }
	withAddr := func(s string) Advert {
		a := base
		a.Addrs = []netip.Addr{netip.MustParseAddr(s)}
		return a
	}
	withInterval := func(d time.Duration) Advert { a := base; a.Interval = d; return a }
	tests := []struct {
		name string
		next Advert
		dsts []netip.Addr
		same bool
	}{
		{"same content", base, grp, true},
		{"same content, new address slice", withAddr("10.99.0.100"), grp, true},
		{"priority 0", withPrio(0), grp, false},
		{"other VIP", withAddr("10.99.0.101"), grp, false},
		{"other interval", withInterval(20 * time.Millisecond), grp, false},
		{"other destinations", base, []netip.Addr{netip.MustParseAddr("10.99.0.2")}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &rawSender{src: src}
			if err := s.prepare(base, grp); err != nil {
				t.Fatal(err)
			}
			first := &s.pkts[0][0]
			if err := s.prepare(tc.next, tc.dsts); err != nil {
				t.Fatal(err)
			}
			if got := &s.pkts[0][0] == first; got != tc.same {
				t.Fatalf("cache reused = %v, want %v", got, tc.same)
			}
			got, err := Unmarshal(s.pkts[0], src, tc.dsts[0])
			if err != nil {
				t.Fatalf("cached packet does not parse: %v", err)
			}
			if got.Priority != tc.next.Priority || got.Interval != tc.next.Interval || got.Addrs[0] != tc.next.Addrs[0] {
				t.Fatalf("cached packet carries %+v, want %+v", got, tc.next)
			}
			if len(s.names4) != len(tc.dsts) || s.names4[0].Addr != tc.dsts[0].As4() {
				t.Fatalf("destinations %+v, want %v", s.names4, tc.dsts)
			}
		})
	}
}
