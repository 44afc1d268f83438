package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/journal"
	"github.com/labrun/labrun/netem"
	"github.com/labrun/labrun/server"
)

// The burst tests' lab: a client and a server namespace joined by a veth
// pair. Nothing is sent outside them.
var (
	burstServerAddr  = netip.MustParseAddr("10.89.254.1")
	burstClientAddr  = netip.MustParseAddr("10.89.254.2")
	burstClientAddr2 = netip.MustParseAddr("10.89.254.3")
)

type burstLab struct {
	client, server netns.NsHandle
}

func randomSuffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newBurstLab creates the two namespaces, deleted at the end of the test.
func newBurstLab(tb testing.TB) *burstLab {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: network namespaces")
	}
	suffix := randomSuffix()
	lab := &burstLab{}
	for _, h := range []struct {
		ns   *netns.NsHandle
		name string
	}{{&lab.client, "lrtest-bc-" + suffix}, {&lab.server, "lrtest-bs-" + suffix}} {
		ns, err := netem.NewNamed(h.name)
		if err != nil {
			tb.Fatal(err)
		}
		*h.ns = ns
		name := h.name
		tb.Cleanup(func() {
			ns.Close()
			if err := netns.DeleteNamed(name); err != nil {
				tb.Errorf("delete namespace %s: %v", name, err)
			}
		})
	}
	err := netem.Do(lab.client, func() error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "lr0"}, PeerName: "lr1"}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth: %w", err)
		}
		peer, err := netlink.LinkByName("lr1")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetNsFd(peer, int(lab.server)); err != nil {
			return err
		}
		return linkUp("lr0", burstClientAddr, burstClientAddr2)
	})
	if err == nil {
		err = netem.Do(lab.server, func() error { return linkUp("lr1", burstServerAddr) })
	}
	if err != nil {
		tb.Fatal(err)
	}
	return lab
}

// linkUp runs inside a namespace: lo and the link up, the addresses on it.
func linkUp(name string, addrs ...netip.Addr) error {
	for _, n := range []string{"lo", name} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			return err
		}
		if n == name {
			for _, a := range addrs {
				if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: netipNet(a)}); err != nil {
					return err
				}
			}
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return err
		}
	}
	return nil
}

func netipNet(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(24, 32)}
}

// fakeListen serves the fake MySQL server on port in the server namespace.
func (lab *burstLab) fakeListen(tb testing.TB, f *fakeServer, port int) Target {
	tb.Helper()
	var ln net.Listener
	err := netem.Do(lab.server, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(burstServerAddr, uint16(port)).String())
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go f.serve(c)
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		<-done
	})
	t := fakeTarget
	t.Addr = netip.AddrPortFrom(burstServerAddr, uint16(port))
	return t
}

// timeWait counts the TIME_WAIT sockets of a namespace to or from port of
// the burst's connections (a client address at one end).
func timeWait(tb testing.TB, ns netns.NsHandle, port int) int {
	tb.Helper()
	socks, err := capture.Sockets(ns, port)
	if err != nil {
		tb.Fatal(err)
	}
	client := func(a netip.Addr) bool { return a == burstClientAddr || a == burstClientAddr2 }
	n := 0
	for _, s := range socks {
		if s.State == "TIME_WAIT" && (client(s.Local.Addr()) || client(s.Remote.Addr())) {
			n++
		}
	}
	return n
}

// Each close mode leaves TIME_WAIT where it should: on the server for
// quit (the server sent the first FIN), on the client for fin, nowhere
// for rst.
func TestBurstNSCloseModes(t *testing.T) {
	lab := newBurstLab(t)
	want := map[string]string{CloseQuit: "server", CloseFIN: "client", CloseRST: "nobody", CloseQuitNow: ""}
	for i, mode := range []string{CloseQuit, CloseQuitNow, CloseFIN, CloseRST} {
		t.Run(mode, func(t *testing.T) {
			port := 3400 + i // TIME_WAIT of one mode stays out of the next's count
			f := &fakeServer{}
			target := lab.fakeListen(t, f, port)
			path := filepath.Join(t.TempDir(), "records.jsonl")
			pcap := filepath.Join(t.TempDir(), "burst.pcap")
			pc, err := capture.Start(lab.client, "lr0", pcap)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Burst(context.Background(), lab.client, target,
				BurstSpec{Rate: 500, Max: 20, Close: mode, Timeout: 5 * time.Second, RecordsPath: path})
			if err != nil {
				pc.Stop()
				t.Fatal(err)
			}
			f.outcomes()
			time.Sleep(20 * time.Millisecond) // the last ACKs
			if _, err := pc.Stop(); err != nil {
				t.Fatal(err)
			}
			first := firstCloser(t, pcap, target.Addr)
			t.Logf("%s: first FIN or RST of each connection: %v", mode, first)
			wantFirst := map[string]string{CloseQuit: "server FIN", CloseFIN: "client FIN", CloseRST: "client RST"}[mode]
			if wantFirst != "" && first[wantFirst] != res.Completed {
				t.Errorf("first FIN or RST: %v, want %d × %s", first, res.Completed, wantFirst)
			}
			if res.Completed != res.Attempted || res.Attempted < 15 || res.SYNRetransmitted != 0 {
				t.Fatalf("attempted %d completed %d syn retransmitted %d errors %v", res.Attempted, res.Completed, res.SYNRetransmitted, res.Errors)
			}
			for _, r := range readRecords(t, path, res.Slots) {
				if r.Skipped == "" && !strings.HasPrefix(r.Local, burstClientAddr.String()+":") {
					t.Errorf("record local %q", r.Local)
				}
			}
			// The TIME_WAIT socket appears once the holder has the peer's
			// FIN (or ACK); allow the last ones a moment.
			var srv, cli int
			for try := 0; try < 50; try++ {
				srv, cli = timeWait(t, lab.server, port), timeWait(t, lab.client, port)
				if srv+cli >= res.Completed {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			holder := "nobody"
			switch {
			case srv == res.Completed && cli == 0:
				holder = "server"
			case cli == res.Completed && srv == 0:
				holder = "client"
			case srv != 0 || cli != 0:
				holder = fmt.Sprintf("mixed (server %d, client %d)", srv, cli)
			}
			t.Logf("%s: %d connections, TIME_WAIT held by %s; server saw %v", mode, res.Completed, holder, f.outcomes())
			if want[mode] != "" && holder != want[mode] {
				t.Errorf("TIME_WAIT held by %s, want %s", holder, want[mode])
			}
		})
	}
}

// firstCloser tells, per connection of a capture, who sent the first FIN
// or RST: "server FIN", "client RST", ...
func firstCloser(t *testing.T, pcap string, server netip.AddrPort) map[string]int {
	t.Helper()
	a, err := capture.Analyze(pcap)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, f := range a.Flows(burstClientAddr, server) {
		for _, p := range f.Packets {
			if !p.FIN && !p.RST {
				continue
			}
			who := "client"
			if p.Src == server {
				who = "server"
			}
			what := " FIN"
			if p.RST {
				what = " RST"
			}
			out[who+what]++
			break
		}
	}
	return out
}

// The pacing, Max, For and the sources over real TCP.
func TestBurstNSPacing(t *testing.T) {
	lab := newBurstLab(t)
	f := &fakeServer{}
	target := lab.fakeListen(t, f, 3306)
	path := filepath.Join(t.TempDir(), "records.jsonl")
	const rate = 1000
	res, err := Burst(context.Background(), lab.client, target, BurstSpec{Rate: rate, Max: 300, Close: CloseRST,
		Sources: []netip.Addr{burstClientAddr, burstClientAddr2}, RecordsPath: path})
	if err != nil {
		t.Fatal(err)
	}
	if res.Slots != 300 || res.Completed != res.Attempted || f.conns.Load() != int64(res.Attempted) {
		t.Errorf("slots %d attempted %d completed %d, server %d: %v", res.Slots, res.Attempted, res.Completed, f.conns.Load(), res.Errors)
	}
	recs := readRecords(t, path, res.Slots)
	// Records are in the order the connections ended.
	slices.SortFunc(recs, func(a, b BurstRecord) int { return a.Slot - b.Slot })
	var starts []time.Time
	for _, r := range recs {
		if r.Skipped != "" {
			continue
		}
		starts = append(starts, res.Start.Add(time.Duration(r.StartUS)*time.Microsecond))
		want := []netip.Addr{burstClientAddr, burstClientAddr2}[r.Slot%2].String() + ":"
		if !strings.HasPrefix(r.Local, want) {
			t.Errorf("slot %d from %s, want %s…", r.Slot, r.Local, want)
		}
	}
	// Microsecond offsets: allow one more microsecond of rounding.
	checkRate(t, res.Start.Add(-time.Microsecond), starts, rate, DefaultBurstSlack+time.Microsecond)
	if res.Rate > rate*1.01 {
		t.Errorf("achieved %.0f/s, asked %d", res.Rate, rate)
	}
	t.Logf("achieved %.0f/s, connect %v, handshake %v, query %v, late %d", res.Rate, res.Connect, res.Handshake, res.Query, res.Late)

	start := time.Now()
	res, err = Burst(context.Background(), lab.client, target, BurstSpec{Rate: rate, Max: 100000, For: 100 * time.Millisecond, Close: CloseRST})
	if err != nil {
		t.Fatal(err)
	}
	if res.Slots != 100 || time.Since(start) > 20*time.Second {
		t.Errorf("For 100 ms at %d/s: %d slots in %s, want 100", rate, res.Slots, time.Since(start))
	}
}

// A dropped first SYN shows in tcpi_total_retrans once the connect is
// done: the retransmission comes after the initial RTO (1 s).
func TestBurstNSSYNRetransmission(t *testing.T) {
	lab := newBurstLab(t)
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("needs iptables")
	}
	f := &fakeServer{}
	target := lab.fakeListen(t, f, 3306)
	rule := []string{"INPUT", "-p", "tcp", "--dport", "3306", "--syn", "-j", "DROP"}
	iptables := func(op string) error {
		var out []byte
		err := netem.Do(lab.server, func() error {
			var err error
			out, err = exec.Command("iptables", append([]string{"-w", "5", op}, rule...)...).CombinedOutput()
			return err
		})
		if err != nil {
			return fmt.Errorf("iptables %s: %v: %s", op, err, out)
		}
		return nil
	}
	// dropFirst drops the SYNs of the next 300 ms: the first SYN of a
	// connect started now, not its retransmission 1 s later.
	dropFirst := func() {
		if err := iptables("-A"); err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(300*time.Millisecond, func() {
			if err := iptables("-D"); err != nil {
				t.Error(err)
			}
		})
	}

	dropFirst()
	path := filepath.Join(t.TempDir(), "records.jsonl")
	res, err := Burst(context.Background(), lab.client, target, BurstSpec{Rate: 10, Max: 1, RecordsPath: path})
	if err != nil {
		t.Fatal(err)
	}
	recs := readRecords(t, path, 1)
	t.Logf("record %+v", recs[0])
	if res.Completed != 1 || res.SYNRetransmitted != 1 || recs[0].SYNRetrans != 1 || recs[0].ConnectUS < 900000 {
		t.Errorf("completed %d, SYN retransmitted %d, record %+v; want one connection whose SYN went twice, after 1 s",
			res.Completed, res.SYNRetransmitted, recs[0])
	}

	// The fields of TCP_INFO after such a connect, and after a plain one.
	fac, err := newSocketFactory(lab.client, true)
	if err != nil {
		t.Fatal(err)
	}
	defer fac.stop()
	d := &nsDialer{f: fac, dst: target.Addr}
	for i, wantRetrans := range []int{1, 0} {
		if wantRetrans > 0 {
			dropFirst()
		}
		c, _, retrans, err := d.dial(context.Background(), i)
		if err != nil {
			t.Fatal(err)
		}
		rc, _ := c.(*net.TCPConn).SyscallConn()
		var ti *unix.TCPInfo
		rc.Control(func(fd uintptr) { ti, _ = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
		t.Logf("connect %d: total_retrans %d total_rto %d total_rto_recoveries %d total_rto_time %d retrans %d retransmits %d state %d",
			i, ti.Total_retrans, ti.Total_rto, ti.Total_rto_recoveries, ti.Total_rto_time, ti.Retrans, ti.Retransmits, ti.State)
		if retrans != wantRetrans {
			t.Errorf("connect %d: SYN retransmissions %d, want %d", i, retrans, wantRetrans)
		}
		c.Close()
	}
}

// startBurstServer starts a flavor's server in the lab's server namespace,
// or skips naming what is missing.
func startBurstServer(tb testing.TB, lab *burstLab, flavor string) (*server.Server, Target) {
	tb.Helper()
	if _, err := server.Find(flavor); errors.Is(err, server.ErrNotBuilt) {
		tb.Skipf("flavor %s not built: run 'labrun images build %s'", flavor, flavor)
	} else if err != nil {
		tb.Fatal(err)
	}
	old := journal.Root
	journal.Root = tb.TempDir()
	tb.Cleanup(func() { journal.Root = old })
	runID := "lrtest-" + randomSuffix()
	j, err := journal.Create(runID)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { j.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := server.Start(ctx, server.Config{RunID: runID, Flavor: flavor, NS: lab.server, Address: burstServerAddr,
		Port: 3306, Journal: j, LogDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Stop() })
	return s, Target{Flavor: flavor, Addr: s.Addr, User: s.User, Password: s.Password, Command: s.ClientCommand}
}

// The close modes against the real servers, after the authentication cache
// is emptied: MySQL's caching_sha2_password then needs one full
// authentication (the driver fetches the server's RSA key over plain TCP).
func TestBurstNSServers(t *testing.T) {
	for _, flavor := range server.Flavors() {
		t.Run(flavor, func(t *testing.T) {
			lab := newBurstLab(t)
			s, target := startBurstServer(t, lab, flavor)
			db, err := s.OpenDB(lab.server)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var plugin string
			if err := db.QueryRow("SELECT plugin FROM mysql.user WHERE user = ? AND host = '%'", s.User).Scan(&plugin); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec("FLUSH PRIVILEGES"); err != nil {
				t.Fatal(err)
			}
			db.Close()
			want := map[string][2]string{CloseQuit: {"all", "0"}, CloseFIN: {"0", "all"}, CloseRST: {"0", "0"}}
			if flavor == "mysql" {
				// MySQL answers the client's FIN with an error packet (1158,
				// "Got an error reading communication packets"); the
				// client's socket, closed, resets on that data: nobody
				// holds TIME_WAIT.
				want[CloseFIN] = [2]string{"0", "0"}
			}
			for _, mode := range []string{CloseQuit, CloseQuitNow, CloseFIN, CloseRST, CloseLong} {
				// TIME_WAIT of the earlier modes stays: count the new.
				srv0, cli0 := timeWait(t, lab.server, 3306), timeWait(t, lab.client, 3306)
				dir := os.Getenv("BURST_PCAP_DIR") // to keep the captures
				if dir == "" {
					dir = t.TempDir()
				}
				pcap := filepath.Join(dir, flavor+"-"+mode+".pcap")
				pc, err := capture.Start(lab.client, "lr0", pcap)
				if err != nil {
					t.Fatal(err)
				}
				res, err := Burst(context.Background(), lab.client, target, BurstSpec{Rate: 500, Max: 30, Close: mode,
					Timeout: 5 * time.Second, RecordsPath: filepath.Join(t.TempDir(), mode+".jsonl")})
				time.Sleep(20 * time.Millisecond)
				pc.Stop()
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s %s: first FIN or RST of each connection: %v", flavor, mode, firstCloser(t, pcap, target.Addr))
				var srv, cli int
				for try := 0; try < 50; try++ {
					srv, cli = timeWait(t, lab.server, 3306)-srv0, timeWait(t, lab.client, 3306)-cli0
					if mode == CloseLong || srv+cli >= res.Completed {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				t.Logf("%s (%s) %s: attempted %d completed %d connected %d errors %v; new TIME_WAIT: server %d, client %d; connect %v; handshake %v; query %v",
					flavor, plugin, mode, res.Attempted, res.Completed, res.Connected, res.Errors, srv, cli, res.Connect, res.Handshake, res.Query)
				if res.Completed != res.Attempted || res.Attempted == 0 {
					t.Errorf("%s: %d of %d completed: %v", mode, res.Completed, res.Attempted, res.Errors)
				}
				if w, ok := want[mode]; ok {
					count := func(w string) int {
						if w == "all" {
							return res.Completed
						}
						return 0
					}
					if srv != count(w[0]) || cli != count(w[1]) {
						t.Errorf("%s: new TIME_WAIT server %d client %d, want %d and %d", mode, srv, cli, count(w[0]), count(w[1]))
					}
				}
			}
		})
	}
}

// procCPU is a process's user and system CPU time from /proc/PID/stat
// (all its threads, the exited ones included).
func procCPU(pid int) (user, sys time.Duration, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The fields after the command, which is in parentheses.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ
	return time.Duration(utime) * time.Second / hz, time.Duration(stime) * time.Second / hz, nil
}

// selfCPU is this process's user and system CPU time (getrusage).
func selfCPU() (user, sys time.Duration) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// BenchmarkBurst runs, per flavor, 3000 connections a second for 5 s with
// close quit against a server in a namespace, and reports the achieved
// rate, the connect latency, and the CPU time of the generator (this
// process, getrusage) and of the server (/proc/PID/stat). Run it with
// -benchtime 1x: each iteration is a whole burst.
func BenchmarkBurst(b *testing.B) {
	rate, dur := 3000.0, 5*time.Second
	if v, err := strconv.ParseFloat(os.Getenv("BURST_RATE"), 64); err == nil {
		rate = v
	}
	mode := CloseQuit
	if v := os.Getenv("BURST_CLOSE"); v != "" {
		mode = v
	}
	for _, flavor := range server.Flavors() {
		b.Run(flavor, func(b *testing.B) {
			if os.Geteuid() != 0 {
				b.Skip("needs root: network namespaces, chroot")
			}
			lab := newBurstLab(b)
			s, target := startBurstServer(b, lab, flavor)
			for b.Loop() {
				su0, ss0, err := procCPU(s.PID)
				if err != nil {
					b.Fatal(err)
				}
				gu0, gs0 := selfCPU()
				res, err := Burst(context.Background(), lab.client, target, BurstSpec{Rate: rate, For: dur,
					Max: int(rate * dur.Seconds()), Close: mode, Timeout: 5 * time.Second,
					RecordsPath: filepath.Join(b.TempDir(), "records.jsonl")})
				if err != nil {
					b.Fatal(err)
				}
				gu1, gs1 := selfCPU()
				su1, ss1, _ := procCPU(s.PID)
				gen, srv := gu1-gu0+gs1-gs0, su1-su0+ss1-ss0
				perConn := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(max(res.Attempted, 1)) }
				tw := timeWait(b, lab.server, 3306)
				b.Logf("%s %s: %s; elapsed %s", flavor, mode, res, res.Elapsed.Round(time.Millisecond))
				// Over veth the kernel runs the receiving side's TCP in the
				// sender's system call: both processes' system time holds
				// the other end's TCP work too.
				b.Logf("CPU generator %s = %.0f µs/conn (user %s, sys %s); server %s = %.0f µs/conn (user %s, sys %s); TIME_WAIT on the server at the end %d",
					gen.Round(time.Millisecond), perConn(gen), (gu1 - gu0).Round(time.Millisecond), (gs1 - gs0).Round(time.Millisecond),
					srv, perConn(srv), su1-su0, ss1-ss0, tw)
				b.ReportMetric(res.Rate, "conn/s")
				b.ReportMetric(float64(res.Connect.P50.Microseconds()), "connect-p50-µs")
				b.ReportMetric(float64(res.Connect.P99.Microseconds()), "connect-p99-µs")
				b.ReportMetric(gen.Seconds()*1000, "gen-cpu-ms")
				b.ReportMetric(srv.Seconds()*1000, "server-cpu-ms")
				b.ReportMetric(float64(res.Completed), "completed")
			}
		})
	}
}
