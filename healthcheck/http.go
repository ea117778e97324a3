package healthcheck

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http/httputil"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// HTTPChecker sends one HTTP/1.0 request (keep-alive off, redirects not
// followed) and checks the status and, optionally, the body. With TLS set
// it speaks HTTPS.
type HTTPChecker struct {
	addr     netip.AddrPort
	spec     HTTPSpec
	tls      *tls.Config // nil for plain http
	req      []byte
	re       *regexp.Regexp
	md5      []byte
	needBody bool
	okReason atomic.Value // statusReason

	// Cached by the engine (the scheduler's goroutine only).
	target sockTarget
}

// engineTarget makes HTTPChecker an engineChecker; HTTPS runs on a
// goroutine (crypto/tls needs a blocking connection).
func (h *HTTPChecker) engineTarget() (*sockTarget, bool) {
	if h.tls != nil {
		return nil, false
	}
	return h.target.resolve(h.addr)
}

// connected hands the engine the request and the judge of its answer.
func (h *HTTPChecker) connected(time.Time) (Result, conversation, bool) { return Result{}, h, false }

func (h *HTTPChecker) request() []byte { return h.req }

func (h *HTTPChecker) respond(start time.Time, resp []byte, eof bool) (Result, bool) {
	return h.judge(start, resp, eof, "HTTP")
}

func (h *HTTPChecker) failed(start, deadline time.Time, doing string, err error) Result {
	return h.ioFailure(start, deadline, doing, err)
}

func newHTTPChecker(s Spec) (*HTTPChecker, error) {
	h := *s.HTTP
	c := &HTTPChecker{addr: s.checkAddr(), spec: h}
	host := h.Host
	if host == "" {
		host = c.addr.String()
		if p := c.addr.Port(); (s.Kind == KindHTTP && p == 80) || (s.Kind == KindHTTPS && p == 443) {
			host = c.addr.Addr().String()
			if c.addr.Addr().Is6() {
				host = "[" + host + "]"
			}
		}
	}
	c.req = fmt.Appendf(nil, "%s %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: vigil-healthcheck\r\nConnection: close\r\n\r\n", h.Method, h.Path, host)
	if h.BodyRegexp != "" {
		re, err := regexp.Compile(h.BodyRegexp)
		if err != nil {
			return nil, fmt.Errorf("body regexp of %s check of %s: %w", s.Kind, s.Target, err)
		}
		c.re = re
	}
	if h.BodyMD5 != "" {
		c.md5, _ = hex.DecodeString(h.BodyMD5) // validated
	}
	c.needBody = h.BodyContains != "" || c.re != nil || c.md5 != nil
	if s.Kind == KindHTTPS {
		name := h.ServerName
		if name == "" && h.Host != "" {
			name = h.Host
			if hh, _, ok := strings.Cut(name, ":"); ok && !strings.Contains(hh, "]") {
				name = hh
			}
		}
		if name == "" {
			name = c.addr.Addr().String() // verified against IP SANs; no SNI is sent for an IP
		}
		c.tls = &tls.Config{
			ServerName:         name,
			InsecureSkipVerify: !h.Verify,
			ClientSessionCache: tls.NewLRUClientSessionCache(2), // resumption makes repeated checks cheaper
		}
		if h.CAFile != "" {
			pem, err := os.ReadFile(h.CAFile)
			if err != nil {
				return nil, fmt.Errorf("CA file of https check of %s: %w", s.Target, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("CA file %s of https check of %s: no PEM certificate", h.CAFile, s.Target)
			}
			c.tls.RootCAs = pool
		}
	}
	return c, nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}

// Check sends the request and judges the answer.
func (h *HTTPChecker) Check(ctx context.Context, deadline time.Time) Result {
	start := time.Now()
	c, err := dial(ctx, h.addr, deadline)
	if err != nil {
		return connectFailure(start, deadline, h.addr, err)
	}
	defer c.Close()
	var rw io.ReadWriter = c
	proto := "HTTP"
	if h.tls != nil {
		proto = "HTTPS"
		tc := tls.Client(netConn{c}, h.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			if errors.Is(err, errTimeout) || errors.Is(err, os.ErrDeadlineExceeded) {
				return fail(start, "timeout after %v in the TLS handshake with %s", roundDur(deadline.Sub(start)), h.addr)
			}
			return fail(start, "TLS handshake with %s: %v", h.addr, err)
		}
		rw = tc
	}
	if _, err := rw.Write(h.req); err != nil {
		return h.ioFailure(start, deadline, "sending the request to", err)
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	return h.readResponse(start, deadline, rw, *bp, proto)
}

func (h *HTTPChecker) ioFailure(start, deadline time.Time, doing string, err error) Result {
	if errors.Is(err, errTimeout) || errors.Is(err, os.ErrDeadlineExceeded) {
		return fail(start, "timeout after %v %s %s", roundDur(deadline.Sub(start)), doing, h.addr)
	}
	if errors.Is(err, errCancelled) {
		return fail(start, "cancelled %s %s", doing, h.addr)
	}
	return fail(start, "%s %s: %v", doing, h.addr, err)
}

const maxHeader = 64 << 10

// readResponse reads from r into buf (growing it) until judge decides.
func (h *HTTPChecker) readResponse(start, deadline time.Time, r io.Reader, buf []byte, proto string) Result {
	n := 0
	for {
		if n == len(buf) {
			nb := make([]byte, 2*len(buf))
			copy(nb, buf[:n])
			buf = nb
		}
		m, err := r.Read(buf[n:])
		n += m
		eof := errors.Is(err, io.EOF)
		if res, done := h.judge(start, buf[:n], eof, proto); done {
			return res
		}
		if err != nil && !eof {
			return h.ioFailure(start, deadline, "waiting for the response from", err)
		}
	}
}

// judge decides on the response bytes received so far (all of them when
// eof): done is false while more bytes are needed.
func (h *HTTPChecker) judge(start time.Time, resp []byte, eof bool, proto string) (Result, bool) {
	i := bytes.IndexByte(resp, '\n')
	if i < 0 {
		switch {
		case eof:
			return fail(start, "connection closed by %s before a status line", h.addr), true
		case len(resp) >= maxHeader:
			return fail(start, "%s status line from %s longer than %d bytes", proto, h.addr, maxHeader), true
		}
		return Result{}, false
	}
	status, ok := parseStatusLine(resp[:i])
	if !ok {
		line := string(bytes.TrimRight(resp[:min(i, 80)], "\r"))
		return fail(start, "malformed status line %q from %s", line, h.addr), true
	}
	if !h.expected(status) {
		return fail(start, "%s %d from %s (want %s)", proto, status, h.addr, h.want()), true
	}
	if !h.needBody {
		return h.passStatus(start, proto, status), true
	}
	headerEnd := -1
	if j := bytes.Index(resp, []byte("\r\n\r\n")); j >= 0 {
		headerEnd = j + 4
	} else if j := bytes.Index(resp, []byte("\n\n")); j >= 0 {
		headerEnd = j + 2
	}
	if headerEnd < 0 {
		switch {
		case eof:
			return fail(start, "%s %d from %s: connection closed inside the headers", proto, status, h.addr), true
		case len(resp) >= maxHeader:
			return fail(start, "%s headers from %s larger than %d bytes", proto, h.addr, maxHeader), true
		}
		return Result{}, false
	}
	length, chunked := bodyFraming(resp[:headerEnd])
	body := resp[headerEnd:]
	tooLarge := len(body) > MaxBody
	switch {
	case tooLarge:
		body = body[:MaxBody]
	case length >= 0 && !chunked && int64(len(body)) >= length:
		body = body[:length]
	case !eof:
		return Result{}, false
	}
	if chunked {
		decoded, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(body)))
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return fail(start, "%s %d from %s: bad chunked body: %v", proto, status, h.addr, err), true
		}
		body = decoded
	}
	if h.md5 != nil {
		if tooLarge {
			return fail(start, "%s %d from %s: body larger than %d bytes, cannot check its MD5", proto, status, h.addr, MaxBody), true
		}
		sum := md5.Sum(body)
		if !bytes.Equal(sum[:], h.md5) {
			return fail(start, "%s %d from %s: body MD5 %x, want %x", proto, status, h.addr, sum, h.md5), true
		}
	}
	if s := h.spec.BodyContains; s != "" && !bytes.Contains(body, []byte(s)) {
		return fail(start, "%s %d from %s: body does not contain %q", proto, status, h.addr, s), true
	}
	if h.re != nil && !h.re.Match(body) {
		return fail(start, "%s %d from %s: body does not match %q", proto, status, h.addr, h.spec.BodyRegexp), true
	}
	return pass(start, "%s %d from %s, body as expected", proto, status, h.addr), true
}

// passStatus is the passing result for a status, its reason built once
// per status code rather than once per check.
func (h *HTTPChecker) passStatus(start time.Time, proto string, status int) Result {
	r, _ := h.okReason.Load().(statusReason)
	if r.status != status {
		r = statusReason{status, fmt.Sprintf("%s %d from %s", proto, status, h.addr)}
		h.okReason.Store(r)
	}
	return Result{Up: true, Reason: r.reason, Latency: time.Since(start), Weight: NoWeight}
}

type statusReason struct {
	status int
	reason string
}

// bodyFraming reads Content-Length (-1 if absent) and chunked encoding
// from the response headers.
func bodyFraming(head []byte) (length int64, chunked bool) {
	length = -1
	for line := range bytes.SplitSeq(head, []byte("\n")) {
		name, value, ok := bytes.Cut(bytes.TrimRight(line, "\r"), []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if v, err := strconv.ParseInt(string(value), 10, 64); err == nil && v >= 0 {
				length = v
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		}
	}
	return length, chunked
}

// parseStatusLine parses "HTTP/1.x 200 OK" (a trailing \r allowed).
func parseStatusLine(line []byte) (int, bool) {
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/")) {
		return 0, false
	}
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 || len(line) < sp+4 {
		return 0, false
	}
	code := 0
	for _, c := range line[sp+1 : sp+4] {
		if c < '0' || c > '9' {
			return 0, false
		}
		code = code*10 + int(c-'0')
	}
	if len(line) > sp+4 && line[sp+4] != ' ' && line[sp+4] != '\r' {
		return 0, false
	}
	if code < 100 {
		return 0, false
	}
	return code, true
}

func (h *HTTPChecker) expected(code int) bool {
	for _, r := range h.spec.Expect {
		if code >= r.Min && code <= r.Max {
			return true
		}
	}
	return false
}

func (h *HTTPChecker) want() string {
	var b strings.Builder
	for i, r := range h.spec.Expect {
		if i > 0 {
			b.WriteString(", ")
		}
		if r.Min == r.Max {
			fmt.Fprintf(&b, "%d", r.Min)
		} else {
			fmt.Fprintf(&b, "%d-%d", r.Min, r.Max)
		}
	}
	return b.String()
}
