//go:build cgo && linux

package pacer

/*
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>

struct pacer {
	pthread_mutex_t mu;
	pthread_cond_t cond; // CLOCK_MONOTONIC
	pthread_t thread;
	int started;         // thread is running (created on the first start)
	int policy, prio;    // real-time class of the thread; prio 0: inherit (off)
	int fd;
	int quit;
	int active;
	int n;
	struct msghdr *msgs; // one malloc block: headers, iovecs, names, payloads, control
	int64_t interval;    // ns
	struct timespec next, lease;
	uint64_t sent, errors;
	int last_errno;
};

static void ts_add(struct timespec *t, int64_t ns) {
	t->tv_sec += ns / 1000000000;
	t->tv_nsec += ns % 1000000000;
	if (t->tv_nsec >= 1000000000) { t->tv_nsec -= 1000000000; t->tv_sec++; }
}

static int ts_before(const struct timespec *a, const struct timespec *b) {
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void *pacer_run(void *arg) {
	struct pacer *p = arg;
	// Signals for the process are for Go's threads to take.
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	// Named so that top -H and /proc show which thread sends the adverts.
	prctl(PR_SET_NAME, "vigil-pacer", 0, 0, 0);
	pthread_mutex_lock(&p->mu);
	while (!p->quit) {
		if (!p->active) {
			pthread_cond_wait(&p->cond, &p->mu);
			continue;
		}
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (!ts_before(&now, &p->lease)) {
			p->active = 0;
			continue;
		}
		if (!ts_before(&now, &p->next)) {
			// Sent under the lock: once pacer_stop returns, nothing more leaves.
			for (int i = 0; i < p->n; i++) {
				ssize_t r;
				do {
					r = sendmsg(p->fd, &p->msgs[i], MSG_DONTWAIT);
				} while (r < 0 && errno == EINTR);
				if (r < 0) {
					p->errors++;
					p->last_errno = errno;
				} else {
					p->sent++;
				}
			}
			// Keep to the schedule; more than an interval late (the host
			// was stalled), start a new one rather than send a burst.
			ts_add(&p->next, p->interval);
			if (!ts_before(&now, &p->next)) {
				p->next = now;
				ts_add(&p->next, p->interval);
			}
			continue;
		}
		struct timespec wake = ts_before(&p->next, &p->lease) ? p->next : p->lease;
		pthread_cond_timedwait(&p->cond, &p->mu, &wake);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static struct pacer *pacer_new(int fd) {
	struct pacer *p = calloc(1, sizeof *p);
	if (!p) return NULL;
	p->fd = fd;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&p->mu, NULL);
	return p;
}

// spawn creates a thread running fn with the given real-time class (prio
// 0: inherited, i.e. the creating Go thread's SCHED_OTHER). With an
// explicit class pthread_create itself fails (EPERM without CAP_SYS_NICE
// or an RLIMIT_RTPRIO that allows prio), so no thread ever runs at a class
// it was not given.
static int spawn(pthread_t *t, void *(*fn)(void *), void *arg, int policy, int prio) {
	pthread_attr_t ta;
	pthread_attr_init(&ta);
	pthread_attr_setstacksize(&ta, 64 * 1024);
	if (prio > 0) {
		struct sched_param sp = { .sched_priority = prio };
		pthread_attr_setinheritsched(&ta, PTHREAD_EXPLICIT_SCHED);
		pthread_attr_setschedpolicy(&ta, policy);
		pthread_attr_setschedparam(&ta, &sp);
	}
	int err = pthread_create(t, &ta, fn, arg);
	pthread_attr_destroy(&ta);
	return err;
}

static void *noop(void *arg) { return arg; }

// pacer_set_class sets the real-time class of the thread: at once if it
// runs, else when it is created, after checking with a thread that ends
// at once that this process may create one of that class.
static int pacer_set_class(struct pacer *p, int policy, int prio) {
	pthread_mutex_lock(&p->mu);
	int err = 0;
	if (p->started) {
		struct sched_param sp = { .sched_priority = prio };
		err = pthread_setschedparam(p->thread, prio > 0 ? policy : SCHED_OTHER, &sp);
	} else if (prio > 0) {
		pthread_t t;
		if (!(err = spawn(&t, noop, NULL, policy, prio))) pthread_join(t, NULL);
	}
	if (!err) { p->policy = policy; p->prio = prio; }
	pthread_mutex_unlock(&p->mu);
	return err;
}

// pacer_start copies everything it is given (the caller's memory is Go's).
static int pacer_start(struct pacer *p, int n, const uint8_t *names, const int *namelens,
                       const uint8_t *payloads, const int *paylens, const uint8_t *control, int controllen,
                       int64_t interval, int64_t first, int64_t lease) {
	size_t size = n * (sizeof(struct msghdr) + sizeof(struct iovec)) + controllen;
	size_t nb = 0, pb = 0;
	for (int i = 0; i < n; i++) { nb += namelens[i]; pb += paylens[i]; }
	size += nb + pb;
	struct msghdr *m = calloc(1, size);
	if (!m) return ENOMEM;
	struct iovec *iov = (struct iovec *)(m + n);
	uint8_t *nd = (uint8_t *)(iov + n), *pd = nd + nb, *cd = pd + pb;
	memcpy(nd, names, nb);
	memcpy(pd, payloads, pb);
	if (controllen) memcpy(cd, control, controllen);
	for (int i = 0; i < n; i++) {
		iov[i].iov_base = pd;
		iov[i].iov_len = paylens[i];
		m[i].msg_name = nd;
		m[i].msg_namelen = namelens[i];
		m[i].msg_iov = &iov[i];
		m[i].msg_iovlen = 1;
		m[i].msg_control = controllen ? cd : NULL;
		m[i].msg_controllen = controllen;
		nd += namelens[i];
		pd += paylens[i];
	}
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&p->mu);
	if (!p->started) {
		// The thread starts on first use: an instance that is never a
		// paced master never has one.
		int err = spawn(&p->thread, pacer_run, p, p->policy, p->prio);
		if (err) {
			pthread_mutex_unlock(&p->mu);
			free(m);
			return err;
		}
		p->started = 1;
	}
	free(p->msgs);
	p->msgs = m;
	p->n = n;
	p->interval = interval;
	p->next = now;
	ts_add(&p->next, first);
	p->lease = now;
	ts_add(&p->lease, lease);
	p->active = 1;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

static int pacer_renew(struct pacer *p, int64_t lease) {
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&p->mu);
	int ok = p->active;
	if (ok) {
		p->lease = now;
		ts_add(&p->lease, lease);
	}
	pthread_mutex_unlock(&p->mu);
	return ok;
}

static void pacer_stop(struct pacer *p) {
	pthread_mutex_lock(&p->mu);
	p->active = 0;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->mu);
}

static void pacer_stats(struct pacer *p, uint64_t *sent, uint64_t *errors, int *last_errno) {
	pthread_mutex_lock(&p->mu);
	*sent = p->sent;
	*errors = p->errors;
	*last_errno = p->last_errno;
	pthread_mutex_unlock(&p->mu);
}

static void pacer_free(struct pacer *p) {
	pthread_mutex_lock(&p->mu);
	p->quit = 1;
	p->active = 0;
	pthread_cond_signal(&p->cond);
	int started = p->started;
	pthread_mutex_unlock(&p->mu);
	if (started) pthread_join(p->thread, NULL);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->mu);
	free(p->msgs);
	free(p);
}
*/
import "C"

import (
	"fmt"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Pacer is one sending thread, started by the first Start. Its methods
// are safe for concurrent use.
type Pacer struct {
	mu sync.Mutex // guards p against Close
	p  *C.struct_pacer
}

// Available says whether New can make a pacer in this build.
func Available() bool { return true }

// New makes a pacer that will send on fd. No thread runs until the first
// Start. fd belongs to the caller and must stay open until Close returns.
func New(fd int) (*Pacer, error) {
	p := C.pacer_new(C.int(fd))
	if p == nil {
		return nil, fmt.Errorf("pacer: new: %w", syscall.ENOMEM)
	}
	return &Pacer{p: p}, nil
}

// SetRealtime runs the thread in a real-time scheduling class (as
// keepalived's vrrp_rt_priority does its process), so that a busy machine
// does not delay an advert: policy FIFO or RR at priority 1..99, or
// priority 0 for the normal class. Before the thread exists it checks,
// with a thread that ends at once, that the class can be had, so a
// missing CAP_SYS_NICE is an error now, not at the first Start.
func (p *Pacer) SetRealtime(policy Policy, priority int) error {
	var cpol C.int
	if err := checkRealtime(policy, priority); err != nil {
		return err
	}
	switch policy {
	case FIFO:
		cpol = C.SCHED_FIFO
	case RR:
		cpol = C.SCHED_RR
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.p == nil {
		return ErrClosed
	}
	if e := C.pacer_set_class(p.p, cpol, C.int(priority)); e != 0 {
		return fmt.Errorf("pacer: real-time %s priority %d: %w (needs CAP_SYS_NICE)", policy, priority, syscall.Errno(e))
	}
	return nil
}

// Start replaces what is sent and restarts the schedule and the lease,
// starting the thread if it is not running.
func (p *Pacer) Start(s Schedule) error {
	if err := s.check(); err != nil {
		return err
	}
	var names, payloads []byte
	namelens := make([]C.int, len(s.Datagrams))
	paylens := make([]C.int, len(s.Datagrams))
	for i, d := range s.Datagrams {
		names = append(names, d.Name...)
		payloads = append(payloads, d.Payload...)
		namelens[i], paylens[i] = C.int(len(d.Name)), C.int(len(d.Payload))
	}
	var ctl *C.uint8_t
	if len(s.Control) > 0 {
		ctl = (*C.uint8_t)(unsafe.Pointer(&s.Control[0]))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.p == nil {
		return ErrClosed
	}
	if e := C.pacer_start(p.p, C.int(len(s.Datagrams)),
		(*C.uint8_t)(unsafe.Pointer(&names[0])), &namelens[0],
		(*C.uint8_t)(unsafe.Pointer(&payloads[0])), &paylens[0], ctl, C.int(len(s.Control)),
		C.int64_t(s.Interval), C.int64_t(s.First), C.int64_t(s.Lease)); e != 0 {
		return fmt.Errorf("pacer: start: %w", syscall.Errno(e))
	}
	return nil
}

// Renew extends the lease to lease from now without touching the
// schedule. It returns false when the pacer is not sending (never
// started, stopped, or the lease had already run out); it never starts
// the thread.
func (p *Pacer) Renew(lease time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.p != nil && C.pacer_renew(p.p, C.int64_t(lease)) != 0
}

// Stop stops sending. When it returns, no further datagram leaves.
func (p *Pacer) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.p != nil {
		C.pacer_stop(p.p)
	}
}

// Stats returns the counters.
func (p *Pacer) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.p == nil {
		return Stats{}
	}
	var sent, errs C.uint64_t
	var errno C.int
	C.pacer_stats(p.p, &sent, &errs, &errno)
	return Stats{Sent: uint64(sent), Errors: uint64(errs), LastErrno: int(errno)}
}

// Close stops the thread, if it was started, and waits for it to end.
func (p *Pacer) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.p != nil {
		C.pacer_free(p.p)
		p.p = nil
	}
}
