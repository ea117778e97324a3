package failbench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is a child started in a lab namespace with `ip netns exec`
// (which execs the program, so the pid is the program's). It dies with
// failbench (Pdeathsig) should failbench itself be killed.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	logf *os.File
}

func startProcess(ctx context.Context, name, netnsName string, argv []string, logPath string) (*process, error) {
	args := append([]string{"netns", "exec", netnsName}, argv...)
	cmd := exec.Command("ip", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var logf *os.File
	if logPath != "" {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open log for %s: %w", name, err)
		}
		logf = f
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		if logf != nil {
			logf.Close()
		}
		return nil, fmt.Errorf("start %s (%s): %w", name, strings.Join(argv, " "), err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{}), logf: logf}
	go func() {
		p.err = cmd.Wait()
		if p.logf != nil {
			p.logf.Close()
		}
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tree is p's pid and its descendants', children first.
func (p *process) tree() []int {
	if p.exited() {
		return nil
	}
	kids := descendants(p.pid())
	return append(kids, p.pid())
}

func (p *process) signal(sig syscall.Signal) error {
	if p.exited() {
		return nil
	}
	return p.cmd.Process.Signal(sig)
}

// waitExit waits up to d for p to end, then kills its whole tree.
func (p *process) waitExit(d time.Duration) error {
	select {
	case <-p.done:
		return nil
	case <-time.After(d):
	}
	killAll(p.tree())
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
	return fmt.Errorf("%s did not exit within %v; killed", p.name, d)
}

// stop ends p: SIGTERM, then SIGKILL to the tree after grace.
func (p *process) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	pids := p.tree()
	_ = p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		// keepalived's children go with their parent; make sure.
		killAll(alive(pids))
		return
	case <-time.After(grace):
	}
	killAll(p.tree())
	killAll(alive(pids))
	<-p.done
}

func killAll(pids []int) {
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func alive(pids []int) []int {
	var out []int
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			out = append(out, pid)
		}
	}
	return out
}

// descendants lists the processes below pid, deepest first, from /proc.
func descendants(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(n)
		if err != nil {
			continue
		}
		children[st.ppid] = append(children[st.ppid], n)
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			walk(c)
			out = append(out, c)
		}
	}
	walk(pid)
	return out
}

type procStat struct {
	ppid  int
	ticks int64 // utime + stime, all threads, in clock ticks
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	// The command name is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is state (field 3); ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ppid, _ := strconv.Atoi(f[1])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stt, _ := strconv.ParseInt(f[12], 10, 64)
	return procStat{ppid: ppid, ticks: ut + stt}, nil
}

// rssKB is VmRSS of pid in kB.
func rssKB(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// onCPU is the time pid's threads have spent on a CPU, to the nanosecond
// (the first field of each thread's schedstat). The clock ticks of
// /proc/PID/stat sample: a daemon that wakes for 50 us every 100 ms is
// seen only when a tick happens to land in one of those wake-ups, which
// made 60 s figures of a few ticks unreliable.
func onCPU(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "schedstat"))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("no schedstat for %d", pid)
	}
	var sum int64
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		fs := strings.Fields(string(b))
		if len(fs) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed %s", f)
		}
		sum += ns
	}
	return time.Duration(sum), nil
}

// usage is the CPU time and RSS of a set of processes at one moment.
type usage struct {
	at    time.Time
	cpu   time.Duration
	rssKB int64
}

func sampleUsage(pids []int) usage {
	u := usage{at: time.Now()}
	for _, pid := range pids {
		if ns, err := onCPU(pid); err == nil {
			u.cpu += ns
		} else if st, err := readStat(pid); err == nil {
			u.cpu += time.Duration(st.ticks) * time.Second / clockTicks
		}
		if r, err := rssKB(pid); err == nil {
			u.rssKB += r
		}
	}
	return u
}
