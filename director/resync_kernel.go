package director

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/vigil-lb/vigil/config"
	"github.com/vigil-lb/vigil/ipvs"
)

// kernelResync is connResync on the kernel's IPVS of this network
// namespace.
type kernelResync struct {
	k    *ipvs.Kernel
	site *config.Site
	sync ipvs.SyncDaemon // interface and sync id of the site's sync
}

// virtualAddrs are the addresses of the site's virtual servers.
func (r *kernelResync) virtualAddrs() map[netip.Addr]bool {
	m := map[netip.Addr]bool{}
	for _, vs := range r.site.VirtualServers {
		if vs.Address.IsValid() {
			m[vs.Address.Addr().Unmap()] = true
		}
	}
	return m
}

// SendTable sends the connections of the services programmed now (the
// kernel's table gives each real server's forwarding method) to the
// backups' sync daemons.
func (r *kernelResync) SendTable(ctx context.Context) (int, error) {
	t, err := ipvs.ReadTable(ctx, r.k, nil)
	if err != nil {
		return 0, fmt.Errorf("resync: %w", err)
	}
	res, err := ipvs.Resync(ctx, ipvs.ResyncOptions{Interface: r.sync.Interface, SyncID: r.sync.SyncID, Services: t})
	return res.Sent, err
}

func (r *kernelResync) CountConns(ctx context.Context) (int, error) {
	vips := r.virtualAddrs()
	n := 0
	err := ipvs.ScanConnFile("", 0, func(c ipvs.Conn) error {
		if vips[c.Virtual.Addr().Unmap()] {
			n++
		}
		return nil
	})
	return n, err
}
