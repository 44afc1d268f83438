package capture

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/labrun/labrun/tcpmodel"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// This file is the streaming analysis of Lab B captures: many short MySQL
// connections from behind a NAT, whose reused ports land on the server's
// TIME_WAIT sockets. Unlike Analyze it keeps no packets: it reads the file
// once and keeps state per 4-tuple (how the last connection on it ended,
// and the connection now open on it), so that its memory grows with the
// number of distinct 4-tuples, not with the length of the capture. Lists of
// examples are capped; counts and latency statistics cover everything.

// DefaultTimeWaitExamples is TimeWaitOptions.MaxExamples when 0.
const DefaultTimeWaitExamples = 1000

// twMaxSamples bounds the durations a DurationStats keeps for its
// percentiles; beyond it they are a uniform reservoir sample.
const twMaxSamples = 1 << 16

// maxPendingPerConn bounds the bare ACKs one connection remembers until it
// gets its SYN-ACK (a SYN retransmitted on and on into TIME_WAITs).
const maxPendingPerConn = 16

// twCOMQuit is a whole MySQL COM_QUIT packet: payload length 1, sequence id
// 0, command byte 0x01.
var twCOMQuit = []byte{0x01, 0x00, 0x00, 0x00, 0x01}

// TimeWaitOptions tune AnalyzeTimeWait.
type TimeWaitOptions struct {
	// ServerPort tells the sides apart: the server is the end with this
	// port (default 3306). Segments with neither port are ignored.
	ServerPort uint16
	// Server, when valid, keeps only the connections of this server
	// address.
	Server netip.Addr
	// MaxExamples caps TimeWaitAnalysis.Anomalies (0:
	// DefaultTimeWaitExamples; negative: none kept).
	MaxExamples int
	// NATForget is how long a NAT on the way keeps a connection's
	// conntrack entry in TIME_WAIT (nf_conntrack_tcp_timeout_time_wait);
	// it splits TimeWaitAnalysis.MetTimeWait by the TIME_WAIT's age.
	// Without a NAT, 0.
	NATForget time.Duration
}

// Sides of a connection (TimeWaitEnd.FirstFIN).
const (
	SideServer = "server"
	SideClient = "client"
)

// Ways a connection ended (TimeWaitEnd.Close).
const (
	CloseByFIN  = "fin"  // FINs and no RST
	CloseByRST  = "rst"  // a RST, after FINs or not
	CloseByNone = "open" // neither, by the end of the capture or the next SYN
)

// DurationStats summarises a set of durations. N, Min, Max and Mean are
// exact; the percentiles are nearest-rank over the values, exact up to
// 65536 values and over a uniform sample of them beyond (Sampled).
type DurationStats struct {
	N    int           `json:"n"`
	Min  time.Duration `json:"min"`
	P50  time.Duration `json:"p50"`
	P99  time.Duration `json:"p99"`
	Max  time.Duration `json:"max"`
	Mean time.Duration `json:"mean"`
	// Sampled is true when the percentiles come from a sample.
	Sampled bool `json:"sampled,omitempty"`
}

func (s DurationStats) String() string {
	if s.N == 0 {
		return "n=0"
	}
	return fmt.Sprintf("n=%d min=%s p50=%s p99=%s max=%s", s.N, s.Min, s.P50, s.P99, s.Max)
}

// durationAcc accumulates a DurationStats in bounded memory.
type durationAcc struct {
	n        int
	min, max time.Duration
	sum      float64
	samples  []time.Duration
	rng      *rand.Rand
}

func (d *durationAcc) add(v time.Duration) {
	d.n++
	d.sum += float64(v)
	if d.n == 1 || v < d.min {
		d.min = v
	}
	if d.n == 1 || v > d.max {
		d.max = v
	}
	if len(d.samples) < twMaxSamples {
		d.samples = append(d.samples, v)
		return
	}
	// Algorithm R, seeded so that a file always gives the same figures.
	if d.rng == nil {
		d.rng = rand.New(rand.NewPCG(1, 2))
	}
	if i := d.rng.IntN(d.n); i < twMaxSamples {
		d.samples[i] = v
	}
}

func (d *durationAcc) stats() DurationStats {
	if d.n == 0 {
		return DurationStats{}
	}
	s := slices.Clone(d.samples)
	slices.Sort(s)
	rank := func(q float64) time.Duration {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return DurationStats{N: d.n, Min: d.min, Max: d.max, P50: rank(0.50), P99: rank(0.99),
		Mean: time.Duration(d.sum / float64(d.n)), Sampled: d.n > len(d.samples)}
}

// FirstFINCounts counts connections by the side that sent the first FIN.
type FirstFINCounts struct {
	Server int `json:"server"`
	Client int `json:"client"`
}

// TimeWaitEnd is how the connection before a SYN, on the same 4-tuple,
// ended: what a TIME_WAIT socket left by it remembers.
type TimeWaitEnd struct {
	// ServerNext and ClientNext are each side's next sequence number at
	// the end (its snd_nxt: the highest sequence number it sent plus the
	// payload, SYN and FIN). A server TIME_WAIT answers a SYN it refuses
	// with seq ServerNext and ack ClientNext (its rcv_nxt).
	ServerNext uint32 `json:"server_next"`
	ClientNext uint32 `json:"client_next"`
	// FirstFIN is SideServer or SideClient, "" without FIN.
	FirstFIN string `json:"first_fin,omitempty"`
	// TimeWait is set when the server closed first, the client closed
	// too and nobody reset: the server kept the 4-tuple in TIME_WAIT.
	TimeWait bool `json:"time_wait,omitempty"`
	// Close is CloseByFIN, CloseByRST or CloseByNone.
	Close string `json:"close"`
	// LastFrame and Last are the connection's last segment.
	LastFrame int       `json:"last_frame"`
	Last      time.Time `json:"last"`
}

// BareACK is one SYN answered by a bare ACK instead of a SYN-ACK: the
// first segment from the server on the 4-tuple after the SYN is an ACK
// without SYN, FIN, RST or payload whose acknowledgement number is not the
// SYN's sequence number + 1. A Linux server does that for a SYN that lands
// on a TIME_WAIT socket and is not after its rcv_nxt (nor carries a newer
// timestamp); the ACK carries the old connection's numbers. A SYN on an
// established connection gets the same answer (RFC 5961's challenge ACK):
// Previous.Close is then CloseByNone.
type BareACK struct {
	Client netip.AddrPort `json:"client"`
	Server netip.AddrPort `json:"server"`
	// SYNFrame and SYNTime are the SYN the ACK answered, SYNSeq its
	// sequence number; FirstSYNFrame is the connection's first SYN (the
	// same one unless the answered SYN was a retransmission).
	SYNFrame      int       `json:"syn_frame"`
	SYNTime       time.Time `json:"syn_time"`
	SYNSeq        uint32    `json:"syn_seq"`
	FirstSYNFrame int       `json:"first_syn_frame"`
	// ACKFrame is the bare ACK; Seq and Ack are its raw numbers.
	ACKFrame int    `json:"ack_frame"`
	Seq      uint32 `json:"seq"`
	Ack      uint32 `json:"ack"`
	// Previous is how the last connection on the 4-tuple in this capture
	// ended; nil when the capture holds none (always, in a capture taken
	// on the client's side of a NAT, whose 4-tuple is a new one).
	Previous *TimeWaitEnd `json:"previous,omitempty"`
	// OldSequence is true when Seq is the previous connection's final
	// server sequence number (Previous.ServerNext), OldAck when Ack is
	// its client's (Previous.ClientNext): the ACK came from the old
	// connection's TIME_WAIT.
	OldSequence bool `json:"old_sequence"`
	OldAck      bool `json:"old_ack"`
	// TimeWaitAge is the time from the previous connection's last segment
	// to the SYN: how old the TIME_WAIT was (0 without Previous).
	TimeWaitAge time.Duration `json:"time_wait_age,omitempty"`
	// RSTFrame is the client's RST after the ACK (0: none seen), whose
	// sequence number is normally the ACK's Ack.
	RSTFrame int `json:"rst_frame,omitempty"`
	// RetransmittedSYNFrame is the next SYN of the same attempt (same ISN,
	// same 4-tuple) after the ACK, ResendDelay its time after the answered
	// SYN; 0 when none came.
	RetransmittedSYNFrame int           `json:"retransmitted_syn_frame,omitempty"`
	ResendDelay           time.Duration `json:"resend_delay,omitempty"`
	// AnsweredSYNFrame is the SYN (a retransmission) that then got the
	// SYN-ACK, SYNACKFrame that SYN-ACK; 0 when none came on the 4-tuple.
	AnsweredSYNFrame int `json:"answered_syn_frame,omitempty"`
	SYNACKFrame      int `json:"synack_frame,omitempty"`
	// Cost is the time from the connection's first SYN to the SYN that got
	// the SYN-ACK: what the anomaly added to the connect (≈ the initial
	// RTO, 1 s). 0 when Recovered is false.
	Cost      time.Duration `json:"cost,omitempty"`
	Recovered bool          `json:"recovered"`
}

// Frames returns the frames of the anomaly, in order, for citing.
func (b *BareACK) Frames() []int {
	out := []int{}
	for _, f := range []int{b.FirstSYNFrame, b.SYNFrame, b.ACKFrame, b.RSTFrame, b.RetransmittedSYNFrame, b.AnsweredSYNFrame, b.SYNACKFrame} {
		if f != 0 && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out
}

// TimeWaitAnalysis is what AnalyzeTimeWait finds in a capture.
type TimeWaitAnalysis struct {
	ServerPort uint16 `json:"server_port"`
	// Frames counts every record of the file; TCPPackets the TCP segments
	// of the server's connections (the ones analysed).
	Frames     int `json:"frames"`
	TCPPackets int `json:"tcp_packets"`
	// Truncated reports a file that ends inside a record; the records
	// before it are analysed.
	Truncated bool `json:"truncated,omitempty"`
	// FourTuples counts the distinct (client, server) address and port
	// pairs.
	FourTuples int `json:"four_tuples"`
	// Connections counts connection attempts: client SYNs (SYN without
	// ACK) whose sequence number is not the ISN of the attempt already on
	// the 4-tuple. SYNRetransmissions counts the SYNs that repeat it.
	Connections        int `json:"connections"`
	SYNRetransmissions int `json:"syn_retransmissions"`
	// ReusedPorts is the number of frames tshark 4.0 flags with
	// tcp.analysis.reused_ports (see reusedPorts for the rule): SYNs that
	// start a new conversation on a 4-tuple seen before, and SYN-ACKs whose
	// ISN is not the one the server's direction of the conversation
	// started with. ReusedPortSYNs and ReusedPortSYNACKs split it.
	ReusedPorts       int `json:"reused_ports"`
	ReusedPortSYNs    int `json:"reused_port_syns"`
	ReusedPortSYNACKs int `json:"reused_port_synacks"`
	// BareACKs counts SYNs answered by a bare ACK (see BareACK), every one
	// of them, whether kept in Anomalies or not. The other counts split
	// them: the ACK carried the previous connection's final server
	// sequence number; the client answered it with a RST; a later SYN of
	// the same attempt got a SYN-ACK on the 4-tuple.
	BareACKs            int `json:"bare_acks"`
	BareACKsOldSequence int `json:"bare_acks_old_sequence"`
	BareACKsWithRST     int `json:"bare_acks_with_rst"`
	BareACKsRecovered   int `json:"bare_acks_recovered"`
	// AnomalousConnections counts connection attempts with at least one
	// bare ACK; AnomalyCost is, over those that got a SYN-ACK, the time
	// from their first SYN to the SYN that got it.
	AnomalousConnections int           `json:"anomalous_connections"`
	AnomalyCost          DurationStats `json:"anomaly_cost"`
	// ResendDelay is, over the bare ACKs after which the client sent its
	// SYN again on the 4-tuple, the time from the answered SYN to that
	// retransmission (BareACK.ResendDelay).
	ResendDelay DurationStats `json:"resend_delay"`
	// FirstResendDelay is ResendDelay over the bare ACKs that answered an
	// attempt's original SYN: since Linux 5.10 the client resends its SYN
	// 2 jiffies after such an ACK, and once it has retransmitted its SYN
	// (after an earlier bare ACK, or a SYN lost on the way) it waits for
	// its SYN timer.
	FirstResendDelay DurationStats `json:"first_resend_delay"`
	// Anomalies are the first MaxExamples bare ACKs, in capture order;
	// AnomaliesDropped counts the ones left out.
	Anomalies        []BareACK `json:"anomalies,omitempty"`
	AnomaliesDropped int       `json:"anomalies_dropped,omitempty"`
	// Completed counts handshakes the client completed (an ACK of the
	// server's SYN-ACK); ConnectLatency is, over them, the time from the
	// first SYN to the SYN-ACK.
	Completed      int           `json:"completed"`
	ConnectLatency DurationStats `json:"connect_latency"`
	// FirstFIN counts connections with a FIN by the side of their first
	// FIN; ClosedByFIN, ClosedByRST and NotClosed split every connection
	// (attempts and connections whose start the capture missed) by how it
	// ended (a RST wins over FINs).
	FirstFIN    FirstFINCounts `json:"first_fin"`
	ClosedByFIN int            `json:"closed_by_fin"`
	ClosedByRST int            `json:"closed_by_rst"`
	NotClosed   int            `json:"not_closed"`
	// Quits counts connections in which the client sent MySQL's COM_QUIT
	// (a segment whose payload is exactly 01 00 00 00 01);
	// QuitThenServerFIN those whose first FIN came from the server after
	// it.
	Quits             int `json:"quits"`
	QuitThenServerFIN int `json:"quit_then_server_fin"`
	// TimeWaitCandidates counts connections the server closed first, that
	// the client closed too and nobody reset: they leave a TIME_WAIT
	// socket on the server.
	TimeWaitCandidates int `json:"time_wait_candidates"`
	// MetTimeWait counts connection attempts whose first SYN came on a
	// 4-tuple the server still held in TIME_WAIT: the connection before
	// it on the 4-tuple left one (TimeWaitEnd.TimeWait) less than
	// TCP_TIMEWAIT_LEN (60 s) before. MetForgottenTimeWait counts those
	// among them whose TIME_WAIT was at least TimeWaitOptions.NATForget
	// old: the NAT had forgotten the old connection, so nothing on the way
	// kept it from handing out the 4-tuple with any sequence number.
	MetTimeWait          int `json:"met_time_wait"`
	MetForgottenTimeWait int `json:"met_forgotten_time_wait"`
}

// String summarises the analysis on one line.
func (a *TimeWaitAnalysis) String() string {
	s := fmt.Sprintf("%d frames, %d TCP, %d 4-tuples: %d connections, %d SYN retransmissions, %d reused ports (%d SYN, %d SYN-ACK), %d bare ACKs (%d old seq, %d RST, %d recovered, resend %v, cost %v), %d completed (connect %v), first FIN server %d client %d, %d quit then server FIN, %d TIME_WAIT candidates",
		a.Frames, a.TCPPackets, a.FourTuples, a.Connections, a.SYNRetransmissions, a.ReusedPorts, a.ReusedPortSYNs, a.ReusedPortSYNACKs,
		a.BareACKs, a.BareACKsOldSequence, a.BareACKsWithRST, a.BareACKsRecovered, a.ResendDelay, a.AnomalyCost,
		a.Completed, a.ConnectLatency, a.FirstFIN.Server, a.FirstFIN.Client, a.QuitThenServerFIN, a.TimeWaitCandidates)
	if a.Truncated {
		s += " (truncated file)"
	}
	return s
}

// ExampleFrames returns the frames of the first n anomalies kept (all of
// them for n <= 0), sorted: SYNs, bare ACKs, RSTs and SYN-ACKs, for
// citing in a report.
func (a *TimeWaitAnalysis) ExampleFrames(n int) []int {
	if n <= 0 || n > len(a.Anomalies) {
		n = len(a.Anomalies)
	}
	var out []int
	for i := range a.Anomalies[:n] {
		out = append(out, a.Anomalies[i].Frames()...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// twKey is a 4-tuple, client side first.
type twKey struct{ client, server netip.AddrPort }

// twConn is one connection (attempt) on a 4-tuple.
type twConn struct {
	// fromSYN is false for a connection whose SYN the capture missed.
	fromSYN            bool
	isn                uint32
	firstSYNFrame      int
	firstSYN           time.Time
	lastSYNFrame       int
	lastSYN            time.Time
	synAck             bool
	synAckTime         time.Time
	serverISN          uint32
	completed          bool
	clientNext         uint32
	serverNext         uint32
	clientSet          bool
	serverSet          bool
	firstFIN           string
	clientFIN          bool
	serverFIN          bool
	rst                bool
	quit               bool
	quitThenServerFIN  bool
	lastFrame          int
	last               time.Time
	anomalous          bool
	pending            []pendingBareACK
	pendingWithoutNote int
}

// pendingBareACK is a bare ACK of the connection not yet followed by its
// SYN-ACK: index in Anomalies (-1: not kept), the time of the SYN it
// answered, and whether the SYN was sent again since.
type pendingBareACK struct {
	idx     int
	synTime time.Time
	resent  bool
}

// twTuple is the state of one 4-tuple.
type twTuple struct {
	// Wireshark's view of the 4-tuple, for the reused-ports rule: the
	// base sequence number of each direction of its current conversation
	// (0: client to server, 1: server to client).
	wsBase [2]uint32
	wsSet  [2]bool

	cur  twConn
	has  bool
	prev TimeWaitEnd
	// hasPrev: prev holds the connection before cur.
	hasPrev bool
	// awaiting: the last client SYN still waits for the server's first
	// answer (synFrame, synTime, synSeq).
	awaiting bool
	synFrame int
	synTime  time.Time
	synSeq   uint32
	// lastBare is the index in cur.pending of the last bare ACK, waiting
	// for the client's RST (-1: none).
	lastBare int
}

type twState struct {
	opt     TimeWaitOptions
	a       *TimeWaitAnalysis
	tuples  map[twKey]*twTuple
	cost    durationAcc
	resend  durationAcc
	first   durationAcc
	connect durationAcc
}

// AnalyzeTimeWait reads a pcap or pcapng file once and returns the Lab B
// figures of the connections to the server: connection attempts and SYN
// retransmissions, reused ports (as tshark counts them), SYNs answered by
// a bare ACK and what they cost, connect latency, which side closed first.
func AnalyzeTimeWait(path string, opt TimeWaitOptions) (*TimeWaitAnalysis, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("analyze time-wait: %w", err)
	}
	defer f.Close()
	a, err := AnalyzeTimeWaitReader(f, opt)
	if err != nil {
		return a, fmt.Errorf("analyze time-wait %s: %w", path, err)
	}
	return a, nil
}

// AnalyzeTimeWaitReader is AnalyzeTimeWait for a capture that is not in a
// file. On a read error in the middle of the file it returns what it found
// up to there with the error.
func AnalyzeTimeWaitReader(r io.Reader, opt TimeWaitOptions) (*TimeWaitAnalysis, error) {
	if opt.ServerPort == 0 {
		opt.ServerPort = 3306
	}
	if opt.MaxExamples == 0 {
		opt.MaxExamples = DefaultTimeWaitExamples
	}
	opt.Server = opt.Server.Unmap()
	src, linkType, err := openCapture(r)
	if err != nil {
		return nil, err
	}
	s := &twState{opt: opt, a: &TimeWaitAnalysis{ServerPort: opt.ServerPort}, tuples: map[twKey]*twTuple{}}
	defer s.finish()
	for {
		data, ci, err := src.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			// A record cut short at the end, as a killed writer leaves it:
			// analysed up to there, as tshark does.
			if errors.Is(err, io.ErrUnexpectedEOF) {
				s.a.Truncated = true
				break
			}
			return s.a, fmt.Errorf("frame %d: %w", s.a.Frames+1, err)
		}
		s.a.Frames++
		p, payload, ok := decodeTCP(data, linkType(ci))
		if !ok {
			continue
		}
		p.Frame = s.a.Frames
		p.Time = ci.Timestamp
		s.packet(&p, payload)
	}
	return s.a, nil
}

// openCapture sets up the reader for a pcap or pcapng stream, as
// analyzeReader does.
func openCapture(r io.Reader) (packetReader, func(gopacket.CaptureInfo) layers.LinkType, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrNotCapture, err)
	}
	if binary.LittleEndian.Uint32(magic) == 0x0a0d0d0a {
		ng, err := pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrNotCapture, err)
		}
		return ng, func(ci gopacket.CaptureInfo) layers.LinkType {
			ifc, err := ng.Interface(ci.InterfaceIndex)
			if err != nil {
				return ng.LinkType()
			}
			return ifc.LinkType
		}, nil
	}
	pr, err := pcapgo.NewReader(br)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrNotCapture, err)
	}
	lt := pr.LinkType()
	return pr, func(gopacket.CaptureInfo) layers.LinkType { return lt }, nil
}

// packet runs one TCP segment through the analysis.
func (s *twState) packet(p *Packet, payload []byte) {
	var (
		k          twKey
		fromClient bool
	)
	port := s.opt.ServerPort
	switch {
	case p.Dst.Port() == port && (!s.opt.Server.IsValid() || p.Dst.Addr() == s.opt.Server):
		k, fromClient = twKey{client: p.Src, server: p.Dst}, true
	case p.Src.Port() == port && (!s.opt.Server.IsValid() || p.Src.Addr() == s.opt.Server):
		k = twKey{client: p.Dst, server: p.Src}
	default:
		return
	}
	s.a.TCPPackets++
	t := s.tuples[k]
	if t == nil {
		t = &twTuple{lastBare: -1}
		s.tuples[k] = t
		s.a.FourTuples++
	}
	s.reusedPorts(t, p, fromClient)

	if fromClient {
		s.fromClient(t, p, payload)
	} else {
		s.fromServer(t, k, p)
	}
	if t.has {
		t.cur.lastFrame, t.cur.last = p.Frame, p.Time
	}
}

// reusedPorts applies tshark 4.0's rule for tcp.analysis.reused_ports
// (epan/dissectors/packet-tcp.c, dissect_tcp and
// tcp_analyze_sequence_number), on the 4-tuple's current conversation:
//
//   - each direction of a conversation has a base sequence number, set by
//     its first segment (its sequence number for a SYN, minus one
//     otherwise), or, before that, by the first ACK of the other direction
//     (the acknowledgement number minus one);
//   - a SYN without ACK whose sequence number differs from its direction's
//     base, once that is set, starts a new conversation (a new tcp.stream,
//     whose bases are unset) and is flagged;
//   - a SYN-ACK whose sequence number differs from its direction's base,
//     once that is set, is flagged and becomes the base (it stays in the
//     conversation).
//
// A SYN that repeats the base (a retransmission) is not flagged. So a
// reused port accepted at once (SYN, SYN-ACK) gives one flag, and one
// answered by a TIME_WAIT's bare ACK gives two: the bare ACK sets the
// server's base to its old sequence number - 1, and the SYN-ACK that
// follows the retransmitted SYN differs from it. This is the same rule as
// tcpState.analyze, which the tshark oracle tests pin down frame by frame.
func (s *twState) reusedPorts(t *twTuple, p *Packet, fromClient bool) {
	d := 1
	if fromClient {
		d = 0
	}
	switch {
	case p.SYN && !p.ACK && t.wsSet[d] && p.Seq != t.wsBase[d]:
		t.wsSet = [2]bool{}
		s.a.ReusedPorts++
		if fromClient {
			s.a.ReusedPortSYNs++
		}
	case p.SYN && p.ACK && t.wsSet[d] && p.Seq != t.wsBase[d]:
		t.wsBase[d] = p.Seq
		s.a.ReusedPorts++
		if !fromClient {
			s.a.ReusedPortSYNACKs++
		}
	}
	if !t.wsSet[d] {
		t.wsBase[d] = p.Seq - 1
		if p.SYN {
			t.wsBase[d] = p.Seq
		}
		t.wsSet[d] = true
	}
	if !t.wsSet[1-d] && p.ACK {
		t.wsBase[1-d] = p.Ack - 1
		t.wsSet[1-d] = true
	}
}

// newConn ends the tuple's connection, if any, and starts one.
func (s *twState) newConn(t *twTuple, c twConn) {
	if t.has {
		t.prev = s.end(&t.cur)
		t.hasPrev = true
	}
	t.cur = c
	t.has = true
	t.awaiting = false
	t.lastBare = -1
}

// end counts a connection that is over and returns how it ended.
func (s *twState) end(c *twConn) TimeWaitEnd {
	e := TimeWaitEnd{ServerNext: c.serverNext, ClientNext: c.clientNext, FirstFIN: c.firstFIN,
		LastFrame: c.lastFrame, Last: c.last}
	switch {
	case c.rst:
		e.Close = CloseByRST
		s.a.ClosedByRST++
	case c.firstFIN != "":
		e.Close = CloseByFIN
		s.a.ClosedByFIN++
	default:
		e.Close = CloseByNone
		s.a.NotClosed++
	}
	switch c.firstFIN {
	case SideServer:
		s.a.FirstFIN.Server++
		if c.clientFIN && !c.rst {
			s.a.TimeWaitCandidates++
			e.TimeWait = true
		}
	case SideClient:
		s.a.FirstFIN.Client++
	}
	if c.quit {
		s.a.Quits++
	}
	if c.quitThenServerFIN {
		s.a.QuitThenServerFIN++
	}
	// Bare ACKs whose attempt never got its SYN-ACK stay unrecovered.
	c.pending = nil
	return e
}

func (s *twState) finish() {
	for _, t := range s.tuples {
		if t.has {
			s.end(&t.cur)
		}
	}
	s.a.AnomalyCost = s.cost.stats()
	s.a.ResendDelay = s.resend.stats()
	s.a.FirstResendDelay = s.first.stats()
	s.a.ConnectLatency = s.connect.stats()
}

// twAdvance moves a side's next sequence number forward.
func twAdvance(next *uint32, set *bool, p *Packet) {
	n := p.NextSeq()
	if !*set || gtSeq(n, *next) {
		*next, *set = n, true
	}
}

func (s *twState) fromClient(t *twTuple, p *Packet, payload []byte) {
	c := &t.cur
	if p.SYN && !p.ACK {
		if t.has && c.fromSYN && p.Seq == c.isn {
			s.a.SYNRetransmissions++
			c.lastSYNFrame, c.lastSYN = p.Frame, p.Time
			s.resent(c, p)
		} else {
			s.a.Connections++
			s.newConn(t, twConn{fromSYN: true, isn: p.Seq, firstSYNFrame: p.Frame, firstSYN: p.Time,
				lastSYNFrame: p.Frame, lastSYN: p.Time})
			c = &t.cur
			if age := p.Time.Sub(t.prev.Last); t.hasPrev && t.prev.TimeWait && age < tcpmodel.TimeWait {
				s.a.MetTimeWait++
				if age >= s.opt.NATForget {
					s.a.MetForgottenTimeWait++
				}
			}
		}
		t.awaiting, t.synFrame, t.synTime, t.synSeq = true, p.Frame, p.Time, p.Seq
		twAdvance(&c.clientNext, &c.clientSet, p)
		return
	}
	if !t.has {
		s.newConn(t, twConn{})
		c = &t.cur
	}
	if c.fromSYN && !c.synAck {
		// Before the SYN-ACK, a client RST answers a bare ACK: it ends the
		// TIME_WAIT, not this attempt.
		if p.RST && t.lastBare >= 0 {
			if i := c.pending[t.lastBare].idx; i >= 0 {
				s.a.Anomalies[i].RSTFrame = p.Frame
			}
			s.a.BareACKsWithRST++
			t.lastBare = -1
		}
		return
	}
	if c.synAck && !c.completed && p.ACK && !p.SYN && p.Ack == c.serverISN+1 {
		c.completed = true
		s.a.Completed++
		s.connect.add(c.synAckTime.Sub(c.firstSYN))
	}
	twAdvance(&c.clientNext, &c.clientSet, p)
	if p.Payload == len(twCOMQuit) && bytes.HasPrefix(payload, twCOMQuit) {
		c.quit = true
	}
	if p.RST {
		c.rst = true
	}
	if p.FIN {
		if c.firstFIN == "" && !c.rst {
			c.firstFIN = SideClient
		}
		c.clientFIN = true
	}
}

func (s *twState) fromServer(t *twTuple, k twKey, p *Packet) {
	c := &t.cur
	if t.awaiting {
		t.awaiting = false
		if p.ACK && !p.SYN && !p.FIN && !p.RST && p.Payload == 0 && p.Ack != t.synSeq+1 {
			s.bareACK(t, k, p)
			return
		}
	}
	if !t.has {
		s.newConn(t, twConn{})
		c = &t.cur
	}
	if p.SYN && p.ACK {
		if c.fromSYN && !c.synAck && p.Ack == c.isn+1 {
			c.synAck, c.synAckTime, c.serverISN = true, p.Time, p.Seq
			c.serverNext, c.serverSet = p.NextSeq(), true
			s.recovered(t, c, p)
		}
		return
	}
	if c.fromSYN && !c.synAck {
		// Anything else before the SYN-ACK belongs to an older connection
		// (a TIME_WAIT's ACK, a late retransmission), but for a RST that
		// refuses the SYN.
		if p.RST && p.ACK && p.Ack == c.isn+1 {
			c.rst = true
		}
		return
	}
	twAdvance(&c.serverNext, &c.serverSet, p)
	if p.RST {
		c.rst = true
	}
	if p.FIN {
		if c.firstFIN == "" && !c.rst {
			c.firstFIN = SideServer
			if c.quit {
				c.quitThenServerFIN = true
			}
		}
		c.serverFIN = true
	}
}

// bareACK records a SYN answered by a bare ACK.
func (s *twState) bareACK(t *twTuple, k twKey, p *Packet) {
	a := s.a
	a.BareACKs++
	c := &t.cur
	if !c.anomalous {
		c.anomalous = true
		a.AnomalousConnections++
	}
	b := BareACK{Client: k.client, Server: k.server, SYNFrame: t.synFrame, SYNTime: t.synTime, SYNSeq: t.synSeq,
		FirstSYNFrame: c.firstSYNFrame, ACKFrame: p.Frame, Seq: p.Seq, Ack: p.Ack}
	if t.hasPrev {
		prev := t.prev
		b.Previous = &prev
		b.OldSequence = p.Seq == prev.ServerNext
		b.OldAck = p.Ack == prev.ClientNext
		b.TimeWaitAge = t.synTime.Sub(prev.Last)
	}
	if b.OldSequence {
		a.BareACKsOldSequence++
	}
	idx := -1
	if s.opt.MaxExamples > 0 && len(a.Anomalies) < s.opt.MaxExamples {
		idx = len(a.Anomalies)
		a.Anomalies = append(a.Anomalies, b)
	} else {
		a.AnomaliesDropped++
	}
	if len(c.pending) < maxPendingPerConn {
		c.pending = append(c.pending, pendingBareACK{idx: idx, synTime: t.synTime})
		t.lastBare = len(c.pending) - 1
	} else {
		c.pendingWithoutNote++
		t.lastBare = -1
	}
}

// resent notes the retransmitted SYN p after the attempt's bare ACKs.
func (s *twState) resent(c *twConn, p *Packet) {
	for i := range c.pending {
		pb := &c.pending[i]
		if pb.resent {
			continue
		}
		pb.resent = true
		d := p.Time.Sub(pb.synTime)
		s.resend.add(d)
		if pb.synTime.Equal(c.firstSYN) {
			s.first.add(d)
		}
		if pb.idx >= 0 {
			b := &s.a.Anomalies[pb.idx]
			b.RetransmittedSYNFrame, b.ResendDelay = p.Frame, d
		}
	}
}

// recovered closes the anomalies of an attempt that got its SYN-ACK.
func (s *twState) recovered(t *twTuple, c *twConn, synAck *Packet) {
	if !c.anomalous {
		return
	}
	cost := c.lastSYN.Sub(c.firstSYN)
	s.cost.add(cost)
	s.a.BareACKsRecovered += len(c.pending) + c.pendingWithoutNote
	for _, pb := range c.pending {
		if pb.idx < 0 {
			continue
		}
		b := &s.a.Anomalies[pb.idx]
		b.Recovered = true
		b.AnsweredSYNFrame = c.lastSYNFrame
		b.SYNACKFrame = synAck.Frame
		b.Cost = cost
	}
	c.pending, c.pendingWithoutNote = nil, 0
	t.lastBare = -1
}
