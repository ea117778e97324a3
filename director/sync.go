package director

import (
	"context"

	"github.com/vigil-lb/vigil/ipvs"
)

// startSync starts the IPVS connection-sync daemon(s): both roles when no
// instance is named, else the backup role until that instance is master.
func (d *Daemon) startSync(ctx context.Context) error {
	s := d.site.IPVSSync
	if s == nil || d.kernel == nil {
		return nil
	}
	if s.Instance == "" {
		for _, role := range []ipvs.SyncRole{ipvs.SyncMaster, ipvs.SyncBackup} {
			if err := d.kernel.StartSyncDaemon(ctx, ipvs.SyncDaemon{Role: role, Interface: s.Interface, SyncID: uint8(s.SyncID)}); err != nil {
				return err
			}
		}
		return nil
	}
	return d.kernel.StartSyncDaemon(ctx, ipvs.SyncDaemon{Role: ipvs.SyncBackup, Interface: s.Interface, SyncID: uint8(s.SyncID)})
}

// syncFollow moves the sync daemon's role with the instance it follows.
func (d *Daemon) syncFollow(ctx context.Context, instance string, master bool) {
	s := d.site.IPVSSync
	if s == nil || d.kernel == nil || s.Instance != instance {
		return
	}
	want, other := ipvs.SyncBackup, ipvs.SyncMaster
	if master {
		want, other = ipvs.SyncMaster, ipvs.SyncBackup
	}
	_ = d.kernel.StopSyncDaemon(ctx, other)
	if err := d.kernel.StartSyncDaemon(ctx, ipvs.SyncDaemon{Role: want, Interface: s.Interface, SyncID: uint8(s.SyncID)}); err != nil {
		d.log.Error("IPVS sync daemon", "role", want.String(), "error", err)
	} else {
		d.log.Info("IPVS sync daemon follows the election", "role", want.String())
	}
}

// stopSync stops both sync daemon roles (errors for roles not running
// are expected).
func (d *Daemon) stopSync(ctx context.Context) {
	if d.site.IPVSSync == nil || d.kernel == nil {
		return
	}
	_ = d.kernel.StopSyncDaemon(ctx, ipvs.SyncMaster)
	_ = d.kernel.StopSyncDaemon(ctx, ipvs.SyncBackup)
}
