package ipvs

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
)

func site(weight3 int) Table {
	t := Table{Services: []Service{
		{Key: AddrKey(TCP, ap("10.99.0.100:80")), Scheduler: "wrr", Destinations: []Destination{
			{Addr: ip("10.99.0.3"), Port: 80, Weight: weight3, Forwarding: DR},
			{Addr: ip("10.99.0.4"), Port: 80, Weight: 1, Forwarding: DR},
		}},
		{Key: AddrKey(TCP, ap("10.99.0.100:23")), Scheduler: "rr", Destinations: []Destination{
			{Addr: ip("10.99.0.3"), Port: 23, Weight: 1, Forwarding: DR},
		}},
		{Key: MarkKey(IPv4, 5), Scheduler: "sh", Timeout: 300, Netmask: 24, Destinations: []Destination{
			{Addr: ip("10.99.0.5"), Weight: 1, Forwarding: NAT},
		}},
		{Key: AddrKey(UDP, ap("[fd99::100]:53")), Scheduler: "lc", Destinations: []Destination{
			{Addr: ip("fd99::3"), Port: 53, Weight: 1, Forwarding: Tunnel},
		}},
	}}
	t.Sort()
	return t
}

// equalTables compares what a reconciler controls.
func equalTables(t *testing.T, got, want Table) {
	t.Helper()
	got.Sort()
	want.Sort()
	if len(got.Services) != len(want.Services) {
		t.Fatalf("got %d services, want %d:\n%+v", len(got.Services), len(want.Services), got)
	}
	for i := range want.Services {
		g, w := &got.Services[i], &want.Services[i]
		if g.Key != w.Key || !sameSettings(g, w) {
			t.Fatalf("service %d: got %+v, want %+v", i, g, w)
		}
		if len(g.Destinations) != len(w.Destinations) {
			t.Fatalf("%s: got destinations %+v, want %+v", w.Key, g.Destinations, w.Destinations)
		}
		for j := range w.Destinations {
			if g.Destinations[j].Key() != w.Destinations[j].Key() || !sameDest(&g.Destinations[j], &w.Destinations[j]) {
				t.Fatalf("%s: destination %d: got %+v, want %+v", w.Key, j, g.Destinations[j], w.Destinations[j])
			}
		}
	}
}

func readAll(t *testing.T, b Backend) Table {
	t.Helper()
	tab, err := ReadTable(context.Background(), b, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func mustApply(t *testing.T, r *Reconciler, want Table) Report {
	t.Helper()
	rep, err := r.Apply(context.Background(), want)
	if err != nil {
		t.Fatalf("apply: %v (%v)", err, rep)
	}
	return rep
}

func TestReconcileFromEmptyThenNoop(t *testing.T) {
	m := NewMemory()
	r := NewReconciler(m, nil)
	rep := mustApply(t, r, site(1))
	if rep.Creates != 4+5 || rep.Updates != 0 || rep.Deletes != 0 || rep.Errors != 0 {
		t.Fatalf("first pass: %v", rep)
	}
	equalTables(t, readAll(t, m), site(1))
	before := m.Writes
	rep = mustApply(t, r, site(1))
	if rep.Writes() != 0 || m.Writes != before {
		t.Fatalf("no-op pass wrote: %v (backend writes %d -> %d)", rep, before, m.Writes)
	}
	// One service dump plus one destination dump per declared service.
	if rep.Reads != 1+4 {
		t.Fatalf("no-op pass reads = %d, want 5", rep.Reads)
	}
}

func TestReconcileUpdatesInPlace(t *testing.T) {
	m := NewMemory()
	r := NewReconciler(m, nil)
	mustApply(t, r, site(1))
	want := site(5) // weight change on www
	mark, _ := want.Lookup(MarkKey(IPv4, 5))
	mark.Scheduler = "mh"   // scheduler change
	mark.Flags = FlagSched1 // flag change
	telnet, _ := want.Lookup(AddrKey(TCP, ap("10.99.0.100:23")))
	telnet.Destinations[0].Forwarding = NAT // forwarding and threshold change
	telnet.Destinations[0].UpperThreshold = 9
	rep := mustApply(t, r, want)
	if rep.Updates != 1+1+1 || rep.Creates != 0 || rep.Deletes != 0 {
		t.Fatalf("update pass: %v", rep)
	}
	equalTables(t, readAll(t, m), want)
}

func TestReconcileRestoresManualChanges(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	r := NewReconciler(m, nil)
	mustApply(t, r, site(1))
	web := AddrKey(TCP, ap("10.99.0.100:80"))
	// By hand: delete a destination, change a weight, add a stray
	// destination, change a scheduler, delete a whole service.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(m.DeleteDestination(ctx, web, DestKey{ip("10.99.0.3"), 80}))
	must(m.UpdateDestination(ctx, web, &Destination{Addr: ip("10.99.0.4"), Port: 80, Weight: 9, Forwarding: DR}))
	must(m.CreateDestination(ctx, web, &Destination{Addr: ip("10.99.0.7"), Port: 80, Weight: 1, Forwarding: DR}))
	must(m.UpdateService(ctx, &Service{Key: web, Scheduler: "rr"}))
	must(m.DeleteService(ctx, AddrKey(TCP, ap("10.99.0.100:23"))))
	rep := mustApply(t, r, site(1))
	// web: 1 update (scheduler) + 1 create + 1 update + 1 delete; telnet: 2 creates
	if rep.Creates != 3 || rep.Updates != 2 || rep.Deletes != 1 {
		t.Fatalf("restore pass: %v", rep)
	}
	equalTables(t, readAll(t, m), site(1))
}

func TestReconcileLeavesForeignServicesAlone(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	foreign := Service{Key: AddrKey(TCP, ap("10.99.0.200:443")), Scheduler: "rr"}
	if err := m.CreateService(ctx, &foreign); err != nil {
		t.Fatal(err)
	}
	if err := m.CreateDestination(ctx, foreign.Key, &Destination{Addr: ip("10.99.0.20"), Port: 443, Weight: 1}); err != nil {
		t.Fatal(err)
	}
	r := NewReconciler(m, nil)
	mustApply(t, r, site(1))
	// Site shrinks to one service: the other owned ones go, the foreign stays.
	small := site(1)
	small.Services = small.Services[1:2]
	rep := mustApply(t, r, small)
	if rep.Deletes != 3 || rep.Creates != 0 {
		t.Fatalf("shrink pass: %v", rep)
	}
	got := readAll(t, m)
	if _, ok := got.Lookup(foreign.Key); !ok {
		t.Fatal("foreign service deleted")
	}
	if len(got.Services) != 2 {
		t.Fatalf("table: %+v", got)
	}
	// RemoveAll takes only ours.
	rep, err := r.RemoveAll(ctx)
	if err != nil || rep.Deletes != 1 {
		t.Fatalf("RemoveAll: %v %v", rep, err)
	}
	got = readAll(t, m)
	if len(got.Services) != 1 || got.Services[0].Key != foreign.Key || len(got.Services[0].Destinations) != 1 {
		t.Fatalf("after RemoveAll: %+v", got)
	}
	if len(r.Owned()) != 0 {
		t.Fatalf("still owns %v", r.Owned())
	}
}

func TestReconcileCarriesOnPastErrors(t *testing.T) {
	m := NewMemory()
	failing := AddrKey(TCP, ap("10.99.0.100:23"))
	m.FailWrite = func(op string, k ServiceKey) error {
		if k == failing {
			return syscall.EINVAL
		}
		return nil
	}
	r := NewReconciler(m, nil)
	rep, err := r.Apply(context.Background(), site(1))
	if err == nil || !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "create service tcp 10.99.0.100:23") {
		t.Fatalf("err = %v", err)
	}
	// The service and its one destination fail; everything else is made.
	if rep.Errors != 2 || rep.Creates != 3+4 {
		t.Fatalf("report %v", rep)
	}
	m.FailWrite = nil
	rep = mustApply(t, r, site(1))
	if rep.Creates != 2 || rep.Writes() != 2 {
		t.Fatalf("retry pass %v", rep)
	}
	equalTables(t, readAll(t, m), site(1))
}

func TestReconcileRejectsInvalidTable(t *testing.T) {
	m := NewMemory()
	r := NewReconciler(m, nil)
	bad := site(1)
	bad.Services[0].Destinations = append(bad.Services[0].Destinations, bad.Services[0].Destinations[0])
	if _, err := r.Apply(context.Background(), bad); err == nil {
		t.Fatal("invalid table accepted")
	}
	if m.Writes != 0 || m.Reads != 0 {
		t.Fatalf("invalid table touched the backend: %d writes %d reads", m.Writes, m.Reads)
	}
}

func TestSnapshot(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	foreign := Service{Key: AddrKey(TCP, ap("10.99.0.200:443")), Scheduler: "rr"}
	m.CreateService(ctx, &foreign)
	r := NewReconciler(m, nil)
	mustApply(t, r, site(1))
	all, err := r.Snapshot(ctx, false)
	if err != nil || len(all.Services) != 5 {
		t.Fatalf("snapshot all: %d services, %v", len(all.Services), err)
	}
	mine, err := r.Snapshot(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	equalTables(t, mine, site(1))
}

func TestReconcileAdoptDeletesStaleServices(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	stale := Service{Key: AddrKey(TCP, ap("10.99.0.100:8080")), Scheduler: "rr"}
	foreign := Service{Key: AddrKey(TCP, ap("10.99.0.200:443")), Scheduler: "rr"}
	m.CreateService(ctx, &stale)
	m.CreateService(ctx, &foreign)
	r := NewReconciler(m, nil)
	r.Adopt(stale.Key, AddrKey(TCP, ap("10.99.0.100:9999"))) // second one is gone already
	rep := mustApply(t, r, site(1))
	if rep.Deletes != 1 || rep.Errors != 0 {
		t.Fatalf("pass: %v", rep)
	}
	got := readAll(t, m)
	if _, ok := got.Lookup(stale.Key); ok {
		t.Fatal("adopted stale service kept")
	}
	if _, ok := got.Lookup(foreign.Key); !ok {
		t.Fatal("foreign service deleted")
	}
	if len(r.Owned()) != 4 {
		t.Fatalf("owned %v", r.Owned())
	}
}
