package drill

import (
	"fmt"
	"sort"
	"strings"

	"github.com/vigil-lb/vigil/config"
	"github.com/vigil-lb/vigil/vrrp"
)

// preflight lists what would make a drill of inst meaningless or risky:
// another site file in the daemon, a warning of the daemon, a director
// absent from the cluster channel or running another site file, another
// health view or IPVS table on a peer, no backup to take over.
func preflight(site *config.Site, st status, inst string) []string {
	var out []string
	if st.raw.Digest != site.Digest() {
		out = append(out, fmt.Sprintf("the daemon runs digest %.12s but %s has %.12s: reload it first", st.raw.Digest, site.File, site.Digest()))
	}
	for _, w := range st.raw.Warnings {
		out = append(out, "daemon warns: "+w)
	}
	peers := map[string]peer{}
	for _, p := range st.peers {
		peers[p.raw.Name] = p
	}
	backups := 0
	for _, d := range site.Directors {
		if d.Name == st.node {
			continue
		}
		p, ok := peers[d.Name]
		switch {
		case !ok || !p.raw.Alive:
			out = append(out, fmt.Sprintf("director %s is not present on the cluster channel", d.Name))
			continue
		case p.raw.Digest != st.raw.Digest:
			out = append(out, fmt.Sprintf("director %s runs another site file (digest %.12s, ours %.12s)", d.Name, p.raw.Digest, st.raw.Digest))
		}
		if s, ok := p.states[inst]; ok && s == vrrp.Backup {
			backups++
		}
		if diff := healthDiff(st.raw.Health, p.raw.Health); diff != "" {
			out = append(out, fmt.Sprintf("director %s sees other real-server health: %s", d.Name, diff))
		}
		if p.raw.IPVSDigest != st.raw.IPVSDigest {
			out = append(out, fmt.Sprintf("director %s has another IPVS table (digest %.12s, ours %.12s)", d.Name, p.raw.IPVSDigest, st.raw.IPVSDigest))
		}
	}
	if backups == 0 {
		out = append(out, fmt.Sprintf("no director is backup of %s: nobody would take over", inst))
	}
	return out
}

// healthDiff describes where two health views differ, in a stable order.
func healthDiff(a, b map[string]bool) string {
	var diffs []string
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			diffs = append(diffs, fmt.Sprintf("%s ours=%v theirs=%v", k, v, w))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			diffs = append(diffs, k+" unknown here")
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, "; ")
}
