package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/vigil-lb/vigil/director"
)

const defaultSocket = "/run/vigil/vigil.sock"

func init() {
	extraCommands["status"] = command{"show election, VIPs, IPVS and real-server health of the local daemon", runStatus}
	extraCommands["reload"] = command{"ask the local daemon to reload its site file (like SIGHUP, but reports errors)", runReload}
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sock := fs.String("socket", defaultSocket, "control socket of the daemon")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := director.Call(ctx, *sock, director.Request{Op: "status"})
	if err != nil {
		fmt.Fprintf(stderr, "vigil status: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep.Status)
		return 0
	}
	rep.Status.WriteText(stdout, time.Now())
	return 0
}

func runReload(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sock := fs.String("socket", defaultSocket, "control socket of the daemon")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := director.Call(ctx, *sock, director.Request{Op: "reload"}); err != nil {
		fmt.Fprintf(stderr, "vigil reload: rejected, the running config stays:\n%v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "reloaded")
	return 0
}
