package pacer

import (
	"errors"
	"fmt"
	"time"
)

// ErrUnavailable is returned by New in a build without cgo.
var ErrUnavailable = errors.New("pacer: not available in this build (needs cgo)")

// ErrClosed is returned by Start on a closed pacer.
var ErrClosed = errors.New("pacer: closed")

// Datagram is one destination and the bytes sent to it.
type Datagram struct {
	// Name is the destination as a raw socket address
	// (unix.RawSockaddrInet4 or unix.RawSockaddrInet6, as bytes).
	Name    []byte
	Payload []byte
}

// Schedule says what to send and when.
type Schedule struct {
	Datagrams []Datagram
	// Control is the ancillary data sent with every datagram (for
	// example IP_PKTINFO); may be empty.
	Control  []byte
	Interval time.Duration // between sends, > 0
	First    time.Duration // from Start to the first send, >= 0
	Lease    time.Duration // sending stops this long after Start or Renew, > 0
}

func (s Schedule) check() error {
	switch {
	case len(s.Datagrams) == 0:
		return errors.New("pacer: nothing to send")
	case s.Interval <= 0:
		return errors.New("pacer: interval must be positive")
	case s.First < 0:
		return errors.New("pacer: negative first delay")
	case s.Lease <= 0:
		return errors.New("pacer: lease must be positive")
	}
	for _, d := range s.Datagrams {
		if len(d.Name) == 0 || len(d.Payload) == 0 {
			return errors.New("pacer: datagram without destination or payload")
		}
	}
	return nil
}

// Stats counts what the thread did since New.
type Stats struct {
	Sent      uint64 // datagrams sent
	Errors    uint64 // sends that failed
	LastErrno int    // errno of the last failed send, 0 if none
}

// Policy is a real-time scheduling policy for the thread (sched(7)).
type Policy int

const (
	FIFO Policy = iota + 1 // SCHED_FIFO
	RR                     // SCHED_RR, keepalived's for vrrp_rt_priority
)

// policies are the valid policies, by name.
var policies = map[Policy]string{FIFO: "SCHED_FIFO", RR: "SCHED_RR"}

func (p Policy) String() string {
	if name, ok := policies[p]; ok {
		return name
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// checkRealtime validates SetRealtime's arguments; priority 0 (off)
// takes any policy.
func checkRealtime(policy Policy, priority int) error {
	switch {
	case priority == 0:
		return nil
	case priority < 0 || priority > 99:
		return fmt.Errorf("pacer: real-time priority %d not in 1..99 (0 is off)", priority)
	case policies[policy] == "":
		return fmt.Errorf("pacer: %s is not a real-time policy", policy)
	}
	return nil
}
