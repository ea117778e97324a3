package pacer

import (
	"bytes"
	"errors"
	"net"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/vigil-lb/vigil/internal/testenv"
	"golang.org/x/sys/unix"
)

// loopback returns a UDP listener on 127.0.0.1, an unconnected sending
// socket and the listener's address as a raw sockaddr.
func loopback(t testing.TB) (*net.UDPConn, int, []byte) {
	t.Helper()
	ln, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	ap := ln.LocalAddr().(*net.UDPAddr).AddrPort()
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ap.Addr().As4()}
	sa.Port = ap.Port()<<8 | ap.Port()>>8 // network byte order
	return ln, fd, unsafe.Slice((*byte)(unsafe.Pointer(&sa)), unix.SizeofSockaddrInet4)
}

func newPacer(t testing.TB, fd int) *Pacer {
	t.Helper()
	testenv.NeedCgo(t)
	if !Available() {
		t.Fatal("a cgo build without the pacer (not linux?)")
	}
	p, err := New(fd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// recv reads one datagram or returns nil after wait.
func recv(t *testing.T, c *net.UDPConn, wait time.Duration) []byte {
	t.Helper()
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(wait))
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// drain reads until nothing arrives for quiet, returning how many came.
func drain(t *testing.T, c *net.UDPConn, quiet time.Duration) int {
	n := 0
	for recv(t, c, quiet) != nil {
		n++
	}
	return n
}

func TestPacerSendsOnSchedule(t *testing.T) {
	ln, fd, name := loopback(t)
	p := newPacer(t, fd)
	payload := []byte("advert one")
	if err := p.Start(Schedule{Datagrams: []Datagram{{Name: name, Payload: payload}}, Interval: 10 * time.Millisecond, Lease: time.Minute}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 0; i < 20; i++ {
		got := recv(t, ln, 5*time.Second)
		if !bytes.Equal(got, payload) {
			t.Fatalf("datagram %d = %q, want %q", i, got, payload)
		}
	}
	// 20 sends at 10 ms take 190 ms; generous bounds for a shared machine.
	if el := time.Since(start); el < 150*time.Millisecond || el > 5*time.Second {
		t.Fatalf("20 datagrams at 10 ms took %v", el)
	}
	// New content replaces the old at once.
	if err := p.Start(Schedule{Datagrams: []Datagram{{Name: name, Payload: []byte("advert two")}}, Interval: 10 * time.Millisecond, Lease: time.Minute}); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		got := recv(t, ln, 5*time.Second)
		if string(got) == "advert two" {
			break
		}
		if string(got) != "advert one" || i > 3 {
			t.Fatalf("after restart got %q", got)
		}
	}
	if s := p.Stats(); s.Sent < 21 || s.Errors != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// Once Stop returns, nothing more leaves; Start resumes.
func TestPacerStop(t *testing.T) {
	ln, fd, name := loopback(t)
	p := newPacer(t, fd)
	s := Schedule{Datagrams: []Datagram{{Name: name, Payload: []byte("x")}}, Interval: 5 * time.Millisecond, Lease: time.Minute}
	if err := p.Start(s); err != nil {
		t.Fatal(err)
	}
	if recv(t, ln, 5*time.Second) == nil {
		t.Fatal("nothing sent")
	}
	p.Stop()
	sent := p.Stats().Sent
	drain(t, ln, 50*time.Millisecond) // what left before Stop returned
	time.Sleep(100 * time.Millisecond)
	if got := p.Stats().Sent; got != sent {
		t.Fatalf("sent %d after Stop returned", got-sent)
	}
	if n := drain(t, ln, 50*time.Millisecond); n != 0 {
		t.Fatalf("%d datagrams arrived after Stop", n)
	}
	if p.Renew(time.Minute) {
		t.Fatal("Renew of a stopped pacer reported it sending")
	}
	s.First = 0
	if err := p.Start(s); err != nil {
		t.Fatal(err)
	}
	if recv(t, ln, 5*time.Second) == nil {
		t.Fatal("nothing sent after a new Start")
	}
}

// A lease that is not renewed ends the sending by itself; renewing keeps
// it going.
func TestPacerLease(t *testing.T) {
	ln, fd, name := loopback(t)
	p := newPacer(t, fd)
	s := Schedule{Datagrams: []Datagram{{Name: name, Payload: []byte("x")}}, Interval: 10 * time.Millisecond, Lease: 300 * time.Millisecond}
	if err := p.Start(s); err != nil {
		t.Fatal(err)
	}
	// Renewed four times 100 ms apart: still sending 400 ms later.
	for i := 0; i < 4; i++ {
		time.Sleep(100 * time.Millisecond)
		if !p.Renew(300 * time.Millisecond) {
			t.Fatalf("renewal %d: lease ran out early (a stalled machine?)", i)
		}
	}
	renewed := time.Now()
	if st := p.Stats(); st.Sent < 10 {
		t.Fatalf("after 400 ms of renewals: %+v", st)
	}
	if recv(t, ln, 5*time.Second) == nil {
		t.Fatal("not sending after renewals")
	}
	// Not renewed: it stops, no sooner than the lease. Stopped means
	// nothing sent for 10 intervals.
	deadline := renewed.Add(10 * time.Second)
	for sent := p.Stats().Sent; ; {
		time.Sleep(100 * time.Millisecond)
		now := p.Stats().Sent
		if now == sent {
			break
		}
		sent = now
		if time.Now().After(deadline) {
			t.Fatal("lease never ran out")
		}
	}
	if el := time.Since(renewed); el < 300*time.Millisecond {
		t.Fatalf("stopped %v after the last renewal, before the 300 ms lease", el)
	}
	if p.Renew(time.Minute) {
		t.Fatal("Renew after the lease ran out reported it sending")
	}
}

// Every datagram of the schedule goes out each interval, with its own
// destination; failed sends are counted, not fatal.
func TestPacerSeveralDatagramsAndErrors(t *testing.T) {
	ln1, fd, name1 := loopback(t)
	ln2, _, name2 := loopback(t)
	p := newPacer(t, fd)
	bad := make([]byte, len(name1))
	copy(bad, name1)
	bad[0], bad[1] = 0xff, 0xff // no such address family
	s := Schedule{Datagrams: []Datagram{{Name: name1, Payload: []byte("to one")}, {Name: bad, Payload: []byte("nowhere")}, {Name: name2, Payload: []byte("to two")}},
		Interval: 10 * time.Millisecond, Lease: time.Minute}
	if err := p.Start(s); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, ln1, 5*time.Second); string(got) != "to one" {
		t.Fatalf("first destination got %q", got)
	}
	if got := recv(t, ln2, 5*time.Second); string(got) != "to two" {
		t.Fatalf("second destination got %q", got)
	}
	p.Stop()
	st := p.Stats()
	if st.Errors == 0 || st.LastErrno == 0 || st.Sent < 2 {
		t.Fatalf("stats %+v: want the bad destination counted as errors", st)
	}
}

func TestScheduleChecked(t *testing.T) {
	_, fd, name := loopback(t)
	p := newPacer(t, fd)
	ok := Datagram{Name: name, Payload: []byte("x")}
	for _, s := range []Schedule{
		{Interval: time.Second, Lease: time.Second},
		{Datagrams: []Datagram{ok}, Lease: time.Second},
		{Datagrams: []Datagram{ok}, Interval: time.Second},
		{Datagrams: []Datagram{ok}, Interval: time.Second, Lease: time.Second, First: -1},
		{Datagrams: []Datagram{{Name: name}}, Interval: time.Second, Lease: time.Second},
	} {
		if err := p.Start(s); err == nil {
			t.Errorf("Start(%+v) accepted", s)
		}
	}
	p.Close()
	if err := p.Start(Schedule{Datagrams: []Datagram{ok}, Interval: time.Second, Lease: time.Second}); err != ErrClosed {
		t.Fatalf("Start after Close: %v", err)
	}
	p.Close() // twice is fine
}

// pacerThreads counts this process's threads named vigil-pacer.
func pacerThreads(t *testing.T) int { return len(testenv.ThreadsNamed(t, "vigil-pacer")) }

// waitThreads waits until want threads are named vigil-pacer.
func waitThreads(t *testing.T, want int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); pacerThreads(t) != want; {
		if time.Now().After(deadline) {
			t.Fatalf("%d threads named vigil-pacer, want %d", pacerThreads(t), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The thread starts on the first Start (a pacer that is never used, as
// for an instance at one-second adverts, has none; Renew and Stop do not
// start it), names itself, so an operator's top -H tells it from Go's,
// and Close ends it.
func TestPacerThreadStartsOnFirstUse(t *testing.T) {
	ln, fd, name := loopback(t)
	before := pacerThreads(t)
	p := newPacer(t, fd)
	if p.Renew(time.Minute) {
		t.Fatal("Renew of a new pacer reported it sending")
	}
	p.Stop()
	time.Sleep(50 * time.Millisecond)
	if n := pacerThreads(t); n != before {
		t.Fatalf("%d threads named vigil-pacer before the first Start, want %d", n, before)
	}
	if err := p.Start(Schedule{Datagrams: []Datagram{{Name: name, Payload: []byte("x")}}, Interval: 10 * time.Millisecond, Lease: time.Minute}); err != nil {
		t.Fatal(err)
	}
	waitThreads(t, before+1)
	if recv(t, ln, 5*time.Second) == nil {
		t.Fatal("nothing sent")
	}
	p.Stop()
	p.Close()
	waitThreads(t, before)

	// Closed without ever starting: nothing to join.
	p2 := newPacer(t, fd)
	p2.Close()
	if n := pacerThreads(t); n != before {
		t.Fatalf("%d threads after closing an unused pacer", n)
	}
}

// threadClass returns the scheduling policy and real-time priority of
// the one thread named vigil-pacer.
func threadClass(t *testing.T) (policy, prio int) {
	t.Helper()
	tids := testenv.ThreadsNamed(t, "vigil-pacer")
	if len(tids) != 1 {
		t.Fatalf("%d threads named vigil-pacer, want 1", len(tids))
	}
	a, err := unix.SchedGetAttr(tids[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	return int(a.Policy), int(a.Priority)
}

// The thread runs at the real-time class asked for, set before it starts
// or while it runs, and back in the normal class at priority 0.
func TestPacerRealtime(t *testing.T) {
	testenv.NeedRoot(t, "CAP_SYS_NICE for a real-time thread")
	ln, fd, name := loopback(t)
	p := newPacer(t, fd)
	if err := p.SetRealtime(RR, 10); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(Schedule{Datagrams: []Datagram{{Name: name, Payload: []byte("x")}}, Interval: 10 * time.Millisecond, Lease: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if recv(t, ln, 5*time.Second) == nil {
		t.Fatal("nothing sent")
	}
	if pol, prio := threadClass(t); pol != unix.SCHED_RR || prio != 10 {
		t.Fatalf("SetRealtime(RR, 10) before Start: the thread has policy %d priority %d", pol, prio)
	}
	for _, tc := range []struct {
		policy       Policy
		prio         int
		wantPolicy   int
		wantPriority int
	}{
		{FIFO, 20, unix.SCHED_FIFO, 20},
		{FIFO, 0, unix.SCHED_NORMAL, 0},
		{RR, 99, unix.SCHED_RR, 99},
	} {
		if err := p.SetRealtime(tc.policy, tc.prio); err != nil {
			t.Fatalf("SetRealtime(%v, %d) on a running thread: %v", tc.policy, tc.prio, err)
		}
		if pol, prio := threadClass(t); pol != tc.wantPolicy || prio != tc.wantPriority {
			t.Fatalf("after SetRealtime(%v, %d): policy %d priority %d", tc.policy, tc.prio, pol, prio)
		}
	}
	if recv(t, ln, 5*time.Second) == nil {
		t.Fatal("nothing sent at real-time priority")
	}
}

// Without CAP_SYS_NICE (dropped here from the calling thread, which the
// pacer's threads inherit) SetRealtime fails with EPERM, before and
// after the thread starts, and the thread is left as it was. Bad
// arguments are refused.
func TestPacerRealtimeRefused(t *testing.T) {
	ln, fd, name := loopback(t)
	p := newPacer(t, fd)
	for _, bad := range []struct {
		policy Policy
		prio   int
	}{{RR, 100}, {FIFO, -1}, {Policy(0), 5}, {Policy(7), 1}} {
		if err := p.SetRealtime(bad.policy, bad.prio); err == nil {
			t.Errorf("SetRealtime(%v, %d) accepted", bad.policy, bad.prio)
		}
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_RTPRIO, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= 99 {
		t.Skipf("RLIMIT_RTPRIO %d allows every real-time priority without CAP_SYS_NICE", lim.Cur)
	}
	prio := int(lim.Cur) + 1
	withoutSysNice := func(f func()) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			// This thread's capabilities change: it ends with the
			// goroutine (never unlocked), so no other goroutine runs on it.
			runtime.LockOSThread()
			hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
			var data [2]unix.CapUserData
			if err := unix.Capget(&hdr, &data[0]); err != nil {
				t.Error(err)
				return
			}
			data[0].Effective &^= 1 << unix.CAP_SYS_NICE
			if err := unix.Capset(&hdr, &data[0]); err != nil {
				t.Error(err)
				return
			}
			f()
		}()
		<-done
	}
	check := func(when string, err error) {
		t.Helper()
		if !errors.Is(err, unix.EPERM) {
			t.Fatalf("SetRealtime(RR, %d) %s without CAP_SYS_NICE: %v, want EPERM", prio, when, err)
		}
	}
	var err error
	withoutSysNice(func() { err = p.SetRealtime(RR, prio) })
	check("before Start", err)
	if err := p.Start(Schedule{Datagrams: []Datagram{{Name: name, Payload: []byte("x")}}, Interval: 10 * time.Millisecond, Lease: time.Minute}); err != nil {
		t.Fatalf("Start after a refused SetRealtime: %v", err)
	}
	if recv(t, ln, 5*time.Second) == nil {
		t.Fatal("nothing sent")
	}
	withoutSysNice(func() { err = p.SetRealtime(FIFO, prio) })
	check("while running", err)
	if pol, pr := threadClass(t); pol != unix.SCHED_NORMAL || pr != 0 {
		t.Fatalf("after refusals the thread has policy %d priority %d", pol, pr)
	}
}
