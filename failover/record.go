package failover

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A VIP record is the list of VIPs a director may hold, kept in a small
// file (one VIP a line, as VIP.String writes it) under a runtime
// directory such as /run/vigil. A director that crashed while master
// leaves its VIPs on the interfaces; the next start removes them before
// it reads the site file, so a site file that no longer loads (or a
// crash loop under systemd) cannot leave a dead director answering for
// the VIPs while the peer holds them too.

// maxRecordSize bounds what RemoveRecorded reads: a record lists at most
// a few thousand VIPs.
const maxRecordSize = 1 << 20

// WriteRecord replaces the record at path with vips, atomically (a crash
// mid-write leaves the old record or the new one, never half of one).
func WriteRecord(path string, vips []VIP) error {
	var b bytes.Buffer
	b.WriteString("# VIPs this director may hold; removed at its next start (vigil run)\n")
	for _, v := range vips {
		b.WriteString(v.String())
		b.WriteByte('\n')
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write VIP record %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write VIP record %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // gone after the rename; cleans up on error
	if _, err := tmp.Write(b.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("write VIP record %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write VIP record %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write VIP record %s: %w", path, err)
	}
	return nil
}

// ReadRecord parses the record at path; a missing file is an empty record.
func ReadRecord(path string) ([]VIP, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read VIP record: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRecordSize+1))
	if err != nil {
		return nil, fmt.Errorf("read VIP record %s: %w", path, err)
	}
	if len(b) > maxRecordSize {
		return nil, fmt.Errorf("read VIP record %s: larger than %d bytes, not ours", path, maxRecordSize)
	}
	var vips []VIP
	for i, line := range strings.Split(string(b), "\n") {
		text := strings.TrimSpace(line)
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		v, err := parseVIPLine(text)
		if err != nil {
			return vips, fmt.Errorf("read VIP record %s:%d: %w", path, i+1, err)
		}
		vips = append(vips, v)
	}
	return vips, nil
}

// parseVIPLine reads "PREFIX dev IFACE [label LABEL]".
func parseVIPLine(s string) (VIP, error) {
	f := strings.Fields(s)
	if len(f) != 3 && len(f) != 5 || f[1] != "dev" || (len(f) == 5 && f[3] != "label") {
		return VIP{}, fmt.Errorf("%q: want \"PREFIX dev IFACE [label LABEL]\"", s)
	}
	p, err := netip.ParsePrefix(f[0])
	if err != nil {
		return VIP{}, fmt.Errorf("%q: %w", s, err)
	}
	v := VIP{Prefix: p, Interface: f[2]}
	if len(f) == 5 {
		v.Label = f[4]
	}
	return v, v.Validate()
}

// RemoveRecorded removes, in ns (nil: ours), every VIP of the record at
// path that is present on its interface, and returns those it removed.
// A record with a bad line still removes the VIPs of the lines before it.
func RemoveRecorded(path string, ns *netns.NsHandle, log *slog.Logger) ([]VIP, error) {
	vips, rerr := ReadRecord(path)
	if len(vips) == 0 {
		return nil, rerr
	}
	if log == nil {
		log = slog.Default()
	}
	var (
		h   *netlink.Handle
		err error
	)
	if ns != nil {
		h, err = netlink.NewHandleAt(*ns, unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, errors.Join(rerr, fmt.Errorf("remove recorded VIPs: netlink handle: %w", err))
	}
	defer h.Close()
	removed, err := newVIPSet(h, vips, log).release("removed stale VIP recorded by an earlier run")
	return removed, errors.Join(rerr, err)
}
