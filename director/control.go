package director

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// The control protocol: one JSON request per connection, one JSON reply.
// It is local only (a unix socket, mode 0600, root's), so it needs no
// authentication beyond file permissions.

// Request is a control request.
type Request struct {
	Op       string `json:"op"`                 // status | reload | handover | resume
	Instance string `json:"instance,omitempty"` // for handover/resume; "" = all
}

// Reply is a control reply.
type Reply struct {
	OK     bool    `json:"ok"`
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`
}

// Controller is what the control socket serves.
type Controller interface {
	Status() Status
	Reload() error
	Handover(instance string) error
	Resume(instance string) error
}

// ServeControl listens on path until ctx ends. An existing socket file
// left by a dead daemon is replaced; a live one is an error, so two
// daemons never share a socket; anything else at path is an error too.
func ServeControl(ctx context.Context, path string, c Controller, log *slog.Logger) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("control socket dir: %w", err)
	}
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		conn.Close()
		return fmt.Errorf("control socket %s is in use: is another vigil running?", path)
	}
	if err := removeStaleSocket(path); err != nil {
		return err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listen on control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("chmod control socket: %w", err)
	}
	go func() {
		<-ctx.Done()
		ln.Close()
		os.Remove(path)
	}()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go serveOne(conn, c, log)
		}
	}()
	return nil
}

// removeStaleSocket removes the socket a dead daemon left at path. Only a
// socket: a control_socket that names the site file (a typo) must not
// delete it.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("control socket %s: the path exists and is not a socket (%s); refusing to remove it: check control_socket", path, fileKind(fi.Mode()))
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove stale control socket: %w", err)
	}
	return nil
}

// fileKind names a file type for an error message.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&os.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "file type " + m.Type().String()
}

const (
	// maxRequestBytes bounds a control request: a real one is a few
	// dozen bytes, and the socket's input is not to be trusted with
	// memory (or the log) without a bound.
	maxRequestBytes = 64 << 10
	// maxLoggedField bounds what of a request's own text reaches the log.
	maxLoggedField = 100
	// maxLoggedError bounds a logged error, which may quote the request.
	maxLoggedError = 300
)

func serveOne(conn net.Conn, c Controller, log *slog.Logger) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	req, err := readRequest(conn)
	if errors.Is(err, io.EOF) {
		return // a connection that sent nothing: a liveness probe
	}
	if err != nil {
		log.Info("control request refused", "error", err)
		writeReply(conn, Reply{Error: err.Error()})
		return
	}
	var rep Reply
	switch req.Op {
	case "status":
		st := c.Status()
		rep = Reply{OK: true, Status: &st}
	case "reload":
		rep = result(c.Reload())
	case "handover":
		rep = result(c.Handover(req.Instance))
	case "resume":
		rep = result(c.Resume(req.Instance))
	default:
		rep = Reply{Error: "unknown op " + quoteShort(req.Op, maxLoggedField)}
	}
	if !rep.OK {
		// slog quotes what needs it; truncate bounds it.
		attrs := []any{"op", truncate(req.Op, maxLoggedField)}
		if req.Instance != "" {
			attrs = append(attrs, "instance", truncate(req.Instance, maxLoggedField))
		}
		log.Info("control request failed", append(attrs, "error", truncate(rep.Error, maxLoggedError))...)
	}
	writeReply(conn, rep)
}

// readRequest decodes one request of at most maxRequestBytes.
func readRequest(conn net.Conn) (Request, error) {
	lr := &io.LimitedReader{R: conn, N: maxRequestBytes + 1}
	var req Request
	if err := json.NewDecoder(bufio.NewReader(lr)).Decode(&req); err != nil {
		if lr.N <= 0 {
			return Request{}, fmt.Errorf("request too large (limit %d bytes)", maxRequestBytes)
		}
		if errors.Is(err, io.EOF) {
			return Request{}, err
		}
		return Request{}, fmt.Errorf("bad request: %s", truncate(err.Error(), maxLoggedError))
	}
	return req, nil
}

// quoteShort quotes s, cut to at most n bytes of it: untrusted text in a
// message of our own.
func quoteShort(s string, n int) string {
	if len(s) <= n {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:n]) + fmt.Sprintf("... (%d bytes)", len(s))
}

// truncate cuts s to at most n bytes, saying so.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("... (%d bytes)", len(s))
}

func result(err error) Reply {
	if err != nil {
		return Reply{Error: err.Error()}
	}
	return Reply{OK: true}
}

func writeReply(conn net.Conn, rep Reply) {
	_ = json.NewEncoder(conn).Encode(rep)
}

// Call sends one request to the daemon's control socket.
func Call(ctx context.Context, path string, req Request) (Reply, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Reply{}, fmt.Errorf("no vigil daemon at %s (is `vigil run` running? is the socket path right?)", path)
		}
		return Reply{}, fmt.Errorf("connect to control socket %s: %w", path, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return Reply{}, fmt.Errorf("send %s request: %w", req.Op, err)
	}
	var rep Reply
	if err := json.NewDecoder(conn).Decode(&rep); err != nil {
		return Reply{}, fmt.Errorf("read %s reply: %w", req.Op, err)
	}
	if !rep.OK {
		return rep, errors.New(rep.Error)
	}
	return rep, nil
}
