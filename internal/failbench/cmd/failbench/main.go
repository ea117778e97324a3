// Command failbench measures client-visible VRRP failover and planned
// handover of vigil against keepalived in a network-namespace lab (see
// package failbench). Run it as root; scripts/bench-failover.sh builds and
// runs it.
//
//	failbench [flags]                 the benchmark (default)
//	failbench serve -name N -port P   responder, inside a director namespace
//	failbench agent -vip ... -port P  prober and advert sniffer, inside the client namespace
//	failbench spin                    a busy loop, for the stability run
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vigil-lb/vigil/internal/failbench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	handled, err := failbench.RunMode(ctx, os.Args[1:])
	if !handled {
		err = bench(ctx, os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "failbench:", err)
		os.Exit(1)
	}
}

func durations(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		d, err := time.ParseDuration(f)
		if err != nil {
			return nil, fmt.Errorf("duration %q: %w", f, err)
		}
		out = append(out, d)
	}
	return out, nil
}

func bench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("failbench", flag.ExitOnError)
	impls := fs.String("impl", "keepalived,vigil", "implementations, comma-separated: keepalived, vigil")
	adverts := fs.String("adverts", "1s,100ms,50ms,20ms,10ms", "advert intervals of the failover cases (the issue asks 1s,100ms,20ms; its keepalived targets are at 1s,100ms,50ms,10ms)")
	kinds := fs.String("kinds", "crash,stop,handover", "failure kinds: crash (link cut + SIGKILL), stop (SIGTERM), handover (vigil's control socket, then resume; keepalived has none)")
	runs := fs.Int("runs", 10, "failovers per case")
	usageAdverts := fs.String("usage-adverts", "100ms,10ms", "advert intervals of the CPU/RSS windows (empty: none)")
	window := fs.Duration("usage-window", 60*time.Second, "CPU/RSS window as master")
	stability := fs.Duration("stability", 0, "stability run duration per implementation (0: off; the issue asks 10m)")
	stabAdvert := fs.Duration("stability-advert", 10*time.Millisecond, "advert interval of the stability run")
	spinners := fs.Int("spinners", 2, "busy processes during the stability run")
	quick := fs.Bool("quick", false, "development mode: 2 runs, 100ms and 20ms adverts, 5s usage windows")
	version := fs.Int("vrrp-version", 3, "VRRP version (3 allows sub-second adverts)")
	vigilBin := fs.String("vigil", "bin/vigil", "vigil binary")
	vigilExtra := fs.String("vigil-extra", "", "TOML lines appended to vigil's generated site file")
	kaBin := fs.String("keepalived", "keepalived", "keepalived binary")
	port := fs.Int("port", 8080, "responder port in the director namespaces")
	every := fs.Duration("probe-every", 5*time.Millisecond, "probe spacing")
	timeout := fs.Duration("probe-timeout", 250*time.Millisecond, "probe timeout")
	jsonOut := fs.String("json", "", "also write the raw results as JSON to this file")
	workdir := fs.String("workdir", "", "where configs and logs go (default: a temporary directory, removed unless -keep)")
	keep := fs.Bool("keep", false, "keep the work directory")
	verbose := fs.Bool("v", false, "log every run")
	_ = fs.Parse(args)

	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, raw sockets)")
	}
	if *quick {
		*runs = 2
		*adverts = "100ms,20ms"
		*window = 5 * time.Second
	}
	level := slog.LevelInfo
	if !*verbose {
		level = slog.LevelWarn
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	cfg := failbench.Config{
		RigConfig: failbench.RigConfig{Self: self, Port: *port, Every: *every, Timeout: *timeout, Version: *version, Log: log},
		Runs:      *runs, ResourceWindow: *window, Stability: *stability, StabilityAdvert: *stabAdvert, Spinners: *spinners,
	}
	if cfg.Adverts, err = durations(*adverts); err != nil {
		return err
	}
	if cfg.ResourceAdverts, err = durations(*usageAdverts); err != nil {
		return err
	}
	for _, k := range strings.Split(*kinds, ",") {
		switch k = strings.TrimSpace(k); k {
		case failbench.Crash, failbench.Stop, failbench.Handover:
			cfg.Kinds = append(cfg.Kinds, k)
		case "":
		default:
			return fmt.Errorf("unknown kind %q", k)
		}
	}
	versions := map[string]string{}
	for _, name := range strings.Split(*impls, ",") {
		var impl failbench.Impl
		switch name = strings.TrimSpace(name); name {
		case "keepalived":
			k := failbench.Keepalived{Binary: *kaBin}
			impl = k
			versions[name] = k.Version()
		case "vigil":
			abs, _ := filepath.Abs(*vigilBin)
			impl = failbench.Vigil{Binary: abs, Extra: *vigilExtra}
		case "":
			continue
		default:
			return fmt.Errorf("unknown implementation %q", name)
		}
		if err := impl.Check(); err != nil {
			fmt.Fprintf(os.Stderr, "failbench: skipping %s: %v\n", name, err)
			continue
		}
		cfg.Impls = append(cfg.Impls, impl)
	}
	if len(cfg.Impls) == 0 {
		return errors.New("no implementation can run")
	}
	if *workdir == "" {
		d, err := os.MkdirTemp("", "failbench-")
		if err != nil {
			return err
		}
		*workdir = d
		if !*keep {
			defer os.RemoveAll(d)
		}
	}
	cfg.WorkDir = *workdir
	fmt.Fprintf(os.Stderr, "failbench: work directory %s\n", *workdir)

	rep := failbench.Bench(ctx, cfg)
	for k, v := range versions {
		rep.Versions[k] = v
	}
	fmt.Printf("failbench %s: runs=%d adverts=%s kinds=%s VRRPv%d probe every %s (timeout %s)\n",
		rep.Started.UTC().Format(time.RFC3339), *runs, *adverts, *kinds, *version, *every, *timeout)
	for k, v := range rep.Versions {
		fmt.Printf("  %s: %s\n", k, v)
	}
	rep.Print(os.Stdout)
	if *jsonOut != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", *jsonOut, err)
		}
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return nil
}
