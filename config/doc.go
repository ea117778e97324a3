// Package config owns the site file: one TOML file that describes a whole
// vigil site (its directors, the cluster channel between them, the VRRP
// instances with their VIPs, and the IPVS virtual servers with their real
// servers and health checks).
//
// It defines the schema and every default (examples/reference.toml is the
// commented reference, loaded by the tests), loads and validates a file,
// reporting every problem at once with file, line and column and a fix,
// derives the values the daemon needs (a director's priority per instance,
// Master_Down_Interval, unicast peers, ...) and computes a digest of the
// normalized site so directors can detect drift.
//
// The package depends on nothing else in vigil. Other packages define their
// own small input types; the wiring package converts a *Site into them.
//
// Strictness is the point: keepalived logs unknown keywords and runs anyway,
// so mistakes surface in production. Here an unknown key (matched exactly,
// case-sensitively), a wrong type, a duration written as a bare number or an
// advert interval the wire cannot carry is an error, and Load refuses the file.
package config
