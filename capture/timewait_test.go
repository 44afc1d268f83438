package capture

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Synthetic Lab B connections, built with the trace helpers of
// synth_test.go. Each connection runs on its own client port (a NAT port):
// the handshake, the server's greeting, the client's authentication, the
// server's OK, then COM_QUIT and the close.

// twBuilder writes Lab B connections into a trace and remembers which
// segments carry COM_QUIT, whose payload the trace helpers cannot write
// (they fill payloads with 'x'): quitTrace patches them in afterwards.
type twBuilder struct {
	tr    *trace
	quits []int // segment indexes
}

func newTWBuilder() *twBuilder { return &twBuilder{tr: newTrace()} }

func (b *twBuilder) add(s seg) { b.tr.add(s) }

// handshake adds SYN, SYN-ACK and ACK on port at time at.
func (b *twBuilder) handshake(port uint16, at time.Duration, cisn, sisn uint32) time.Duration {
	b.add(seg{At: at, From: "c", Flags: "S", Seq: cisn, Win: 64240, WScale: 7, CPort: port})
	b.synAck(port, at+40*time.Microsecond, cisn, sisn)
	b.add(seg{At: at + 60*time.Microsecond, From: "c", Flags: "A", Seq: cisn + 1, Ack: sisn + 1, CPort: port})
	return at + 60*time.Microsecond
}

func (b *twBuilder) synAck(port uint16, at time.Duration, cisn, sisn uint32) {
	b.add(seg{At: at, From: "s", Flags: "SA", Seq: sisn, Ack: cisn + 1, Win: 65160, WScale: 7, CPort: port})
}

// Ways a synthetic session ends.
const (
	twQuit      = "quit"       // COM_QUIT, then the server's FIN first
	twClientFIN = "client-fin" // the client's FIN first, no COM_QUIT
	twRST       = "rst"        // the client resets after the server's OK
)

// session adds what follows a handshake on port (client ISN cisn, server
// ISN sisn), starting at at, and returns the time of its last segment and
// each side's next sequence number at the end.
func (b *twBuilder) session(port uint16, at time.Duration, cisn, sisn uint32, end string) (time.Duration, uint32, uint32) {
	c, s := cisn+1, sisn+1
	step := func() time.Duration { at += 50 * time.Microsecond; return at }
	b.add(seg{At: step(), From: "s", Flags: "PA", Seq: s, Ack: c, Len: 79, CPort: port})
	s += 79
	b.add(seg{At: step(), From: "c", Flags: "PA", Seq: c, Ack: s, Len: 40, CPort: port})
	c += 40
	b.add(seg{At: step(), From: "s", Flags: "PA", Seq: s, Ack: c, Len: 11, CPort: port})
	s += 11
	switch end {
	case twQuit:
		b.quits = append(b.quits, len(b.tr.Segs))
		b.add(seg{At: step(), From: "c", Flags: "PA", Seq: c, Ack: s, Len: 5, CPort: port})
		c += 5
		b.add(seg{At: step(), From: "s", Flags: "FA", Seq: s, Ack: c, CPort: port})
		s++
		b.add(seg{At: step(), From: "c", Flags: "FA", Seq: c, Ack: s, CPort: port})
		c++
		b.add(seg{At: step(), From: "s", Flags: "A", Seq: s, Ack: c, CPort: port})
	case twClientFIN:
		b.add(seg{At: step(), From: "c", Flags: "FA", Seq: c, Ack: s, CPort: port})
		c++
		b.add(seg{At: step(), From: "s", Flags: "FA", Seq: s, Ack: c, CPort: port})
		s++
		b.add(seg{At: step(), From: "c", Flags: "A", Seq: c, Ack: s, CPort: port})
	case twRST:
		b.add(seg{At: step(), From: "c", Flags: "R", Seq: c, CPort: port})
	}
	return at, c, s
}

// conn adds a whole connection and returns what session returns.
func (b *twBuilder) conn(port uint16, at time.Duration, cisn, sisn uint32, end string) (time.Duration, uint32, uint32) {
	at = b.handshake(port, at, cisn, sisn)
	return b.session(port, at, cisn, sisn, end)
}

// timeWaitACK adds a SYN (ISN cisn) that lands on the server's TIME_WAIT
// of a connection that ended with the numbers cnext and snext: the bare
// ACK with the old numbers, the client's RST, the SYN again after retry,
// the SYN-ACK and the rest of the connection.
func (b *twBuilder) timeWaitACK(port uint16, at time.Duration, cisn, sisn, cnext, snext uint32, retry time.Duration) (time.Duration, uint32, uint32) {
	b.add(seg{At: at, From: "c", Flags: "S", Seq: cisn, Win: 64240, WScale: 7, CPort: port})
	b.add(seg{At: at + 30*time.Microsecond, From: "s", Flags: "A", Seq: snext, Ack: cnext, CPort: port})
	b.add(seg{At: at + 50*time.Microsecond, From: "c", Flags: "R", Seq: cnext, CPort: port})
	at = b.handshake(port, at+retry, cisn, sisn)
	return b.session(port, at, cisn, sisn, twQuit)
}

// bytes renders the trace with COM_QUIT in the quit segments.
func (b *twBuilder) bytes(t testing.TB) []byte {
	t.Helper()
	frames := map[int][]byte{}
	for _, i := range b.quits {
		frames[i+1] = twCOMQuit
	}
	return patchPayloads(t, b.tr.bytes(t), frames)
}

// patchPayloads overwrites the TCP payload of the given frames (1-based)
// of a pcap, which must have that length already. Checksums are left as
// they were: neither the analyser nor tshark (by default) checks them.
func patchPayloads(t testing.TB, pcap []byte, frames map[int][]byte) []byte {
	t.Helper()
	r, err := pcapgo.NewReader(bytes.NewReader(pcap))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w := pcapgo.NewWriter(&out)
	if err := w.WriteFileHeader(r.Snaplen(), r.LinkType()); err != nil {
		t.Fatal(err)
	}
	for n := 1; ; n++ {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		if payload, ok := frames[n]; ok {
			pkt := gopacket.NewPacket(data, r.LinkType(), gopacket.DecodeOptions{NoCopy: true})
			tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if tcp == nil || len(tcp.Payload) != len(payload) {
				t.Fatalf("frame %d: no TCP payload of %d bytes to patch", n, len(payload))
			}
			copy(tcp.Payload, payload)
		}
		if err := w.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	return out.Bytes()
}

// twCounts are the counts a test checks.
type twCounts struct {
	Connections, SYNRetransmissions                int
	ReusedPorts, ReusedPortSYNs, ReusedPortSYNACKs int
	BareACKs, OldSequence, WithRST, Recovered      int
	Completed                                      int
	FirstFIN                                       FirstFINCounts
	ClosedByFIN, ClosedByRST, NotClosed            int
	Quits, QuitThenServerFIN, TimeWaitCandidates   int
	CostN                                          int
	CostMax                                        time.Duration
	ResendN                                        int
	ResendMax                                      time.Duration
	ConnectN                                       int
	ConnectMax                                     time.Duration
	Truncated                                      bool
}

func countsOf(a *TimeWaitAnalysis) twCounts {
	return twCounts{
		Connections: a.Connections, SYNRetransmissions: a.SYNRetransmissions,
		ReusedPorts: a.ReusedPorts, ReusedPortSYNs: a.ReusedPortSYNs, ReusedPortSYNACKs: a.ReusedPortSYNACKs,
		BareACKs: a.BareACKs, OldSequence: a.BareACKsOldSequence, WithRST: a.BareACKsWithRST, Recovered: a.BareACKsRecovered,
		Completed: a.Completed, FirstFIN: a.FirstFIN,
		ClosedByFIN: a.ClosedByFIN, ClosedByRST: a.ClosedByRST, NotClosed: a.NotClosed,
		Quits: a.Quits, QuitThenServerFIN: a.QuitThenServerFIN, TimeWaitCandidates: a.TimeWaitCandidates,
		CostN: a.AnomalyCost.N, CostMax: a.AnomalyCost.Max, ResendN: a.ResendDelay.N, ResendMax: a.ResendDelay.Max,
		ConnectN: a.ConnectLatency.N, ConnectMax: a.ConnectLatency.Max,
		Truncated: a.Truncated,
	}
}

// Ports and ISNs of the synthetic connections. The second connection on a
// port gets an ISN after the first's last sequence number (accepted by the
// TIME_WAIT) or before it (answered by the bare ACK).
const (
	twPort1 = 20001
	twPort2 = 20002
)

var (
	twSISN2  = isnS + 0x100000
	twISN2   = isnC2          // 0x7b000000: after isnC (0xfffffff0) + 47, modulo 2^32
	twBefore = isnC - 0x10000 // before isnC + 47
)

// the connection the reuse cases start with: COM_QUIT, server's FIN first.
func twFirst(b *twBuilder) (time.Duration, uint32, uint32) {
	return b.conn(twPort1, 0, isnC, isnS, twQuit)
}

func TestTimeWaitSynthetic(t *testing.T) {
	quitConn := twCounts{Connections: 1, Completed: 1, FirstFIN: FirstFINCounts{Server: 1}, ClosedByFIN: 1,
		Quits: 1, QuitThenServerFIN: 1, TimeWaitCandidates: 1, ConnectN: 1, ConnectMax: 40 * time.Microsecond}
	tests := []struct {
		name  string
		build func(b *twBuilder)
		want  twCounts
		// frames of the first anomaly (BareACK.Frames), if any.
		frames []int
	}{
		{"server closes first after COM_QUIT", func(b *twBuilder) { twFirst(b) }, quitConn, nil},
		{"port reuse accepted", func(b *twBuilder) {
			end, _, _ := twFirst(b)
			b.conn(twPort1, end+2*time.Second, twISN2, twSISN2, twQuit)
		}, twCounts{Connections: 2, ReusedPorts: 1, ReusedPortSYNs: 1, Completed: 2, FirstFIN: FirstFINCounts{Server: 2},
			ClosedByFIN: 2, Quits: 2, QuitThenServerFIN: 2, TimeWaitCandidates: 2, ConnectN: 2, ConnectMax: 40 * time.Microsecond}, nil},
		{"port reuse answered by a bare ACK", func(b *twBuilder) {
			end, c, s := twFirst(b)
			b.timeWaitACK(twPort1, end+2*time.Second, twBefore, twSISN2, c, s, time.Second)
		}, twCounts{Connections: 2, SYNRetransmissions: 1, ReusedPorts: 2, ReusedPortSYNs: 1, ReusedPortSYNACKs: 1,
			BareACKs: 1, OldSequence: 1, WithRST: 1, Recovered: 1, Completed: 2, FirstFIN: FirstFINCounts{Server: 2},
			ClosedByFIN: 2, Quits: 2, QuitThenServerFIN: 2, TimeWaitCandidates: 2, CostN: 1, CostMax: time.Second,
			ResendN: 1, ResendMax: time.Second,
			ConnectN: 2, ConnectMax: time.Second + 40*time.Microsecond},
			// first connection: 10 segments; then SYN 11, ACK 12, RST 13,
			// SYN 14, SYN-ACK 15.
			[]int{11, 12, 13, 14, 15}},
		{"SYN retransmission without anomaly", func(b *twBuilder) {
			b.add(seg{At: 0, From: "c", Flags: "S", Seq: isnC, Win: 64240, WScale: 7, CPort: twPort1})
			at := b.handshake(twPort1, time.Second, isnC, isnS)
			b.session(twPort1, at, isnC, isnS, twQuit)
		}, twCounts{Connections: 1, SYNRetransmissions: 1, Completed: 1, FirstFIN: FirstFINCounts{Server: 1}, ClosedByFIN: 1,
			Quits: 1, QuitThenServerFIN: 1, TimeWaitCandidates: 1, ConnectN: 1, ConnectMax: time.Second + 40*time.Microsecond}, nil},
		{"client closes first", func(b *twBuilder) { b.conn(twPort1, 0, isnC, isnS, twClientFIN) },
			twCounts{Connections: 1, Completed: 1, FirstFIN: FirstFINCounts{Client: 1}, ClosedByFIN: 1,
				ConnectN: 1, ConnectMax: 40 * time.Microsecond}, nil},
		{"reset", func(b *twBuilder) { b.conn(twPort1, 0, isnC, isnS, twRST) },
			twCounts{Connections: 1, Completed: 1, ClosedByRST: 1, ConnectN: 1, ConnectMax: 40 * time.Microsecond}, nil},
		{"two ports, one bare ACK", func(b *twBuilder) {
			end, c, s := twFirst(b)
			b.conn(twPort2, end, isnC, isnS, twQuit)
			b.timeWaitACK(twPort1, end+time.Second, twBefore, twSISN2, c, s, 10*time.Millisecond)
		}, twCounts{Connections: 3, SYNRetransmissions: 1, ReusedPorts: 2, ReusedPortSYNs: 1, ReusedPortSYNACKs: 1,
			BareACKs: 1, OldSequence: 1, WithRST: 1, Recovered: 1, Completed: 3, FirstFIN: FirstFINCounts{Server: 3},
			ClosedByFIN: 3, Quits: 3, QuitThenServerFIN: 3, TimeWaitCandidates: 3, CostN: 1, CostMax: 10 * time.Millisecond,
			ResendN: 1, ResendMax: 10 * time.Millisecond,
			ConnectN: 3, ConnectMax: 10*time.Millisecond + 40*time.Microsecond}, []int{21, 22, 23, 24, 25}},
		{"SYN never answered", func(b *twBuilder) {
			b.add(seg{At: 0, From: "c", Flags: "S", Seq: isnC, Win: 64240, WScale: 7, CPort: twPort1})
		}, twCounts{Connections: 1, NotClosed: 1}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newTWBuilder()
			tt.build(b)
			data := b.bytes(t)
			a, err := AnalyzeTimeWaitReader(bytes.NewReader(data), TimeWaitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := countsOf(a); got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			if a.Frames != len(b.tr.Segs) || a.TCPPackets != len(b.tr.Segs) {
				t.Errorf("frames %d, TCP %d, want %d", a.Frames, a.TCPPackets, len(b.tr.Segs))
			}
			if got := a.ExampleFrames(1); !slices.Equal(got, tt.frames) {
				t.Errorf("example frames %v, want %v", got, tt.frames)
			}
			if a.BareACKs > 0 {
				x := a.Anomalies[0]
				if x.Previous == nil || !x.OldSequence || !x.OldAck || x.Seq != x.Previous.ServerNext || x.Ack != x.Previous.ClientNext {
					t.Errorf("anomaly %+v: want the previous connection's numbers", x)
				}
				if x.Previous.FirstFIN != SideServer || x.Previous.Close != CloseByFIN {
					t.Errorf("previous connection %+v: want closed by FINs, server first", *x.Previous)
				}
				if x.RetransmittedSYNFrame != x.AnsweredSYNFrame || x.ResendDelay != x.Cost {
					t.Errorf("anomaly %+v: one retransmission, which got the SYN-ACK", x)
				}
				if x.Client.Port() != twPort1 || x.Server != synthServer {
					t.Errorf("anomaly on %s -> %s", x.Client, x.Server)
				}
			}
			t.Log(a)
		})
	}
}

// The bare-ACK trace in every file format and encapsulation the reader
// takes gives the same figures.
func TestTimeWaitEncapsulations(t *testing.T) {
	build := func() *twBuilder {
		b := newTWBuilder()
		end, c, s := b.conn(twPort1, 0, isnC, isnS, twClientFIN)
		// The first connection closed client first: a TIME_WAIT on the
		// client, none on the server, in real life; the rule does not care.
		b.timeWaitACK(twPort1, end+time.Second, twBefore, twSISN2, c, s, time.Second)
		return b
	}
	want := countsOf(mustTimeWait(t, build().tr.bytes(t), TimeWaitOptions{}))
	if want.BareACKs != 1 || want.ReusedPorts != 2 {
		t.Fatalf("reference: %+v", want)
	}
	tests := append(encapsulations[:len(encapsulations):len(encapsulations)], struct {
		name string
		edit func(tr *trace)
	}{"arp between", func(tr *trace) { tr.ARPBefore = map[int]bool{0: true, 5: true} }})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := build()
			tt.edit(b.tr)
			a := mustTimeWait(t, b.tr.bytes(t), TimeWaitOptions{})
			if got := countsOf(a); got != want {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
			if a.TCPPackets != len(b.tr.Segs) {
				t.Errorf("TCP %d, want %d", a.TCPPackets, len(b.tr.Segs))
			}
		})
	}
}

func mustTimeWait(t testing.TB, data []byte, opt TimeWaitOptions) *TimeWaitAnalysis {
	t.Helper()
	a, err := AnalyzeTimeWaitReader(bytes.NewReader(data), opt)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// A file cut inside its last record is analysed up to the cut.
func TestTimeWaitTruncated(t *testing.T) {
	b := newTWBuilder()
	end, c, s := twFirst(b)
	b.timeWaitACK(twPort1, end+2*time.Second, twBefore, twSISN2, c, s, time.Second)
	data := b.bytes(t)
	full := mustTimeWait(t, data, TimeWaitOptions{})
	path := filepath.Join(t.TempDir(), "cut.pcap")
	if err := os.WriteFile(path, data[:len(data)-10], 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := AnalyzeTimeWait(path, TimeWaitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The last record is the server's ACK of the client's FIN: it changes
	// none of the counts.
	want := countsOf(full)
	want.Truncated = true
	if got := countsOf(a); got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if a.Frames != full.Frames-1 || !a.Truncated {
		t.Errorf("frames %d truncated %v, want %d true", a.Frames, a.Truncated, full.Frames-1)
	}
}

func TestTimeWaitOptions(t *testing.T) {
	b := newTWBuilder()
	end, c, s := twFirst(b)
	b.timeWaitACK(twPort1, end+time.Second, twBefore, twSISN2, c, s, time.Second)
	// A bare ACK on a 4-tuple without an earlier connection, as a capture
	// on the client's side of the NAT shows them.
	b.timeWaitACK(twPort2, end+3*time.Second, isnC, isnS, isnC+100, isnS+100, time.Second)
	data := b.bytes(t)
	tests := []struct {
		name      string
		opt       TimeWaitOptions
		tcp, bare int
		examples  int
		dropped   int
	}{
		{"defaults", TimeWaitOptions{}, len(b.tr.Segs), 2, 2, 0},
		{"server address", TimeWaitOptions{Server: synthServer.Addr()}, len(b.tr.Segs), 2, 2, 0},
		{"other server address", TimeWaitOptions{Server: netip.MustParseAddr("10.89.250.9")}, 0, 0, 0, 0},
		{"other port", TimeWaitOptions{ServerPort: 3307}, 0, 0, 0, 0},
		{"one example", TimeWaitOptions{MaxExamples: 1}, len(b.tr.Segs), 2, 1, 1},
		{"no examples", TimeWaitOptions{MaxExamples: -1}, len(b.tr.Segs), 2, 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := mustTimeWait(t, data, tt.opt)
			if a.TCPPackets != tt.tcp || a.BareACKs != tt.bare || len(a.Anomalies) != tt.examples || a.AnomaliesDropped != tt.dropped {
				t.Errorf("TCP %d bare ACKs %d examples %d dropped %d, want %d %d %d %d",
					a.TCPPackets, a.BareACKs, len(a.Anomalies), a.AnomaliesDropped, tt.tcp, tt.bare, tt.examples, tt.dropped)
			}
			// Counts do not depend on the examples kept.
			if a.BareACKs > 0 && (a.BareACKsRecovered != 2 || a.BareACKsWithRST != 2 || a.AnomalyCost.N != 2 || a.ResendDelay.N != 2) {
				t.Errorf("recovered %d with RST %d cost %v resend %v, want 2 2 n=2 n=2", a.BareACKsRecovered, a.BareACKsWithRST, a.AnomalyCost, a.ResendDelay)
			}
		})
	}
}

func TestTimeWaitErrors(t *testing.T) {
	if _, err := AnalyzeTimeWaitReader(bytes.NewReader([]byte("not a capture at all")), TimeWaitOptions{}); !errors.Is(err, ErrNotCapture) {
		t.Errorf("text: %v, want ErrNotCapture", err)
	}
	if _, err := AnalyzeTimeWait(filepath.Join(t.TempDir(), "missing.pcap"), TimeWaitOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
}

// On random traces (lost, repeated and reordered segments, resets, 4-tuples
// reused with the same or a new ISN), the streaming rule for reused ports
// flags what the full analysis (tcpState, pinned to tshark frame by frame)
// flags, and bare ACKs are what a second count over the stored packets
// finds.
func TestTimeWaitRandomAgreesWithAnalyze(t *testing.T) {
	var totalReused, totalBare int
	for seed := uint64(1); seed <= 40; seed++ {
		data := randomTrace(seed, 60).bytes(t)
		full, err := AnalyzeReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		a := mustTimeWait(t, data, TimeWaitOptions{ServerPort: synthServer.Port()})
		reused := count(full.Packets, func(p *Packet) bool { return p.ReusedPorts })
		synRe := count(full.Packets, func(p *Packet) bool { return p.ReusedPorts && p.SYN && !p.ACK })
		bare := 0
		flows := full.Flows(synthClient.Addr(), synthServer)
		for _, f := range flows {
			var syn *Packet
			for i := range f.Packets {
				p := &f.Packets[i]
				switch {
				case p.Src == f.Client && p.SYN && !p.ACK:
					syn = p
				case p.Src == f.Server && syn != nil:
					if p.ACK && !p.SYN && !p.FIN && !p.RST && p.Payload == 0 && p.Ack != syn.Seq+1 {
						bare++
					}
					syn = nil
				}
			}
		}
		if a.ReusedPorts != reused || a.ReusedPortSYNs != synRe || a.BareACKs != bare || a.FourTuples != len(flows) {
			t.Errorf("seed %d: reused %d (SYN %d), bare %d, 4-tuples %d; Analyze: %d (%d), %d, %d",
				seed, a.ReusedPorts, a.ReusedPortSYNs, a.BareACKs, a.FourTuples, reused, synRe, bare, len(flows))
		}
		totalReused += reused
		totalBare += bare
	}
	// The comparison means something only if the traces hold both.
	if totalReused == 0 || totalBare == 0 {
		t.Errorf("random traces: %d reused ports, %d bare ACKs in all: nothing compared", totalReused, totalBare)
	}
	t.Logf("random traces: %d reused ports, %d bare ACKs", totalReused, totalBare)
}

func TestDurationStats(t *testing.T) {
	tests := []struct {
		name string
		in   []time.Duration
		want DurationStats
	}{
		{"none", nil, DurationStats{}},
		{"one", []time.Duration{5}, DurationStats{N: 1, Min: 5, P50: 5, P99: 5, Max: 5, Mean: 5}},
		{"hundred", func() []time.Duration {
			var d []time.Duration
			for i := 100; i >= 1; i-- {
				d = append(d, time.Duration(i))
			}
			return d
		}(), DurationStats{N: 100, Min: 1, P50: 50, P99: 99, Max: 100, Mean: 50}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d durationAcc
			for _, v := range tt.in {
				d.add(v)
			}
			if got := d.stats(); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	// Beyond the sample size: exact count, min, max; sampled percentiles
	// close to the truth.
	var d durationAcc
	const n = 3 * twMaxSamples
	for i := range n {
		d.add(time.Duration((i * 7919) % n))
	}
	s := d.stats()
	if s.N != n || s.Min != 0 || s.Max != n-1 || !s.Sampled {
		t.Errorf("large: %+v", s)
	}
	if p := float64(s.P50) / n; p < 0.48 || p > 0.52 {
		t.Errorf("large: p50 %v of %d", s.P50, n)
	}
}
