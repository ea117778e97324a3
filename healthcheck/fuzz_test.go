package healthcheck

import (
	"net/netip"
	"testing"
	"time"
)

// FuzzJudge feeds arbitrary responses to the HTTP response judge: it must
// never panic, must always decide at end of input, and must never pass a
// response whose status line is not one it was told to expect.
func FuzzJudge(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 503 Service Unavailable\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"HTTP/1.0 200\n\nok",
		"SSH-2.0-x\r\n",
		"",
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	f.Fuzz(func(t *testing.T, resp []byte, body bool) {
		hs := &HTTPSpec{Expect: []StatusRange{{200, 299}}}
		if body {
			hs.BodyContains = "ok"
		}
		s := Spec{Kind: KindHTTP, Target: netip.MustParseAddrPort("127.0.0.1:80"), HTTP: hs}.WithDefaults()
		c, err := newHTTPChecker(s)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for i := 0; i <= len(resp); i++ { // every prefix, as the bytes trickle in
			c.judge(start, resp[:i], false, "HTTP")
		}
		r, done := c.judge(start, resp, true, "HTTP")
		if !done {
			t.Fatalf("no verdict at end of input for %q", resp)
		}
		if r.Up {
			code, ok := parseStatusLine(firstLine(resp))
			if !ok || code < 200 || code > 299 {
				t.Fatalf("passed %q (status %d, %v)", resp, code, ok)
			}
		}
	})
}

func firstLine(b []byte) []byte {
	for i, c := range b {
		if c == '\n' {
			return b[:i]
		}
	}
	return b
}
