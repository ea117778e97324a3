package director_test

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/director"
	"github.com/vigil-lb/vigil/internal/netlab"
	"github.com/vigil-lb/vigil/internal/testenv"
)

// TestNetnsSoak runs a pair (trackSite: a reload can change the election
// through the track script, or only the announcements through garp) under 100 ms adverts for VIGIL_SOAK (default
// 90s; the figure is from a 10m run) while a client pings the VIP
// every 20 ms, through a rotation of routine and hostile events: reloads
// of every kind (none, announcements, election, broken file), SIGKILL and
// restart of either director, link flaps, spoofed priority-0 adverts in
// the master's name, and floods of lower-priority adverts. It fails on
// any period of two VIP holders lasting an advert interval while both
// directors are alive and connected, on an election count other than one,
// and on goroutines or fds that grow over a process's life. It prints
// the figures.
func TestNetnsSoak(t *testing.T) {
	testenv.NeedNetns(t, "ping")
	soak := 90 * time.Second
	if v := os.Getenv("VIGIL_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("VIGIL_SOAK=%q: %v", v, err)
		}
		soak = d
	}
	const advert = 100 * time.Millisecond
	p := newPairLab(t)
	client := p.lab.AddHost("client", "10.99.0.10/24")
	rogue := p.lab.AddHost("rogue", "10.99.0.66/24")
	p.start()
	lab, h1, h2, bin, dir, site := p.lab, p.h1, p.h2, p.bin, p.dir, p.site
	repeat, track := 1, "1s"
	write := p.write
	hosts := map[string]*netlab.Host{"vs1": h1, "vs2": h2}
	ds := map[string]*daemon{"vs1": p.d1, "vs2": p.d2}

	// Resources per process: the first sample after it settled, the last.
	type usage struct{ first, last director.Status }
	procs := map[string]*usage{} // "vs1#1"
	gen := map[string]int{"vs1": 1, "vs2": 1}
	elections := map[int]int{} // elections_running -> samples
	sampleAll := func() {
		for name, d := range ds {
			st, err := d.status(t)
			if err != nil || len(st.Instances) == 0 {
				continue
			}
			elections[st.Elections]++
			key := fmt.Sprintf("%s#%d", name, gen[name])
			if u, ok := procs[key]; ok {
				u.last = st
			} else {
				procs[key] = &usage{first: st, last: st}
			}
		}
	}
	time.Sleep(time.Second)
	sampleAll()

	w := watchHolders(t, h1, h2)
	ping := client.Command(t.Context(), "ping", "-q", "-n", "-i", "0.02", "-W", "1", "10.99.0.101")
	var pingOut strings.Builder
	ping.Stdout, ping.Stderr = &pingOut, &pingOut
	if err := ping.Start(); err != nil {
		t.Fatal(err)
	}
	sp := newSpoofer(t, rogue)
	alive := func(name string) bool { return instanceState(t, ds[name]) != "unreachable" }
	restart := func(name string) {
		d := ds[name]
		w.exclude(true)
		d.signal(syscall.SIGKILL)
		d.wait(t, 5*time.Second)
		time.Sleep(500 * time.Millisecond)
		gen[name]++
		ds[name] = startDaemon(t, hosts[name], bin, site, dir)
		eventually(t, 15*time.Second, name+" back", func() bool { return alive(name) })
		w.exclude(false)
	}
	flap := func(name string) {
		w.exclude(true)
		lab.Cut(hosts[name])
		time.Sleep(time.Second)
		lab.Heal(hosts[name])
		// The two masters are connected again once an advert can cross:
		// up to one interval after the heal (VRRP's own bound).
		time.Sleep(advert)
		w.exclude(false)
	}
	reload := func(name string) {
		st := reloadAndWait(t, ds[name])
		if st.Elections != 1 {
			t.Errorf("%s runs %d elections after a reload", name, st.Elections)
		}
	}
	reloadBoth := func() { reload("vs1"); reload("vs2") }
	master := netip.MustParseAddr("10.99.0.1")
	events := []struct {
		name string
		do   func()
	}{
		{"reload, no change", reloadBoth},
		{"reload, announcements changed", func() { repeat = 3 - repeat; write(repeat, track); reloadBoth() }},
		{"reload, election changed on vs1", func() { track = map[string]string{"1s": "2s", "2s": "1s"}[track]; write(repeat, track); reload("vs1") }},
		{"spoofed priority 0 in vs1's name", func() {
			for range 5 {
				sp.send(t, master, 0)
				time.Sleep(300 * time.Millisecond)
			}
		}},
		{"SIGKILL and restart vs1", func() { restart("vs1") }},
		{"reload, broken file", func() {
			if err := os.WriteFile(site, []byte("[site\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"vs1", "vs2"} {
				if st := reloadAndWait(t, ds[name]); st.ReloadErr == "" {
					t.Errorf("%s accepted a broken site file", name)
				}
			}
			write(repeat, track)
		}},
		{"link flap vs1", func() { flap("vs1") }},
		{"lower-priority flood in vs2's name", func() {
			for range 2000 {
				sp.send(t, netip.MustParseAddr("10.99.0.2"), 50)
			}
		}},
		{"reload, election changed on vs2", func() {
			track = map[string]string{"1s": "2s", "2s": "1s"}[track]
			write(repeat, track)
			reload("vs2")
			reload("vs1")
		}},
		{"SIGKILL and restart vs2", func() { restart("vs2") }},
		{"link flap vs2", func() { flap("vs2") }},
	}
	// Transitions during events that move nothing are reported: each is
	// a spurious failover (a starved daemon, a lost advert).
	quiet := map[string]bool{"reload, no change": true, "reload, announcements changed": true, "reload, broken file": true, "lower-priority flood in vs2's name": true}
	transitions := func() uint64 {
		var n uint64
		for _, d := range ds {
			if st, err := d.status(t); err == nil && len(st.Instances) > 0 {
				n += st.Instances[0].Transitions
			}
		}
		return n
	}
	done := map[string]int{}
	spurious := map[string]uint64{}
	start := time.Now()
	for i := 0; time.Since(start) < soak; i++ {
		ev := events[i%len(events)]
		w.setLabel(ev.name)
		before := transitions()
		ev.do()
		done[ev.name]++
		time.Sleep(1500 * time.Millisecond) // settle: vs1 preempts back
		if after := transitions(); quiet[ev.name] && after != before {
			spurious[ev.name] += after - before
		}
		sampleAll()
	}
	elapsed := time.Since(start)
	waitMaster(t, ds["vs1"], ds["vs2"], h1, h2)
	time.Sleep(time.Second)
	sampleAll()
	_ = ping.Process.Signal(syscall.SIGINT)
	_ = ping.Wait()
	w.close()
	overlaps, samples := w.report()

	// The figures.
	names := slices.Sorted(maps.Keys(done))
	var evs []string
	for _, n := range names {
		evs = append(evs, fmt.Sprintf("%s x%d", n, done[n]))
	}
	sort.Slice(overlaps, func(i, j int) bool { return overlaps[i] > overlaps[j] })
	top := overlaps[:min(len(overlaps), 10)]
	sent, recv := pingSummary(pingOut.String())
	t.Logf("soak %v: %d events: %s", elapsed.Round(time.Second), sumValues(done), strings.Join(evs, "; "))
	t.Logf("VIP holders sampled %d times; %d periods with two holders while both were alive and connected, longest %v (largest: %v)",
		samples, len(overlaps), longest(overlaps), top)
	byLabel := w.longestByLabel()
	var longestBy []string
	for _, n := range names {
		if d, ok := byLabel[n]; ok {
			longestBy = append(longestBy, fmt.Sprintf("%s %v", n, d.Round(10*time.Microsecond)))
		}
	}
	t.Logf("longest two-holder period by event: %s", strings.Join(longestBy, "; "))
	t.Logf("transitions during events that move nothing (spurious failovers): %v", spurious)
	t.Logf("client pings every 20 ms: %d sent, %d answered, %d lost (%.2f%%)", sent, recv, sent-recv, 100*float64(sent-recv)/float64(max(sent, 1)))
	t.Logf("elections_running seen: %v", elections)
	for _, k := range slices.Sorted(maps.Keys(procs)) {
		u := procs[k]
		t.Logf("%s: goroutines %d -> %d, fds %d -> %d, repairs %d, VIPs evicted %d, answers skipped %d",
			k, u.first.Goroutines, u.last.Goroutines, u.first.OpenFDs, u.last.OpenFDs,
			u.last.Instances[0].Repairs, u.last.Instances[0].VIPsEvicted, u.last.Instances[0].AnswersSkipped)
		if u.last.Goroutines > u.first.Goroutines+20 || u.last.OpenFDs > u.first.OpenFDs+8 {
			t.Errorf("%s grew: goroutines %d -> %d, fds %d -> %d", k, u.first.Goroutines, u.last.Goroutines, u.first.OpenFDs, u.last.OpenFDs)
		}
	}
	for n, c := range elections {
		if n != 1 {
			t.Errorf("%d samples saw %d elections running", c, n)
		}
	}
	if l := longest(overlaps); l >= advert {
		t.Errorf("two VIP holders for %v while both directors were alive (advert interval %v)", l, advert)
	}
	if sent == 0 {
		t.Errorf("the client's ping did not run:\n%s", pingOut.String())
	}
}

var pingStats = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)

func pingSummary(out string) (sent, recv int) {
	m := pingStats.FindStringSubmatch(out)
	if m == nil {
		return 0, 0
	}
	sent, _ = strconv.Atoi(m[1])
	recv, _ = strconv.Atoi(m[2])
	return sent, recv
}

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
