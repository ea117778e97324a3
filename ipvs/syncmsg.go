package ipvs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// The kernel's connection-sync protocol, version 1 (net.ipv4.vs.sync_version
// = 1, the default), as net/netfilter/ipvs/ip_vs_sync.c sends and receives
// it: a UDP datagram to the sync group holding a header and up to 255
// connections. A backup sync daemon inserts every connection of a message
// whose sync id matches its own (or when its own is 0).

// Sync protocol constants (ip_vs_sync.c).
const (
	SyncProtoVersion = 1    // SYNC_PROTO_VER, the header's version byte
	DefaultSyncPort  = 8848 // IP_VS_SYNC_PORT

	syncHeaderLen  = 8  // struct ip_vs_sync_mesg
	syncConnV4Len  = 36 // struct ip_vs_sync_v4
	syncConnV6Len  = 72 // struct ip_vs_sync_v6
	syncTypeInet6  = 1  // STYPE_F_INET6, the only type bit
	syncVerShift   = 12 // SVER_SHIFT: ver_size's top 4 bits are a version (0)
	syncSizeMask   = 0x0fff
	syncMaxConns   = 255   // nr_conns is a u8
	syncMaxMsgLen  = 65535 // size is a be16
	syncMaxConnLen = syncSizeMask
)

// DefaultSyncGroup is the kernel's IPv4 sync group (IP_VS_SYNC_GROUP).
var DefaultSyncGroup = netip.AddrFrom4([4]byte{224, 0, 0, 81})

// Connection flags (IP_VS_CONN_F_*, linux/ip_vs.h). A backup keeps only the
// bits of ConnFlagsBackupMask from a sync message and adds IP_VS_CONN_F_SYNC.
const (
	ConnFlagFwdMask  = 0x0007 // the forwarding method (a Forwarding value)
	ConnFlagSync     = 0x0020 // entry created by sync (set by the receiver)
	ConnFlagNoOutput = 0x0080
	ConnFlagInactive = 0x0100 // not established: counted in InActConn
	ConnFlagOutSeq   = 0x0200
	ConnFlagInSeq    = 0x0400
	ConnFlagNoCport  = 0x0800
	ConnFlagTemplate = 0x1000 // a persistence template, not a connection

	ConnFlagsBackupMask = ConnFlagFwdMask | ConnFlagNoOutput | ConnFlagInactive |
		ConnFlagOutSeq | ConnFlagInSeq | ConnFlagNoCport | ConnFlagTemplate
)

// SyncConn is one connection of a sync message (struct ip_vs_sync_v4 or
// ip_vs_sync_v6) as plain data. Client, Virtual and Dest are all IPv4 (the
// v4 form) or all IPv6 (the v6 form).
type SyncConn struct {
	// Protocol is the IP protocol number: TCP, UDP, SCTP, or 0 (IPPROTO_IP)
	// for the persistence template of a firewall-mark service, whose
	// Virtual address then holds the mark.
	Protocol Protocol
	// Flags are IP_VS_CONN_F_* bits (ConnFlag*): the forwarding method,
	// ConnFlagInactive, ConnFlagTemplate ...
	Flags uint32
	// State is the protocol's state number (TCP 1 = ESTABLISHED, SCTP 8 =
	// ESTABLISHED, UDP always 0; templates 0 = NONE, 1 = ASSURED).
	State   uint16
	Client  netip.AddrPort
	Virtual netip.AddrPort
	Dest    netip.AddrPort
	FWMark  uint32
	// Timeout in seconds; 0 lets the receiver use its own timeout for the
	// state (for templates, 3 minutes).
	Timeout uint32
	// Options are the optional parameters that follow the fixed part, as on
	// the wire (type, length, data; sequence adjustments, persistence
	// engine data). Unmarshal keeps them so that a message re-encodes to
	// the same bytes; vigil sends none.
	Options []byte
}

// IPv6 reports whether c is encoded in the v6 form.
func (c *SyncConn) IPv6() bool { return c.Client.Addr().Is6() }

// wireLen is the encoded size of c, without alignment padding.
func (c *SyncConn) wireLen() int {
	if c.IPv6() {
		return syncConnV6Len + len(c.Options)
	}
	return syncConnV4Len + len(c.Options)
}

func (c *SyncConn) validate() error {
	v6 := c.IPv6()
	for _, a := range []netip.AddrPort{c.Client, c.Virtual, c.Dest} {
		if !a.IsValid() {
			return fmt.Errorf("sync connection %v: invalid address", a)
		}
		if a.Addr().Zone() != "" {
			return fmt.Errorf("sync connection %v: zones are not sent", a)
		}
		if a.Addr().Is6() != v6 {
			return fmt.Errorf("sync connection %s -> %s -> %s: mixed address families", c.Client, c.Virtual, c.Dest)
		}
	}
	if c.Protocol > 255 {
		return fmt.Errorf("sync connection %s: protocol %d does not fit a byte", c.Client, c.Protocol)
	}
	if c.wireLen() > syncMaxConnLen {
		return fmt.Errorf("sync connection %s: %d bytes of options is too many", c.Client, len(c.Options))
	}
	return checkSyncOptions(c.Options)
}

// checkSyncOptions checks the framing of optional parameters as the
// receiver does (ip_vs_proc_sync_conn): each has a type, a non-zero length
// and that many bytes.
func checkSyncOptions(b []byte) error {
	for len(b) > 0 {
		if len(b) < 2 {
			return errors.New("truncated option header")
		}
		l := int(b[1])
		if l == 0 || 2+l > len(b) {
			return fmt.Errorf("option type %d: bad length %d (%d bytes left)", b[0], l, len(b)-2)
		}
		b = b[2+l:]
	}
	return nil
}

// appendConn appends the wire form of c (ip_vs_sync_conn in
// ip_vs_sync.c); all fields are big-endian.
func (c *SyncConn) appendConn(b []byte) []byte {
	typ := byte(0)
	if c.IPv6() {
		typ = syncTypeInet6
	}
	b = append(b, typ, byte(c.Protocol))                      // 0 type, 1 protocol
	b = binary.BigEndian.AppendUint16(b, uint16(c.wireLen())) // 2 ver_size: version 0, size
	b = binary.BigEndian.AppendUint32(b, c.Flags)             // 4 flags
	b = binary.BigEndian.AppendUint16(b, c.State)             // 8 state
	b = binary.BigEndian.AppendUint16(b, c.Client.Port())     // 10 cport
	b = binary.BigEndian.AppendUint16(b, c.Virtual.Port())    // 12 vport
	b = binary.BigEndian.AppendUint16(b, c.Dest.Port())       // 14 dport
	b = binary.BigEndian.AppendUint32(b, c.FWMark)            // 16 fwmark
	b = binary.BigEndian.AppendUint32(b, c.Timeout)           // 20 timeout (s)
	// 24 caddr, vaddr, daddr: 4 bytes each (v4) or 16 (v6)
	b = appendAddr(b, c.Client.Addr())
	b = appendAddr(b, c.Virtual.Addr())
	b = appendAddr(b, c.Dest.Addr())
	return append(b, c.Options...)
}

func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		return append(b, v[:]...)
	}
	v := a.As16()
	return append(b, v[:]...)
}

// SyncMessage is one sync datagram: the sync id and its connections.
type SyncMessage struct {
	SyncID uint8
	Conns  []SyncConn
}

// Marshal encodes m as one datagram. It fails when the connections do not
// fit one message (255 connections, 65535 bytes) or one is invalid.
func (m SyncMessage) Marshal() ([]byte, error) {
	if len(m.Conns) > syncMaxConns {
		return nil, fmt.Errorf("sync message: %d connections, at most %d fit", len(m.Conns), syncMaxConns)
	}
	b := newSyncHeader(m.SyncID)
	for i := range m.Conns {
		c := &m.Conns[i]
		if err := c.validate(); err != nil {
			return nil, err
		}
		b = appendPadded(b, c)
		if len(b) > syncMaxMsgLen {
			return nil, fmt.Errorf("sync message: longer than %d bytes", syncMaxMsgLen)
		}
	}
	finishSyncHeader(b, len(m.Conns))
	return b, nil
}

// newSyncHeader starts a message (struct ip_vs_sync_mesg): reserved 0,
// syncid, size, nr_conns, version, spare 0; size and nr_conns are filled
// in by finishSyncHeader.
func newSyncHeader(syncID uint8) []byte {
	return []byte{
		0,      // 0 reserved: 0 tells it from a version 0 message
		syncID, // 1 syncid
		0, 0,   // 2 size (be16), the whole datagram
		0,                // 4 nr_conns
		SyncProtoVersion, // 5 version
		0, 0,             // 6 spare
	}
}

func finishSyncHeader(b []byte, n int) {
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	b[4] = byte(n)
}

// appendPadded appends c after the zero padding that aligns it to 4 bytes
// (the sender pads before a connection, never after the last one).
func appendPadded(b []byte, c *SyncConn) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return c.appendConn(b)
}

// MarshalSyncMessages encodes conns in as few datagrams of at most maxLen
// bytes (the sync_maxlen of the receiving daemon) as they fit, in order.
func MarshalSyncMessages(syncID uint8, conns []SyncConn, maxLen int) ([][]byte, error) {
	w, err := newSyncWriter(syncID, maxLen)
	if err != nil {
		return nil, err
	}
	for i := range conns {
		if err := w.add(&conns[i]); err != nil {
			return nil, err
		}
	}
	return w.finish(), nil
}

// syncWriter packs connections into messages as they come.
type syncWriter struct {
	syncID uint8
	maxLen int
	cur    []byte
	n      int
	out    [][]byte
}

func newSyncWriter(syncID uint8, maxLen int) (*syncWriter, error) {
	if maxLen < syncHeaderLen+syncConnV4Len || maxLen > syncMaxMsgLen {
		return nil, fmt.Errorf("sync message length %d out of range %d..%d", maxLen, syncHeaderLen+syncConnV4Len, syncMaxMsgLen)
	}
	return &syncWriter{syncID: syncID, maxLen: maxLen}, nil
}

func (w *syncWriter) add(c *SyncConn) error {
	if err := c.validate(); err != nil {
		return err
	}
	if w.cur != nil {
		pad := (4 - len(w.cur)%4) % 4
		if w.n == syncMaxConns || len(w.cur)+pad+c.wireLen() > w.maxLen {
			w.flush()
		}
	}
	if w.cur == nil {
		if syncHeaderLen+c.wireLen() > w.maxLen {
			return fmt.Errorf("sync connection %s: %d bytes do not fit a %d-byte message", c.Client, c.wireLen(), w.maxLen)
		}
		w.cur = make([]byte, 0, w.maxLen)
		w.cur = append(w.cur, newSyncHeader(w.syncID)...)
	}
	w.cur = appendPadded(w.cur, c)
	w.n++
	return nil
}

func (w *syncWriter) flush() {
	if w.cur == nil {
		return
	}
	finishSyncHeader(w.cur, w.n)
	w.out = append(w.out, w.cur)
	w.cur, w.n = nil, 0
}

func (w *syncWriter) finish() [][]byte {
	w.flush()
	return w.out
}

// UnmarshalSyncMessage decodes one version 1 datagram, checking it as the
// receiving kernel does (ip_vs_process_message) and more strictly: no
// bytes after the last connection and zero padding, so that every message
// it accepts re-encodes to the same bytes. It never panics.
func UnmarshalSyncMessage(b []byte) (SyncMessage, error) {
	var m SyncMessage
	if len(b) < syncHeaderLen {
		return m, fmt.Errorf("sync message: %d bytes, shorter than the header", len(b))
	}
	if size := int(binary.BigEndian.Uint16(b[2:4])); size != len(b) {
		return m, fmt.Errorf("sync message: size field %d, datagram %d bytes", size, len(b))
	}
	if b[0] != 0 || b[5] != SyncProtoVersion || b[6] != 0 || b[7] != 0 {
		return m, fmt.Errorf("sync message: not version %d (reserved %d, version %d)", SyncProtoVersion, b[0], int8(b[5]))
	}
	m.SyncID = b[1]
	n := int(b[4])
	m.Conns = make([]SyncConn, 0, n)
	p := syncHeaderLen
	for i := 0; i < n; i++ {
		if i > 0 {
			for ; p%4 != 0; p++ {
				if p >= len(b) || b[p] != 0 {
					return m, fmt.Errorf("sync message: connection %d: bad padding", i)
				}
			}
		}
		c, size, err := parseSyncConn(b[p:])
		if err != nil {
			return m, fmt.Errorf("sync message: connection %d at offset %d: %w", i, p, err)
		}
		m.Conns = append(m.Conns, c)
		p += size
	}
	if p != len(b) {
		return m, fmt.Errorf("sync message: %d bytes after %d connections", len(b)-p, n)
	}
	return m, nil
}

// parseSyncConn decodes the connection at the start of b and returns its
// size (without padding).
func parseSyncConn(b []byte) (SyncConn, int, error) {
	var c SyncConn
	if len(b) < syncConnV4Len {
		return c, 0, fmt.Errorf("%d bytes left, a connection needs %d", len(b), syncConnV4Len)
	}
	vs := binary.BigEndian.Uint16(b[2:4])
	if v := vs >> syncVerShift; v != 0 {
		return c, 0, fmt.Errorf("connection version %d", v)
	}
	size := int(vs & syncSizeMask)
	fixed := syncConnV4Len
	switch b[0] {
	case 0:
	case syncTypeInet6:
		fixed = syncConnV6Len
	default:
		return c, 0, fmt.Errorf("unknown type %#x", b[0])
	}
	if size < fixed || size > len(b) {
		return c, 0, fmt.Errorf("size %d (fixed part %d, %d bytes left)", size, fixed, len(b))
	}
	c.Protocol = Protocol(b[1])
	c.Flags = binary.BigEndian.Uint32(b[4:8])
	c.State = binary.BigEndian.Uint16(b[8:10])
	cport := binary.BigEndian.Uint16(b[10:12])
	vport := binary.BigEndian.Uint16(b[12:14])
	dport := binary.BigEndian.Uint16(b[14:16])
	c.FWMark = binary.BigEndian.Uint32(b[16:20])
	c.Timeout = binary.BigEndian.Uint32(b[20:24])
	var ca, va, da netip.Addr
	if fixed == syncConnV6Len {
		ca = netip.AddrFrom16([16]byte(b[24:40]))
		va = netip.AddrFrom16([16]byte(b[40:56]))
		da = netip.AddrFrom16([16]byte(b[56:72]))
	} else {
		ca = netip.AddrFrom4([4]byte(b[24:28]))
		va = netip.AddrFrom4([4]byte(b[28:32]))
		da = netip.AddrFrom4([4]byte(b[32:36]))
	}
	c.Client = netip.AddrPortFrom(ca, cport)
	c.Virtual = netip.AddrPortFrom(va, vport)
	c.Dest = netip.AddrPortFrom(da, dport)
	if size > fixed {
		c.Options = append([]byte(nil), b[fixed:size]...)
		if err := checkSyncOptions(c.Options); err != nil {
			return c, 0, err
		}
	}
	return c, size, nil
}
