// Package nsrun runs a function inside another network namespace, for
// code that opens sockets or netlink handles in a namespace other than the
// process's (tests running several directors in one process, the lab).
package nsrun

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs f on an OS thread switched into ns and returns f's error.
// Sockets f opens stay in ns afterwards. f runs on a goroutine of its
// own: if the original namespace cannot be restored, that thread stays
// locked and Go discards it when the goroutine exits, so no other code
// ever runs in the wrong namespace.
func Do(ns netns.NsHandle, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
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
