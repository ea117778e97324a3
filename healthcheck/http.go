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

// readResponse reads the status line (and, when a body check needs it,
// the headers and body) from r, using buf as the first buffer.
func (h *HTTPChecker) readResponse(start, deadline time.Time, r io.Reader, buf []byte, proto string) Result {
	n := 0
	status := 0
	headerEnd := -1
	var rerr error
	for {
		if status == 0 {
			if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
				code, ok := parseStatusLine(buf[:i])
				if !ok {
					line := string(bytes.TrimRight(buf[:min(i, 80)], "\r"))
					return fail(start, "malformed status line %q from %s", line, h.addr)
				}
				status = code
				if !h.needBody || !h.expected(status) {
					break
				}
			}
		}
		if status != 0 {
			if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 {
				headerEnd = i + 4
				break
			}
			if i := bytes.Index(buf[:n], []byte("\n\n")); i >= 0 {
				headerEnd = i + 2
				break
			}
		}
		if rerr != nil {
			break
		}
		if n == len(buf) {
			if len(buf) >= maxHeader {
				return fail(start, "%s headers from %s larger than %d bytes", proto, h.addr, maxHeader)
			}
			nb := make([]byte, 2*len(buf))
			copy(nb, buf[:n])
			buf = nb
		}
		var m int
		m, rerr = r.Read(buf[n:])
		n += m
	}
	if status == 0 {
		if rerr == nil || errors.Is(rerr, io.EOF) {
			return fail(start, "connection closed by %s before a status line", h.addr)
		}
		return h.ioFailure(start, deadline, "waiting for the response from", rerr)
	}
	if !h.expected(status) {
		return fail(start, "%s %d from %s (want %s)", proto, status, h.addr, h.want())
	}
	if !h.needBody {
		return pass(start, "%s %d from %s", proto, status, h.addr)
	}
	if headerEnd < 0 {
		if rerr == nil || errors.Is(rerr, io.EOF) {
			return fail(start, "%s %d from %s: connection closed inside the headers", proto, status, h.addr)
		}
		return h.ioFailure(start, deadline, "reading the headers from", rerr)
	}
	body, err := readBody(buf[:headerEnd], buf[headerEnd:n], r, rerr)
	if err != nil && !errors.Is(err, errBodyTooLarge) {
		return h.ioFailure(start, deadline, "reading the body from", err)
	}
	if h.md5 != nil {
		if err != nil {
			return fail(start, "%s %d from %s: body larger than %d bytes, cannot check its MD5", proto, status, h.addr, MaxBody)
		}
		sum := md5.Sum(body)
		if !bytes.Equal(sum[:], h.md5) {
			return fail(start, "%s %d from %s: body MD5 %x, want %x", proto, status, h.addr, sum, h.md5)
		}
	}
	if s := h.spec.BodyContains; s != "" && !bytes.Contains(body, []byte(s)) {
		return fail(start, "%s %d from %s: body does not contain %q", proto, status, h.addr, s)
	}
	if h.re != nil && !h.re.Match(body) {
		return fail(start, "%s %d from %s: body does not match %q", proto, status, h.addr, h.spec.BodyRegexp)
	}
	return pass(start, "%s %d from %s, body as expected", proto, status, h.addr)
}

var errBodyTooLarge = errors.New("body too large")

// readBody returns at most MaxBody bytes of the body whose headers are
// head, which starts with have and continues in r (unless rerr ended r).
func readBody(head, have []byte, r io.Reader, rerr error) ([]byte, error) {
	length := int64(-1)
	chunked := false
	for line := range strings.SplitSeq(string(head), "\n") {
		name, value, ok := strings.Cut(strings.TrimRight(line, "\r"), ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		switch {
		case strings.EqualFold(name, "Content-Length"):
			if v, err := strconv.ParseInt(value, 10, 64); err == nil && v >= 0 {
				length = v
			}
		case strings.EqualFold(name, "Transfer-Encoding"):
			chunked = strings.Contains(strings.ToLower(value), "chunked")
		}
	}
	var rest io.Reader = bytes.NewReader(have)
	if rerr == nil {
		rest = io.MultiReader(rest, r)
	}
	if chunked {
		rest = httputil.NewChunkedReader(rest)
		length = -1
	}
	limit := int64(MaxBody)
	if length >= 0 && length < limit {
		limit = length
	}
	body, err := io.ReadAll(io.LimitReader(rest, limit+1))
	if err != nil && !(errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
		return body, err
	}
	if int64(len(body)) > MaxBody {
		return body[:MaxBody], errBodyTooLarge
	}
	if length >= 0 && int64(len(body)) > length {
		body = body[:length]
	}
	return body, nil
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
