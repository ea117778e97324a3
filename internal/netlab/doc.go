// Package netlab builds small networks of Linux network namespaces for
// tests: one bridge (in a namespace of its own) and hosts, each a namespace
// with an "eth0" veth plugged into the bridge. It is what the netns test
// tier stands on; every namespace and process it creates is removed by
// t.Cleanup, also when the test fails.
//
// Needs root and iproute2's ip. Call testenv.NeedNetns first.
package netlab
