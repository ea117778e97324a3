// Command vmlab runs the lab's tour (examples/lab/tour.sh) inside a QEMU
// guest booting Debian's kernel, for machines whose kernel has no IPVS.
// It is what `make demo` uses there; the vm tier's TestVMSite does the same.
//
//	vmlab -vigil bin/vigil -labsrv bin/labsrv [-lab examples/lab]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vigil-lb/vigil/internal/vmtest"
)

func main() {
	vigil := flag.String("vigil", "bin/vigil", "static vigil binary")
	labsrv := flag.String("labsrv", "bin/labsrv", "static labsrv binary")
	lab := flag.String("lab", "examples/lab", "directory with lab.sh, tour.sh and site.toml")
	flag.Parse()
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "vmlab:", err)
			os.Exit(2)
		}
		return a
	}
	ipPath := "/sbin/ip"
	if _, err := os.Stat(ipPath); err != nil {
		ipPath = "/usr/sbin/ip"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	res, err := vmtest.Run(ctx, vmtest.Options{
		Files: map[string]string{
			"/bin/vigil": abs(*vigil), "/bin/labsrv": abs(*labsrv),
			"/lab/lab.sh": abs(filepath.Join(*lab, "lab.sh")), "/lab/tour.sh": abs(filepath.Join(*lab, "tour.sh")),
			"/lab/site.toml": abs(filepath.Join(*lab, "site.toml")),
		},
		HostPrograms: []string{"/usr/sbin/ipvsadm", ipPath},
		Script:       "sh /lab/tour.sh",
		Env: map[string]string{
			"IP": ipPath, "VIGIL": "/bin/vigil", "LABSRV": "/bin/labsrv", "SITE": "/lab/site.toml",
			"IPVSADM": "/usr/sbin/ipvsadm", "RUNDIR": "/tmp/vlab",
		},
		MemoryMB: 1024,
		CPUs:     2,
		Timeout:  12 * time.Minute,
		Output:   os.Stdout,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmlab: guest:", err)
		os.Exit(1)
	}
	fmt.Printf("\nvmlab: the guest ran the tour in %v, exit %d\n", res.Duration.Round(time.Second), res.ExitCode)
	os.Exit(res.ExitCode)
}
