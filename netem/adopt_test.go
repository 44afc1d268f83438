package netem_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labrun/labrun/journal"
	"github.com/labrun/labrun/netem"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// outsideNS creates a named namespace that the topology does not own, as a
// container's is, and removes it at the end of the test. Its name does not
// start with "lr-", so no labrun cleanup takes it for a run's.
func outsideNS(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name := "lrtest-" + hex.EncodeToString(b)
	ns, err := netem.NewNamed(name)
	if err != nil {
		t.Fatalf("outside namespace: %v", err)
	}
	ns.Close()
	t.Cleanup(func() { netns.DeleteNamed(name) })
	return filepath.Join("/run/netns", name)
}

// A namespace that exists before the host does (a container's) is plugged
// in like any other, at Up or later with Plug; Down removes its run name and
// its link but leaves the namespace to its owner.
func TestAdoptedNamespace(t *testing.T) {
	tests := []struct {
		name string
		late bool // Plug after Up instead of a HostSpec given to Up
	}{
		{"at Up", false},
		{"plugged late", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			needRoot(t)
			path := outsideNS(t)
			var l *lab
			server := netem.HostSpec{Name: "server", NSPath: path}
			if tt.late {
				l = up(t, "client")
				server.Address = l.spec.Hosts[0].Address.Next()
				if _, err := l.topo.Plug(server); err != nil {
					t.Fatalf("Plug: %v", err)
				}
				if _, err := l.topo.Plug(server); err == nil {
					t.Error("a second Plug of the same host succeeded")
				}
			} else {
				l = upSpec(t, func(spec *netem.Spec) {
					server.Address = spec.Hosts[0].Address.Next()
					spec.Hosts = append(spec.Hosts, server)
				}, "client")
			}
			h := l.host(t, server.Name)
			if !h.Adopted {
				t.Error("Host.Adopted is false for a namespace given by path")
			}
			checkIface(t, h, netip.PrefixFrom(server.Address, labSubnet.Bits()))
			ln := listen(t, h, 3306)
			if got := roundTrip(t, l.host(t, "client"), ln); !strings.Contains(got, "hello from ") {
				t.Errorf("client -> %s: answer %q", server.Name, got)
			}
			ln.Close()

			// The run's name for it is journaled, so that cleanup unmounts it.
			pending, err := journal.Pending(l.j.Dir)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, e := range pending {
				found = found || e.Kind == journal.KindNetns && e.Name == h.NSName
			}
			if !found {
				t.Errorf("%s is not in the journal", h.NSName)
			}

			if err := l.topo.Down(); err != nil {
				t.Fatalf("Down: %v", err)
			}
			if _, err := os.Stat(filepath.Join("/run/netns", h.NSName)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s still named after Down: %v", h.NSName, err)
			}
			// The namespace itself is still there, without the lab link.
			ns, err := netns.GetFromPath(path)
			if err != nil {
				t.Fatalf("the adopted namespace is gone: %v", err)
			}
			defer ns.Close()
			nh, err := netlink.NewHandleAt(ns)
			if err != nil {
				t.Fatal(err)
			}
			defer nh.Close()
			if _, err := nh.LinkByName(netem.Iface); err == nil {
				t.Errorf("%s is still in the adopted namespace after Down", netem.Iface)
			}
		})
	}
}
