package netem_test

import (
	"errors"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/netem"
	"github.com/vishvananda/netns"
)

// synOptions reads a pcap and returns the TCP options of every SYN (not
// SYN-ACK) to port, by option kind, in order.
func synOptions(t *testing.T, path string, port uint16) [][]layers.TCPOptionKind {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]layers.TCPOptionKind
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		p := gopacket.NewPacket(data, layers.LinkTypeEthernet, gopacket.Default)
		tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !ok || !tcp.SYN || tcp.ACK || uint16(tcp.DstPort) != port {
			continue
		}
		var kinds []layers.TCPOptionKind
		for _, o := range tcp.Options {
			kinds = append(kinds, o.OptionType)
		}
		out = append(out, kinds)
	}
	return out
}

// TCPOPTSTRIP on the router's way out to the server: the server's capture
// shows SYNs without the timestamp option when a strip rule is in force,
// with it otherwise; the client's capture shows that the client did send
// one every time.
func TestTimestampStrip(t *testing.T) {
	needIptables(t)
	tests := []struct {
		name  string
		rule  string
		strip bool
	}{
		{"no strip rule", "", false},
		{"strip from SYNs", stripSYNRule, true},
		{"strip from every segment", stripAllRule, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := upRouted(t)
			client, server, router := l.host(t, "client"), l.host(t, "server"), l.host(t, "nat")
			applyRule(t, router, snatRule, "snat")
			if tt.rule != "" {
				applyRule(t, router, tt.rule, "strip")
			}
			ln := listen(t, server, 3306)
			answerOnce(t, ln)
			dir := t.TempDir()
			srvCap, err := capture.Start(server.NS, "eth0", filepath.Join(dir, "server.pcap"))
			if err != nil {
				t.Fatal(err)
			}
			cliCap, err := capture.Start(client.NS, "eth0", filepath.Join(dir, "client.pcap"))
			if err != nil {
				srvCap.Stop()
				t.Fatal(err)
			}
			const n = 3
			for i := range n {
				if _, _, err := shortConn(client, netip.Addr{}, ln.Addr().(*net.TCPAddr).AddrPort()); err != nil {
					t.Fatalf("connection %d: %v", i, err)
				}
			}
			for _, c := range []*capture.Capture{srvCap, cliCap} {
				if st, err := c.Stop(); err != nil || st.Dropped != 0 {
					t.Fatalf("capture %s: %+v, %v", c.Path, st, err)
				}
			}

			for _, side := range []struct {
				path   string
				wantTS bool
			}{
				{srvCap.Path, !tt.strip},
				{cliCap.Path, true},
			} {
				a, err := capture.Analyze(side.path)
				if err != nil {
					t.Fatal(err)
				}
				var syns, dataTS, data int
				for _, p := range a.Packets {
					if p.Dst.Port() != 3306 {
						continue
					}
					if p.SYN {
						syns++
						if p.HasTimestamps != side.wantTS {
							t.Errorf("%s: SYN %s -> %s has timestamps %v, want %v", filepath.Base(side.path), p.Src, p.Dst, p.HasTimestamps, side.wantTS)
						}
						continue
					}
					data++
					if p.HasTimestamps {
						dataTS++
					}
				}
				if syns != n {
					t.Errorf("%s: %d SYNs to the server, want %d", filepath.Base(side.path), syns, n)
				}
				// A SYN without the option means a connection without it:
				// the server does not offer it back, so no later segment
				// carries it either way, whichever rule stripped it.
				wantData := data
				if tt.strip {
					wantData = 0
				}
				if dataTS != wantData {
					t.Errorf("%s: %d of %d later client segments carry timestamps, want %d", filepath.Base(side.path), dataTS, data, wantData)
				}
				if opts := synOptions(t, side.path, 3306); len(opts) > 0 {
					t.Logf("%s: first SYN's options %v", filepath.Base(side.path), opts[0])
				}
			}
			// TCPOPTSTRIP overwrites the option with NOPs: the SYN keeps its
			// length, and its other options.
			srv, cli := synOptions(t, srvCap.Path, 3306), synOptions(t, cliCap.Path, 3306)
			if len(srv) == 0 || len(cli) == 0 || len(srv[0]) == 0 {
				t.Fatalf("no SYN options: server %v, client %v", srv, cli)
			}
			if tt.strip {
				nops := 0
				for _, k := range srv[0] {
					if k == layers.TCPOptionKindNop {
						nops++
					}
				}
				if nops < 10 {
					t.Errorf("server's SYN options %v: want the 10 bytes of the timestamp as NOPs", srv[0])
				}
			}
		})
	}
}

// The router's conntrack table after closed connections: TIME_WAIT entries
// (the router sees the FINs of both sides), whose timeout is the router's
// nf_conntrack_tcp_timeout_time_wait at the time the connection closed.
func TestConntrackTimeWait(t *testing.T) {
	needIptables(t)
	hostKeys := []string{netem.SysctlConntrackTimeWait, netem.SysctlConntrackMax, netem.SysctlConntrackBuckets}
	hostBefore := hostSysctls(t, hostKeys)
	l := upRouted(t)
	client, server, router := l.host(t, "client"), l.host(t, "server"), l.host(t, "nat")
	applyRule(t, router, snatRule, "snat")
	ln := listen(t, server, 3306)
	answerOnce(t, ln)
	to := ln.Addr().(*net.TCPAddr).AddrPort()

	def, err := router.ReadSysctls([]string{netem.SysctlConntrackTimeWait})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("router %s default: %s", netem.SysctlConntrackTimeWait, def[netem.SysctlConntrackTimeWait])

	// Each batch runs with its own timeout; entries of a batch carry the
	// value in force when they entered TIME_WAIT, which an earlier
	// batch's value cannot explain: 30 s, then 3600 s.
	tests := []struct {
		timeout int // seconds
		min     time.Duration
	}{
		{30, 0},
		{3600, 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.timeout), func(t *testing.T) {
			if _, err := router.SetSysctls(map[string]string{netem.SysctlConntrackTimeWait: strconv.Itoa(tt.timeout)}); err != nil {
				t.Fatal(err)
			}
			const n = 5
			mine := map[netip.AddrPort]bool{}
			for i := range n {
				local, _, err := shortConn(client, netip.Addr{}, to)
				if err != nil {
					t.Fatalf("connection %d: %v", i, err)
				}
				mine[local] = true
			}
			// The last ACK crosses the router after the client's close
			// returns: wait for it, up to ioTimeout.
			var es, got []netem.ConntrackEntry
			for deadline := time.Now().Add(ioTimeout); ; time.Sleep(20 * time.Millisecond) {
				if es, err = router.Conntrack(); err != nil {
					t.Fatal(err)
				}
				got = got[:0]
				tw := 0
				for _, e := range es {
					if mine[e.Src] {
						got = append(got, e)
						if e.State == "TIME_WAIT" {
							tw++
						}
					}
				}
				if tw == n && len(got) == n || time.Now().After(deadline) {
					break
				}
			}
			t.Logf("router conntrack: %v", netem.CountByState(es))
			if len(got) != n {
				t.Fatalf("%d entries for this batch's %d connections: %+v", len(got), n, got)
			}
			for _, e := range got {
				if e.State != "TIME_WAIT" {
					t.Errorf("entry %s -> %s: state %s, want TIME_WAIT", e.Src, e.Dst, e.State)
				}
				if e.Timeout > time.Duration(tt.timeout)*time.Second || e.Timeout <= tt.min {
					t.Errorf("entry %s -> %s: timeout %s, want at most %ds and more than %s", e.Src, e.Dst, e.Timeout, tt.timeout, tt.min)
				}
				if e.ReplyDst.Addr() != routerB {
					t.Errorf("entry %s -> %s: reply to %s, want the SNAT address %s", e.Src, e.Dst, e.ReplyDst, routerB)
				}
			}
		})
	}

	// The namespaces without rules track nothing, the hub included (its
	// bridges see every frame).
	for _, h := range []*netem.Host{client, server} {
		if es, err := h.Conntrack(); err != nil || len(es) != 0 {
			t.Errorf("%s conntrack = %v, %v; want empty", h.Name, es, err)
		}
	}
	hub, err := netns.GetFromName(netem.NSName(l.spec.RunID, "hub"))
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	if es, err := netem.ListConntrack(hub); err != nil || len(es) != 0 {
		t.Errorf("hub conntrack = %v, %v; want empty", es, err)
	}

	// The machine-wide keys: what a child namespace may do with them. A
	// write is only tried where the key is read-only in the router (to see
	// SetSysctls refuse it before writing), or, for nf_conntrack_max, on a
	// kernel that keeps a per-namespace copy (proposed upstream in 2025; on
	// 6.18 the key is 0444 in a child): nf_conntrack_buckets sizes the one
	// hash table of the machine, and is never written from a lab.
	for _, k := range []string{netem.SysctlConntrackMax, netem.SysctlConntrackBuckets} {
		t.Run(k, func(t *testing.T) {
			before, err := router.ReadSysctls([]string{k})
			if err != nil {
				t.Fatal(err)
			}
			var mode os.FileMode
			if err := netem.Do(router.NS, func() error {
				fi, err := os.Stat(filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/")))
				if err == nil {
					mode = fi.Mode().Perm()
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s in the router: %s, mode %s; host %s", k, before[k], mode, hostBefore[k])
			if mode&0o200 != 0 && k == netem.SysctlConntrackBuckets {
				t.Fatalf("%s is writable in a child namespace: not tried", k)
			}
			v, _ := strconv.Atoi(before[k])
			got, err := router.SetSysctls(map[string]string{k: strconv.Itoa(v / 2)})
			if mode&0o200 == 0 && !errors.Is(err, netem.ErrNotNamespaced) {
				t.Errorf("SetSysctls(%s) of a read-only key = %v, %v; want ErrNotNamespaced", k, got, err)
			}
			t.Logf("SetSysctls(%s=%d) in the router: %v, %v", k, v/2, got, err)
		})
	}
	if after := hostSysctls(t, hostKeys); !maps.Equal(after, hostBefore) {
		t.Errorf("host conntrack sysctls changed: %v, want %v", after, hostBefore)
	}
}
