package director

import (
	"net"
	"os"
)

// sdNotify sends a state line to systemd's notify socket, if there is one.
// It is the whole of sd_notify(3) that vigil needs (READY=1, RELOADING=1,
// STOPPING=1, STATUS=...), so no library is pulled in for it.
func sdNotify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract namespace
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = conn.Write([]byte(state))
}
