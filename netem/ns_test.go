package netem_test

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/labrun/labrun/journal"
	"github.com/labrun/labrun/netem"
)

// The namespace tier: every test builds its own lab through netem.Up, with
// a run ID of its own ("t" + random hex) and a journal under a temporary
// Root, and tears it down in t.Cleanup. Nothing is done in the host
// namespace except reading it, to prove that it did not change.

// labSubnet is the tests' lab subnet. It only exists inside the tests'
// namespaces, so it cannot clash with the host's addresses.
var labSubnet = netip.MustParsePrefix("10.89.252.0/24")

// ioTimeout bounds every wait on traffic that is expected to get through,
// so that a broken path fails the test instead of hanging it. It is a
// limit, not an assertion on how long anything takes.
const ioTimeout = 10 * time.Second

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creating network namespaces")
	}
	if testing.Short() {
		t.Skip("-short: namespace tier skipped")
	}
}

type lab struct {
	spec netem.Spec
	topo *netem.Topology
	j    *journal.Journal
}

// up brings up a lab with the named hosts at .10, .11, ... of labSubnet.
// journal.Root is a package variable: tests that call up do not run in
// parallel.
func up(t *testing.T, hosts ...string) *lab {
	t.Helper()
	return upSpec(t, nil, hosts...)
}

// upSpec is up with a last change to the spec before Up, e.g. a host with
// an existing namespace.
func upSpec(t *testing.T, edit func(*netem.Spec), hosts ...string) *lab {
	t.Helper()
	needRoot(t)
	oldRoot := journal.Root
	journal.Root = filepath.Join(t.TempDir(), "runs")
	t.Cleanup(func() { journal.Root = oldRoot })

	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	spec := netem.Spec{RunID: "t" + hex.EncodeToString(b), Subnet: labSubnet}
	addr := labSubnet.Addr()
	for range 10 {
		addr = addr.Next()
	}
	for _, h := range hosts {
		spec.Hosts = append(spec.Hosts, netem.HostSpec{Name: h, Address: addr})
		addr = addr.Next()
	}
	if edit != nil {
		edit(&spec)
	}
	j, err := journal.Create(spec.RunID)
	if err != nil {
		t.Fatal(err)
	}
	topo, err := netem.Up(spec, j)
	// Up returns what it built even when it fails, so teardown is
	// registered before the error is looked at.
	t.Cleanup(func() {
		if err := topo.Down(); err != nil {
			t.Errorf("Down: %v", err)
		}
		if left := runNamespaces(t, spec.RunID); len(left) > 0 {
			t.Errorf("namespaces left after Down: %v", left)
		}
		j.Remove()
	})
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	return &lab{spec: spec, topo: topo, j: j}
}

func (l *lab) host(t *testing.T, name string) *netem.Host {
	t.Helper()
	h, ok := l.topo.Hosts[name]
	if !ok {
		t.Fatalf("no host %q in the topology", name)
	}
	return h
}

// runNamespaces lists the namespaces of one run under /run/netns; other
// runs (other tests, other people's labs) are not ours to look at.
func runNamespaces(t *testing.T, runID string) []string {
	t.Helper()
	all, err := netem.Namespaces()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range all {
		if strings.HasPrefix(n, "lr-"+runID+"-") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// listen opens a TCP listener on h's address inside h's namespace: a socket
// belongs to the namespace of the thread that created it.
func listen(t *testing.T, h *netem.Host, port uint16) *net.TCPListener {
	t.Helper()
	var ln net.Listener
	err := netem.Do(h.NS, func() error {
		var err error
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(h.Address, port).String())
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s: %v", h.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// dial connects from inside h's namespace.
func dial(h *netem.Host, to netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := netem.Do(h.NS, func() error {
		var err error
		c, err = (&net.Dialer{Timeout: timeout}).Dial("tcp4", to.String())
		return err
	})
	return c, err
}

// echoPeer accepts one connection on ln and answers one line with the
// address it saw the client come from.
func echoPeer(ln *net.TCPListener) <-chan error {
	errc := make(chan error, 1)
	go func() {
		ln.SetDeadline(time.Now().Add(ioTimeout))
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(ioTimeout))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			errc <- err
			return
		}
		_, err = fmt.Fprintf(c, "%s from %s\n", strings.TrimSpace(line), c.RemoteAddr())
		errc <- err
	}()
	return errc
}

// roundTrip sends one line from a to b's listener and returns b's answer.
func roundTrip(t *testing.T, from *netem.Host, ln *net.TCPListener) string {
	t.Helper()
	errc := echoPeer(ln)
	to := ln.Addr().(*net.TCPAddr).AddrPort()
	c, err := dial(from, to, ioTimeout)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", to, from.Name, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := fmt.Fprintf(c, "hello\n"); err != nil {
		t.Fatal(err)
	}
	answer, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read from %s: %v", to, err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("peer %s: %v", to, err)
	}
	return strings.TrimSpace(answer)
}
