package vmtest

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultModules are loaded in every guest: IPVS with every scheduler the
// kernel ships (added at run time), conntrack, and the links a network
// test needs. Missing ones are skipped (a kernel may build them in).
var DefaultModules = []string{
	"crc32c_generic", "libcrc32c", "nf_defrag_ipv4", "nf_defrag_ipv6", "nf_conntrack",
	"ip_vs", "veth", "bridge", "dummy", "macvlan", "ipip", "ip6_tunnel", "tun",
}

// skippedIPVS are ip_vs_* modules that are not schedulers and need more
// of netfilter (nat helpers); tests do not need them.
var skippedIPVS = map[string]bool{"ip_vs_ftp": true, "ip_vs_pe_sip": true}

// aliasPreference resolves soft dependencies named by alias.
var aliasPreference = map[string]string{"crc32c": "crc32c_generic"}

// kmod is one kernel module file of the guest kernel.
type kmod struct {
	name string // normalised: '-' -> '_'
	rel  string // path relative to lib/modules/<version>, e.g. kernel/net/...
	deps []string
}

// moduleTree indexes the modules of an unpacked kernel package.
type moduleTree struct {
	version string
	root    string // <kernelDir>/lib/modules/<version>
	mods    map[string]*kmod
}

func normName(s string) string { return strings.ReplaceAll(s, "-", "_") }

func loadModuleTree(kernelDir string) (*moduleTree, error) {
	vers, err := filepath.Glob(filepath.Join(kernelDir, "lib", "modules", "*"))
	if err != nil || len(vers) == 0 {
		return nil, fmt.Errorf("no lib/modules/<version> under %s", kernelDir)
	}
	sort.Strings(vers)
	root := vers[len(vers)-1]
	t := &moduleTree{version: filepath.Base(root), root: root, mods: map[string]*kmod{}}
	err = filepath.WalkDir(filepath.Join(root, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".ko") {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		name := normName(strings.TrimSuffix(filepath.Base(p), ".ko"))
		t.mods[name] = &kmod{name: name, rel: rel}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index modules under %s: %w", root, err)
	}
	return t, nil
}

// modinfoDeps reads the depends= and softdep=pre: entries of a .ko file.
func modinfoDeps(data []byte) []string {
	var deps []string
	for _, field := range bytes.Split(data, []byte{0}) {
		s := string(field)
		switch {
		case strings.HasPrefix(s, "depends="):
			for _, d := range strings.Split(strings.TrimPrefix(s, "depends="), ",") {
				if d = strings.TrimSpace(d); d != "" {
					deps = append(deps, normName(d))
				}
			}
		case strings.HasPrefix(s, "softdep=pre:"):
			// "softdep=pre: crc32c post: ..." -> crc32c
			rest := strings.TrimPrefix(s, "softdep=pre:")
			if i := strings.Index(rest, "post:"); i >= 0 {
				rest = rest[:i]
			}
			for _, d := range strings.Fields(rest) {
				deps = append(deps, normName(d))
			}
		}
	}
	return deps
}

func (t *moduleTree) resolve(name string) *kmod {
	name = normName(name)
	if m, ok := t.mods[name]; ok {
		return m
	}
	if alt, ok := aliasPreference[name]; ok {
		return t.mods[alt]
	}
	return nil
}

// schedulers lists the ip_vs_* scheduler modules of this kernel.
func (t *moduleTree) schedulers() []string {
	var out []string
	for name := range t.mods {
		if strings.HasPrefix(name, "ip_vs_") && !skippedIPVS[name] {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// order returns the wanted modules and their dependencies, each after
// what it depends on. Unknown names are returned separately (built in or
// absent: the caller decides).
func (t *moduleTree) order(wanted []string) (ordered []*kmod, missing []string, err error) {
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(m *kmod) error
	visit = func(m *kmod) error {
		switch state[m.name] {
		case 1:
			return fmt.Errorf("module dependency cycle at %s", m.name)
		case 2:
			return nil
		}
		state[m.name] = 1
		if m.deps == nil {
			data, err := os.ReadFile(filepath.Join(t.root, m.rel))
			if err != nil {
				return err
			}
			m.deps = modinfoDeps(data)
			if m.deps == nil {
				m.deps = []string{}
			}
		}
		for _, d := range m.deps {
			if dm := t.resolve(d); dm != nil {
				if err := visit(dm); err != nil {
					return err
				}
			}
		}
		state[m.name] = 2
		ordered = append(ordered, m)
		return nil
	}
	for _, w := range wanted {
		m := t.resolve(w)
		if m == nil {
			missing = append(missing, w)
			continue
		}
		if err := visit(m); err != nil {
			return nil, nil, err
		}
	}
	return ordered, missing, nil
}

// modulesDep renders modules.dep for busybox modprobe.
func modulesDep(mods []*kmod, t *moduleTree) string {
	var b strings.Builder
	for _, m := range mods {
		b.WriteString(m.rel + ":")
		for _, d := range m.deps {
			if dm := t.resolve(d); dm != nil {
				b.WriteString(" " + dm.rel)
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}
