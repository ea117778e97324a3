package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/vigil-lb/vigil/director"
	"github.com/vigil-lb/vigil/failover"
)

func init() {
	extraCommands["run"] = command{"run the director daemon", runDaemon}
}

// runDaemon is `vigil run`. Signals follow keepalived's conventions:
// SIGHUP reloads, SIGTERM/SIGINT stop gracefully (priority-0 adverts, VIPs
// released, IPVS rules removed unless ipvs_on_stop = "keep").
func runDaemon(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", "/etc/vigil/site.toml", "site file")
	node := fs.String("node", "", "this director's name in the site file (default: hostname)")
	sock := fs.String("socket", "", "control socket (default: the site's control_socket)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	jsonLog := fs.Bool("log-json", false, "log JSON lines instead of text")
	stateDir := fs.String("state-dir", "/run/vigil", "runtime directory: the VIPs this director may hold are recorded there and removed at the next start (\"\": none)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "vigil run: bad -log-level %q\n", *level)
		return 2
	}
	hopts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler = slog.NewTextHandler(stderr, hopts)
	if *jsonLog {
		h = slog.NewJSONHandler(stderr, hopts)
	}
	log := slog.New(h)
	if *node == "" {
		hn, err := os.Hostname()
		if err != nil {
			fmt.Fprintf(stderr, "vigil run: no -node and no hostname: %v\n", err)
			return 2
		}
		*node = hn
	}

	// Signals are registered before anything starts: Go's default for
	// SIGHUP is to exit, which would turn a reload into an outage.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// Stale VIPs first, before anything that can fail: a director that
	// crashed as master and now cannot load its site file must not keep
	// answering for the VIPs while the peer holds them.
	record := vipRecordPath(*stateDir, *node)
	if record != "" {
		if removed, err := failover.RemoveRecorded(record, nil, log.With("node", *node)); err != nil {
			log.Warn("remove recorded stale VIPs", "record", record, "error", err)
		} else if len(removed) > 0 {
			log.Warn("removed stale VIPs recorded by an earlier run", "node", *node, "vips", fmt.Sprint(removed))
		}
	}

	d, err := director.New(director.Options{ConfigPath: *cfgPath, Node: *node, Socket: *sock, Logger: log, VIPRecord: record})
	if err != nil {
		fmt.Fprintf(stderr, "vigil run: %v\n", err)
		var se *director.StartError
		if errors.As(err, &se) && se.Config {
			return 1
		}
		return 3
	}
	go func() {
		for range hup {
			if err := d.Reload(); err != nil {
				log.Error("reload rejected; the running config stays", "error", err)
			}
		}
	}()
	if err := d.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "vigil run: %v\n", err)
		return 1
	}
	return 0
}

// vipRecordPath is where a director keeps the record of the VIPs it may
// hold: NODE.vips in the state directory; "" (no record) when the state
// directory is "".
func vipRecordPath(stateDir, node string) string {
	if stateDir == "" {
		return ""
	}
	return filepath.Join(stateDir, node+".vips")
}
