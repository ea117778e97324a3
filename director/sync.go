package director

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/vigil-lb/vigil/config"
	"github.com/vigil-lb/vigil/ipvs"
)

// syncPlan is this director's connection sync (config.Site.ConnSyncOf).
func (d *Daemon) syncPlan() config.ConnSync { return d.site.ConnSyncOf(d.me) }

// syncDaemon is the kernel sync daemon of one role for this site.
func (d *Daemon) syncDaemon(role ipvs.SyncRole) ipvs.SyncDaemon {
	p := d.syncPlan()
	return ipvs.SyncDaemon{Role: role, Interface: p.Interface, SyncID: uint8(p.SyncID)}
}

// startSync starts the IPVS connection-sync daemon(s) when the site syncs
// connections (on by default): both roles when no instance is named (any
// director may be master of some instance, active/active included), else
// the backup role until that instance is master here. It also sets up the
// full resync (resync.go).
func (d *Daemon) startSync(ctx context.Context) error {
	p := d.syncPlan()
	if !p.On || d.kernel == nil {
		if p.Why != "" {
			d.log.Info("connection sync off: " + p.Why)
		}
		return nil
	}
	roles := []ipvs.SyncRole{ipvs.SyncMaster, ipvs.SyncBackup}
	if p.Instance != "" {
		roles = roles[1:]
	}
	var errs []error
	for _, role := range roles {
		if err := d.ensureSyncDaemon(ctx, d.syncDaemon(role)); err != nil {
			errs = append(errs, err)
		}
	}
	d.resyncer = &kernelResync{k: d.kernel, site: d.site, sync: d.syncDaemon(ipvs.SyncMaster)}
	d.startResync()
	return errors.Join(errs...)
}

// ensureSyncDaemon starts a sync daemon role, or adopts the one already
// running (a crash left it, or INIT->BACKUP starts it twice) when it has
// the same interface and sync id; one that differs is replaced.
func (d *Daemon) ensureSyncDaemon(ctx context.Context, want ipvs.SyncDaemon) error {
	err := d.kernel.StartSyncDaemon(ctx, want)
	if err == nil {
		d.log.Info("IPVS sync daemon started", "role", want.Role.String(), "interface", want.Interface, "sync_id", want.SyncID)
		return nil
	}
	if !errors.Is(err, syscall.EEXIST) {
		return err
	}
	running, lerr := d.kernel.SyncDaemons(ctx)
	if lerr != nil {
		return fmt.Errorf("%w (and listing the running ones: %v)", err, lerr)
	}
	for _, r := range running {
		if r.Role != want.Role {
			continue
		}
		if r.Interface == want.Interface && r.SyncID == want.SyncID {
			d.log.Info("IPVS sync daemon already running; adopted", "role", want.Role.String(), "interface", r.Interface, "sync_id", r.SyncID)
			return nil
		}
		d.log.Info("IPVS sync daemon running with other settings; replacing it", "role", want.Role.String(),
			"interface", r.Interface, "sync_id", r.SyncID, "want_interface", want.Interface, "want_sync_id", want.SyncID)
		if err := d.kernel.StopSyncDaemon(ctx, want.Role); err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
		return d.kernel.StartSyncDaemon(ctx, want)
	}
	return err
}

// syncFollow moves the sync master role with the instance it follows,
// when [ipvs_sync] names one (both roles run all the time otherwise).
func (d *Daemon) syncFollow(ctx context.Context, instance string, master bool) {
	p := d.syncPlan()
	if !p.On || d.kernel == nil || p.Instance != instance {
		return
	}
	want, other := ipvs.SyncBackup, ipvs.SyncMaster
	if master {
		want, other = ipvs.SyncMaster, ipvs.SyncBackup
	}
	if err := d.kernel.StopSyncDaemon(ctx, other); err != nil && !errors.Is(err, syscall.ESRCH) {
		d.log.Warn("IPVS sync daemon not stopped", "role", other.String(), "error", err)
	}
	if err := d.ensureSyncDaemon(ctx, d.syncDaemon(want)); err != nil {
		d.log.Error("IPVS sync daemon", "role", want.String(), "error", err)
	} else {
		d.log.Info("IPVS sync daemon follows the election", "role", want.String())
	}
}

// stopSync stops both sync daemon roles (errors for roles not running
// are expected).
func (d *Daemon) stopSync(ctx context.Context) {
	if !d.syncPlan().On || d.kernel == nil {
		return
	}
	_ = d.kernel.StopSyncDaemon(ctx, ipvs.SyncMaster)
	_ = d.kernel.StopSyncDaemon(ctx, ipvs.SyncBackup)
}
