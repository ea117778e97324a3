package ipvs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"syscall"
	"time"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The Kernel backend sends a pass's writes as many IPVS generic netlink
// messages per sendmsg (the kernel runs them one by one, in order, and
// acknowledges each), instead of one request and one wait per write as
// moby/ipvs and ipvsadm do. The attributes are the ones moby/ipvs sends.

const (
	ipvsCmdNewService = 1
	ipvsCmdSetService = 2
	ipvsCmdDelService = 3
	ipvsCmdNewDest    = 5
	ipvsCmdSetDest    = 6
	ipvsCmdDelDest    = 7

	ipvsCmdAttrService = 1
	ipvsCmdAttrDest    = 2

	svcAttrAF        = 1
	svcAttrProtocol  = 2
	svcAttrAddr      = 3
	svcAttrPort      = 4
	svcAttrFWMark    = 5
	svcAttrSchedName = 6
	svcAttrFlags     = 7
	svcAttrTimeout   = 8
	svcAttrNetmask   = 9

	destAttrAddr      = 1
	destAttrPort      = 2
	destAttrFwdMethod = 3
	destAttrWeight    = 4
	destAttrUThresh   = 5
	destAttrLThresh   = 6

	batchBytes = 32 << 10 // per sendmsg, well below the socket buffer
)

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

// serviceAttr encodes a service: the key only, or with settings (full).
func serviceAttr(k ServiceKey, s *Service) *nl.RtAttr {
	a := nl.NewRtAttr(ipvsCmdAttrService, nil)
	a.AddRtAttr(svcAttrAF, nl.Uint16Attr(uint16(k.Family)))
	if k.FWMark != 0 {
		a.AddRtAttr(svcAttrFWMark, nl.Uint32Attr(k.FWMark))
	} else {
		a.AddRtAttr(svcAttrProtocol, nl.Uint16Attr(uint16(k.Protocol)))
		a.AddRtAttr(svcAttrAddr, k.Addr.AsSlice())
		a.AddRtAttr(svcAttrPort, be16(k.Port))
	}
	if s != nil {
		a.AddRtAttr(svcAttrSchedName, nl.ZeroTerminated(s.Scheduler))
		flags := make([]byte, 8)
		binary.NativeEndian.PutUint32(flags[0:], s.normFlags())
		binary.NativeEndian.PutUint32(flags[4:], 0xffffffff)
		a.AddRtAttr(svcAttrFlags, flags)
		a.AddRtAttr(svcAttrTimeout, nl.Uint32Attr(s.Timeout))
		a.AddRtAttr(svcAttrNetmask, nl.Uint32Attr(s.kernelNetmask()))
	}
	return a
}

func destAttr(d *Destination) *nl.RtAttr {
	a := nl.NewRtAttr(ipvsCmdAttrDest, nil)
	a.AddRtAttr(destAttrAddr, d.Addr.AsSlice())
	a.AddRtAttr(destAttrPort, be16(d.Port))
	a.AddRtAttr(destAttrFwdMethod, nl.Uint32Attr(uint32(d.Forwarding)))
	a.AddRtAttr(destAttrWeight, nl.Uint32Attr(uint32(d.Weight)))
	a.AddRtAttr(destAttrUThresh, nl.Uint32Attr(d.UpperThreshold))
	a.AddRtAttr(destAttrLThresh, nl.Uint32Attr(d.LowerThreshold))
	return a
}

// encodeOp renders one op as a complete netlink message with seq.
func encodeOp(family uint16, seq uint32, o *op) []byte {
	var cmd uint8
	var attrs []nl.NetlinkRequestData
	switch o.kind {
	case opCreateService, opUpdateService:
		cmd = ipvsCmdNewService
		if o.kind == opUpdateService {
			cmd = ipvsCmdSetService
		}
		attrs = append(attrs, serviceAttr(o.key, o.svc))
	case opDeleteService:
		cmd = ipvsCmdDelService
		attrs = append(attrs, serviceAttr(o.key, nil))
	case opCreateDest, opUpdateDest:
		cmd = ipvsCmdNewDest
		if o.kind == opUpdateDest {
			cmd = ipvsCmdSetDest
		}
		attrs = append(attrs, serviceAttr(o.key, nil), destAttr(o.dest))
	case opDeleteDest:
		cmd = ipvsCmdDelDest
		d := Destination{Addr: o.dkey.Addr, Port: o.dkey.Port}
		attrs = append(attrs, serviceAttr(o.key, nil), destAttr(&d))
	}
	req := nl.NewNetlinkRequest(int(family), unix.NLM_F_ACK)
	req.Seq = seq
	req.AddData(&nl.Genlmsg{Command: cmd, Version: 1})
	for _, a := range attrs {
		req.AddData(a)
	}
	return req.Serialize()
}

// batchSock is a blocking generic netlink socket in the backend's netns.
type batchSock struct {
	fd   int
	seq  uint32
	rbuf []byte
}

func openBatchSock(path string) (*batchSock, error) {
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	// A goroutine of its own: if the thread cannot be switched back to its
	// namespace it stays locked and the runtime discards it on exit.
	go func() {
		runtime.LockOSThread()
		if path != "" {
			orig, err := netns.Get()
			if err != nil {
				runtime.UnlockOSThread()
				ch <- result{-1, err}
				return
			}
			defer orig.Close()
			target, err := netns.GetFromPath(path)
			if err != nil {
				runtime.UnlockOSThread()
				ch <- result{-1, err}
				return
			}
			defer target.Close()
			if err := netns.Set(target); err != nil {
				runtime.UnlockOSThread()
				ch <- result{-1, err}
				return
			}
			fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
			ch <- result{fd, err}
			return
		}
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
		runtime.UnlockOSThread()
		ch <- result{fd, err}
	}()
	r := <-ch
	if r.err != nil {
		return nil, r.err
	}
	fd := r.fd
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// Short receive timeout: the loop checks the call deadline between reads.
	tv := unix.Timeval{Usec: 200000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	return &batchSock{fd: fd, seq: uint32(time.Now().UnixNano()), rbuf: make([]byte, 1<<16)}, nil
}

func (b *batchSock) close() { unix.Close(b.fd) }

var errBatchTimeout = errors.New("no acknowledgement from the kernel in time")

// applyBatch implements batcher. Each chunk of messages gets CallTimeout
// for its acknowledgements; on expiry the socket is replaced and the
// unacknowledged ops fail (the next pass re-reads and retries).
func (k *Kernel) applyBatch(ctx context.Context, ops []op) []error {
	k.mu.Lock()
	defer k.mu.Unlock()
	errs := make([]error, len(ops))
	fail := func(from int, err error) {
		for i := from; i < len(ops); i++ {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
	if k.bsock == nil {
		s, err := openBatchSock(k.opts.Netns)
		if err != nil {
			fail(0, fmt.Errorf("open generic netlink socket: %w", err))
			return errs
		}
		k.bsock = s
	}
	s := k.bsock
	buf := make([]byte, 0, batchBytes+1024)
	for start := 0; start < len(ops); {
		if err := ctx.Err(); err != nil {
			fail(start, err)
			return errs
		}
		buf = buf[:0]
		first := s.seq + 1
		end := start
		for end < len(ops) && len(buf) < batchBytes {
			s.seq++
			buf = append(buf, encodeOp(k.familyID, s.seq, &ops[end])...)
			end++
		}
		if err := unix.Sendto(s.fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			fail(start, fmt.Errorf("send netlink batch: %w", err))
			return errs
		}
		pending := end - start
		done := make([]bool, pending)
		deadline := time.Now().Add(k.opts.CallTimeout)
		for pending > 0 {
			n, _, err := unix.Recvfrom(s.fd, s.rbuf, 0)
			if err == unix.EAGAIN || err == unix.EINTR {
				if time.Now().After(deadline) || ctx.Err() != nil {
					s.close()
					k.bsock = nil
					k.log.Warn("ipvs netlink batch timed out; socket recreated", "pending", pending, "timeout", k.opts.CallTimeout)
					for i := range done {
						if !done[i] {
							errs[start+i] = fmt.Errorf("%w (within %v)", errBatchTimeout, k.opts.CallTimeout)
						}
					}
					fail(end, errBatchTimeout)
					return errs
				}
				continue
			}
			if err != nil {
				s.close()
				k.bsock = nil
				fail(start, fmt.Errorf("receive netlink acknowledgements: %w", err))
				return errs
			}
			msgs, err := syscall.ParseNetlinkMessage(s.rbuf[:n])
			if err != nil {
				continue // malformed datagram: ignore, the deadline bounds the wait
			}
			for _, m := range msgs {
				if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
					continue
				}
				off := m.Header.Seq - first // wraps safely in uint32
				if off >= uint32(end-start) || done[off] {
					continue
				}
				idx := int(off)
				done[idx] = true
				pending--
				if e := int32(binary.NativeEndian.Uint32(m.Data[:4])); e != 0 {
					errs[start+idx] = syscall.Errno(-e)
				}
			}
		}
		start = end
	}
	return errs
}
