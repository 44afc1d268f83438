package netem_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labrun/labrun/netem"
)

func TestProbe(t *testing.T) {
	needRoot(t)
	caps := netem.Probe()
	byName := map[string]netem.Capability{}
	for _, c := range caps {
		byName[c.Name] = c
	}
	want := []string{"root", "network namespaces", "veth", "bridge", "tbf qdisc"}
	if _, err := exec.LookPath("iptables"); err == nil {
		want = append(want, "iptables")
	}
	for _, name := range want {
		if c, ok := byName[name]; !ok || !c.OK {
			t.Errorf("capability %q = %+v, %v; want ok", name, c, ok)
		}
	}
	// A netlink handle is reported only when it fails.
	if c, ok := byName["netlink"]; ok {
		t.Errorf("capability netlink: %+v", c)
	}
	// The netem qdisc may be missing from this kernel; then it says so
	// with the sentinel's text, not with a bare errno.
	if c, ok := byName["netem qdisc"]; ok && !c.OK && !strings.Contains(c.Detail, netem.ErrNoNetem.Error()) {
		t.Errorf("netem qdisc detail %q does not explain what is missing", c.Detail)
	}

	// Probe works in a namespace of its own, named in the detail, and
	// removes it.
	ns := byName["network namespaces"].Detail
	i := strings.Index(ns, "lr-probe-")
	if i < 0 {
		t.Fatalf("network namespaces detail %q names no lr-probe- namespace", ns)
	}
	name := ns[i:]
	if !netem.IsRunNamespace(name) {
		t.Errorf("IsRunNamespace(%q) = false: labrun doctor would not see a leftover probe", name)
	}
	if _, err := os.Stat(filepath.Join("/run/netns", name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("probe namespace %s left behind: %v", name, err)
	}
}
