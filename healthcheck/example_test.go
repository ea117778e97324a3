package healthcheck_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/vigil-lb/vigil/healthcheck"
)

// The wiring side: give the scheduler every (real server, check) pair the
// site names, run it, and act on changes; Spec.Key maps a change back to
// every virtual server that shares the check.
func Example() {
	l, _ := net.Listen("tcp", "127.0.0.1:0") // a real server
	defer l.Close()
	rs := netip.MustParseAddrPort(l.Addr().String())

	s := healthcheck.NewScheduler(healthcheck.Options{Logger: slog.New(slog.DiscardHandler)})
	spec := healthcheck.Spec{Kind: healthcheck.KindTCP, Target: rs, Interval: 50 * time.Millisecond, Timeout: 5 * time.Second, Rise: 2, Fall: 3}
	// Two virtual servers name the same real server with the same check:
	// one checker runs.
	if err := s.Set([]healthcheck.Spec{spec, spec}); err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)

	for i := 0; i < 2; i++ {
		c := <-s.Changes()
		fmt.Printf("initial=%v up=%v passes=%d same key=%v\n", c.Initial, c.Up, c.Passes, c.Key == spec.Key())
	}
	fmt.Println("checks:", len(s.Snapshot()))
	// Output:
	// initial=true up=false passes=0 same key=true
	// initial=false up=true passes=2 same key=true
	// checks: 1
}
