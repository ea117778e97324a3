// Command vigil is the director daemon and its tools: check (validate a
// site file), run (the daemon), status, reload and drill. It owns flags,
// signals and exit codes and reaches everything else through the packages
// config, director and the packages director wires.
package main
