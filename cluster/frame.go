package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Wire format of the user messages this package sends over memberlist
// (memberlist itself adds framing, the label, the CRC and encryption):
//
//	[0]    magic 'V' (0x56)
//	[1]    format version (1)
//	[2]    kind: 1 = topic message, 2 = state records
//	[3]    n = length of the sender's node name (1..255)
//	[4..]  sender's node name (n bytes)
//	[.]    a = length of the sender's address (0, 4 or 16)
//	[..]   sender's address (a bytes)
//	kind 1: [8] sender's epoch (its start time, unix ns, big endian)
//	        [8] sequence number of the message within that epoch
//	        [.] t = topic length (1..255), topic (t bytes), payload (rest)
//	kind 2: JSON array of state records (rest)
const (
	frameMagic   = 0x56
	frameVersion = 1
)

type frameKind uint8

const (
	kindTopic frameKind = 1
	kindState frameKind = 2
)

// frame is one decoded user message.
type frame struct {
	Kind    frameKind
	From    Peer
	Topic   string // kindTopic only
	Epoch   uint64 // kindTopic only: sender's start time, for replay checks
	Seq     uint64 // kindTopic only: sender's message counter
	Payload []byte // topic payload or JSON state records
}

var errFrame = errors.New("malformed cluster frame")

// MarshalBinary encodes f.
func (f frame) MarshalBinary() ([]byte, error) {
	if f.Kind != kindTopic && f.Kind != kindState {
		return nil, fmt.Errorf("encode frame: unknown kind %d", f.Kind)
	}
	if n := len(f.From.Name); n == 0 || n > 255 {
		return nil, fmt.Errorf("encode frame: sender name must be 1..255 bytes, got %d", n)
	}
	var addr []byte
	if f.From.Addr.IsValid() {
		addr = f.From.Addr.AsSlice()
	}
	size := 4 + len(f.From.Name) + 1 + len(addr) + len(f.Payload)
	if f.Kind == kindTopic {
		if n := len(f.Topic); n == 0 || n > 255 {
			return nil, fmt.Errorf("encode frame: topic must be 1..255 bytes, got %d", n)
		}
		size += 16 + 1 + len(f.Topic)
	}
	b := make([]byte, 0, size)
	b = append(b, frameMagic, frameVersion, byte(f.Kind), byte(len(f.From.Name)))
	b = append(b, f.From.Name...)
	b = append(b, byte(len(addr)))
	b = append(b, addr...)
	if f.Kind == kindTopic {
		b = binary.BigEndian.AppendUint64(b, f.Epoch)
		b = binary.BigEndian.AppendUint64(b, f.Seq)
		b = append(b, byte(len(f.Topic)))
		b = append(b, f.Topic...)
	}
	b = append(b, f.Payload...)
	return b, nil
}

// UnmarshalBinary decodes b into f. The payload aliases b.
func (f *frame) UnmarshalBinary(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("%w: %d bytes", errFrame, len(b))
	}
	if b[0] != frameMagic {
		return fmt.Errorf("%w: bad magic 0x%02x", errFrame, b[0])
	}
	if b[1] != frameVersion {
		return fmt.Errorf("%w: unsupported version %d", errFrame, b[1])
	}
	kind := frameKind(b[2])
	if kind != kindTopic && kind != kindState {
		return fmt.Errorf("%w: unknown kind %d", errFrame, b[2])
	}
	rest := b[3:]
	name, rest, ok := lenPrefixed(rest)
	if !ok || len(name) == 0 {
		return fmt.Errorf("%w: bad sender name", errFrame)
	}
	rawAddr, rest, ok := lenPrefixed(rest)
	if !ok {
		return fmt.Errorf("%w: truncated sender address", errFrame)
	}
	var addr netip.Addr
	switch len(rawAddr) {
	case 0:
	case 4, 16:
		addr, _ = netip.AddrFromSlice(rawAddr)
		addr = addr.Unmap()
	default:
		return fmt.Errorf("%w: sender address of %d bytes", errFrame, len(rawAddr))
	}
	var topic []byte
	var epoch, seq uint64
	if kind == kindTopic {
		if len(rest) < 16 {
			return fmt.Errorf("%w: truncated sequence", errFrame)
		}
		epoch, seq, rest = binary.BigEndian.Uint64(rest), binary.BigEndian.Uint64(rest[8:]), rest[16:]
		topic, rest, ok = lenPrefixed(rest)
		if !ok || len(topic) == 0 {
			return fmt.Errorf("%w: bad topic", errFrame)
		}
	}
	*f = frame{Kind: kind, From: Peer{Name: string(name), Addr: addr}, Topic: string(topic), Epoch: epoch, Seq: seq, Payload: rest}
	return nil
}

// lenPrefixed splits a one-byte length and that many bytes off b.
func lenPrefixed(b []byte) (field, rest []byte, ok bool) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return nil, nil, false
	}
	n := int(b[0])
	return b[1 : 1+n], b[1+n:], true
}
