package director

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"time"

	"github.com/vigil-lb/vigil/config"
)

// Reload reads the site file again and applies the difference. A file
// that does not load is rejected whole and the running config stays.
// Unchanged instances keep running without a transition; an instance whose
// VIPs, announcements or notify commands changed is reconfigured in place;
// one whose election changed is restarted; unchanged checks keep their
// state; IPVS changes only what changed.
func (d *Daemon) Reload() error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	sdNotify("RELOADING=1")
	defer sdNotify("READY=1")
	start := time.Now()
	err := d.reload()
	d.mu.Lock()
	d.lastReload = time.Now()
	if err != nil {
		d.reloadErr = err.Error()
	} else {
		d.reloadErr = ""
	}
	d.mu.Unlock()
	if err != nil {
		return err
	}
	d.log.Info("reloaded", "took", time.Since(start).String(), "digest", d.site.Digest()[:12])
	return nil
}

func (d *Daemon) reload() error {
	if d.ctx == nil {
		return errors.New("the daemon is not running")
	}
	site, err := config.Load(d.opts.ConfigPath)
	if err != nil {
		return fmt.Errorf("reload %s: %w", d.opts.ConfigPath, err)
	}
	me, err := site.Director(d.me.Name)
	if err != nil {
		return fmt.Errorf("reload %s: %w", d.opts.ConfigPath, err)
	}
	old := d.site
	if *me != *d.me {
		return fmt.Errorf("reload %s: this director's own entry changed (%+v -> %+v): restart vigil to apply it", d.opts.ConfigPath, *d.me, *me)
	}
	if !reflect.DeepEqual(site.Cluster, old.Cluster) || !reflect.DeepEqual(site.Directors, old.Directors) {
		return fmt.Errorf("reload %s: [cluster] or [[director]] changed: restart vigil to apply it", d.opts.ConfigPath)
	}
	if len(old.VirtualServers) == 0 && len(site.VirtualServers) > 0 && !d.pipe.programs() {
		return fmt.Errorf("reload %s: virtual servers added to a VIP-only site: restart vigil to start IPVS", d.opts.ConfigPath)
	}
	if _, err := virtualServers(site); err != nil {
		return fmt.Errorf("reload %s: %w", d.opts.ConfigPath, err)
	}

	// Nothing below fails for the file's sake: it is valid.
	ctx := d.ctx
	oldByName := map[string]config.Instance{}
	for _, in := range old.Instances {
		oldByName[in.Name] = in
	}
	newByName := map[string]*config.Instance{}
	for i := range site.Instances {
		newByName[site.Instances[i].Name] = &site.Instances[i]
	}
	var restart, add []config.Instance
	// A copy: removeInstance deletes from d.instances, and the "added"
	// loop below must still see what was running before this reload, or
	// a restarted instance would be started a second time.
	d.mu.Lock()
	running := maps.Clone(d.instances)
	d.mu.Unlock()
	for name, in := range running {
		ncfg, ok := newByName[name]
		switch {
		case !ok:
			d.log.Info("reload: instance removed", "instance", name)
			d.removeInstance(name, in)
		case electionEqual(in.cfg, *ncfg):
			if !reflect.DeepEqual(in.cfg, *ncfg) {
				cc := claimerConfig(ncfg, me)
				cc.Logger = d.log
				if err := in.claim.Reconfigure(ctx, cc); err != nil {
					d.log.Error("reload: reconfigure instance", "instance", name, "error", err)
				}
				d.mu.Lock()
				in.cfg = *ncfg
				d.mu.Unlock()
				d.log.Info("reload: instance reconfigured without a transition", "instance", name)
			}
		default:
			d.log.Info("reload: instance election changed, restarting it", "instance", name)
			d.removeInstance(name, in)
			restart = append(restart, *ncfg)
		}
	}
	for name, ncfg := range newByName {
		if _, ok := running[name]; !ok {
			d.log.Info("reload: instance added", "instance", name)
			add = append(add, *ncfg)
		}
	}
	if site.Settings.Nice != old.Settings.Nice {
		if err := setNice(site.Settings.Nice); err != nil {
			d.log.Warn("reload: scheduling priority not changed", "error", err)
		}
	}
	d.mu.Lock()
	d.site = site
	d.me = me
	d.mu.Unlock()
	// The virtual servers and checks before the elections, as at start.
	if err := d.pipe.setSite(site); err != nil {
		d.log.Error("reload: virtual servers", "error", err) // checked above: not expected
	}
	d.recordVIPs() // before a new VIP can be claimed
	if err := d.startInstances(ctx, append(restart, add...)); err != nil {
		d.log.Error("reload: start instances", "error", err)
	}
	d.publish()
	return nil
}

// electionEqual reports whether two configs of an instance run the same
// election (so the running one can stay).
func electionEqual(a, b config.Instance) bool {
	strip := func(c config.Instance) config.Instance {
		c.GARP = config.GARP{}
		c.NotifyMaster, c.NotifyBackup, c.NotifyFault, c.Notify = config.Command{}, config.Command{}, config.Command{}, config.Command{}
		c.NotifyTimeout = config.Duration{}
		// VIPs are reconfigured in place unless their addresses (which
		// travel in the adverts) change.
		for i := range c.VIPs {
			c.VIPs[i].Label, c.VIPs[i].Interface = "", ""
		}
		return c
	}
	a.VIPs = append([]config.VIP(nil), a.VIPs...)
	b.VIPs = append([]config.VIP(nil), b.VIPs...)
	return reflect.DeepEqual(strip(a), strip(b))
}

func (d *Daemon) removeInstance(name string, in *instance) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	in.stop(ctx, true)
	d.mu.Lock()
	delete(d.instances, name)
	d.mu.Unlock()
}
