package failover

import (
	"context"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// watch keeps the held VIPs of s present until ctx ends: it follows
// address deletions in ns (nil: ours) and puts back any held VIP that
// went, and every resync it checks them all in case a notification was
// lost (a full socket buffer drops them).
func (s *vipSet) watch(ctx context.Context, ns *netns.NsHandle, resync time.Duration) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		ch := make(chan netlink.AddrUpdate, 64)
		done := make(chan struct{})
		failed := make(chan error, 1)
		opts := netlink.AddrSubscribeOptions{
			Namespace:         ns,
			ReceiveBufferSize: 1 << 20,
			ErrorCallback: func(err error) {
				select {
				case failed <- err:
				default:
				}
			},
		}
		if err := netlink.AddrSubscribeWithOptions(ch, done, opts); err != nil {
			s.log.Error("cannot watch addresses; retrying", "error", err)
			if !sleepCtx(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		s.resync() // whatever happened while we were not subscribed
		s.follow(ctx, ch, failed, resync)
		close(done)
		for range ch { // let the receiver goroutine finish and close ch
		}
	}
}

// follow handles updates until ctx ends or the subscription breaks.
func (s *vipSet) follow(ctx context.Context, ch <-chan netlink.AddrUpdate, failed <-chan error, resync time.Duration) {
	tick := time.NewTicker(resync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-ch:
			if !ok {
				return
			}
			s.changed(u)
		case err := <-failed:
			s.log.Warn("address watch broke; resubscribing", "error", err)
			return
		case <-tick.C:
			s.resync()
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
