// Package ipvs decides what the kernel's IPVS table holds and makes it so.
//
// It owns three things:
//
//   - The desired table (Table, Service, Destination) and Build, a pure
//     function from the site's virtual servers (VirtualServer,
//     RealServer) and a health view (Health) to that table: healthy
//     servers at their weight, failed ones removed or drained at weight 0,
//     the sorry server when the live weight falls below quorum (with
//     hysteresis), and slow start (weights ramp up after recovery, with the
//     time passed in).
//   - Backends (Backend): Kernel, over github.com/moby/ipvs with one handle
//     behind a mutex and a timeout on every call, probing the "IPVS"
//     generic netlink family first; and Memory, an in-memory table for
//     unit tests. The Kernel backend also runs the connection-sync daemon
//     and sets the IPVS timeouts, which moby/ipvs cannot do.
//   - The Reconciler: one service dump per pass, a diff in memory, the
//     fewest writes (update in place, create a service before its
//     destinations), only on the services the site declares. It restores
//     whatever was changed by hand and reports what it did; a pass with
//     nothing to change makes no write.
//
// It does not import the config package: the wiring package converts the
// site file into VirtualServer values.
//
// Tests: unit tests run the builder and the reconciler against Memory. The
// vm tier (TestVM*) builds this package's test binary, boots a QEMU guest
// with Debian's kernel (internal/vmtest) and runs the TestGuest* tests
// there against real IPVS, with ipvsadm as an independent witness.
package ipvs
