package capture

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/labrun/labrun/netem"
)

// A lab for the namespace tests: a server and a client namespace joined by
// a veth pair, eth0 on both sides, in 10.89.250.0/24. Everything is created
// inside the two namespaces; the host namespace is never touched, and
// deleting the namespaces in t.Cleanup removes links, rules and sysctls.
type testLab struct {
	server, client         netns.NsHandle
	serverAddr, clientAddr netip.Addr
}

const labIface = "eth0"

var (
	labServerAddr = netip.MustParseAddr("10.89.250.1")
	labClientAddr = netip.MustParseAddr("10.89.250.2")
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creating network namespaces")
	}
}

// newNamedNS creates a namespace, deleted at the end of the test.
func newNamedNS(t *testing.T, name string) netns.NsHandle {
	t.Helper()
	h, err := netem.NewNamed(name)
	if errors.Is(err, os.ErrPermission) {
		t.Skipf("needs CAP_SYS_ADMIN: creating network namespaces: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return h
}

func newTestLab(t *testing.T) *testLab {
	t.Helper()
	needRoot(t)
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(rnd[:])
	l := &testLab{
		server:     newNamedNS(t, "lrtest-"+id+"-s"),
		client:     newNamedNS(t, "lrtest-"+id+"-c"),
		serverAddr: labServerAddr,
		clientAddr: labClientAddr,
	}
	hs, err := netlink.NewHandleAt(l.server)
	if err != nil {
		t.Fatal(err)
	}
	defer hs.Close()
	hc, err := netlink.NewHandleAt(l.client)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	// The peer is created straight in the client namespace.
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: labIface}, PeerName: labIface, PeerNamespace: netlink.NsFd(l.client)}
	if err := hs.LinkAdd(veth); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			t.Skipf("needs the veth kernel module: %v", err)
		}
		t.Fatalf("create veth pair: %v", err)
	}
	for _, side := range []struct {
		h    *netlink.Handle
		addr netip.Addr
	}{{hs, l.serverAddr}, {hc, l.clientAddr}} {
		for _, name := range []string{"lo", labIface} {
			link, err := side.h.LinkByName(name)
			if err != nil {
				t.Fatalf("link %s: %v", name, err)
			}
			if name == labIface {
				a, _ := netlink.ParseAddr(side.addr.String() + "/24")
				if err := side.h.AddrAdd(link, a); err != nil {
					t.Fatalf("address %s: %v", side.addr, err)
				}
			}
			if err := side.h.LinkSetUp(link); err != nil {
				t.Fatalf("link %s up: %v", name, err)
			}
		}
	}
	return l
}

// sysctl writes per-namespace sysctls from a thread inside ns: /proc/sys/net
// shows the namespace of the task that opens it. Keys that this kernel does
// not have are skipped when optional.
func sysctl(t *testing.T, ns netns.NsHandle, optional bool, kv ...string) {
	t.Helper()
	err := netem.Do(ns, func() error {
		for i := 0; i+1 < len(kv); i += 2 {
			path := "/proc/sys/" + strings.ReplaceAll(kv[i], ".", "/")
			if err := os.WriteFile(path, []byte(kv[i+1]), 0o644); err != nil {
				if optional && errors.Is(err, os.ErrNotExist) {
					continue
				}
				return fmt.Errorf("sysctl %s: %w", kv[i], err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// iptables adds a rule inside ns; the iptables binary runs on a thread of
// the namespace, so the rule lands in the namespace's own tables.
func iptables(t *testing.T, ns netns.NsHandle, rule ...string) {
	t.Helper()
	bin, err := exec.LookPath("iptables")
	if err != nil {
		t.Skip("needs iptables: not in PATH")
	}
	cmd := exec.Command(bin, append([]string{"-w"}, rule...)...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := netem.Do(ns, cmd.Run); err != nil {
		t.Fatalf("iptables %s: %v\n%s", strings.Join(rule, " "), err, out.String())
	}
}

// listen opens a TCP listener in the server namespace and answers every
// connection with "pong\n" after reading a line; it is closed in cleanup.
func (l *testLab) listen(t *testing.T, port int) {
	t.Helper()
	var ln net.Listener
	if err := netem.Do(l.server, func() error {
		var err error
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(l.serverAddr, uint16(port)).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 5)
				if _, err := io.ReadFull(c, buf); err == nil {
					c.Write([]byte("pong\n"))
				}
				io.Copy(io.Discard, c)
			}()
		}
	}()
}

// dial connects from the client namespace; the kernel's SYN timers decide
// how long it takes, bounded by ctx.
func (l *testLab) dial(ctx context.Context, port int) (net.Conn, error) {
	var c net.Conn
	err := netem.Do(l.client, func() error {
		var err error
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp4", netip.AddrPortFrom(l.serverAddr, uint16(port)).String())
		return err
	})
	return c, err
}

func startCapture(t *testing.T, ns netns.NsHandle, name string) (*Capture, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".pcap")
	c, err := Start(ns, labIface, path)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { c.Stop() })
	return c, path
}

// waitFor polls Sockets until cond holds, for at most limit: a bound, not
// a timing assertion.
func waitFor(t *testing.T, ns netns.NsHandle, port int, limit time.Duration, cond func([]Socket) bool) []Socket {
	t.Helper()
	end := time.Now().Add(limit)
	for {
		socks, err := Sockets(ns, port)
		if err != nil {
			t.Fatalf("Sockets: %v", err)
		}
		if cond(socks) || time.Now().After(end) {
			return socks
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hasState(state string) func([]Socket) bool {
	return func(socks []Socket) bool {
		for _, s := range socks {
			if s.State == state {
				return true
			}
		}
		return false
	}
}

func TestCaptureConnectionBothDirections(t *testing.T) {
	t.Parallel()
	l := newTestLab(t)
	const port = 3306
	l.listen(t, port)

	// A pcap path that exists with a wider mode must end up 0600 too.
	path := filepath.Join(t.TempDir(), "server.pcap")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Start(l.server, labIface, path)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	// The first SYN leaves right after Start returns: it must be captured.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := l.dial(ctx, port)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatalf("read pong: %v", err)
	}
	local, _ := netip.ParseAddrPort(conn.LocalAddr().String())
	server := netip.AddrPortFrom(l.serverAddr, port)

	socks := waitFor(t, l.server, port, 5*time.Second, hasState("ESTABLISHED"))
	if !hasState("ESTABLISHED")(socks) || !hasState("LISTEN")(socks) {
		t.Errorf("server sockets %v, want LISTEN and ESTABLISHED", socks)
	}
	// The client closes first, so its side holds TIME_WAIT.
	conn.Close()
	socks = waitFor(t, l.client, port, 5*time.Second, hasState("TIME_WAIT"))
	if !hasState("TIME_WAIT")(socks) {
		t.Errorf("client sockets %v, want TIME_WAIT", socks)
	}
	for _, s := range socks {
		if s.State == "TIME_WAIT" && (s.Local != local || s.Remote != server || s.Timer != "timewait") {
			t.Errorf("TIME_WAIT socket %v, want %s -> %s with the timewait timer", s, local, server)
		}
	}
	// Let the final ACK cross before stopping.
	waitFor(t, l.server, port, 5*time.Second, func(s []Socket) bool { return !hasState("ESTABLISHED")(s) && !hasState("LAST_ACK")(s) })

	st, err := c.Stop()
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if st2, err2 := c.Stop(); st2 != st || err2 != nil {
		t.Errorf("second Stop: %+v, %v; want %+v, nil", st2, err2, st)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("pcap mode %v, want 0600", fi.Mode().Perm())
	}

	a, err := Analyze(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Packets != a.Frames || st.Dropped != 0 {
		t.Errorf("stats %+v, file has %d frames; want equal and no drops", st, a.Frames)
	}
	flows := a.Flows(l.clientAddr, server)
	if len(flows) != 1 || flows[0].Client != local {
		t.Fatalf("flows %d, want one from %s", len(flows), local)
	}
	f := flows[0]
	// Received (SYN, the client's data) and sent (SYN-ACK, the server's
	// data) frames are both in the capture.
	if len(f.SYNs()) != 1 || len(f.SYNACKs()) != 1 {
		t.Errorf("SYNs %d, SYN-ACKs %d; want 1 each", len(f.SYNs()), len(f.SYNACKs()))
	}
	payload := map[netip.AddrPort]int{}
	for _, p := range f.Packets {
		payload[p.Src] += p.Payload
	}
	if payload[local] != 5 || payload[server] != 5 {
		t.Errorf("payload bytes client %d, server %d; want 5 each", payload[local], payload[server])
	}
	if len(f.FINs(local)) != 1 || len(f.FINs(server)) != 1 {
		t.Errorf("FINs client %d, server %d; want 1 each", len(f.FINs(local)), len(f.FINs(server)))
	}
	for i := 1; i < len(a.Packets); i++ {
		if a.Packets[i].Time.Before(a.Packets[i-1].Time) {
			t.Errorf("frame %d goes back in time", a.Packets[i].Frame)
		}
	}
	if tshark, err := exec.LookPath("tshark"); err == nil {
		compareWithTshark(t, tshark, path)
	} else {
		t.Log("tshark not in PATH: oracle comparison skipped")
	}
}

// TestSYNRetransmissions is Lab E's first fact at test scale: the server
// drops SYNs to the port; with tcp_syn_retries=1 and no linear timeouts
// the client sends its SYN twice and gives up after about 3 s.
func TestSYNRetransmissions(t *testing.T) {
	t.Parallel()
	l := newTestLab(t)
	const port = 3306
	l.listen(t, port)
	iptables(t, l.server, "-A", "INPUT", "-p", "tcp", "--dport", fmt.Sprint(port), "-j", "DROP")
	sysctl(t, l.client, false, "net.ipv4.tcp_syn_retries", "1")
	sysctl(t, l.client, true, "net.ipv4.tcp_syn_linear_timeouts", "0")

	c, path := startCapture(t, l.server, "server")
	sampler := StartSampler(l.client, "client", port, 20*time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := l.dial(ctx, port)
	samples := sampler.Stop()
	if err == nil {
		t.Fatal("dial succeeded through a DROP rule")
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) && !strings.Contains(err.Error(), "timed out") {
		t.Errorf("dial error %v, want connection timed out", err)
	}
	if _, err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	sawSYNSent := false
	for _, sp := range Spans(samples) {
		if sp.State == "SYN_SENT" && sp.Remote == netip.AddrPortFrom(l.serverAddr, port) {
			sawSYNSent = true
		}
	}
	if !sawSYNSent {
		t.Errorf("no SYN_SENT socket in %d client samples", len(samples))
	}

	a, err := Analyze(path)
	if err != nil {
		t.Fatal(err)
	}
	flows := a.Flows(l.clientAddr, netip.AddrPortFrom(l.serverAddr, port))
	if len(flows) != 1 {
		t.Fatalf("got %d flows, want 1", len(flows))
	}
	syns := flows[0].SYNs()
	if got := count(syns, retransmitted); len(syns) != 2 || got != 1 {
		t.Errorf("SYNs %d with %d retransmissions, want 2 with 1", len(syns), got)
	}
	// A kernel timer never fires early; late is fine.
	if iv := Intervals(syns); len(iv) == 1 && iv[0] < 900*time.Millisecond {
		t.Errorf("SYN retransmitted after %v, before its 1 s timeout", iv[0])
	}
	if len(flows[0].SYNACKs()) != 0 {
		t.Errorf("SYN-ACKs through a DROP rule")
	}

	tshark, lerr := exec.LookPath("tshark")
	if lerr != nil {
		t.Skip("needs tshark (the test oracle): not in PATH")
	}
	if got := tsharkCount(t, tshark, path, "tcp.flags.syn==1 && tcp.flags.ack==0 && tcp.analysis.retransmission"); got != 1 {
		t.Errorf("tshark counts %d SYN retransmissions, the analyser 1", got)
	}
	compareWithTshark(t, tshark, path)
}

// TestSYNACKRetransmissions drops the client's third ACK at the server:
// the client is ESTABLISHED, the server holds a request socket in SYN_RECV
// and resends its SYN-ACK, same ISN, tcp_synack_retries=1 times, then
// forgets it.
func TestSYNACKRetransmissions(t *testing.T) {
	t.Parallel()
	l := newTestLab(t)
	const port = 3306
	l.listen(t, port)
	iptables(t, l.server, "-A", "INPUT", "-p", "tcp", "--dport", fmt.Sprint(port), "--tcp-flags", "SYN,ACK", "ACK", "-j", "DROP")
	sysctl(t, l.server, false, "net.ipv4.tcp_synack_retries", "1")

	_, path := startCapture(t, l.server, "server")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := l.dial(ctx, port)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()

	clientSocks, err := Sockets(l.client, port)
	if err != nil {
		t.Fatal(err)
	}
	if !hasState("ESTABLISHED")(clientSocks) {
		t.Errorf("client sockets %v, want ESTABLISHED", clientSocks)
	}
	var req *Socket
	for _, s := range waitFor(t, l.server, port, 5*time.Second, hasState("SYN_RECV")) {
		if s.State == "SYN_RECV" {
			req = &s
		}
	}
	if req == nil {
		t.Fatal("no SYN_RECV request socket on the server")
	}
	if req.Timer != "on" || req.Remote.Addr() != l.clientAddr {
		t.Errorf("request socket %v, want the retransmission timer on, from %s", req, l.clientAddr)
	}
	// The request socket expires after its last SYN-ACK timeout (1 s +
	// 2 s); wait for it, bounded.
	if socks := waitFor(t, l.server, port, 15*time.Second, func(s []Socket) bool { return !hasState("SYN_RECV")(s) }); hasState("SYN_RECV")(socks) {
		t.Fatalf("SYN_RECV still there: %v", socks)
	}

	a, err := Analyze(path)
	if err != nil {
		t.Fatal(err)
	}
	flows := a.Flows(l.clientAddr, netip.AddrPortFrom(l.serverAddr, port))
	if len(flows) != 1 {
		t.Fatalf("got %d flows, want 1", len(flows))
	}
	groups := flows[0].SYNACKsByISN()
	if len(groups) != 1 || len(groups[0]) != 2 || count(groups[0], retransmitted) != 1 {
		t.Errorf("SYN-ACKs by ISN %v, want one ISN sent twice", groups)
	}
	if tshark, err := exec.LookPath("tshark"); err == nil {
		if got := tsharkCount(t, tshark, path, "tcp.flags.syn==1 && tcp.flags.ack==1 && tcp.analysis.retransmission"); got != 1 {
			t.Errorf("tshark counts %d SYN-ACK retransmissions, the analyser 1", got)
		}
		compareWithTshark(t, tshark, path)
	}
}

// TestSocketsStayInTheirNamespace guards against sock_diag quietly querying
// the caller's namespace: a listener in one namespace must not show in the
// other.
func TestSocketsStayInTheirNamespace(t *testing.T) {
	t.Parallel()
	l := newTestLab(t)
	const port = 4406
	l.listen(t, port)
	srv, err := Sockets(l.server, port)
	if err != nil {
		t.Fatal(err)
	}
	if len(srv) != 1 || srv[0].State != "LISTEN" || srv[0].Local != netip.AddrPortFrom(l.serverAddr, port) {
		t.Errorf("server sockets %v, want the one listener", srv)
	}
	cli, err := Sockets(l.client, port)
	if err != nil {
		t.Fatal(err)
	}
	if len(cli) != 0 {
		t.Errorf("client namespace shows the server's sockets: %v", cli)
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	l := newTestLab(t)
	dir := t.TempDir()
	tests := []struct {
		name, iface, path string
	}{
		{"no such interface", "nosuch0", filepath.Join(dir, "a.pcap")},
		{"no such directory", labIface, filepath.Join(dir, "missing", "b.pcap")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Start(l.server, tt.iface, tt.path)
			if err == nil {
				c.Stop()
				t.Fatal("Start succeeded")
			}
			if _, serr := os.Stat(tt.path); !errors.Is(serr, os.ErrNotExist) {
				t.Errorf("a failed Start left %s behind", tt.path)
			}
		})
	}
}

func TestSamplerBounds(t *testing.T) {
	t.Parallel()
	l := newTestLab(t)
	s := StartSampler(l.server, "server", 0, time.Nanosecond)
	time.Sleep(100 * time.Millisecond)
	samples := s.Stop()
	// 100 ms at the 10 ms floor is about 10 samples; a requested period of
	// 1 ns must not turn into a busy loop.
	if len(samples) == 0 || len(samples) > 20 {
		t.Errorf("%d samples in 100 ms, want 1..20", len(samples))
	}
	for _, smp := range samples {
		if smp.Error != "" || smp.Host != "server" {
			t.Errorf("sample %+v", smp)
		}
	}
	if again := s.Stop(); len(again) != len(samples) {
		t.Errorf("second Stop returned %d samples, want %d", len(again), len(samples))
	}
}

// TestCaptureSurvivesLinkDown: a packet socket reports ENETDOWN once when
// its link goes down and is hooked up again when it comes back; the
// capture must go on.
func TestCaptureSurvivesLinkDown(t *testing.T) {
	t.Parallel()
	l := newTestLab(t)
	const port = 3306
	l.listen(t, port)
	c, path := startCapture(t, l.server, "server")

	h, err := netlink.NewHandleAt(l.server)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	link, err := h.LinkByName(labIface)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetDown(link); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := l.dial(ctx, port)
	if err != nil {
		t.Fatalf("dial after the link came back: %v", err)
	}
	conn.Close()
	waitFor(t, l.client, port, 5*time.Second, hasState("TIME_WAIT"))
	st, err := c.Stop()
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	a, err := Analyze(path)
	if err != nil {
		t.Fatal(err)
	}
	flows := a.Flows(l.clientAddr, netip.AddrPortFrom(l.serverAddr, port))
	if len(flows) != 1 || len(flows[0].SYNACKs()) == 0 {
		t.Errorf("no handshake captured after the link went down and up (stats %+v)", st)
	}
}

// TestStopDrainsQueue stops the capture right after a burst: the frames
// the kernel had queued by then must all reach the file.
func TestStopDrainsQueue(t *testing.T) {
	t.Parallel()
	l := newTestLab(t)
	const port = 3306
	l.listen(t, port)
	c, path := startCapture(t, l.server, "server")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 50; i++ {
		conn, err := l.dial(ctx, port)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conn.Write([]byte("ping\n"))
		conn.Close()
	}
	st, err := c.Stop()
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if st.Packets == 0 || st.Packets != c.queued || st.Dropped != 0 {
		t.Errorf("wrote %d frames, the kernel queued %d and dropped %d", st.Packets, c.queued, st.Dropped)
	}
	a, err := Analyze(path)
	if err != nil {
		t.Fatal(err)
	}
	if a.Frames != st.Packets || a.Truncated {
		t.Errorf("file has %d frames (truncated %v), Stop reported %d", a.Frames, a.Truncated, st.Packets)
	}
	t.Logf("%d frames, %d TCP streams", a.Frames, a.Streams)
}
