package pacer

import (
	"fmt"
	"net"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/vigil-lb/vigil/internal/testenv"
	"golang.org/x/sys/unix"
)

// stampedReceiver is a loopback UDP socket whose datagrams carry the
// kernel's receive time (SO_TIMESTAMPNS). On loopback that is taken
// inside the sender's sendmsg, so it says when the sender woke and sent,
// whatever the receiving goroutine's own delays.
type stampedReceiver struct {
	conn *net.UDPConn
	fd   int
	name []byte
}

func newStampedReceiver(tb testing.TB) *stampedReceiver {
	tb.Helper()
	ln, fd, name := loopback(tb)
	rc, err := ln.SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(s uintptr) {
		serr = unix.SetsockoptInt(int(s), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		tb.Fatalf("SO_TIMESTAMPNS: %v %v", err, serr)
	}
	return &stampedReceiver{conn: ln, fd: fd, name: name}
}

// stamps reads n datagrams and returns their receive times (Unix ns).
func (r *stampedReceiver) stamps(n int) ([]int64, error) {
	buf := make([]byte, 64)
	oob := make([]byte, 128)
	out := make([]int64, 0, n)
	for len(out) < n {
		r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, oobn, _, _, err := r.conn.ReadMsgUDP(buf, oob)
		if err != nil {
			return out, err
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return out, err
		}
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS {
				ts := *(*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
				out = append(out, ts.Nano())
			}
		}
	}
	return out, nil
}

// lateness replays the pacer's schedule over the receive stamps: each
// send is due an interval after the previous deadline, or, when it was
// more than an interval late, an interval after it was sent (the pacer
// then starts a new schedule rather than send a burst; the Go loop below
// does the same).
func lateness(start int64, iv time.Duration, stamps []int64) []time.Duration {
	next := start + int64(iv)
	out := make([]time.Duration, len(stamps))
	for i, s := range stamps {
		out[i] = time.Duration(s - next)
		next += int64(iv)
		if s >= next {
			next = s + int64(iv)
		}
	}
	return out
}

// goTimerSends keeps the schedule with a Go timer, as the election's
// advert timer does without the pacer, sending one datagram per wake.
func goTimerSends(fd int, to []byte, start time.Time, iv time.Duration, n int) error {
	sa := &unix.SockaddrInet4{Port: int(to[2])<<8 | int(to[3])}
	copy(sa.Addr[:], to[4:8])
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	next := start.Add(iv)
	for i := 0; i < n; i++ {
		t.Reset(time.Until(next))
		<-t.C
		now := time.Now()
		if err := unix.Sendto(fd, []byte("timer"), unix.MSG_DONTWAIT, sa); err != nil {
			return err
		}
		next = next.Add(iv)
		if !now.Before(next) {
			next = now.Add(iv)
		}
	}
	return nil
}

// load runs what the process does besides keeping the schedule until
// stop is closed.
func load(kind string, stop <-chan struct{}, wg *sync.WaitGroup) {
	run := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					f()
				}
			}
		}()
	}
	garbage := func() {
		// A 64 MB live heap replaced 4 KB at a time: the collector runs
		// back to back, marking a heap worth marking.
		live := make([][]byte, 1<<14)
		i := 0
		run(func() {
			for j := 0; j < 256; j++ {
				live[i] = make([]byte, 4096)
				i = (i + 1) % len(live)
			}
		})
	}
	switch kind {
	case "gc":
		garbage()
	case "busy":
		garbage()
		for i := 0; i < runtime.GOMAXPROCS(0); i++ {
			x := uint64(i)
			run(func() {
				for j := 0; j < 1e6; j++ {
					x = x*6364136223846793005 + 1442695040888963407
				}
			})
		}
	}
}

// The replay follows the pacer: late sends keep the schedule, a send
// more than an interval late starts a new one.
func TestLatenessReplaysSchedule(t *testing.T) {
	ms := func(n int64) int64 { return n * int64(time.Millisecond) }
	got := lateness(0, 10*time.Millisecond, []int64{ms(10), ms(23), ms(30), ms(55), ms(65)})
	want := []time.Duration{0, 3 * time.Millisecond, 0, 15 * time.Millisecond, 0}
	if !slices.Equal(got, want) {
		t.Fatalf("lateness %v, want %v", got, want)
	}
}

// gcPauses reads the histogram of the collector's stop-the-world pauses.
func gcPauses() *metrics.Float64Histogram {
	s := []metrics.Sample{{Name: "/sched/pauses/total/gc:seconds"}}
	metrics.Read(s)
	return s[0].Value.Float64Histogram()
}

// longestPause is the upper bound of the highest bucket that gained
// pauses between two readings, and how many pauses there were.
func longestPause(before, after *metrics.Float64Histogram) (time.Duration, uint64) {
	var longest time.Duration
	var n uint64
	for i := range after.Counts {
		if d := after.Counts[i] - before.Counts[i]; d > 0 {
			n += d
			longest = time.Duration(after.Buckets[i+1] * float64(time.Second))
		}
	}
	return longest, n
}

func percentiles(d []time.Duration) (p50, p99, max time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.50), at(0.99), s[len(s)-1]
}

// BenchmarkWakeLateness measures how late the pacer's thread and a Go
// timer wake for a 10 ms schedule, both at once in this process, each
// send timed by the kernel: b.N sends each, reported as p50/p99/max in
// µs. Loads: idle, gc (a goroutine churning a 64 MB live heap), busy (gc
// plus GOMAXPROCS goroutines spinning), busy-rt (busy, the pacer at
// SCHED_RR 1; needs root). See docs/pacer.md for the
// figures and the command.
func BenchmarkWakeLateness(b *testing.B) {
	const iv = 10 * time.Millisecond
	for _, tc := range []struct {
		name, load string
		rt         bool // the pacer at SCHED_RR priority 1
	}{{"idle", "idle", false}, {"gc", "gc", false}, {"busy", "busy", false}, {"busy-rt", "busy", true}} {
		b.Run(tc.name, func(b *testing.B) {
			paced, timed := newStampedReceiver(b), newStampedReceiver(b)
			p := newPacer(b, paced.fd)
			if tc.rt {
				testenv.NeedRoot(b, "CAP_SYS_NICE for a real-time thread")
				if err := p.SetRealtime(RR, 1); err != nil {
					b.Fatal(err)
				}
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			load(tc.load, stop, &wg)
			defer func() { close(stop); wg.Wait() }()
			time.Sleep(100 * time.Millisecond) // let the load settle in

			pausesBefore := gcPauses()
			b.ResetTimer()
			start := time.Now()
			if err := p.Start(Schedule{Datagrams: []Datagram{{Name: paced.name, Payload: []byte("pacer")}},
				Interval: iv, First: iv, Lease: time.Duration(b.N)*iv + time.Minute}); err != nil {
				b.Fatal(err)
			}
			sendErr := make(chan error, 1)
			go func() { sendErr <- goTimerSends(timed.fd, timed.name, start, iv, b.N) }()
			var ps, ts []int64
			var perr, terr error
			var rwg sync.WaitGroup
			rwg.Add(2)
			go func() { defer rwg.Done(); ps, perr = paced.stamps(b.N) }()
			go func() { defer rwg.Done(); ts, terr = timed.stamps(b.N) }()
			rwg.Wait()
			p.Stop()
			b.StopTimer()
			pause, pauses := longestPause(pausesBefore, gcPauses())
			if err := <-sendErr; err != nil || perr != nil || terr != nil {
				b.Fatalf("send %v, receive (pacer) %v, receive (timer) %v", err, perr, terr)
			}
			t0 := start.UnixNano()
			pl, tl := lateness(t0, iv, ps), lateness(t0, iv, ts)
			us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
			var line string
			for _, r := range []struct {
				who string
				l   []time.Duration
			}{{"pacer", pl}, {"timer", tl}} {
				p50, p99, max := percentiles(r.l)
				b.ReportMetric(us(p50), r.who+"-p50-µs")
				b.ReportMetric(us(p99), r.who+"-p99-µs")
				b.ReportMetric(us(max), r.who+"-max-µs")
				line += fmt.Sprintf("  %s p50 %v p99 %v max %v", r.who, p50, p99, max)
			}
			b.ReportMetric(us(pause), "gc-pause-max-µs")
			b.Logf("%s, %d sends each at %v:%s; %d GC pauses, the longest under %v", tc.name, b.N, iv, line, pauses, pause)
		})
	}
}
