package failbench

import (
	"context"
	"errors"
	"flag"
	"os"
	"time"
)

// Helper modes: the benchmark re-executes its own binary (Config.Self)
// with one of these as the first argument, inside a lab namespace.
const (
	ModeServe = "serve" // responder in a director namespace
	ModeAgent = "agent" // prober and sniffer in the client namespace
	ModeSpin  = "spin"  // a busy loop for the stability run
)

// RunMode runs the helper mode named by args[0], if it is one, and reports
// whether it was. A command (or a test binary's TestMain) calls it first.
func RunMode(ctx context.Context, args []string) (bool, error) {
	if len(args) == 0 {
		return false, nil
	}
	switch args[0] {
	case ModeServe:
		fs := flag.NewFlagSet(ModeServe, flag.ContinueOnError)
		name := fs.String("name", "", "name to answer with")
		port := fs.Int("port", 8080, "TCP port")
		if err := fs.Parse(args[1:]); err != nil {
			return true, err
		}
		if *name == "" {
			return true, errors.New("serve: -name is required")
		}
		return true, Serve(ctx, *name, *port)
	case ModeAgent:
		fs := flag.NewFlagSet(ModeAgent, flag.ContinueOnError)
		var c AgentConfig
		fs.StringVar(&c.VIP, "vip", "", "address to probe")
		fs.IntVar(&c.Port, "port", 8080, "responder port")
		fs.DurationVar(&c.Every, "every", 5*time.Millisecond, "probe spacing")
		fs.DurationVar(&c.Timeout, "timeout", 250*time.Millisecond, "probe timeout")
		fs.StringVar(&c.Iface, "iface", "eth0", "interface to sniff on")
		if err := fs.Parse(args[1:]); err != nil {
			return true, err
		}
		if c.VIP == "" {
			return true, errors.New("agent: -vip is required")
		}
		return true, RunAgent(ctx, c, os.Stdout)
	case ModeSpin:
		x := 0
		for ctx.Err() == nil {
			for i := 0; i < 1e6; i++ {
				x += i
			}
		}
		_ = x
		return true, nil
	}
	return false, nil
}
