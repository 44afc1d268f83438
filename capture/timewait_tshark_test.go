package capture

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The Lab B captures, testdata/lab-b-strip-mysql-{server,client}.pcap, were
// recorded on 29 November 2026 (Linux 6.18, MySQL 9.7.4, go-sql-driver
// through client.Burst) by a throwaway program outside the repository
// (/tmp/labbgen, a module with `replace github.com/labrun/labrun =>
// /work/main`), using the project's own packages:
//
//   - netem.Up with a routed Spec: network a 10.89.236.0/24 with the
//     client 10.89.236.10, network b 10.89.237.0/24 with the server
//     10.89.237.10, router "nat" with eth0 10.89.236.1 on a and eth1
//     10.89.237.1 on b;
//   - on the router, through netem.ParseRule and Host.Rules().Apply:
//     -t nat -A POSTROUTING -o eth1 -p tcp -j SNAT --to-source 10.89.237.1:20000-20099
//     -t mangle -A POSTROUTING -o eth1 -p tcp --syn -j TCPOPTSTRIP --strip-options timestamp
//     and net.netfilter.nf_conntrack_tcp_timeout_time_wait = 0 (see below);
//   - server.Start flavor "mysql" in the server's namespace, its
//     authentication cache warmed by one query from the server's own
//     namespace before the captures started;
//   - capture.Start on the server's eth0 and on the client's eth0, full
//     frames (970 KB each, so no cut was needed);
//   - client.Burst from the client's namespace: Rate 200, For 3 s, Max 600,
//     Close "quit", Timeout 10 s. Result: 600 attempted, 600 connected,
//     600 completed, 191 with their SYN retransmitted, no errors; connect
//     p50 232 µs, p99 3.08 s, max 4.11 s;
//   - then server Stop, topology Down, journal removed: `ip netns list`
//     empty and no mysqld left, as before.
//
// With the router's default conntrack TIME_WAIT timeout (120 s) the same
// burst gave no bare ACK at all: 500 SYNs reused a NAT port and the server
// accepted every one. Linux's NAT (nf_nat_used_tuple_harder and
// nf_seq_has_advanced in nf_nat_core.c, present in 6.18) gives out a port
// whose conntrack entry is in TIME_WAIT only when the new SYN's sequence
// number is past the old connection's, which is exactly what the server's
// TIME_WAIT accepts. With the timeout at 1 s, 39 bare ACKs; at 0 the
// router forgets a port as soon as it closes, like the article's cloud NAT
// gateway, and 291 SYNs met a bare ACK.
//
// The generator's figures (tshark, 6.4 s of capture, 10476 frames each):
// reused_ports 791 (server) and 191 (client); SYN retransmissions 11 and
// 291; bare ACKs 291 and 291.
//
// What the captures show (pinned in TestLabBCaptures):
//
//   - server side: 880 connection attempts on 100 4-tuples (every
//     retransmitted SYN after a bare ACK came back through another NAT
//     port but 11, presumably because the client's RST ended the router's
//     conntrack entry and the retransmission was translated afresh),
//     780 SYNs on a reused port, 291 answered by a bare ACK whose sequence
//     and acknowledgement numbers are the previous connection's final
//     ones, each followed by the client's RST; all 600 connections closed
//     by the server's FIN first, right after COM_QUIT;
//   - client side: 600 connections, 291 bare ACKs on 191 connections, all
//     answered by a RST and a SYN retransmission. The retransmission after
//     the first bare ACK comes after 8-12 ms, not the article's 1 s: since
//     2020 (SeongJae Park's "tcp: Reduce SYN resend delay if a suspicous
//     ACK is received", tcp_rcv_synsent_state_process) a SYN_SENT socket that
//     gets an unacceptable ACK before any retransmission re-arms its timer
//     to TCP_TIMEOUT_MIN, 2 jiffies (8 ms here, judging by the 8.1 ms
//     minimum: HZ=250). Only a second bare
//     ACK in a row waits for the normal timer: of the 191 connections, 130
//     cost under 100 ms, 34 about 1 s, 19 about 2 s, 8 up to 4.1 s.

// tsharkTimeWait is the oracle's view of a capture, counted from tshark's
// own fields.
type tsharkTimeWait struct {
	reusedPorts, synRetransmissions, connections, bareACKs int
}

// tsharkTimeWaitCounts dissects path with tshark once and counts, over the
// segments to or from port: the frames flagged tcp.analysis.reused_ports;
// the SYNs (no ACK) flagged tcp.analysis.retransmission; the distinct
// (tcp.stream, SYN sequence number) pairs; and the SYNs (flags exactly
// 0x002) whose next segment from the server's port on the same stream is
// ACK-only (0x010) without payload and acknowledges something else than
// the SYN's sequence number + 1.
func tsharkTimeWaitCounts(t testing.TB, tshark, path string, port uint16) tsharkTimeWait {
	t.Helper()
	cmd := exec.Command(tshark, "-r", path, "-n", "-Y", fmt.Sprintf("tcp.port == %d", port), "-T", "fields",
		"-E", "separator=/t", "-E", "occurrence=f",
		"-e", "frame.number", "-e", "tcp.stream", "-e", "tcp.srcport", "-e", "tcp.flags",
		"-e", "tcp.seq_raw", "-e", "tcp.ack_raw", "-e", "tcp.len",
		"-e", "tcp.analysis.reused_ports", "-e", "tcp.analysis.retransmission")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %s: %v\n%s", path, err, stderr.String())
	}
	var (
		c       tsharkTimeWait
		pending = map[string]uint64{} // stream: SYN's sequence number
		attempt = map[string]bool{}   // stream/seq
	)
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		cols := strings.Split(line, "\t")
		for len(cols) < 9 {
			cols = append(cols, "")
		}
		stream, src := cols[1], cols[2]
		flags, err1 := strconv.ParseUint(cols[3], 0, 16)
		seq, err2 := strconv.ParseUint(cols[4], 10, 32)
		ack, err3 := strconv.ParseUint(cols[5], 10, 32)
		seglen, err4 := strconv.Atoi(cols[6])
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
			t.Fatalf("tshark %s: line %q", path, line)
		}
		if cols[7] != "" {
			c.reusedPorts++
		}
		const syn, ack1 = 0x002, 0x010
		if flags&(syn|ack1) == syn {
			if cols[8] != "" {
				c.synRetransmissions++
			}
			attempt[stream+"/"+cols[4]] = true
		}
		if src == strconv.Itoa(int(port)) {
			if s, ok := pending[stream]; ok {
				delete(pending, stream)
				if flags == ack1 && seglen == 0 && ack != (s+1)&0xffffffff {
					c.bareACKs++
				}
			}
		}
		if flags == syn {
			pending[stream] = seq
		}
	}
	c.connections = len(attempt)
	return c
}

// Every capture under testdata, the Lab B ones included: the streaming
// analysis counts what tshark counts.
func TestTimeWaitAgreesWithTshark(t *testing.T) {
	tshark := needTshark(t)
	paths, err := filepath.Glob(filepath.Join("testdata", "*.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	labB := 0
	for _, p := range paths {
		if strings.HasPrefix(filepath.Base(p), "lab-b-") {
			labB++
		}
	}
	if labB < 2 {
		t.Fatalf("testdata has %d lab-b-*.pcap, want the server's and the client's", labB)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			a, err := AnalyzeTimeWait(path, TimeWaitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want := tsharkTimeWaitCounts(t, tshark, path, a.ServerPort)
			got := tsharkTimeWait{reusedPorts: a.ReusedPorts, synRetransmissions: a.SYNRetransmissions,
				connections: a.Connections, bareACKs: a.BareACKs}
			if got != want {
				t.Errorf("analyser %+v, tshark %+v", got, want)
			}
			t.Logf("%s", a)
		})
	}
}

// The same on synthetic traces that hold every Lab B case at once.
func TestTimeWaitSyntheticAgreesWithTshark(t *testing.T) {
	tshark := needTshark(t)
	b := newTWBuilder()
	end, c, s := twFirst(b)
	b.conn(twPort2, end, isnC, isnS, twClientFIN)
	b.timeWaitACK(twPort1, end+time.Second, twBefore, twSISN2, c, s, 10*time.Millisecond)
	b.conn(twPort2, end+2*time.Second, twISN2, twSISN2, twRST)
	b.add(seg{At: end + 3*time.Second, From: "c", Flags: "S", Seq: isnC, Win: 64240, WScale: 7, CPort: 20003})
	b.add(seg{At: end + 4*time.Second, From: "c", Flags: "S", Seq: isnC, Win: 64240, WScale: 7, CPort: 20003})
	path := filepath.Join(t.TempDir(), "lab-b-synthetic.pcap")
	b.tr.write(t, path)
	gen := filepath.Join(t.TempDir(), "generated.pcap")
	g := writeLabBCapture(t, gen, 20000)
	for _, p := range []string{path, gen} {
		a, err := AnalyzeTimeWait(p, TimeWaitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := tsharkTimeWaitCounts(t, tshark, p, a.ServerPort)
		got := tsharkTimeWait{reusedPorts: a.ReusedPorts, synRetransmissions: a.SYNRetransmissions,
			connections: a.Connections, bareACKs: a.BareACKs}
		if got != want {
			t.Errorf("%s: analyser %+v, tshark %+v", filepath.Base(p), got, want)
		}
		if got.bareACKs == 0 || got.reusedPorts == 0 {
			t.Errorf("%s: no anomaly to compare: %+v", filepath.Base(p), got)
		}
	}
	if a, err := AnalyzeTimeWait(gen, TimeWaitOptions{}); err == nil && (a.BareACKs != g.bareACKs || a.Connections != g.conns) {
		t.Errorf("generated capture: %d bare ACKs, %d connections; generator wrote %d, %d", a.BareACKs, a.Connections, g.bareACKs, g.conns)
	}
}

// TestLabBCaptures pins the figures of the recorded Lab B captures, and
// checks what they mean: on the server's side every bare ACK carries the
// previous connection's final numbers; on the client's side, behind the
// NAT, no 4-tuple carried an earlier connection.
func TestLabBCaptures(t *testing.T) {
	tests := []struct {
		file string
		want twCounts
	}{
		{"lab-b-strip-mysql-server.pcap", twCounts{Connections: 880, SYNRetransmissions: 11,
			ReusedPorts: 791, ReusedPortSYNs: 780, ReusedPortSYNACKs: 11,
			BareACKs: 291, OldSequence: 291, WithRST: 291, Recovered: 11, Completed: 600,
			FirstFIN: FirstFINCounts{Server: 600}, ClosedByFIN: 600, NotClosed: 280, Quits: 600, QuitThenServerFIN: 600,
			TimeWaitCandidates: 600, CostN: 11, CostMax: 3076061019, ResendN: 11, ResendMax: 3076061019,
			ConnectN: 600, ConnectMax: 3076082281}},
		{"lab-b-strip-mysql-client.pcap", twCounts{Connections: 600, SYNRetransmissions: 291,
			ReusedPorts: 191, ReusedPortSYNACKs: 191,
			BareACKs: 291, WithRST: 291, Recovered: 291, Completed: 600,
			FirstFIN: FirstFINCounts{Server: 600}, ClosedByFIN: 600, Quits: 600, QuitThenServerFIN: 600,
			TimeWaitCandidates: 600, CostN: 191, CostMax: 4106438791, ResendN: 291, ResendMax: 1036007704,
			ConnectN: 600, ConnectMax: 4106595775}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			a, err := AnalyzeTimeWait(filepath.Join("testdata", tt.file), TimeWaitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := countsOf(a); got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			server := strings.Contains(tt.file, "server")
			for _, x := range a.Anomalies {
				if server != (x.Previous != nil) || x.OldSequence != server || x.OldAck != server {
					t.Errorf("anomaly at frame %d: previous %v, old seq %v ack %v", x.ACKFrame, x.Previous, x.OldSequence, x.OldAck)
					break
				}
				if x.RSTFrame == 0 {
					t.Errorf("anomaly at frame %d: no RST", x.ACKFrame)
					break
				}
			}
			// The first retransmission after a bare ACK is quick on today's
			// Linux: the cheapest anomaly costs milliseconds.
			if a.AnomalyCost.Min > 100*time.Millisecond {
				t.Errorf("anomaly cost %v: want the fast SYN resend", a.AnomalyCost)
			}
			t.Logf("%s; example frames %v", a, a.ExampleFrames(3))
		})
	}
}
