// Package ipvs decides what the kernel's IPVS table holds and makes it so.
//
// It owns three things:
//
//   - The desired table (Table, Service, Destination) and Build, a pure
//     function from the site's virtual servers (VirtualServer,
//     RealServer) and a health view (Health) to that table: healthy
//     servers at their weight, failed ones removed or drained at weight 0
//     (DrainOnFailure), an operator drain or weight override per server,
//     the sorry server replacing the pool while the live weight is below
//     quorum (with hysteresis, state carried in QuorumState), and slow
//     start (weights ramp from 1 after recovery; the time is passed in and
//     BuildOutput.NextChange says when to build again).
//   - Backends (Backend): Kernel, over github.com/moby/ipvs, and Memory, an
//     in-memory table for unit tests. NewKernel probes the "IPVS" generic
//     netlink family first (moby/ipvs would otherwise "succeed" silently on
//     a kernel without IPVS) and fails with ErrNotAvailable. It works on
//     the namespace given by KernelOptions.Netns ("" = current). Reads go
//     through one moby handle behind a mutex, every call bounded by
//     CallTimeout (the handle is recreated on expiry). A pass's writes are
//     sent in batches of netlink messages on a socket of its own (see
//     batch.go): the kernel runs them in order and acknowledges each. The
//     Kernel backend also starts, stops and reads back the connection-sync
//     daemons and sets the IPVS timeouts, which moby/ipvs cannot do.
//   - The Reconciler: one service dump per pass plus one destination dump
//     per declared service, a diff in memory, the fewest writes (update in
//     place; create a service before its destinations; create and update
//     destinations before deleting others), only on the services the site
//     declares (and ones it declared before, so a removed virtual server is
//     deleted). It restores whatever was changed by hand and reports counts
//     (Report); a pass with nothing to change makes no write. RemoveAll
//     deletes only owned services (ipvs_on_stop = "remove"); Snapshot reads
//     services with destinations, weights, connections and counters for a
//     status view.
//
// It does not import the config package: the wiring package converts the
// site file into VirtualServer values (RealServer.Weight has no implicit
// default: pass 1 when the site does not say).
//
// Kernel facts worth knowing: a destination is refused with EINVAL ("not
// unicast") in a namespace without a local routing table (bring lo up
// first); IPv6 services need a persistence netmask 1..128 (handled);
// destinations must have the service's address family (Validate checks).
//
// Tests: unit tests run the builder and the reconciler against Memory and
// the netlink encoders. The vm tier (TestVMIPVS) builds this package's test
// binary statically, boots one QEMU guest with Debian's kernel
// (internal/vmtest) and runs the TestGuest* tests there against real IPVS,
// each in its own netns, with ipvsadm as an independent witness (package
// ipvsadm parses its listings). scripts/bench-ipvs.sh runs
// BenchmarkVMReconcile: 1,000 services x 10 destinations against
// ipvsadm-restore in the same guest (docs/benchmarks.md).
package ipvs
