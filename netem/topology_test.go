package netem_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/labrun/labrun/journal"
	"github.com/labrun/labrun/netem"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func TestUp(t *testing.T) {
	tests := []struct {
		name  string
		hosts []string
	}{
		{"two hosts", []string{"client", "server"}},
		{"three hosts", []string{"client", "server", "replica"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := up(t, tt.hosts...)

			// Every namespace is in the journal by the time Up returns, so a
			// run killed right after can still be cleaned up.
			want := []string{netem.NSName(l.spec.RunID, "hub")}
			for _, h := range tt.hosts {
				want = append(want, netem.NSName(l.spec.RunID, h))
			}
			sort.Strings(want)
			pending, err := journal.Pending(l.j.Dir)
			if err != nil {
				t.Fatal(err)
			}
			var journaled []string
			for _, e := range pending {
				if e.Kind == journal.KindNetns {
					journaled = append(journaled, e.Name)
				}
			}
			sort.Strings(journaled)
			if !slices.Equal(journaled, want) {
				t.Errorf("journaled namespaces = %v, want %v", journaled, want)
			}
			if got := runNamespaces(t, l.spec.RunID); !slices.Equal(got, want) {
				t.Errorf("namespaces under /run/netns = %v, want %v", got, want)
			}

			if len(l.topo.Hosts) != len(tt.hosts) {
				t.Errorf("Hosts = %d entries, want %d (the hub is not a host)", len(l.topo.Hosts), len(tt.hosts))
			}
			for _, hs := range l.spec.Hosts {
				checkIface(t, l.host(t, hs.Name), netip.PrefixFrom(hs.Address, labSubnet.Bits()))
			}

			// Every host reaches every other over eth0: the listener sees the
			// dialer's lab address, not a loopback one.
			for _, a := range tt.hosts {
				for _, b := range tt.hosts {
					if a == b {
						continue
					}
					from, to := l.host(t, a), l.host(t, b)
					ln := listen(t, to, 3306)
					got := roundTrip(t, from, ln)
					ln.Close()
					if !strings.Contains(got, "hello from "+from.Address.String()+":") {
						t.Errorf("%s -> %s: answer %q, want it from %s", a, b, got, from.Address)
					}
				}
			}

			// The lab's addresses exist only inside its namespaces.
			addrs, err := net.InterfaceAddrs()
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range addrs {
				if p, err := netip.ParsePrefix(a.String()); err == nil && labSubnet.Contains(p.Addr()) {
					t.Errorf("host namespace has the lab address %s", a)
				}
			}
		})
	}
}

// checkIface checks that h has exactly lo and eth0, both up, with the
// host's address on eth0.
func checkIface(t *testing.T, h *netem.Host, want netip.Prefix) {
	t.Helper()
	nh, err := netlink.NewHandleAt(h.NS)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	links, err := nh.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
		if l.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("%s: %s is down", h.Name, l.Attrs().Name)
		}
	}
	sort.Strings(names)
	if !slices.Equal(names, []string{netem.Iface, "lo"}) {
		t.Errorf("%s: links %v, want [%s lo]", h.Name, names, netem.Iface)
	}
	l, err := nh.LinkByName(netem.Iface)
	if err != nil {
		t.Fatalf("%s: %v", h.Name, err)
	}
	addrs, err := nh.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range addrs {
		got = append(got, a.IPNet.String())
	}
	if !slices.Equal(got, []string{want.String()}) {
		t.Errorf("%s: %s addresses %v, want [%s]", h.Name, netem.Iface, got, want)
	}
	if h.Address != want.Addr() || h.Prefix != want {
		t.Errorf("%s: Host.Address, Prefix = %s, %s; want %s, %s", h.Name, h.Address, h.Prefix, want.Addr(), want)
	}
	// IPv6 is off so that router solicitations and DAD stay out of the
	// captures.
	v6, err := nh.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	if len(v6) != 0 {
		t.Errorf("%s: %s has IPv6 addresses %v", h.Name, netem.Iface, v6)
	}
}

func TestDown(t *testing.T) {
	l := up(t, "client", "server")
	for i := range 2 {
		// Down is idempotent: a second call, as from a signal handler after
		// the normal teardown, finds nothing and succeeds.
		if err := l.topo.Down(); err != nil {
			t.Fatalf("Down #%d: %v", i+1, err)
		}
		if left := runNamespaces(t, l.spec.RunID); len(left) > 0 {
			t.Errorf("after Down #%d: namespaces %v still under /run/netns", i+1, left)
		}
		for _, h := range l.topo.Hosts {
			if h.NS.IsOpen() {
				t.Errorf("after Down #%d: %s's namespace handle still open", i+1, h.Name)
			}
		}
	}
	// Down records what it removed, so a later cleanup has nothing to do.
	pending, err := journal.Pending(l.j.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range pending {
		if e.Kind == journal.KindNetns {
			t.Errorf("namespace %s still pending in the journal after Down", e.Name)
		}
	}
}

// A run whose Up failed halfway is torn down by the same Down.
func TestUpFailsHalfway(t *testing.T) {
	needRoot(t)
	l := up(t, "client")
	// A second Up with the same run ID finds its namespace names taken.
	j2, err := journal.Create(l.spec.RunID + "-again")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j2.Remove() })
	topo, err := netem.Up(l.spec, j2)
	if !errors.Is(err, os.ErrExist) {
		t.Errorf("Up over an existing run: %v, want ErrExist", err)
	}
	if topo == nil {
		t.Fatal("Up returned no topology to tear down")
	}
	// The first run's namespaces are not the failed run's to remove: it
	// never created them, so neither its Down nor its journal names them.
	if err := topo.Down(); err != nil {
		t.Errorf("Down of the failed run: %v", err)
	}
	if pending, err := journal.Clean(j2.Dir); err != nil || len(pending) != 0 {
		t.Errorf("Clean of the failed run = %v, %v", pending, err)
	}
	want := []string{netem.NSName(l.spec.RunID, "client"), netem.NSName(l.spec.RunID, "hub")}
	if got := runNamespaces(t, l.spec.RunID); !slices.Equal(got, want) {
		t.Errorf("namespaces = %v, want %v", got, want)
	}
}

// nsLink names the network namespace of the calling thread, "net:[INODE]".
func nsLink(t *testing.T) string {
	t.Helper()
	s, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDoAndStart(t *testing.T) {
	l := up(t, "client")
	h := l.host(t, "client")
	var st unix.Stat_t
	if err := unix.Fstat(int(h.NS), &st); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)

	// The test's own thread stays where it is, however many Do calls run:
	// each throws its thread away instead of returning it to the pool.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	home := nsLink(t)
	if home == want {
		t.Fatal("the test already runs in the lab namespace")
	}
	for range 20 {
		var got string
		if err := netem.Do(h.NS, func() error { got = nsLink(t); return nil }); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("inside Do: namespace %s, want %s", got, want)
		}
	}
	if got := nsLink(t); got != home {
		t.Errorf("after Do: test thread in %s, want %s", got, home)
	}
	// fn's error comes back as it is.
	sentinel := errors.New("from fn")
	if err := netem.Do(h.NS, func() error { return sentinel }); err != sentinel {
		t.Errorf("Do returned %v, want fn's error", err)
	}
	// A closed handle cannot be entered, and fn is not run.
	ran := false
	if err := netem.Do(netns.None(), func() error { ran = true; return nil }); err == nil || ran {
		t.Errorf("Do(None) = %v, ran %v; want an error and fn not run", err, ran)
	}

	// A child forked by Start lives in the namespace.
	cmd := exec.Command("readlink", "/proc/self/ns/net")
	var out strings.Builder
	cmd.Stdout = &out
	if err := netem.Start(h.NS, cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out.String()); got != want {
		t.Errorf("child started by Start: namespace %s, want %s", got, want)
	}
}
