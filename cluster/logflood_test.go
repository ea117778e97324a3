package cluster

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-lb/vigil/internal/clock"
)

// Zero-length datagrams on the cluster port are a stranger's malformed
// packets: memberlist reports each one, and without a rate limit a flood
// of them became a flood of ERROR lines naming the buffer size as the
// packet size.
func TestZeroLengthPacketFloodLogsBounded(t *testing.T) {
	logs := &logBuffer{}
	// No custom Transport: memberlist's own one logs through our adapter,
	// as in the daemon.
	ch, err := New(Config{
		Site: "www", NodeName: "vs1", Insecure: true,
		BindAddr: netip.MustParseAddr("127.0.0.1"),
		Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ch.LocalAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const packets = 5000
	for i := range packets {
		if _, err := conn.Write(nil); err != nil {
			t.Fatalf("send zero-length datagram %d: %v", i, err)
		}
		if i%200 == 199 {
			time.Sleep(5 * time.Millisecond) // let the reader keep up
		}
	}
	time.Sleep(time.Second) // let memberlist read what the kernel kept
	var lines []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "too short") {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		t.Fatalf("no log line for %d malformed packets:\n%s", packets, logs.String())
	}
	if len(lines) > 2 {
		t.Fatalf("%d log lines for %d zero-length packets, want at most 2; first: %s", len(lines), packets, lines[0])
	}
	l := lines[0]
	if !strings.Contains(l, "level=WARN") || strings.Contains(l, "65536") || !strings.Contains(l, "127.0.0.1:") {
		t.Fatalf("want a WARN naming the sender and not the buffer size, got: %s", l)
	}
}

// A repeated memberlist warning is logged once per window, and the next
// line allowed says how many were held back; different messages and
// rejection kinds have windows of their own.
func TestMemberlistRepeatsRateLimited(t *testing.T) {
	var auth, label atomic.Uint64
	buf := &logBuffer{}
	clk := clock.NewFake(time.Unix(0, 0))
	w := &mlLog{log: slog.New(slog.NewTextHandler(buf, nil)), auth: &auth, label: &label,
		clock: clk, last: map[rejectKind]time.Time{}, quiet: map[rejectKind]int{}}
	short := "[ERR] memberlist: UDP packet too short (65536 bytes) from=10.0.0.9:40000\n"
	decode := "[ERR] memberlist: Failed to decode ping request: msgpack decode error from=10.0.0.%d:7946\n"
	for i := range 1000 {
		w.Write([]byte(short))
		w.Write(fmt.Appendf(nil, decode, i%250)) // varying senders: still one kind
	}
	w.Write([]byte("[INFO] memberlist: Suspect vs2 has failed, no acks received\n"))
	out := buf.String()
	for what, want := range map[string]int{"too short": 1, "Failed to decode ping request": 1, "Suspect vs2": 1} {
		if n := strings.Count(out, what); n != want {
			t.Errorf("%d lines with %q, want %d:\n%.600s", n, what, want, out)
		}
	}
	if !strings.Contains(out, `msg="dropped malformed cluster packet (too short)"`) || !strings.Contains(out, "from=10.0.0.9:40000") {
		t.Errorf("too-short packet not reworded:\n%s", out)
	}
	clk.Advance(time.Minute)
	buf2 := &logBuffer{}
	w.log = slog.New(slog.NewTextHandler(buf2, nil))
	w.Write([]byte(short))
	w.Write(fmt.Appendf(nil, decode, 1))
	out = buf2.String()
	if strings.Count(out, "suppressed=999") != 2 {
		t.Fatalf("after the window, want each line with suppressed=999:\n%s", out)
	}
}
