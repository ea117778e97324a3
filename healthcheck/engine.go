package healthcheck

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/vigil-lb/vigil/internal/clock"
	"golang.org/x/sys/unix"
)

// engineChecker is a Checker that can also run on the scheduler's event
// loop, as a state machine on the engine's epoll set with no goroutine of
// its own. It is optional, as vrrp's advertPacer is for a Transport: the
// scheduler runs a checker on the engine if it implements this, and any
// other Checker (exec, HTTPS, injected ones) on a goroutine of its own,
// bounded like the rest by MaxConcurrent. (A type embedding *TCPChecker
// or *HTTPChecker inherits these methods, and its own Check then never
// runs: the engine runs the embedded check. Embed neither to override
// Check.)
type engineChecker interface {
	Checker
	// engineTarget is where the engine connects; ok is false when this
	// check cannot run there (an HTTPS check, an unknown IPv6 zone), and
	// it then runs on a goroutine.
	engineTarget() (t *sockTarget, ok bool)
	// connected is called when the handshake completes. A check that ends
	// there (TCP) returns its result and done; one that talks (HTTP)
	// returns the conversation to hold.
	connected(start time.Time) (r Result, conv conversation, done bool)
}

// conversation is a request and the judge of its response.
type conversation interface {
	request() []byte
	// respond judges the response so far (all of it when eof); done is
	// false while more bytes are needed.
	respond(start time.Time, resp []byte, eof bool) (r Result, done bool)
	// failed words an I/O error met while doing ("sending the request to").
	failed(start, deadline time.Time, doing string, err error) Result
}

var (
	_ engineChecker = (*TCPChecker)(nil)
	_ engineChecker = (*HTTPChecker)(nil)
	_ conversation  = (*HTTPChecker)(nil)
)

// sockTarget is an address with its sockaddr, built once for the engine.
type sockTarget struct {
	addr   netip.AddrPort
	sa     unix.Sockaddr
	family int
}

// resolve sets t to addr; false if addr has no sockaddr (it is tried
// again next time: an interface named as a zone may appear).
func (t *sockTarget) resolve(addr netip.AddrPort) (*sockTarget, bool) {
	if t.sa == nil || t.addr != addr {
		sa, family, err := sockaddr(addr)
		if err != nil {
			return nil, false
		}
		t.addr, t.sa, t.family = addr, sa, family
	}
	return t, true
}

// engine runs TCP and HTTP checks as small state machines on one epoll
// set, on the scheduler's goroutine: no goroutine, timer or channel per
// check.
//
// Sockets are reused: a check ends with connect(AF_UNSPEC), which resets
// the connection (RST, so no TIME_WAIT anywhere) and leaves the socket
// unconnected, open and still in the epoll set, ready for the next check.
// A TCP check then costs three system calls (setsockopt TCP_QUICKACK,
// connect, disconnect) plus its share of epoll_wait; an HTTP check adds one
// write and one read. The connect result comes from the event flags (no
// getsockopt on success); the request is written as soon as the handshake
// completes, carrying its last ACK. Idle sockets are capped (poolCap), so
// open files stay near the number of checks in flight.
type engine struct {
	epfd      int
	evfd      int // eventfd that wakes epoll_wait from other goroutines
	jobs      []*job
	deadlines jobHeap
	events    []unix.EpollEvent
	free      []*job
	finish    func(j *job, r Result) // the scheduler's completion
	clock     clock.Clock            // the scheduler's: starts, deadlines, latency
	inflight  int
	pool      [2][]int // idle sockets, registered in the epoll set: IPv4, IPv6

	wakeMu sync.RWMutex // wake never writes to a closed (or reused) eventfd
	closed bool
}

// poolCap bounds idle sockets per address family.
const poolCap = 1024

// job is one check in flight on the engine.
type job struct {
	fd       int
	family   int
	pooled   bool // fd is in the epoll set
	state    uint8
	ck       engineChecker
	conv     conversation // once connected, if the check talks
	addr     netip.AddrPort
	start    time.Time
	deadline time.Time
	wrote    int
	buf      []byte
	n        int
	hidx     int

	// The scheduler's bookkeeping, opaque to the engine.
	c         *check
	scheduled time.Time
}

// eventBatch bounds the events handled per epoll_wait, so checks that
// fall due meanwhile start within a few milliseconds even when thousands
// of answers arrive at once.
const eventBatch = 64

const (
	stConnecting uint8 = iota
	stSending
	stReading
)

func newEngine(clk clock.Clock) (*engine, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, fmt.Errorf("epoll_ctl eventfd: %w", err)
	}
	return &engine{epfd: epfd, evfd: evfd, events: make([]unix.EpollEvent, eventBatch), clock: clk}, nil
}

// close fails every job in flight with reason and releases the engine.
func (e *engine) close(reason string) {
	for len(e.deadlines) > 0 {
		j := e.deadlines[0]
		e.done(j, Result{Reason: fmt.Sprintf("%s checking %s", reason, j.addr), Weight: NoWeight})
	}
	for _, p := range e.pool {
		for _, fd := range p {
			unix.Close(fd)
		}
	}
	e.pool = [2][]int{}
	e.wakeMu.Lock()
	e.closed = true
	unix.Close(e.epfd)
	unix.Close(e.evfd)
	e.wakeMu.Unlock()
}

func poolIndex(family int) int {
	if family == unix.AF_INET6 {
		return 1
	}
	return 0
}

// disconnect resets fd's connection (RST if it got that far) and leaves
// the socket unconnected and reusable: connect(2) with AF_UNSPEC.
func disconnect(fd int) error {
	sa := unix.RawSockaddrInet6{Family: unix.AF_UNSPEC}
	_, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	if e != 0 {
		return e
	}
	return nil
}

var one = []byte{1, 0, 0, 0, 0, 0, 0, 0}

// wake interrupts poll; safe from any goroutine, also after close.
func (e *engine) wake() {
	e.wakeMu.RLock()
	if !e.closed {
		unix.Write(e.evfd, one)
	}
	e.wakeMu.RUnlock()
}

func (e *engine) newJob() *job {
	if n := len(e.free); n > 0 {
		j := e.free[n-1]
		e.free = e.free[:n-1]
		return j
	}
	return &job{hidx: -1}
}

// startCheck starts c on the engine at now, if its checker runs there.
func (e *engine) startCheck(c *check, now time.Time) bool {
	ec, ok := c.checker.(engineChecker)
	if !ok {
		return false
	}
	t, ok := ec.engineTarget()
	if !ok {
		return false
	}
	j := e.newJob()
	j.ck, j.addr, j.c, j.scheduled = ec, t.addr, c, c.due
	e.start(j, t.sa, t.family, now, c.spec.Timeout)
	return true
}

// start begins j (ck, addr, c and scheduled filled in).
func (e *engine) start(j *job, sa unix.Sockaddr, family int, now time.Time, timeout time.Duration) {
	j.start = now
	j.deadline = j.start.Add(timeout)
	j.fd, j.family, j.pooled, j.state, j.wrote, j.n = -1, family, false, stConnecting, 0, 0
	e.inflight++
	pool := &e.pool[poolIndex(family)]
	if n := len(*pool); n > 0 {
		j.fd, j.pooled = (*pool)[n-1], true
		*pool = (*pool)[:n-1]
	} else {
		fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			e.done(j, localFailure(j.start, "cannot check %s here: socket: %v", j.addr, err))
			return
		}
		j.fd = fd
	}
	// Delayed ACK (see dial); a disconnect clears it, so set it each time.
	unix.SetsockoptInt(j.fd, unix.IPPROTO_TCP, unix.TCP_QUICKACK, 0)
	err := unix.Connect(j.fd, sa)
	switch err {
	case nil:
		if !e.connected(j) {
			return
		}
	case unix.EINPROGRESS:
	default:
		e.done(j, connectFailure(j.start, j.deadline, j.addr, err))
		return
	}
	if !j.pooled {
		// Added after connect: epoll reports a handshake that completed
		// meanwhile at once. (epoll_wait polls a socket's state as it
		// reports it, so an old readiness of a reused socket never shows.)
		ev := unix.EpollEvent{Events: unix.EPOLLOUT | unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(j.fd)}
		if err := unix.EpollCtl(e.epfd, unix.EPOLL_CTL_ADD, j.fd, &ev); err != nil {
			e.done(j, localFailure(j.start, "cannot check %s here: epoll_ctl: %v", j.addr, err))
			return
		}
		j.pooled = true
	}
	for j.fd >= len(e.jobs) {
		e.jobs = append(e.jobs, make([]*job, len(e.jobs)+64)...)
	}
	e.jobs[j.fd] = j
	e.deadlines.push(j)
	if j.state == stSending {
		e.safely(j, func(j *job) { e.send(j) })
	}
}

// connected moves j on from a completed handshake: it ends a check that
// ends there and reports false, or readies the request.
func (e *engine) connected(j *job) bool {
	r, conv, done := j.ck.connected(j.start)
	if done {
		e.done(j, r)
		return false
	}
	j.conv, j.state = conv, stSending
	return true
}

// nextDeadline is the earliest deadline in flight.
func (e *engine) nextDeadline() (time.Time, bool) {
	if len(e.deadlines) == 0 {
		return time.Time{}, false
	}
	return e.deadlines[0].deadline, true
}

// expire fails the jobs whose deadline has passed.
func (e *engine) expire(now time.Time) {
	for len(e.deadlines) > 0 && !e.deadlines[0].deadline.After(now) {
		j := e.deadlines[0]
		took := roundDur(j.deadline.Sub(j.start))
		switch j.state {
		case stConnecting:
			e.done(j, fail(j.start, "timeout after %v connecting to %s", took, j.addr))
		case stSending:
			e.done(j, fail(j.start, "timeout after %v sending the request to %s", took, j.addr))
		default:
			e.done(j, fail(j.start, "timeout after %v waiting for the response from %s", took, j.addr))
		}
	}
}

// poll waits up to timeout (negative: no limit) for socket events and
// handles them. It returns early when woken.
func (e *engine) poll(timeout time.Duration) error {
	ms := -1
	if timeout >= 0 {
		// Round up: waking before the due time only to sleep again costs a
		// system call; a check starting within a millisecond is on time.
		ms = int((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	n, err := unix.EpollWait(e.epfd, e.events, ms)
	if err != nil {
		if err == unix.EINTR {
			return nil
		}
		return fmt.Errorf("epoll_wait: %w", err)
	}
	for i := 0; i < n; i++ {
		ev := e.events[i]
		fd := int(ev.Fd)
		if fd == e.evfd {
			var b [8]byte
			unix.Read(e.evfd, b[:])
			continue
		}
		if fd >= len(e.jobs) || e.jobs[fd] == nil {
			continue
		}
		e.safely(e.jobs[fd], func(j *job) { e.handle(j, ev.Events) })
	}
	return nil
}

// safely runs f on j; a panic (a bug in a check's code) fails that check
// instead of the whole loop.
func (e *engine) safely(j *job, f func(*job)) {
	defer func() {
		if p := recover(); p != nil && j.fd >= 0 && e.jobs[j.fd] == j {
			e.done(j, fail(j.start, "check panicked: %v", p))
		}
	}()
	f(j)
}

func (e *engine) handle(j *job, ev uint32) {
	switch j.state {
	case stConnecting:
		if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			var err error = errors.New("connection closed")
			if n, gerr := unix.GetsockoptInt(j.fd, unix.SOL_SOCKET, unix.SO_ERROR); gerr == nil && n != 0 {
				err = syscall.Errno(n)
			}
			e.done(j, connectFailure(j.start, j.deadline, j.addr, err))
			return
		}
		if ev&unix.EPOLLOUT == 0 || !e.connected(j) {
			return
		}
		// No read right after the request: the answer cannot be in yet
		// and its arrival brings an EPOLLIN edge. Only something the
		// server sent or did before (a close, a banner) is read now.
		if e.send(j) && ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			e.read(j)
		}
	case stSending:
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 && e.send(j) &&
			ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			e.read(j)
		}
	case stReading:
		if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			e.read(j)
		}
	}
}

// send writes the rest of the request; true when it is all out.
func (e *engine) send(j *job) bool {
	req := j.conv.request()
	for j.wrote < len(req) {
		n, err := unix.Write(j.fd, req[j.wrote:])
		if err == unix.EAGAIN {
			return false
		}
		if err != nil {
			e.done(j, j.conv.failed(j.start, j.deadline, "sending the request to", err))
			return false
		}
		j.wrote += n
	}
	j.state = stReading
	return true
}

// read drains the socket until EAGAIN (edge-triggered: a short read is
// not enough, the FIN may have come with the data) and judges the response.
func (e *engine) read(j *job) {
	for {
		if j.buf == nil {
			j.buf = *bufPool.Get().(*[]byte)
		}
		if j.n == len(j.buf) {
			nb := make([]byte, 2*len(j.buf))
			copy(nb, j.buf[:j.n])
			if old := j.buf; cap(old) == 4096 {
				bufPool.Put(&old)
			}
			j.buf = nb
		}
		n, err := unix.Read(j.fd, j.buf[j.n:])
		switch {
		case err == unix.EAGAIN:
			return
		case err == unix.EINTR:
			continue
		case err != nil:
			e.done(j, j.conv.failed(j.start, j.deadline, "waiting for the response from", err))
			return
		}
		j.n += n
		if r, ok := j.conv.respond(j.start, j.buf[:j.n], n == 0); ok {
			e.done(j, r)
			return
		}
	}
}

// done ends j: closes its socket (RST), frees it and reports r, its
// latency measured on the engine's clock (the clock j started on).
func (e *engine) done(j *job, r Result) {
	r.Latency = e.clock.Now().Sub(j.start)
	if j.hidx >= 0 && j.hidx < len(e.deadlines) && e.deadlines[j.hidx] == j {
		e.deadlines.remove(j.hidx)
	}
	if j.fd >= 0 {
		if j.fd < len(e.jobs) {
			e.jobs[j.fd] = nil
		}
		// Reset the connection; keep the socket for the next check if it
		// got past connecting (a failed connect closes it, to start clean).
		pool := &e.pool[poolIndex(j.family)]
		if j.state != stConnecting || r.Up {
			if disconnect(j.fd) == nil && j.pooled && len(*pool) < poolCap {
				*pool = append(*pool, j.fd)
			} else {
				unix.Close(j.fd)
			}
		} else {
			unix.Close(j.fd)
		}
		j.fd = -1
	}
	if j.buf != nil {
		if cap(j.buf) == 4096 {
			b := j.buf[:4096]
			bufPool.Put(&b)
		}
		j.buf = nil
	}
	e.inflight--
	e.finish(j, r)
	*j = job{hidx: -1}
	e.free = append(e.free, j)
}

// jobHeap orders jobs by deadline.
type jobHeap = timeHeap[*job]

func (j *job) heapKey() time.Time { return j.deadline }
func (j *job) setHeapIndex(i int) { j.hidx = i }
