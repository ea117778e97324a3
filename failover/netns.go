package failover

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// inNetns runs f on an OS thread switched into ns, or directly when ns is
// nil (the caller's namespace). Sockets f opens stay in ns afterwards.
func inNetns(ns *netns.NsHandle, f func() error) error {
	if ns == nil {
		return f()
	}
	errc := make(chan error, 1)
	// A goroutine of its own: if the namespace cannot be restored its
	// thread stays locked and Go discards it when the goroutine exits.
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(*ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("restore netns: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
