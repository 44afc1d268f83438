package netem_test

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labrun/labrun/journal"
	"github.com/labrun/labrun/netem"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// The routed lab of Lab B: client on network a, server on network b, and a
// router "nat" between them (eth0 on a, eth1 on b). Its subnets exist only
// in the tests' namespaces; they differ from the other tests' so that a
// look at the host's conntrack table can tell them apart.
var (
	netA = netip.MustParsePrefix("10.89.246.0/24")
	netB = netip.MustParsePrefix("10.89.247.0/24")

	clientAddr  = netip.MustParseAddr("10.89.246.10")
	clientExtra = []netip.Addr{netip.MustParseAddr("10.89.246.11"), netip.MustParseAddr("10.89.246.12")}
	serverAddr  = netip.MustParseAddr("10.89.247.10")
	routerA     = netip.MustParseAddr("10.89.246.1")
	routerB     = netip.MustParseAddr("10.89.247.1")
	routerBPool = netip.MustParseAddr("10.89.247.2")
)

const (
	snatRule     = "-t nat -A POSTROUTING -o eth1 -p tcp -j SNAT --to-source 10.89.247.1:20000-20099"
	snatFirst    = 20000
	snatLast     = 20099
	stripSYNRule = "-t mangle -A POSTROUTING -o eth1 -p tcp --tcp-flags SYN SYN -j TCPOPTSTRIP --strip-options timestamp"
	stripAllRule = "-t mangle -A POSTROUTING -o eth1 -p tcp -j TCPOPTSTRIP --strip-options timestamp"
)

func routedSpec(runID string) netem.Spec {
	return netem.Spec{
		RunID:    runID,
		Networks: []netem.NetworkSpec{{Name: "a", Subnet: netA}, {Name: "b", Subnet: netB}},
		Hosts: []netem.HostSpec{
			{Name: "client", Network: "a", Address: clientAddr, Extra: clientExtra},
			{Name: "server", Network: "b", Address: serverAddr},
		},
		Routers: []netem.RouterSpec{{Name: "nat", Links: []netem.LinkSpec{
			{Network: "a", Address: routerA},
			{Network: "b", Address: routerB, Extra: []netip.Addr{routerBPool}},
		}}},
	}
}

// upRouted brings up the routed lab. Its cleanup checks that Down leaves
// no namespace of the run, and nothing of the lab in the host's conntrack
// table.
func upRouted(t *testing.T) *lab {
	t.Helper()
	needRoot(t)
	oldRoot := journal.Root
	journal.Root = filepath.Join(t.TempDir(), "runs")
	t.Cleanup(func() { journal.Root = oldRoot })
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	spec := routedSpec("t" + hex.EncodeToString(b))
	j, err := journal.Create(spec.RunID)
	if err != nil {
		t.Fatal(err)
	}
	topo, err := netem.Up(spec, j)
	t.Cleanup(func() {
		if err := topo.Down(); err != nil {
			t.Errorf("Down: %v", err)
		}
		if left := runNamespaces(t, spec.RunID); len(left) > 0 {
			t.Errorf("namespaces left after Down: %v", left)
		}
		if es := hostLabConntrack(t); len(es) > 0 {
			t.Errorf("host conntrack has %d lab entries after Down: %v", len(es), es)
		}
		j.Remove()
	})
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	return &lab{spec: spec, topo: topo, j: j}
}

// hostLabConntrack lists the host namespace's conntrack entries that
// involve a lab subnet. It only reads the table, from a thread that never
// left the host namespace.
func hostLabConntrack(t *testing.T) []netem.ConntrackEntry {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	es, err := netem.ListConntrack(self)
	if err != nil {
		t.Fatalf("host conntrack: %v", err)
	}
	var out []netem.ConntrackEntry
	for _, e := range es {
		for _, a := range []netip.Addr{e.Src.Addr(), e.Dst.Addr(), e.ReplySrc.Addr(), e.ReplyDst.Addr()} {
			if netA.Contains(a) || netB.Contains(a) {
				out = append(out, e)
				break
			}
		}
	}
	return out
}

// hostLinks names the links of the host namespace.
func hostLinks(t *testing.T) []string {
	t.Helper()
	ls, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		out = append(out, l.Attrs().Name)
	}
	sort.Strings(out)
	return out
}

func TestRoutedUp(t *testing.T) {
	linksBefore := hostLinks(t)
	forwardBefore := hostSysctls(t, []string{"net.ipv4.ip_forward"})
	l := upRouted(t)
	client, server, router := l.host(t, "client"), l.host(t, "server"), l.host(t, "nat")

	want := []string{}
	for _, h := range []string{"client", "hub", "nat", "server"} {
		want = append(want, netem.NSName(l.spec.RunID, h))
	}
	if got := runNamespaces(t, l.spec.RunID); !slices.Equal(got, want) {
		t.Errorf("namespaces = %v, want %v", got, want)
	}
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

	// Addresses and interfaces, by host.
	tests := []struct {
		host   *netem.Host
		ifaces map[string][]string // interface -> addresses
		gw     netip.Addr          // default route; zero for none
		fwd    string
	}{
		{client, map[string][]string{"eth0": {"10.89.246.10/24", "10.89.246.11/24", "10.89.246.12/24"}}, routerA, "0"},
		{server, map[string][]string{"eth0": {"10.89.247.10/24"}}, routerB, "0"},
		{router, map[string][]string{"eth0": {"10.89.246.1/24"}, "eth1": {"10.89.247.1/24", "10.89.247.2/24"}}, netip.Addr{}, "1"},
	}
	for _, tt := range tests {
		t.Run(tt.host.Name, func(t *testing.T) {
			nh, err := netlink.NewHandleAt(tt.host.NS)
			if err != nil {
				t.Fatal(err)
			}
			defer nh.Close()
			links, err := nh.LinkList()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]string{}
			for _, lk := range links {
				if lk.Attrs().Flags&net.FlagUp == 0 {
					t.Errorf("%s is down", lk.Attrs().Name)
				}
				if lk.Attrs().Name == "lo" {
					continue
				}
				as, err := nh.AddrList(lk, netlink.FAMILY_ALL)
				if err != nil {
					t.Fatal(err)
				}
				got[lk.Attrs().Name] = []string{}
				for _, a := range as {
					got[lk.Attrs().Name] = append(got[lk.Attrs().Name], a.IPNet.String())
				}
				sort.Strings(got[lk.Attrs().Name])
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.ifaces) {
				t.Errorf("interfaces = %v, want %v", got, tt.ifaces)
			}
			routes, err := nh.RouteList(nil, netlink.FAMILY_V4)
			if err != nil {
				t.Fatal(err)
			}
			var gw netip.Addr
			for _, r := range routes {
				if r.Dst == nil || r.Dst.IP.IsUnspecified() {
					gw, _ = netip.AddrFromSlice(r.Gw.To4())
				}
			}
			if gw != tt.gw {
				t.Errorf("default route via %v, want %v", gw, tt.gw)
			}
			if got, err := tt.host.ReadSysctls([]string{"net.ipv4.ip_forward"}); err != nil || got["net.ipv4.ip_forward"] != tt.fwd {
				t.Errorf("ip_forward = %v, %v; want %s", got, err, tt.fwd)
			}
		})
	}
	if !router.Router || len(router.Links) != 2 || router.Links[1].Iface != "eth1" || router.Links[1].Network != "b" {
		t.Errorf("router Host = %+v", router)
	}
	if lk, ok := router.LinkOn("b"); !ok || lk.Prefix.Addr() != routerB || len(lk.Extra) != 1 {
		t.Errorf("router LinkOn(b) = %+v, %v", lk, ok)
	}
	if n := l.topo.Networks["b"]; n == nil || n.Gateway != routerB || n.Bridge != "br1" {
		t.Errorf("network b = %+v", n)
	}
	// The hub has one bridge per network, and no forwarding.
	hubNS, err := netns.GetFromName(netem.NSName(l.spec.RunID, "hub"))
	if err != nil {
		t.Fatal(err)
	}
	defer hubNS.Close()
	if err := netem.Do(hubNS, func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		if err == nil && strings.TrimSpace(string(b)) != "0" {
			err = fmt.Errorf("hub ip_forward = %s", b)
		}
		for _, br := range []string{"br0", "br1"} {
			if _, err := netlink.LinkByName(br); err != nil {
				return fmt.Errorf("hub bridge %s: %w", br, err)
			}
		}
		return err
	}); err != nil {
		t.Error(err)
	}

	if got := hostSysctls(t, []string{"net.ipv4.ip_forward"}); !slices.Equal([]string{got["net.ipv4.ip_forward"]}, []string{forwardBefore["net.ipv4.ip_forward"]}) {
		t.Errorf("host ip_forward changed: %v, was %v", got, forwardBefore)
	}
	if err := l.topo.Down(); err != nil {
		t.Fatal(err)
	}
	if got := hostLinks(t); !slices.Equal(got, linksBefore) {
		t.Errorf("host links after Down = %v, want %v", got, linksBefore)
	}
}

// answerOnce serves ln until it is closed: each connection gets the
// address it came from, and the server closes first, as the MySQL server
// of Lab B does, so that the TIME_WAIT is the server's.
func answerOnce(t *testing.T, ln *net.TCPListener) <-chan netip.AddrPort {
	seen := make(chan netip.AddrPort, 1000)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ra := c.RemoteAddr().(*net.TCPAddr).AddrPort()
			seen <- netip.AddrPortFrom(ra.Addr().Unmap(), ra.Port())
			c.SetDeadline(time.Now().Add(ioTimeout))
			fmt.Fprintf(c, "%s\n", ra)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return seen
}

// shortConn connects from h (from src when it is valid), reads the
// server's line and closes after the server has. It returns the client's
// local address and what the server saw.
func shortConn(h *netem.Host, src netip.Addr, to netip.AddrPort) (local netip.AddrPort, seen string, err error) {
	var c net.Conn
	err = netem.Do(h.NS, func() error {
		d := net.Dialer{Timeout: ioTimeout}
		if src.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
		var err error
		c, err = d.Dial("tcp4", to.String())
		return err
	})
	if err != nil {
		return local, "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return local, "", err
	}
	// Wait for the server's FIN, so that the close below is the second.
	if _, err := r.ReadByte(); err != io.EOF {
		return local, "", fmt.Errorf("after the answer: %v, want EOF", err)
	}
	la := c.LocalAddr().(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(la.Addr().Unmap(), la.Port()), strings.TrimSpace(line), nil
}

// Without NAT each side sees the other's own address, both ways, from any
// of the client's addresses.
func TestRoutedForwarding(t *testing.T) {
	l := upRouted(t)
	client, server := l.host(t, "client"), l.host(t, "server")
	tests := []struct {
		name     string
		from, to *netem.Host
		src      netip.Addr
		want     netip.Addr
	}{
		{"client to server", client, server, netip.Addr{}, clientAddr},
		{"client to server from an extra address", client, server, clientExtra[1], clientExtra[1]},
		{"server to client", server, client, netip.Addr{}, serverAddr},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln := listen(t, tt.to, uint16(3306+i))
			answerOnce(t, ln)
			_, seen, err := shortConn(tt.from, tt.src, ln.Addr().(*net.TCPAddr).AddrPort())
			if err != nil {
				t.Fatal(err)
			}
			if a, err := netip.ParseAddrPort(seen); err != nil || a.Addr() != tt.want {
				t.Errorf("the listener saw %q, want %s", seen, tt.want)
			}
		})
	}
	// A host plugged late gets its default route like the others.
	late := netem.HostSpec{Name: "late", Network: "b", Address: serverAddr.Next(), Extra: []netip.Addr{serverAddr.Next().Next()}}
	if _, err := l.topo.Plug(late); err != nil {
		t.Fatalf("Plug: %v", err)
	}
	if _, err := l.topo.Plug(netem.HostSpec{Name: "nowhere", Network: "z", Address: serverAddr}); err == nil {
		t.Error("Plug on an unknown network succeeded")
	}
	ln := listen(t, client, 3310)
	answerOnce(t, ln)
	_, seen, err := shortConn(l.host(t, "late"), late.Extra[0], ln.Addr().(*net.TCPAddr).AddrPort())
	if err != nil {
		t.Fatalf("late -> client: %v", err)
	}
	if a, err := netip.ParseAddrPort(seen); err != nil || a.Addr() != late.Extra[0] {
		t.Errorf("the client saw %q, want %s", seen, late.Extra[0])
	}

	// The router tracks nothing while no rule asks for conntrack.
	es, err := l.host(t, "nat").Conntrack()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("router conntrack without rules: %d entries", len(es))
}

func applyRule(t *testing.T, h *netem.Host, rule, step string) {
	t.Helper()
	if _, err := h.Rules().Apply(parseRule(t, rule), step); err != nil {
		t.Fatalf("%s: %v", rule, err)
	}
}

// SNAT to a port range: over 50 short connections, the server sees the
// router's address and a port inside the range, every time.
func TestSNATPortRange(t *testing.T) {
	needIptables(t)
	hostBefore := hostRuleset(t)
	l := upRouted(t)
	client, server, router := l.host(t, "client"), l.host(t, "server"), l.host(t, "nat")
	applyRule(t, router, snatRule, "snat")
	ln := listen(t, server, 3306)
	seen := answerOnce(t, ln)
	to := ln.Addr().(*net.TCPAddr).AddrPort()

	const n = 50
	var ports []int
	clientPorts := map[uint16]bool{}
	for i := range n {
		// Every other connection from an extra address: SNAT hides them
		// all behind the same one.
		src := netip.Addr{}
		if i%2 == 1 {
			src = clientExtra[0]
		}
		local, _, err := shortConn(client, src, to)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		clientPorts[local.Port()] = true
		from := <-seen
		if from.Addr() != routerB {
			t.Errorf("connection %d: the server saw %s, want the router's %s", i, from, routerB)
		}
		if from.Port() < snatFirst || from.Port() > snatLast {
			t.Errorf("connection %d: source port %d outside %d-%d", i, from.Port(), snatFirst, snatLast)
		}
		ports = append(ports, int(from.Port()))
	}
	distinct := map[int]bool{}
	for _, p := range ports {
		distinct[p] = true
	}
	t.Logf("SNAT ports in connection order (%d distinct of %d): %v", len(distinct), n, ports)

	es, err := router.Conntrack()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("router conntrack after %d connections: %v", n, netem.CountByState(es))
	for _, e := range es {
		if e.Proto == "tcp" && e.Dst == to && (e.ReplyDst.Addr() != routerB || e.ReplyDst.Port() < snatFirst || e.ReplyDst.Port() > snatLast) {
			t.Errorf("conntrack entry %+v: reply to %s, want %s:%d-%d", e, e.ReplyDst, routerB, snatFirst, snatLast)
		}
	}
	if after := hostRuleset(t); after != hostBefore {
		t.Errorf("host namespace's rules changed:\nbefore:\n%s\nafter:\n%s", hostBefore, after)
	}
}
