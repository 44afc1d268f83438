package capture

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// The synthetic traces below are written by hand, segment by segment, the
// way the kernel would send them in the labs, and serialised with gopacket.
// They become the fixtures under testdata/ (go test -run TestFixtures
// -update), and the tshark oracle tests check that tshark agrees with the
// analyser on each of them.

// seg is one synthetic segment. From is "c" (client) or "s" (server); Flags
// uses tcpdump's letters: S, A (ACK), P, F, R.
type seg struct {
	At     time.Duration
	From   string
	Flags  string
	Seq    uint32
	Ack    uint32
	Win    uint16
	Len    int
	WScale int // -1: no option; only put on SYNs
	// CPort, when set, replaces the client's port: one trace can hold
	// several 4-tuples.
	CPort uint16
}

// trace is a synthetic capture: client and server endpoints and segments.
type trace struct {
	Client, Server netip.AddrPort
	// Start is the time of the first segment; fixtures use a fixed date so
	// that they are reproducible byte for byte.
	Start time.Time
	Segs  []seg
	// Extra frames (e.g. ARP) to interleave before the segment with the
	// same index, to check that frame numbers count every record.
	ARPBefore map[int]bool
	// Encapsulation: IPv6 instead of IPv4, an 802.1Q tag, and the file
	// format ("" pcap with microseconds, "ns" pcap with nanoseconds,
	// "pcapng", "sll" Linux cooked capture as tcpdump -i any writes it).
	IPv6   bool
	VLAN   uint16
	Format string
}

// v6 maps the IPv4 lab addresses into a ULA prefix for the IPv6 variant.
func v6(a netip.Addr) netip.Addr {
	b := a.As4()
	return netip.AddrFrom16([16]byte{0xfd, 0x00, 0x89, 0xfa, 10: 0, 11: 0, 12: b[0], 13: b[1], 14: b[2], 15: b[3]})
}

var (
	synthStart  = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	synthClient = netip.MustParseAddrPort("10.89.250.2:40000")
	synthServer = netip.MustParseAddrPort("10.89.250.1:3306")
	clientMAC   = net.HardwareAddr{0x02, 0x00, 0x0a, 0x59, 0xfa, 0x02}
	serverMAC   = net.HardwareAddr{0x02, 0x00, 0x0a, 0x59, 0xfa, 0x01}
)

func newTrace() *trace {
	return &trace{Client: synthClient, Server: synthServer, Start: synthStart}
}

func (tr *trace) add(s seg) *trace {
	if s.WScale == 0 && !strings.Contains(s.Flags, "S") {
		s.WScale = -1
	}
	tr.Segs = append(tr.Segs, s)
	return tr
}

// frame serialises one segment as an Ethernet frame.
func (tr *trace) frame(s seg) ([]byte, error) {
	src, dst := tr.Client, tr.Server
	if s.CPort != 0 {
		src = netip.AddrPortFrom(src.Addr(), s.CPort)
	}
	smac, dmac := clientMAC, serverMAC
	if s.From == "s" {
		src, dst = dst, src
		smac, dmac = dmac, smac
	}
	var l3 gopacket.NetworkLayer
	etype := layers.EthernetTypeIPv4
	if tr.IPv6 {
		etype = layers.EthernetTypeIPv6
		l3 = &layers.IPv6{
			Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
			SrcIP: v6(src.Addr()).AsSlice(), DstIP: v6(dst.Addr()).AsSlice(),
		}
	} else {
		l3 = &layers.IPv4{
			Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment,
			SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice(),
		}
	}
	var link []gopacket.SerializableLayer
	switch {
	case tr.Format == "sll":
		// The Linux cooked header has no serializer in gopacket: 16 bytes
		// of packet type, ARPHRD type, address length, address, protocol.
		pt := uint16(0) // to us
		if s.From == "c" {
			pt = 4 // outgoing
		}
		h := make([]byte, 16)
		binary.BigEndian.PutUint16(h[0:], pt)
		binary.BigEndian.PutUint16(h[2:], 1) // ARPHRD_ETHER
		binary.BigEndian.PutUint16(h[4:], 6)
		copy(h[6:], smac)
		binary.BigEndian.PutUint16(h[14:], uint16(etype))
		link = append(link, gopacket.Payload(h))
	case tr.VLAN != 0:
		link = append(link,
			&layers.Ethernet{SrcMAC: smac, DstMAC: dmac, EthernetType: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: tr.VLAN, Type: etype})
	default:
		link = append(link, &layers.Ethernet{SrcMAC: smac, DstMAC: dmac, EthernetType: etype})
	}
	win := s.Win
	if win == 0 && !strings.Contains(s.Flags, "0") {
		win = 502
	}
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()),
		Seq: s.Seq, Ack: s.Ack, Window: win,
		SYN: strings.Contains(s.Flags, "S"),
		ACK: strings.Contains(s.Flags, "A"),
		PSH: strings.Contains(s.Flags, "P"),
		FIN: strings.Contains(s.Flags, "F"),
		RST: strings.Contains(s.Flags, "R"),
	}
	if tcp.SYN {
		tcp.Options = append(tcp.Options,
			layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
			layers.TCPOption{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2})
		if s.WScale >= 0 {
			tcp.Options = append(tcp.Options,
				layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
				layers.TCPOption{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{byte(s.WScale)}})
		}
	}
	if err := tcp.SetNetworkLayerForChecksum(l3); err != nil {
		return nil, err
	}
	payload := bytes.Repeat([]byte{'x'}, s.Len)
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	all := append(link, l3.(gopacket.SerializableLayer), tcp, gopacket.Payload(payload))
	if err := gopacket.SerializeLayers(buf, opts, all...); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// arpFrame is a broadcast ARP request, a non-TCP frame.
func arpFrame() []byte {
	eth := &layers.Ethernet{SrcMAC: clientMAC, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: clientMAC, SourceProtAddress: synthClient.Addr().AsSlice(),
		DstHwAddress: make([]byte, 6), DstProtAddress: synthServer.Addr().AsSlice(),
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, eth, arp); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// packetWriter is what pcapgo's pcap and pcapng writers have in common.
type packetWriter interface {
	WritePacket(gopacket.CaptureInfo, []byte) error
}

// bytes renders the trace in its format; the default is a microsecond
// pcap, what tcpdump writes.
func (tr *trace) bytes(t testing.TB) []byte {
	t.Helper()
	var out bytes.Buffer
	lt := layers.LinkTypeEthernet
	if tr.Format == "sll" {
		lt = layers.LinkTypeLinuxSLL
	}
	var (
		w   packetWriter
		ngw *pcapgo.NgWriter
	)
	switch tr.Format {
	case "pcapng":
		var err error
		ngw, err = pcapgo.NewNgWriter(&out, lt)
		if err != nil {
			t.Fatal(err)
		}
		w = ngw
	case "ns":
		pw := pcapgo.NewWriterNanos(&out)
		if err := pw.WriteFileHeader(snaplen, lt); err != nil {
			t.Fatal(err)
		}
		w = pw
	default:
		pw := pcapgo.NewWriter(&out)
		if err := pw.WriteFileHeader(snaplen, lt); err != nil {
			t.Fatal(err)
		}
		w = pw
	}
	for i, s := range tr.Segs {
		at := tr.Start.Add(s.At)
		if tr.ARPBefore[i] && tr.Format != "sll" {
			a := arpFrame()
			if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: at, CaptureLength: len(a), Length: len(a)}, a); err != nil {
				t.Fatal(err)
			}
		}
		b, err := tr.frame(s)
		if err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: at, CaptureLength: len(b), Length: len(b)}, b); err != nil {
			t.Fatal(err)
		}
	}
	if ngw != nil {
		if err := ngw.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	return out.Bytes()
}

func (tr *trace) write(t testing.TB, path string) {
	t.Helper()
	if err := os.WriteFile(path, tr.bytes(t), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Sequence numbers of the synthetic connections: an ISN near the top of
// the space for the client, so that wrapping is exercised, and an ordinary
// one for the server.
// They are variables, not constants, so that arithmetic on them wraps.
var (
	isnC  uint32 = 0xfffffff0
	isnS  uint32 = 0x2a000000
	isnC2 uint32 = 0x7b000000 // a second client connection on the same 4-tuple
)

// handshake adds SYN, SYN-ACK, ACK starting at 'at', returning the time of
// the last one. The client ISN is isn, the server's isnS.
func (tr *trace) handshake(at time.Duration, isn uint32) time.Duration {
	tr.add(seg{At: at, From: "c", Flags: "S", Seq: isn, Win: 64240, WScale: 7})
	tr.add(seg{At: at + 50*time.Microsecond, From: "s", Flags: "SA", Seq: isnS, Ack: isn + 1, Win: 65160, WScale: 7})
	tr.add(seg{At: at + 100*time.Microsecond, From: "c", Flags: "A", Seq: isn + 1, Ack: isnS + 1})
	return at + 100*time.Microsecond
}

// The fixtures: name, trace, and what the analyser must find in it.
type fixture struct {
	name  string
	trace func() *trace
}

var fixtures = []fixture{
	{"syn-ladder", func() *trace {
		// Lab E, SYN dropped at the server with tcp_syn_retries=3 and
		// tcp_syn_linear_timeouts=0: the SYN and three retransmissions at
		// 1, 3 and 7 s.
		tr := newTrace()
		tr.ARPBefore = map[int]bool{0: true}
		for _, at := range []time.Duration{0, 1 * time.Second, 3 * time.Second, 7 * time.Second} {
			tr.add(seg{At: at + at/100, From: "c", Flags: "S", Seq: isnC, Win: 64240, WScale: 7})
		}
		return tr
	}},
	{"synack-ladder", func() *trace {
		// Lab E, SYN-ACK dropped at the client (captured on the client's
		// interface, before its INPUT chain): the client resends its SYN at
		// 1 and 3 s; the request socket resends its SYN-ACK with the same ISN
		// at 1, 3 and 7 s, plus one answer to each duplicate SYN.
		tr := newTrace()
		tr.add(seg{At: 0, From: "c", Flags: "S", Seq: isnC, Win: 64240, WScale: 7})
		tr.add(seg{At: 40 * time.Microsecond, From: "s", Flags: "SA", Seq: isnS, Ack: isnC + 1, Win: 65160, WScale: 7})
		tr.add(seg{At: 1000 * time.Millisecond, From: "c", Flags: "S", Seq: isnC, Win: 64240, WScale: 7})
		tr.add(seg{At: 1000*time.Millisecond + 40*time.Microsecond, From: "s", Flags: "SA", Seq: isnS, Ack: isnC + 1, Win: 65160, WScale: 7})
		tr.add(seg{At: 1030 * time.Millisecond, From: "s", Flags: "SA", Seq: isnS, Ack: isnC + 1, Win: 65160, WScale: 7})
		tr.add(seg{At: 3000 * time.Millisecond, From: "c", Flags: "S", Seq: isnC, Win: 64240, WScale: 7})
		tr.add(seg{At: 3000*time.Millisecond + 40*time.Microsecond, From: "s", Flags: "SA", Seq: isnS, Ack: isnC + 1, Win: 65160, WScale: 7})
		tr.add(seg{At: 3090 * time.Millisecond, From: "s", Flags: "SA", Seq: isnS, Ack: isnC + 1, Win: 65160, WScale: 7})
		tr.add(seg{At: 7170 * time.Millisecond, From: "s", Flags: "SA", Seq: isnS, Ack: isnC + 1, Win: 65160, WScale: 7})
		return tr
	}},
	{"third-ack-dropped", func() *trace {
		// Lab E, the client's third ACK dropped at the server (captured on
		// the client): the client is ESTABLISHED and answers every SYN-ACK
		// retransmission with a duplicate ACK; then keepalive probes.
		tr := newTrace()
		at := tr.handshake(0, isnC)
		for _, d := range []time.Duration{1, 3, 7} {
			t := at + d*time.Second
			tr.add(seg{At: t, From: "s", Flags: "SA", Seq: isnS, Ack: isnC + 1, Win: 65160, WScale: 7})
			tr.add(seg{At: t + 30*time.Microsecond, From: "c", Flags: "A", Seq: isnC + 1, Ack: isnS + 1})
		}
		for _, d := range []time.Duration{40, 50} {
			tr.add(seg{At: at + d*time.Second, From: "c", Flags: "A", Seq: isnC, Ack: isnS + 1})
		}
		tr.add(seg{At: at + 60*time.Second, From: "c", Flags: "R", Seq: isnC + 1})
		return tr
	}},
	{"keepalive", func() *trace {
		// Lab C, keepalive on the server with time 4 s, intvl 2 s, probes 2
		// after the client vanished: two unanswered probes and a RST.
		tr := newTrace()
		at := tr.handshake(0, isnC)
		tr.add(seg{At: at + time.Millisecond, From: "c", Flags: "PA", Seq: isnC + 1, Ack: isnS + 1, Len: 40})
		tr.add(seg{At: at + 2*time.Millisecond, From: "s", Flags: "PA", Seq: isnS + 1, Ack: isnC + 41, Len: 11})
		tr.add(seg{At: at + 3*time.Millisecond, From: "c", Flags: "A", Seq: isnC + 41, Ack: isnS + 12})
		// One answered probe first, then the client is gone.
		tr.add(seg{At: at + 4*time.Second, From: "s", Flags: "A", Seq: isnS + 11, Ack: isnC + 41})
		tr.add(seg{At: at + 4*time.Second + 30*time.Microsecond, From: "c", Flags: "A", Seq: isnC + 41, Ack: isnS + 12})
		tr.add(seg{At: at + 8*time.Second, From: "s", Flags: "A", Seq: isnS + 11, Ack: isnC + 41})
		tr.add(seg{At: at + 10*time.Second, From: "s", Flags: "A", Seq: isnS + 11, Ack: isnC + 41})
		tr.add(seg{At: at + 12*time.Second, From: "s", Flags: "RA", Seq: isnS + 12, Ack: isnC + 41})
		return tr
	}},
	{"data-retransmit", func() *trace {
		// Lab E, established connection, the server drops everything from
		// the client: the request is resent by the tail loss probe, then by
		// the retransmission timer with exponential backoff.
		tr := newTrace()
		at := tr.handshake(0, isnC)
		req := seg{From: "c", Flags: "PA", Seq: isnC + 1, Ack: isnS + 1, Len: 120}
		for _, d := range []time.Duration{0, 10, 220, 640, 1480, 3160} {
			s := req
			s.At = at + time.Millisecond + d*time.Millisecond
			tr.add(s)
		}
		return tr
	}},
	{"timewait-reuse", func() *trace {
		// Lab B: the server closed first and holds the 4-tuple in TIME_WAIT;
		// a new SYN on it is answered by a bare ACK with the old sequence
		// numbers, the client resets, and its SYN retransmission 1 s later
		// gets a SYN-ACK.
		tr := newTrace()
		at := tr.handshake(0, isnC)
		tr.add(seg{At: at + 1*time.Millisecond, From: "c", Flags: "PA", Seq: isnC + 1, Ack: isnS + 1, Len: 5})
		tr.add(seg{At: at + 2*time.Millisecond, From: "s", Flags: "FA", Seq: isnS + 1, Ack: isnC + 6})
		tr.add(seg{At: at + 3*time.Millisecond, From: "c", Flags: "FA", Seq: isnC + 6, Ack: isnS + 2})
		tr.add(seg{At: at + 3*time.Millisecond + 30*time.Microsecond, From: "s", Flags: "A", Seq: isnS + 2, Ack: isnC + 7})
		t2 := at + 5*time.Second
		tr.add(seg{At: t2, From: "c", Flags: "S", Seq: isnC2, Win: 64240, WScale: 7})
		tr.add(seg{At: t2 + 30*time.Microsecond, From: "s", Flags: "A", Seq: isnS + 2, Ack: isnC + 7})
		tr.add(seg{At: t2 + 60*time.Microsecond, From: "c", Flags: "R", Seq: isnC + 7})
		tr.add(seg{At: t2 + time.Second, From: "c", Flags: "S", Seq: isnC2, Win: 64240, WScale: 7})
		tr.add(seg{At: t2 + time.Second + 40*time.Microsecond, From: "s", Flags: "SA", Seq: isnS + 0x100000, Ack: isnC2 + 1, Win: 65160, WScale: 7})
		tr.add(seg{At: t2 + time.Second + 80*time.Microsecond, From: "c", Flags: "A", Seq: isnC2 + 1, Ack: isnS + 0x100001})
		return tr
	}},
	{"fast-spurious-ooo", func() *trace {
		// The verdicts labs rarely see, so that their rules are pinned too:
		// a lost segment, two duplicate ACKs and a fast retransmission, a
		// spurious retransmission, an out-of-order segment, a zero window,
		// its probe and the window update.
		tr := newTrace()
		at := tr.handshake(0, isnC)
		c := isnC + 1
		t := at + time.Millisecond
		for i := 0; i < 4; i++ {
			if i != 1 {
				tr.add(seg{At: t, From: "c", Flags: "A", Seq: c + uint32(i*100), Ack: isnS + 1, Len: 100})
			}
			if i > 0 {
				tr.add(seg{At: t + 20*time.Microsecond, From: "s", Flags: "A", Seq: isnS + 1, Ack: c + 100})
			}
			t += 100 * time.Microsecond
		}
		tr.add(seg{At: t, From: "c", Flags: "A", Seq: c + 100, Ack: isnS + 1, Len: 100})
		tr.add(seg{At: t + 30*time.Microsecond, From: "s", Flags: "A", Seq: isnS + 1, Ack: c + 400})
		t += 300 * time.Millisecond
		tr.add(seg{At: t, From: "c", Flags: "A", Seq: c + 300, Ack: isnS + 1, Len: 100})
		t += 10 * time.Millisecond
		tr.add(seg{At: t, From: "c", Flags: "A", Seq: c + 500, Ack: isnS + 1, Len: 100})
		tr.add(seg{At: t + 50*time.Microsecond, From: "c", Flags: "A", Seq: c + 400, Ack: isnS + 1, Len: 100})
		tr.add(seg{At: t + 2*time.Millisecond, From: "s", Flags: "A0", Seq: isnS + 1, Ack: c + 600, Win: 0})
		tr.add(seg{At: t + 200*time.Millisecond, From: "c", Flags: "A", Seq: c + 600, Ack: isnS + 1, Len: 1})
		tr.add(seg{At: t + 200*time.Millisecond + 20*time.Microsecond, From: "s", Flags: "A0", Seq: isnS + 1, Ack: c + 600, Win: 0})
		tr.add(seg{At: t + 300*time.Millisecond, From: "s", Flags: "A", Seq: isnS + 1, Ack: c + 600, Win: 300})
		return tr
	}},
}
