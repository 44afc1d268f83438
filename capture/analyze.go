package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Packet is one TCP segment of a capture, with the per-segment verdicts of
// Wireshark's TCP sequence analysis (the tcp.analysis.* fields).
type Packet struct {
	// Frame is the 1-based record number in the capture file, counting every
	// record (ARP and other non-TCP frames too), as Wireshark and tshark
	// number frames.
	Frame int
	Time  time.Time
	// Stream is Wireshark's tcp.stream: a 0-based conversation index that
	// starts anew when a SYN reuses a 4-tuple with a new initial sequence
	// number.
	Stream int

	Src, Dst netip.AddrPort

	SYN, ACK, FIN, RST, PSH, URG, ECE, CWR bool
	// Seq and Ack are the raw (absolute) header values.
	Seq, Ack uint32
	// Window is the raw 16-bit window field (tcp.window_size_value).
	Window int
	// WindowScaled is the window shifted by the scale the handshake
	// negotiated, when the handshake was seen (tcp.window_size); otherwise
	// it equals Window. SYNs are never scaled.
	WindowScaled int
	// Payload is the TCP payload length in bytes as the IP header reports it
	// (tcp.len), also when the capture cut the frame short.
	Payload int

	// Options carried by the segment; MSS and WindowScale are -1 when absent.
	MSS           int
	WindowScale   int
	SACKPermitted bool
	HasTimestamps bool
	TSval, TSecr  uint32

	// Retransmission is tcp.analysis.retransmission: set for generic, fast
	// and spurious retransmissions alike, as tshark's filter matches all
	// three. For a SYN it means the same ISN was sent again.
	Retransmission bool
	// FastRetransmission is tcp.analysis.fast_retransmission.
	FastRetransmission bool
	// SpuriousRetransmission is tcp.analysis.spurious_retransmission: the
	// data was already acknowledged.
	SpuriousRetransmission bool
	// OutOfOrder is tcp.analysis.out_of_order.
	OutOfOrder bool
	// KeepAlive is tcp.analysis.keep_alive: 0 or 1 byte of payload at the
	// next expected sequence number minus one, no SYN, FIN or RST. Linux's
	// zero-window probes look the same and are flagged too.
	KeepAlive bool
	// KeepAliveACK is tcp.analysis.keep_alive_ack.
	KeepAliveACK bool
	// DuplicateACK is tcp.analysis.duplicate_ack.
	DuplicateACK bool
	// ZeroWindow is tcp.analysis.zero_window.
	ZeroWindow bool
	// ZeroWindowProbe is tcp.analysis.zero_window_probe.
	ZeroWindowProbe bool
	// ZeroWindowProbeACK is tcp.analysis.zero_window_probe_ack.
	ZeroWindowProbeACK bool
	// WindowUpdate is tcp.analysis.window_update.
	WindowUpdate bool
	// WindowFull is tcp.analysis.window_full.
	WindowFull bool
	// LostSegment is tcp.analysis.lost_segment ("previous segment not
	// captured").
	LostSegment bool
	// ACKedUnseen is tcp.analysis.ack_lost_segment ("ACKed unseen segment").
	ACKedUnseen bool
	// ReusedPorts is tcp.analysis.reused_ports. Wireshark 4.0 also sets it
	// on a SYN that repeats the ISN of the conversation.
	ReusedPorts bool
}

// NextSeq is the sequence number just after the segment: SYN and FIN count
// as one byte each.
func (p *Packet) NextSeq() uint32 {
	n := p.Seq + uint32(p.Payload)
	if p.SYN {
		n++
	}
	if p.FIN {
		n++
	}
	return n
}

// Flags renders the flags the way tcpdump does: "S", "S.", "P.", "R", "F.".
func (p *Packet) Flags() string {
	var b []byte
	for _, f := range []struct {
		on bool
		c  byte
	}{{p.SYN, 'S'}, {p.FIN, 'F'}, {p.PSH, 'P'}, {p.RST, 'R'}, {p.URG, 'U'}, {p.ECE, 'E'}, {p.CWR, 'W'}, {p.ACK, '.'}} {
		if f.on {
			b = append(b, f.c)
		}
	}
	if len(b) == 0 {
		return "none"
	}
	return string(b)
}

func (p Packet) String() string {
	return fmt.Sprintf("#%d %s > %s [%s] seq %d ack %d win %d len %d", p.Frame, p.Src, p.Dst, p.Flags(), p.Seq, p.Ack, p.Window, p.Payload)
}

// Analysis is the TCP content of one capture file.
type Analysis struct {
	// Packets holds the TCP segments, in file order.
	Packets []Packet
	// Frames counts every record of the file, TCP or not.
	Frames int
	// Streams counts Wireshark's TCP conversations (tcp.stream values).
	Streams int
	// Truncated reports that the file ends inside a record, as a capture
	// does when its writer was killed; the records before it are analysed.
	Truncated bool
	// MySQL holds the streams that carry MySQL, one per TCP stream, in
	// stream order (see mysql.go).
	MySQL []*MySQLConn
}

// ErrNotCapture is returned for a file that is neither pcap nor pcapng.
var ErrNotCapture = errors.New("not a pcap or pcapng file")

// Analyze reads a pcap or pcapng file and runs the TCP analysis over it.
func Analyze(path string) (*Analysis, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("analyze: %w", err)
	}
	defer f.Close()
	a, err := AnalyzeReader(f)
	if err != nil {
		return nil, fmt.Errorf("analyze %s: %w", path, err)
	}
	return a, nil
}

// packetReader is what pcapgo's pcap and pcapng readers have in common.
type packetReader interface {
	ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// AnalyzeReader is Analyze for a capture that is not in a file.
func AnalyzeReader(r io.Reader) (*Analysis, error) {
	return analyzeReader(r, Options{})
}

func analyzeReader(r io.Reader, opt Options) (*Analysis, error) {
	src, linkType, err := openCapture(r)
	if err != nil {
		return nil, err
	}

	a := &Analysis{}
	st := newTCPState()
	// The MySQL decoder reads the payloads as they go by: packets do not
	// keep them.
	my := newMySQLDecoder(opt.MySQLPorts)
	defer func() { a.MySQL = my.finish() }()
	for {
		data, ci, err := src.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			// A record cut short at the end of the file is what a killed
			// writer leaves; tshark reads up to it and so do we.
			if errors.Is(err, io.ErrUnexpectedEOF) {
				a.Truncated = true
				break
			}
			return a, fmt.Errorf("frame %d: %w", a.Frames+1, err)
		}
		a.Frames++
		p, payload, ok := decodeTCP(data, linkType(ci))
		if !ok {
			continue
		}
		p.Frame = a.Frames
		p.Time = ci.Timestamp
		st.analyze(&p)
		my.feed(&p, payload)
		a.Packets = append(a.Packets, p)
	}
	a.Streams = st.streams
	return a, nil
}

// decodeTCP extracts the first TCP header of a frame together with the IP
// header right in front of it, and the captured payload bytes (fewer than
// Packet.Payload when the snaplen cut the frame). Frames whose TCP header
// is inside an ICMP error, or in a non-first IP fragment, carry no TCP
// layer for gopacket and are skipped; tshark shows the former as TCP
// without analysing them.
func decodeTCP(data []byte, lt layers.LinkType) (Packet, []byte, bool) {
	pkt := gopacket.NewPacket(data, lt, gopacket.DecodeOptions{NoCopy: true})
	var (
		src, dst netip.Addr
		// ipPayload is the length of the IP payload as the IP header
		// states it; -1 when unknown.
		ipPayload = -1
		extLen    int
	)
	for _, l := range pkt.Layers() {
		switch l := l.(type) {
		case *layers.IPv4:
			src, _ = netip.AddrFromSlice(l.SrcIP.To4())
			dst, _ = netip.AddrFromSlice(l.DstIP.To4())
			ipPayload = int(l.Length) - int(l.IHL)*4
			extLen = 0
		case *layers.IPv6:
			src, _ = netip.AddrFromSlice(l.SrcIP.To16())
			dst, _ = netip.AddrFromSlice(l.DstIP.To16())
			ipPayload = int(l.Length)
			if l.Length == 0 && l.HopByHop != nil {
				// A jumbogram states its length in the hop-by-hop option;
				// gopacket stored it in the payload length it decoded.
				ipPayload = len(l.Payload)
			}
			extLen = 0
		case *layers.IPv6HopByHop, *layers.IPv6Destination, *layers.IPv6Routing:
			extLen += len(l.LayerContents())
		case *layers.TCP:
			if !src.IsValid() || !dst.IsValid() {
				return Packet{}, nil, false
			}
			return tcpPacket(l, src, dst, ipPayload-extLen), l.Payload, true
		}
	}
	return Packet{}, nil, false
}

func tcpPacket(t *layers.TCP, src, dst netip.Addr, tcpLen int) Packet {
	p := Packet{
		Src:         netip.AddrPortFrom(src.Unmap(), uint16(t.SrcPort)),
		Dst:         netip.AddrPortFrom(dst.Unmap(), uint16(t.DstPort)),
		SYN:         t.SYN,
		ACK:         t.ACK,
		FIN:         t.FIN,
		RST:         t.RST,
		PSH:         t.PSH,
		URG:         t.URG,
		ECE:         t.ECE,
		CWR:         t.CWR,
		Seq:         t.Seq,
		Ack:         t.Ack,
		Window:      int(t.Window),
		MSS:         -1,
		WindowScale: -1,
	}
	hdr := int(t.DataOffset) * 4
	if tcpLen < 0 {
		// The IP header gave no usable length: trust the captured bytes.
		tcpLen = hdr + len(t.Payload)
	}
	p.Payload = max(tcpLen-hdr, 0)
	for _, o := range t.Options {
		switch o.OptionType {
		case layers.TCPOptionKindMSS:
			if len(o.OptionData) == 2 {
				p.MSS = int(binary.BigEndian.Uint16(o.OptionData))
			}
		case layers.TCPOptionKindWindowScale:
			if len(o.OptionData) == 1 {
				p.WindowScale = int(o.OptionData[0])
			}
		case layers.TCPOptionKindSACKPermitted:
			p.SACKPermitted = true
		case layers.TCPOptionKindTimestamps:
			if len(o.OptionData) == 8 {
				p.HasTimestamps = true
				p.TSval = binary.BigEndian.Uint32(o.OptionData[0:4])
				p.TSecr = binary.BigEndian.Uint32(o.OptionData[4:8])
			}
		}
	}
	return p
}

// Flows returns the TCP flows between client (any port) and server, one per
// 4-tuple, ordered by their first packet. A 4-tuple reused by several
// connections (several Wireshark streams) is one flow: the packets of a
// SYN that lands on a TIME_WAIT socket belong with the old connection's.
func (a *Analysis) Flows(client netip.Addr, server netip.AddrPort) []*Flow {
	var flows []*Flow
	index := map[netip.AddrPort]*Flow{}
	for _, p := range a.Packets {
		var c netip.AddrPort
		switch {
		case p.Src.Addr() == client && p.Dst == server:
			c = p.Src
		case p.Dst.Addr() == client && p.Src == server:
			c = p.Dst
		default:
			continue
		}
		f := index[c]
		if f == nil {
			f = &Flow{Client: c, Server: server}
			index[c] = f
			flows = append(flows, f)
		}
		f.Packets = append(f.Packets, p)
	}
	return flows
}

// Flow is the packets of one 4-tuple, both directions, in file order.
type Flow struct {
	Client, Server netip.AddrPort
	Packets        []Packet
}

func (f *Flow) filter(keep func(*Packet) bool) []Packet {
	var out []Packet
	for i := range f.Packets {
		if keep(&f.Packets[i]) {
			out = append(out, f.Packets[i])
		}
	}
	return out
}

// From returns the packets sent by from.
func (f *Flow) From(from netip.AddrPort) []Packet {
	return f.filter(func(p *Packet) bool { return p.Src == from })
}

// SYNs returns the SYNs (without ACK) from the client: the first one and
// its retransmissions, in order.
func (f *Flow) SYNs() []Packet {
	return f.filter(func(p *Packet) bool { return p.Src == f.Client && p.SYN && !p.ACK })
}

// SYNACKs returns the SYN-ACKs from the server.
func (f *Flow) SYNACKs() []Packet {
	return f.filter(func(p *Packet) bool { return p.Src == f.Server && p.SYN && p.ACK })
}

// SYNACKsByISN groups the server's SYN-ACKs by their sequence number (the
// server's ISN), in order of first appearance. One request socket resends
// its SYN-ACK with the same ISN, so each group is one request socket's
// ladder.
func (f *Flow) SYNACKsByISN() [][]Packet {
	var groups [][]Packet
	index := map[uint32]int{}
	for _, p := range f.SYNACKs() {
		i, ok := index[p.Seq]
		if !ok {
			i = len(groups)
			index[p.Seq] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], p)
	}
	return groups
}

// BareACKsToSYN returns the server's answers to a client SYN that are a
// plain ACK instead of a SYN-ACK: the first server segment after a SYN,
// with ACK set, no SYN, RST or payload, and an acknowledgement number other
// than the SYN's ISN + 1. A SYN that lands on a TIME_WAIT socket, or on an
// established connection (RFC 5961 challenge ACK), is answered that way.
func (f *Flow) BareACKsToSYN() []Packet {
	var (
		out     []Packet
		lastSYN *Packet
	)
	for i := range f.Packets {
		p := &f.Packets[i]
		switch {
		case p.Src == f.Client && p.SYN && !p.ACK:
			lastSYN = p
		case p.Src == f.Server && lastSYN != nil:
			if p.ACK && !p.SYN && !p.RST && p.Payload == 0 && p.Ack != lastSYN.Seq+1 {
				out = append(out, *p)
			}
			lastSYN = nil
		}
	}
	return out
}

// DataRetransmits returns the retransmitted segments with payload sent by
// from, the tail loss probe included (it resends the last segment).
func (f *Flow) DataRetransmits(from netip.AddrPort) []Packet {
	return f.filter(func(p *Packet) bool { return p.Src == from && p.Payload > 0 && p.Retransmission })
}

// KeepAlives returns the keepalive probes sent by from.
func (f *Flow) KeepAlives(from netip.AddrPort) []Packet {
	return f.filter(func(p *Packet) bool { return p.Src == from && p.KeepAlive })
}

// RSTs returns the resets sent by from.
func (f *Flow) RSTs(from netip.AddrPort) []Packet {
	return f.filter(func(p *Packet) bool { return p.Src == from && p.RST })
}

// FINs returns the FIN segments sent by from, retransmissions included.
func (f *Flow) FINs(from netip.AddrPort) []Packet {
	return f.filter(func(p *Packet) bool { return p.Src == from && p.FIN })
}

// Intervals returns the time between each packet and the one before it:
// len(pkts)-1 durations, none for fewer than two packets.
func Intervals(pkts []Packet) []time.Duration {
	if len(pkts) < 2 {
		return nil
	}
	out := make([]time.Duration, 0, len(pkts)-1)
	for i := 1; i < len(pkts); i++ {
		out = append(out, pkts[i].Time.Sub(pkts[i-1].Time))
	}
	return out
}

// Offsets returns the time of each packet after the first one: the
// cumulative form of Intervals, starting with 0.
func Offsets(pkts []Packet) []time.Duration {
	if len(pkts) == 0 {
		return nil
	}
	out := make([]time.Duration, len(pkts))
	for i := range pkts {
		out[i] = pkts[i].Time.Sub(pkts[0].Time)
	}
	return out
}

// Frames returns the frame numbers of pkts, for evidence in reports.
func Frames(pkts []Packet) []int {
	out := make([]int, len(pkts))
	for i := range pkts {
		out[i] = pkts[i].Frame
	}
	return out
}
