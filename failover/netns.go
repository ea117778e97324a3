package failover

import (
	"github.com/vishvananda/netns"

	"github.com/vigil-lb/vigil/internal/nsrun"
)

// inNetns runs f inside ns, or directly when ns is nil (the caller's
// namespace). Sockets f opens stay in ns afterwards.
func inNetns(ns *netns.NsHandle, f func() error) error {
	if ns == nil {
		return f()
	}
	return nsrun.Do(*ns, f)
}
