package failbench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Site is the VIP-only site a benchmark case runs: one VRRP instance, one
// VIP, two or more directors on the lab's eth0.
type Site struct {
	VRID      int
	Advert    time.Duration
	Version   int    // VRRP version, 2 or 3
	VIP       string // with prefix, e.g. "10.99.0.100/24"
	Iface     string // "eth0"
	Directors []Director
}

// Director is one member of the site.
type Director struct {
	Name     string
	Address  string // without prefix
	Priority int
}

// Impl is a VRRP daemon under test.
type Impl interface {
	// Name is the label in the tables ("keepalived", "vigil").
	Name() string
	// Check says why the implementation cannot run here, or returns nil.
	Check() error
	// Prepare writes what director d of s needs into dir (empty, its own)
	// and returns the command line that runs it in the foreground, until
	// SIGTERM (graceful stop: priority-0 advert, VIPs removed).
	Prepare(s Site, d Director, dir string) ([]string, error)
}

// MasterDown is the RFC 5798 Master_Down_Interval of a backup with the
// given priority: 3 x advert + skew, skew = (256-prio) x advert / 256 (in
// VRRPv2 the skew is (256-prio)/256 s, the same at 1 s adverts).
func MasterDown(advert time.Duration, prio, version int) time.Duration {
	return 3*advert + Skew(advert, prio, version)
}

// Skew is the RFC skew time: all a backup waits after a priority-0 advert.
func Skew(advert time.Duration, prio, version int) time.Duration {
	if version == 2 {
		return time.Duration(256-prio) * time.Second / 256
	}
	return time.Duration(256-prio) * advert / 256
}

// Keepalived runs keepalived's VRRP subsystem alone, in the foreground,
// with its own pid files so several run on one machine.
type Keepalived struct {
	Binary string // default "keepalived" on PATH
}

func (k Keepalived) Name() string { return "keepalived" }

func (k Keepalived) bin() string {
	if k.Binary != "" {
		return k.Binary
	}
	return "keepalived"
}

func (k Keepalived) Check() error {
	p, err := exec.LookPath(k.bin())
	if err != nil {
		return fmt.Errorf("keepalived not found (apt-get install keepalived): %w", err)
	}
	out, err := exec.Command(p, "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s --version: %w: %s", p, err, out)
	}
	return nil
}

// Version returns keepalived's first --version line.
func (k Keepalived) Version() string {
	out, _ := exec.Command(k.bin(), "--version").CombinedOutput()
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

// KeepalivedConfig is keepalived.conf for director d of s.
func KeepalivedConfig(s Site, d Director) string {
	adv := fmt.Sprintf("%g", s.Advert.Seconds())
	if s.Version == 2 && s.Advert < time.Second {
		adv = "1" // VRRPv2 has whole seconds only
	}
	var b strings.Builder
	fmt.Fprintf(&b, "global_defs {\n  router_id %s\n  vrrp_version %d\n}\n\n", d.Name, s.Version)
	fmt.Fprintf(&b, "vrrp_instance bench {\n")
	fmt.Fprintf(&b, "  state BACKUP\n  interface %s\n  virtual_router_id %d\n  priority %d\n", s.Iface, s.VRID, d.Priority)
	fmt.Fprintf(&b, "  advert_int %s\n", adv)
	fmt.Fprintf(&b, "  virtual_ipaddress {\n    %s dev %s\n  }\n}\n", s.VIP, s.Iface)
	return b.String()
}

func (k Keepalived) Prepare(s Site, d Director, dir string) ([]string, error) {
	conf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(conf, []byte(KeepalivedConfig(s, d)), 0o644); err != nil {
		return nil, fmt.Errorf("write keepalived config for %s: %w", d.Name, err)
	}
	return []string{k.bin(), "-P", "-n", "-l", "-D",
		"-f", conf,
		"-p", filepath.Join(dir, "keepalived.pid"),
		"-r", filepath.Join(dir, "vrrp.pid"),
		"-i", d.Name,
	}, nil
}

// Vigil runs `vigil run -c SITE --node NAME` on a VIP-only site file.
type Vigil struct {
	Binary string // path to bin/vigil
	// Extra lines appended to the generated site file, for schema keys
	// this generator does not know yet.
	Extra string
}

func (v Vigil) Name() string { return "vigil" }

func (v Vigil) Check() error {
	if v.Binary == "" {
		return errors.New("vigil binary not given")
	}
	if _, err := os.Stat(v.Binary); err != nil {
		return fmt.Errorf("vigil binary: %w (run make build)", err)
	}
	out, err := exec.Command(v.Binary, "run", "--help").CombinedOutput()
	if strings.Contains(string(out), "unknown command") || strings.Contains(string(out), "not implemented") {
		return fmt.Errorf("%s has no usable run subcommand yet: %s", v.Binary, strings.TrimSpace(string(out)))
	}
	_ = err // --help may exit non-zero; only the message tells
	return nil
}

// VigilSite is the VIP-only site file for s (the same for every director).
func VigilSite(s Site) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# failbench: VIP-only site, generated\n[site]\nname = \"failbench\"\n\n")
	for _, d := range s.Directors {
		fmt.Fprintf(&b, "[[director]]\nname = %q\naddress = %q\ninterface = %q\npriority = %d\n\n", d.Name, d.Address, s.Iface, d.Priority)
	}
	// No key file in a throwaway lab: the cluster channel runs in the clear.
	fmt.Fprintf(&b, "[cluster]\ninsecure = true\n\n")
	fmt.Fprintf(&b, "[[instance]]\nname = \"bench\"\nvrid = %d\nadvert_interval = %q\nversion = %d\npreempt = true\nvips = [%q]\n",
		s.VRID, s.Advert.String(), s.Version, s.VIP)
	return b.String()
}

func (v Vigil) Prepare(s Site, d Director, dir string) ([]string, error) {
	site := filepath.Join(dir, "site.toml")
	body := VigilSite(s)
	if v.Extra != "" {
		body += "\n" + v.Extra + "\n"
	}
	if err := os.WriteFile(site, []byte(body), 0o644); err != nil {
		return nil, fmt.Errorf("write vigil site file for %s: %w", d.Name, err)
	}
	// Several daemons share this machine's filesystem: each its own socket.
	return []string{v.Binary, "run", "-c", site, "--node", d.Name, "--socket", filepath.Join(dir, "vigil.sock"), "--state-dir", dir}, nil
}
