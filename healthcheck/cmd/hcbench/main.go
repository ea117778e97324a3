// Command hcbench measures vigil's health checker at scale; it is the
// vigil side of scripts/bench-healthcheck.sh, which runs HAProxy on the
// same servers for comparison.
//
//	hcbench serve -port 18080
//	    one listener on 0.0.0.0:PORT answers every 127.x.y.z address, so
//	    one process stands for thousands of real servers; it answers any
//	    HTTP request with 200 and closes.
//	hcbench check -kind tcp|http -n 10000 -port 18080 -interval 1s -warmup 10s -window 30s
//	    runs healthcheck.Scheduler over n servers, then prints the CPU
//	    seconds it used per 1,000 checks in the window (getrusage), its
//	    peak RSS (VmHWM) and how late checks started (p50, p99, max).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vigil-lb/vigil/healthcheck"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hcbench serve|check [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "check":
		err = check(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (want serve or check)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hcbench:", err)
		os.Exit(1)
	}
}

// Addr is the i-th benchmark server: 127.10.0.1, ..., 250 per /24.
func Addr(i int, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, byte(10 + i/62500), byte(i / 250 % 250), byte(i%250 + 1)}), port)
}

// serve answers HTTP on one thread with epoll, like a lean server: the
// request arrives with the handshake's last ACK, so it is usually queued
// when accept returns and a request costs accept, read, write and close;
// a connection whose request is not there yet waits in the epoll set. A
// cheap single-threaded server leaves the machine's CPU to the checkers
// being measured and never competes with them with many threads.
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	port := fs.Int("port", 18080, "TCP port on 0.0.0.0")
	fs.Parse(args)
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Port: *port}); err != nil {
		return fmt.Errorf("bind 0.0.0.0:%d: %w", *port, err)
	}
	if err := unix.Listen(lfd, 65535); err != nil {
		return err
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, lfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(lfd)}); err != nil {
		return err
	}
	var requests atomic.Int64
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		fmt.Printf("served %d requests\n", requests.Load())
		os.Exit(0)
	}()
	reply := []byte("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n")
	waiting := map[int][]byte{} // connections whose request is incomplete
	buf := make([]byte, 4096)
	// serveConn reads what is there; true when fd is finished (closed).
	serveConn := func(fd int, have []byte) bool {
		for {
			n, err := unix.Read(fd, buf)
			if err == unix.EAGAIN {
				waiting[fd] = have
				return false
			}
			if err != nil || n == 0 {
				break
			}
			have = append(have, buf[:n]...)
			if bytes.Contains(have, []byte("\r\n\r\n")) {
				requests.Add(1)
				unix.Write(fd, reply)
				break
			}
		}
		delete(waiting, fd)
		unix.Close(fd)
		return true
	}
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(ep, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return err
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd != lfd {
				serveConn(fd, waiting[fd])
				continue
			}
			for range 256 {
				cfd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
				if err != nil {
					break
				}
				if !serveConn(cfd, nil) {
					unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, cfd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(cfd)})
				}
			}
		}
	}
}

// histogram of durations: 10 µs buckets up to 100 ms, then 1 ms buckets
// up to 10 s.
type histogram struct {
	b     [20_001]int64
	n     int64
	max   time.Duration
	early int64
}

func bucket(d time.Duration) int {
	if d < 100*time.Millisecond {
		return int(d / (10 * time.Microsecond))
	}
	return min(10_000+int((d-100*time.Millisecond)/time.Millisecond), 20_000)
}

func bucketTop(i int) time.Duration {
	if i < 10_000 {
		return time.Duration(i+1) * 10 * time.Microsecond
	}
	return 100*time.Millisecond + time.Duration(i-10_000+1)*time.Millisecond
}

func (h *histogram) add(d time.Duration) {
	if d < 0 {
		h.early++
		d = 0
	}
	h.b[bucket(d)]++
	h.n++
	if d > h.max {
		h.max = d
	}
}

func (h *histogram) quantile(q float64) time.Duration {
	want := int64(q * float64(h.n))
	var sum int64
	for i, c := range h.b {
		sum += c
		if sum > want {
			return min(bucketTop(i), h.max)
		}
	}
	return h.max
}

// cpu is the user and system CPU time this process has used.
func cpu() (user, sys time.Duration) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// runDelay is the time this process's threads have waited on a run queue
// (schedstat): CPU starvation by other processes shows here.
func runDelay() time.Duration {
	ents, _ := os.ReadDir("/proc/self/task")
	var sum time.Duration
	for _, e := range ents {
		b, err := os.ReadFile("/proc/self/task/" + e.Name() + "/schedstat")
		if err != nil {
			continue
		}
		var run, wait int64
		fmt.Sscan(string(b), &run, &wait)
		sum += time.Duration(wait)
	}
	return sum
}

func vmHWM() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
		}
	}
	return "?"
}

func check(args []string) error {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	kind := fs.String("kind", "tcp", "tcp or http")
	n := fs.Int("n", 10000, "number of servers")
	port := fs.Int("port", 18080, "server port")
	interval := fs.Duration("interval", time.Second, "check interval")
	warmup := fs.Duration("warmup", 10*time.Second, "run this long before measuring")
	window := fs.Duration("window", 30*time.Second, "measure for this long")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the window to this file")
	verify := fs.Duration("verify", 0, "after the window, watch this long for an outage of the server (stopped by the caller) and report when all servers went down and came back")
	fs.Parse(args)

	specs := make([]healthcheck.Spec, *n)
	for i := range specs {
		specs[i] = healthcheck.Spec{Kind: healthcheck.Kind(*kind), Target: Addr(i, uint16(*port)),
			Interval: *interval, Timeout: *interval, Rise: 2, Fall: 3}
	}
	var (
		mu        sync.Mutex // guards the window's counters
		verifying atomic.Bool
		firstFail atomic.Int64 // unix ns
		firstPass atomic.Int64
		allDown   atomic.Int64
		measuring atomic.Bool
		hist      histogram // lateness
		lat       histogram // check latency
		checks    int64
		fails     int64
		lastFail  string
	)
	s := healthcheck.NewScheduler(healthcheck.Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Observe: func(o healthcheck.Observation) { // on the scheduler goroutine
			if verifying.Load() {
				if !o.Result.Up {
					firstFail.CompareAndSwap(0, time.Now().UnixNano())
				} else if allDown.Load() != 0 {
					firstPass.CompareAndSwap(0, time.Now().UnixNano())
				}
			}
			if !measuring.Load() {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			checks++
			hist.add(o.Started.Sub(o.Scheduled))
			lat.add(o.Result.Latency)
			if !o.Result.Up {
				fails++
				lastFail = o.Result.Reason
			}
		},
	})
	if err := s.Set(specs); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var ups atomic.Int64
	go func() {
		for c := range s.Changes() {
			if c.Up {
				ups.Add(1)
			} else if !c.Initial {
				ups.Add(-1)
			}
		}
	}()
	time.Sleep(*warmup)
	u0, s0 := cpu()
	w0 := runDelay()
	start := time.Now()
	measuring.Store(true)
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer f.Close()
	}
	time.Sleep(*window)
	measuring.Store(false)
	if *profile != "" {
		pprof.StopCPUProfile()
	}
	u1, s1 := cpu()
	waited := runDelay() - w0
	elapsed := time.Since(start)
	usedCPU := u1 - u0 + s1 - s0
	mu.Lock()
	defer mu.Unlock()
	perK := usedCPU.Seconds() / float64(checks) * 1000
	fmt.Printf("kind=%s servers=%d interval=%v window=%.1fs\n", *kind, *n, *interval, elapsed.Seconds())
	fmt.Printf("checks=%d rate=%.0f/s failed=%d up=%d\n", checks, float64(checks)/elapsed.Seconds(), fails, ups.Load())
	if lastFail != "" {
		fmt.Printf("last_failure=%q\n", lastFail)
	}
	fmt.Printf("cpu_seconds=%.3f cpu_per_1000=%.4f core_share=%.1f%% user=%.0f%%\n", usedCPU.Seconds(), perK, 100*usedCPU.Seconds()/elapsed.Seconds(), 100*(u1-u0).Seconds()/usedCPU.Seconds())
	fmt.Printf("peak_rss=%s\n", vmHWM())
	fmt.Printf("waited_for_cpu=%.1fs (run queue delay of all threads in the window; high means the machine was busy)\n", waited.Seconds())
	fmt.Printf("lateness_p50=%v lateness_p99=%v lateness_max=%v\n", hist.quantile(0.5), hist.quantile(0.99), hist.max.Round(time.Microsecond))
	fmt.Printf("check_latency_p50=%v check_latency_p99=%v\n", lat.quantile(0.5), lat.quantile(0.99))
	if *verify > 0 {
		verifyOutage(*verify, int64(*n), &ups, &verifying, &firstFail, &firstPass, &allDown)
	}
	cancel()
	<-done
	return nil
}

// verifyOutage watches the up count while the caller stops the server and
// starts it again: proof that the checks reach the server.
func verifyOutage(d time.Duration, n int64, ups *atomic.Int64, verifying *atomic.Bool, firstFail, firstPass, allDown *atomic.Int64) {
	verifying.Store(true)
	end := time.Now().Add(d)
	var allUp time.Time
	for time.Now().Before(end) {
		u := ups.Load()
		if u == 0 {
			allDown.CompareAndSwap(0, time.Now().UnixNano())
		}
		if allDown.Load() != 0 && u == n {
			allUp = time.Now()
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	at := func(ns int64) time.Time { return time.Unix(0, ns) }
	switch {
	case firstFail.Load() == 0:
		fmt.Println("verify: no check failed (was the server stopped?)")
	case allDown.Load() == 0:
		fmt.Printf("verify: checks failed but not all %d servers went down within %v\n", n, d)
	case allUp.IsZero():
		fmt.Printf("verify: all %d servers down %.2fs after the first failed check; not all back within %v\n", n, at(allDown.Load()).Sub(at(firstFail.Load())).Seconds(), d)
	default:
		fmt.Printf("verify: all %d servers down %.2fs after the first failed check, all up %.2fs after the first passing one\n",
			n, at(allDown.Load()).Sub(at(firstFail.Load())).Seconds(), allUp.Sub(at(firstPass.Load())).Seconds())
	}
}
