package cluster

import (
	"testing"
	"time"
)

// BenchmarkFailureDetection measures, with DefaultTimings on loopback, how
// long the survivor of a pair takes to see the other gone (PeerLeave):
// after a crash (Close without Leave), a graceful Leave, and a symmetric
// partition. Run with: go test -run XXX -bench FailureDetection -benchtime 5x ./cluster/
func BenchmarkFailureDetection(b *testing.B) {
	cases := []struct {
		name string
		kill func(a, b *node)
	}{
		{"crash", func(_, v *node) { v.Close() }},
		{"leave", func(_, v *node) { v.Leave(time.Second) }},
		{"partition", func(a, v *node) { a.tr.cut.Store(true); v.tr.cut.Store(true) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var total, worst time.Duration
			for range b.N {
				b.StopTimer()
				ns := startCluster(b,
					spec{name: "vs1", site: "bench", key: testKey},
					spec{name: "vs2", site: "bench", key: testKey})
				waitJoined(b, ns...)
				time.Sleep(500 * time.Millisecond) // let probing settle
				b.StartTimer()
				start := time.Now()
				c.kill(ns[0], ns[1])
				ns[0].events.waitFor(b, "PeerLeave", 30*time.Second, kindIs(PeerLeave, "vs2"))
				d := time.Since(start)
				total += d
				worst = max(worst, d)
				for _, n := range ns {
					n.Close()
				}
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/detect")
			b.ReportMetric(float64(worst.Milliseconds()), "ms-worst")
		})
	}
}

// BenchmarkBroadcastLatency measures one topic message from Broadcast to
// the peer's handler, encrypted, on loopback (what an advert over the
// gossip transport adds to the VRRP wire).
// Run with: go test -run XXX -bench BroadcastLatency ./cluster/
func BenchmarkBroadcastLatency(b *testing.B) {
	ns := startCluster(b,
		spec{name: "vs1", site: "bench", key: testKey},
		spec{name: "vs2", site: "bench", key: testKey})
	waitJoined(b, ns...)
	got := make(chan struct{}, 1)
	ns[1].Handle("vrrp", func(Peer, []byte) { got <- struct{}{} })
	payload := make([]byte, 40) // a VRRPv3 advert with a few addresses
	b.ResetTimer()
	for range b.N {
		if err := ns[0].Broadcast("vrrp", payload); err != nil {
			b.Fatal(err)
		}
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			b.Fatal("message lost")
		}
	}
}
