// Command labsrv is the lab's stand-in for the seed article's real servers
// and its client: it serves WWW and a Telnet-like line service naming the
// server that answered, and it probes a VIP at a steady rate and reports
// the interruptions a client saw. It is static-buildable so it runs inside
// the QEMU guest too.
//
//	labsrv serve -name rs1 [-http :80] [-line :23]
//	labsrv probe -target http://10.99.0.100/ | tcp://10.99.0.100:23 [-every 5ms] [-for 10s] [-timeout 200ms]
//	labsrv get URL            one request, prints the body (exit 1 on failure)
//	labsrv sessions -target VIP:23 -n 20 -idle 10 -http VIP:80 -keepalive 4 -ctl SOCK
//	                          long-lived sessions through the VIP (see sessions.go)
//	labsrv sessions-check -ctl SOCK [-label NAME] [-answer 2s]
//	                          every session still open and answering? (exit 1 if not)
//	labsrv sessions-ports -ctl SOCK   "LOCAL-ADDRESS ID" of each open session
//	labsrv now                milliseconds since the epoch
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: labsrv serve|probe|get|sessions|sessions-check|sessions-ports|now ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "probe":
		err = probe(os.Args[2:])
	case "get":
		err = get(os.Args[2:])
	case "sessions":
		err = sessions(os.Args[2:])
	case "sessions-check":
		err = sessionsCheck(os.Args[2:])
	case "sessions-ports":
		err = sessionsPorts(os.Args[2:])
	case "now": // milliseconds since the epoch, for scripts (busybox date has no %N)
		fmt.Println(time.Now().UnixMilli())
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "labsrv:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	name := fs.String("name", "rs", "name this server answers with")
	httpAddr := fs.String("http", ":80", "WWW listen address (empty: off)")
	lineAddr := fs.String("line", ":23", "line (Telnet-like) listen address (empty: off)")
	_ = fs.Parse(args)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 2)
	if *httpAddr != "" {
		ln, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			return fmt.Errorf("listen WWW %s: %w", *httpAddr, err)
		}
		srv := &http.Server{Handler: wwwHandler(*name), ReadHeaderTimeout: 5 * time.Second}
		go func() { errc <- srv.Serve(ln) }()
		go func() { <-ctx.Done(); srv.Close() }()
	}
	if *lineAddr != "" {
		ln, err := net.Listen("tcp", *lineAddr)
		if err != nil {
			return fmt.Errorf("listen line %s: %w", *lineAddr, err)
		}
		go func() { <-ctx.Done(); ln.Close() }()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					errc <- err
					return
				}
				go lineSession(c, *name)
			}
		}()
	}
	fmt.Printf("labsrv %s serving WWW on %q, line service on %q\n", *name, *httpAddr, *lineAddr)
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
}

// wwwHandler answers every request with the server's name. It closes the
// connection after the answer (each probe is a new connection through the
// director) unless the client asks for keep-alive explicitly, as the
// sessions client does.
func wwwHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Connection"), "keep-alive") {
			w.Header().Set("Connection", "close")
		}
		fmt.Fprintf(w, "%s\n", name)
	})
}

// lineIdle is how long the line service waits for a client's next line.
const lineIdle = 5 * time.Minute

// lineSession is the Telnet-like service: a banner naming the server,
// then each line echoed back until "quit". A session silent for lineIdle
// is closed; a long one that keeps talking stays open.
func lineSession(c net.Conn, name string) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(lineIdle))
	fmt.Fprintf(c, "%s line service ready\r\n", name)
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		_ = c.SetDeadline(time.Now().Add(lineIdle))
		line := strings.TrimSpace(sc.Text())
		if line == "quit" {
			fmt.Fprintf(c, "bye from %s\r\n", name)
			return
		}
		fmt.Fprintf(c, "%s: %s\r\n", name, line)
	}
}

// once makes one request and returns who answered.
func once(target string, timeout time.Duration) (string, error) {
	switch {
	case strings.HasPrefix(target, "http://"):
		cl := http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := cl.Get(target)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 512))
		if err != nil {
			return "", err
		}
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return strings.TrimSpace(string(b)), nil
	case strings.HasPrefix(target, "tcp://"):
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(target, "tcp://"), timeout)
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(timeout))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return "", err
		}
		return strings.Fields(line)[0], nil
	}
	return "", fmt.Errorf("target %q: want http://... or tcp://host:port", target)
}

func get(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: labsrv get URL")
	}
	who, err := once(args[0], 2*time.Second)
	if err != nil {
		return err
	}
	fmt.Println(who)
	return nil
}

// Outage is one run of consecutive failed probes.
type Outage struct {
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration_ns"`
	Failed   int           `json:"failed_probes"`
	Before   string        `json:"before"` // who answered before
	After    string        `json:"after"`  // who answered after
}

// ProbeReport is what probe prints.
type ProbeReport struct {
	Target   string         `json:"target"`
	Probes   int            `json:"probes"`
	Failed   int            `json:"failed"`
	Answers  map[string]int `json:"answers"`
	Outages  []Outage       `json:"outages"`
	Longest  time.Duration  `json:"longest_outage_ns"`
	Switches []string       `json:"switches"` // "rs1->rs2 at +1.234s"
}

func probe(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ExitOnError)
	target := fs.String("target", "", "http://VIP/ or tcp://VIP:PORT")
	every := fs.Duration("every", 5*time.Millisecond, "probe interval")
	dur := fs.Duration("for", 10*time.Second, "how long to probe")
	timeout := fs.Duration("timeout", 200*time.Millisecond, "per-probe timeout")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	quiet := fs.Bool("q", false, "no per-event lines")
	_ = fs.Parse(args)
	if *target == "" {
		return errors.New("probe: -target is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *dur)
	defer cancel()
	rep := ProbeReport{Target: *target, Answers: map[string]int{}}
	start := time.Now()
	var cur *Outage
	last := ""
	tick := time.NewTicker(*every)
	defer tick.Stop()
	for ctx.Err() == nil {
		t0 := time.Now()
		who, err := once(*target, *timeout)
		rep.Probes++
		if err != nil {
			rep.Failed++
			if cur == nil {
				cur = &Outage{Start: t0, Before: last}
				if !*quiet {
					fmt.Printf("+%8.3fs  probe failed: %v\n", t0.Sub(start).Seconds(), err)
				}
			}
			cur.Failed++
		} else {
			rep.Answers[who]++
			if cur != nil {
				cur.Duration = time.Since(cur.Start)
				cur.After = who
				rep.Outages = append(rep.Outages, *cur)
				if !*quiet {
					fmt.Printf("+%8.3fs  answered again by %s after %v (%d failed probes)\n",
						time.Since(start).Seconds(), who, cur.Duration.Round(time.Millisecond), cur.Failed)
				}
				cur = nil
			}
			if last != "" && who != last {
				rep.Switches = append(rep.Switches, fmt.Sprintf("%s->%s at +%.3fs", last, who, time.Since(start).Seconds()))
			}
			last = who
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	if cur != nil {
		cur.Duration = time.Since(cur.Start)
		rep.Outages = append(rep.Outages, *cur)
	}
	for _, o := range rep.Outages {
		if o.Duration > rep.Longest {
			rep.Longest = o.Duration
		}
	}
	if *asJSON {
		return json.NewEncoder(os.Stdout).Encode(rep)
	}
	names := make([]string, 0, len(rep.Answers))
	for n := range rep.Answers {
		names = append(names, fmt.Sprintf("%s=%d", n, rep.Answers[n]))
	}
	sort.Strings(names)
	fmt.Printf("probe %s: %d probes, %d failed, answers %s, %d outages, longest %v\n",
		*target, rep.Probes, rep.Failed, strings.Join(names, " "), len(rep.Outages), rep.Longest.Round(time.Millisecond))
	return nil
}
