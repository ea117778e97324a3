package main

import (
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// command is one subcommand: it gets its arguments (without the name) and
// the output streams, and returns the process exit code.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

// commands lists the subcommands; each lives in its own file and adds
// itself here from an init function of that file's registration list.
func commands() map[string]command {
	cmds := map[string]command{
		"version": {"print the version", func(_ []string, out, _ io.Writer) int {
			fmt.Fprintf(out, "vigil %s\n", version)
			return 0
		}},
	}
	for name, c := range extraCommands {
		cmds[name] = c
	}
	return cmds
}

// extraCommands is filled by the files that define subcommands
// (check.go, run.go, ...). It is written only during package init.
var extraCommands = map[string]command{}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: vigil <command> [flags]\n\ncommands:")
	cmds := commands()
	for _, n := range slices.Sorted(maps.Keys(cmds)) {
		fmt.Fprintf(w, "  %-8s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nrun 'vigil <command> -h' for a command's flags")
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		return 2
	}
	c, ok := commands()[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "vigil: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	return c.run(args[1:], stdout, stderr)
}
