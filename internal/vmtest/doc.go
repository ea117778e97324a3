// Package vmtest boots Debian's kernel in a QEMU guest with an initramfs
// built on the fly, runs a shell script there and reports its exit code.
// It exists because the development and CI kernels have no IPVS: real IPVS
// (and anything else the host kernel lacks) is exercised inside the guest.
//
// The guest kernel and its modules come from Debian's linux-image package,
// fetched and unpacked by scripts/vm-kernel.sh into a cache outside the
// repository (KernelDir). The initramfs is two concatenated newc archives:
// a cached base (static busybox, kernel modules, modules.dep) and a small
// per-run archive (/init, the script, the environment, Options.Files and
// Options.HostPrograms with their shared libraries).
//
// API:
//
//	dir, err := vmtest.KernelDir()                       // runs scripts/vm-kernel.sh (cached)
//	err = vmtest.BuildTestBinary(ctx, ".", "/tmp/x.test") // CGO_ENABLED=0 go test -c
//	err = vmtest.BuildStatic(ctx, "./cmd/vigil", out)     // CGO_ENABLED=0 go build
//	res, err := vmtest.Run(ctx, vmtest.Options{
//		Files:        map[string]string{"/bin/x.test": "/tmp/x.test"},
//		HostPrograms: []string{"/usr/sbin/ipvsadm", "/sbin/ip"},
//		Script:       "/bin/x.test -test.v",
//		Env:          map[string]string{"A": "b"},
//		Output:       os.Stderr,                         // live console, optional
//	})
//	// res.ExitCode is the script's exit code; err is non-nil only when the
//	// guest could not be booted or ended without reporting a result.
//
//	// Or, for Go tests that must run inside the guest (see testenv.NeedGuest):
//	vmtest.RunGuestTests(t, vmtest.GuestTests{Package: ".", Run: "^TestGuest",
//		Options: vmtest.Options{HostPrograms: []string{"/usr/sbin/ipvsadm", "/sbin/ip"}}})
//	// builds the test binary, boots one guest, runs the matching tests with
//	// -test.v and fails t unless each listed test passed.
//
// What /init does before the script: mounts /proc, /sys, /dev (devtmpfs),
// /dev/pts, /run and /tmp (tmpfs; /var/run -> /run so `ip netns add`
// works), installs busybox applets in /bin, loads the modules (ip_vs and
// every scheduler of the kernel, nf_conntrack and its dependencies, veth,
// bridge, dummy, macvlan, ipip, ip6_tunnel, tun, plus Options.Modules) with
// insmod in dependency order, brings lo up, exports Env and
// VIGIL_VM_GUEST=1, and runs the script with /bin/sh from /. The script's
// stdout and stderr go to the serial console. Afterwards /init prints a
// marker line carrying a per-run nonce and the exit code, and powers off.
//
// Pitfalls inside the guest: busybox sh runs its own applets before $PATH,
// so call iproute2 as /sbin/ip (or whatever guest path it was given) to get
// `ip netns`; busybox modprobe works for the modules in the image (a
// modules.dep is generated). QEMU emulates the CPU (TCG); KVM is used only
// with VIGIL_VM_ACCEL=kvm because nested KVM hung at boot on the machines
// tried. A boot takes seconds, not milliseconds: a test boots one guest and
// runs many cases in it (docs/benchmarks.md has the boot time).
package vmtest
