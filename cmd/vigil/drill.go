package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/vigil-lb/vigil/config"
	"github.com/vigil-lb/vigil/drill"
)

func init() {
	extraCommands["drill"] = command{"rehearse a failover: hand over, measure what clients saw, optionally hand back", runDrill}
}

type probeList []string

func (p *probeList) String() string     { return strings.Join(*p, ",") }
func (p *probeList) Set(v string) error { *p = append(*p, v); return nil }

// runDrill is `vigil drill`: flags, then the drill package, then the
// report. Exit codes: 0 the drill (or check, or resume) succeeded, 1 it
// failed, 2 bad flags or site file.
func runDrill(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("drill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", "/etc/vigil/site.toml", "site file (must be the one the daemon runs)")
	sock := fs.String("socket", "", "control socket (default: the site's control_socket)")
	var o drill.Options
	fs.StringVar(&o.Instance, "instance", "", "instance to drill (default: the first instance, in status order, this director is master of)")
	var probes probeList
	fs.Var(&probes, "probe", "probe through the VIP during the drill: http://VIP/path, https://..., tcp://VIP:PORT (repeatable)")
	fs.BoolVar(&o.Back, "back", false, "hand mastership back afterwards")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.DurationVar(&o.MaxOutage, "max-outage", 0, "fail if a probe saw a longer interruption (0: no limit)")
	fs.DurationVar(&o.ProbeEvery, "probe-every", drill.DefaultProbeEvery, "probe interval")
	fs.DurationVar(&o.ProbeTimeout, "probe-timeout", drill.DefaultProbeTimeout, "timeout of one probe")
	fs.DurationVar(&o.Timeout, "timeout", drill.DefaultTimeout, "give up waiting for the new master after this long")
	fs.BoolVar(&o.Force, "force", false, "run even if the preflight finds problems")
	resumeOnly := fs.Bool("resume", false, "only end an earlier drill: give this director its priority back")
	fs.BoolVar(&o.CheckOnly, "check", false, "only run the preflight: exit 0 when a drill could run now")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.Probes = probes
	site, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "vigil drill: %v\n", err)
		return 2
	}
	o.Site = site
	if *sock == "" {
		*sock = site.Settings.ControlSocket
	}
	d := drill.ControlSocket{Path: *sock}
	ctx := context.Background()
	if *resumeOnly {
		if err := d.Resume(ctx, o.Instance); err != nil {
			fmt.Fprintf(stderr, "vigil drill --resume: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, "resumed: this director is back in the election at its configured priority")
		return 0
	}
	rep, err := drill.Run(ctx, d, o)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		rep.WriteText(stdout)
	}
	if err != nil {
		return 1
	}
	return 0
}
