package ipvs

import (
	"encoding/binary"
	"testing"
)

// decodeOp splits an encoded message into command, seq and the nested
// service and destination attributes (type -> value).
func decodeOp(t *testing.T, b []byte) (cmd uint8, seq uint32, svc, dst map[uint16][]byte) {
	t.Helper()
	if len(b) < 20 || int(binary.NativeEndian.Uint32(b[0:4])) != len(b) {
		t.Fatalf("bad message length %d", len(b))
	}
	seq = binary.NativeEndian.Uint32(b[8:12])
	cmd = b[16]
	attrs, err := parseAttrs(b[20:])
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range attrs {
		inner, err := parseAttrs(a.value)
		if err != nil {
			t.Fatal(err)
		}
		m := map[uint16][]byte{}
		for _, f := range inner {
			m[f.typ] = f.value
		}
		switch a.typ {
		case ipvsCmdAttrService:
			svc = m
		case ipvsCmdAttrDest:
			dst = m
		}
	}
	return
}

func TestEncodeOp(t *testing.T) {
	s := &Service{Key: AddrKey(TCP, ap("10.99.0.100:80")), Scheduler: "wrr", Timeout: 300, Netmask: 24, Flags: FlagOnePacket}
	cmd, seq, svc, dst := decodeOp(t, encodeOp(42, 7, &op{kind: opCreateService, key: s.Key, svc: s}))
	if cmd != ipvsCmdNewService || seq != 7 || dst != nil {
		t.Fatalf("cmd %d seq %d dst %v", cmd, seq, dst)
	}
	if binary.NativeEndian.Uint16(svc[svcAttrAF]) != uint16(IPv4) || binary.NativeEndian.Uint16(svc[svcAttrProtocol]) != uint16(TCP) ||
		string(svc[svcAttrAddr]) != string([]byte{10, 99, 0, 100}) || binary.BigEndian.Uint16(svc[svcAttrPort]) != 80 {
		t.Fatalf("service key attrs %v", svc)
	}
	if string(svc[svcAttrSchedName]) != "wrr\x00" || binary.NativeEndian.Uint32(svc[svcAttrFlags]) != FlagOnePacket|FlagPersistent ||
		binary.NativeEndian.Uint32(svc[svcAttrFlags][4:]) != 0xffffffff || binary.NativeEndian.Uint32(svc[svcAttrTimeout]) != 300 ||
		string(svc[svcAttrNetmask]) != string([]byte{255, 255, 255, 0}) {
		t.Fatalf("service settings attrs %v", svc)
	}

	// Destination ops carry the service key only.
	mark := MarkKey(IPv6, 9)
	d := &Destination{Addr: ip("fd99::3"), Port: 0, Weight: 5, Forwarding: Tunnel, UpperThreshold: 10, LowerThreshold: 2}
	cmd, _, svc, dst = decodeOp(t, encodeOp(42, 8, &op{kind: opUpdateDest, key: mark, dest: d}))
	if cmd != ipvsCmdSetDest || binary.NativeEndian.Uint32(svc[svcAttrFWMark]) != 9 || svc[svcAttrSchedName] != nil || svc[svcAttrAddr] != nil {
		t.Fatalf("dest op service attrs %v", svc)
	}
	if len(dst[destAttrAddr]) != 16 || binary.NativeEndian.Uint32(dst[destAttrWeight]) != 5 || binary.NativeEndian.Uint32(dst[destAttrFwdMethod]) != uint32(Tunnel) ||
		binary.NativeEndian.Uint32(dst[destAttrUThresh]) != 10 || binary.NativeEndian.Uint32(dst[destAttrLThresh]) != 2 {
		t.Fatalf("dest attrs %v", dst)
	}
	cmd, _, _, dst = decodeOp(t, encodeOp(42, 9, &op{kind: opDeleteDest, key: mark, dkey: d.Key()}))
	if cmd != ipvsCmdDelDest || len(dst[destAttrAddr]) != 16 {
		t.Fatalf("delete dest: cmd %d attrs %v", cmd, dst)
	}
	cmd, _, svc, _ = decodeOp(t, encodeOp(42, 10, &op{kind: opDeleteService, key: s.Key}))
	if cmd != ipvsCmdDelService || svc[svcAttrSchedName] != nil {
		t.Fatalf("delete service: cmd %d attrs %v", cmd, svc)
	}
}
