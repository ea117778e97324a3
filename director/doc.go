// Package director wires one director of a site: it reads the site file
// through config, runs the election (vrrp) per instance, claims and
// announces VIPs on mastership (failover), checks the real servers
// (healthcheck) and programs IPVS from their health on every director
// (ipvs), and talks to the other directors over the cluster channel
// (cluster). It also owns the local control socket that `vigil status`,
// `vigil reload` and `vigil drill` use.
//
// The arrows go one way: cmd/vigil -> director -> {vrrp, healthcheck, ipvs,
// failover, cluster} -> nothing of director's.
package director
