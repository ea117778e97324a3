package ipvs

import (
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink/nl"
)

// daemonReply builds a GET_DAEMON reply payload as the kernel sends it.
func daemonReply(d SyncDaemon) []byte {
	a := nl.NewRtAttr(attrDaemon, nil)
	a.AddRtAttr(daemonState, nl.Uint32Attr(uint32(d.Role)))
	a.AddRtAttr(daemonMcastIfn, nl.ZeroTerminated(d.Interface))
	a.AddRtAttr(daemonSyncID, nl.Uint32Attr(uint32(d.SyncID)))
	a.AddRtAttr(daemonSyncMaxLen, nl.Uint16Attr(d.MaxLen))
	a.AddRtAttr(daemonMcastPort, nl.Uint16Attr(d.Port))
	a.AddRtAttr(daemonMcastTTL, nl.Uint8Attr(d.TTL))
	if d.Group.Is4() {
		b := d.Group.As4()
		a.AddRtAttr(daemonMcastGroup, b[:])
	} else {
		b := d.Group.As16()
		a.AddRtAttr(daemonMcastGrp6, b[:])
	}
	hdr := (&nl.Genlmsg{Command: cmdGetDaemon, Version: 1}).Serialize()
	return append(append([]byte{}, hdr...), a.Serialize()...)
}

func TestParseDaemonMsg(t *testing.T) {
	for _, want := range []SyncDaemon{
		{Role: SyncMaster, Interface: "eth0", SyncID: 51, MaxLen: 1472, Group: netip.MustParseAddr("224.0.0.81"), Port: 8848, TTL: 1},
		{Role: SyncBackup, Interface: "vlan.100", SyncID: 255, MaxLen: 1452, Group: netip.MustParseAddr("ff02::1:2"), Port: 9000, TTL: 3},
	} {
		got, err := parseDaemonMsg(daemonReply(want))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != want {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	}
	if _, err := parseDaemonMsg([]byte{1}); err == nil {
		t.Fatal("short message accepted")
	}
}

func TestSyncDaemonValidate(t *testing.T) {
	for _, d := range []SyncDaemon{
		{Role: 3, Interface: "eth0"},
		{Role: SyncMaster},
		{Role: SyncMaster, Interface: "a-very-long-interface-name"},
		{Role: SyncMaster, Interface: "eth0", Group: netip.MustParseAddr("10.0.0.1")},
	} {
		if err := d.validate(); err == nil {
			t.Errorf("%+v accepted", d)
		}
	}
}

func FuzzParseDaemonMsg(f *testing.F) {
	f.Add(daemonReply(SyncDaemon{Role: SyncMaster, Interface: "eth0", SyncID: 1, Group: netip.MustParseAddr("224.0.0.81")}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ds, err := parseDaemonMsg(b)
		if err == nil {
			for _, d := range ds {
				if d.Role == 0 {
					t.Fatalf("daemon without role accepted: %+v", d)
				}
			}
		}
	})
}
