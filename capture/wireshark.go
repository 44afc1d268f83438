package capture

import (
	"net/netip"
	"time"
)

// This file reproduces the TCP sequence analysis of Wireshark 4.0
// (epan/dissectors/packet-tcp.c: the conversation lookup in dissect_tcp and
// tcp_analyze_sequence_number), so that the verdicts on each segment, and
// therefore every count a lab reports, agree with what tshark shows for the
// same file. It keeps Wireshark's quirks on purpose: a next sequence number
// of 0 means "not known yet", sequence numbers compare modulo 2^32 (but
// not everywhere), and the duplicate-ACK counter is unsigned. The tshark
// oracle tests compare the two frame by frame, on the fixtures and on
// random traces; tshark 4.0.17 is the reference.

// Analysis verdicts, the bits of Wireshark's tcp_acked.flags.
const (
	taRetransmission = 1 << iota
	taLostPacket
	taAckLostPacket
	taKeepAlive
	taDuplicateACK
	taZeroWindow
	taZeroWindowProbe
	taZeroWindowProbeACK
	taKeepAliveACK
	taOutOfOrder
	taFastRetransmission
	taWindowUpdate
	taWindowFull
	taReusedPorts
	taSpuriousRetransmission
)

// maxUnacked bounds the list of unacknowledged segments per direction, as
// Wireshark's TCP_MAX_UNACKED_SEGMENTS does, for captures that miss the
// ACKs.
const maxUnacked = 1000

// dupackReported is Wireshark's dupacknum = -1 in its unsigned field.
const dupackReported = 1<<32 - 1

// A segment sent but not yet acknowledged, as Wireshark lists them.
type unacked struct {
	seq, nextseq uint32
}

// flowState is one direction of a conversation (Wireshark's tcp_flow_t).
type flowState struct {
	baseSeq uint32
	baseSet bool
	// nextseq is the highest sequence number seen plus the segment length;
	// 0 means none yet.
	nextseq         uint32
	nextseqTime     time.Time
	maxseqtobeacked uint32
	lastack         uint32
	lastackTime     time.Time
	// window is the last raw window field; it starts at 2^32-1 so that the
	// first segment is never a window update or duplicate ACK.
	window uint32
	// winScale is the shift this direction announced: -1 not known, -2 no
	// scaling in use.
	winScale int
	// dupacknum counts duplicate ACKs; it is unsigned in Wireshark, and
	// its "hole reported" marker -1 is therefore also "at least 2" to the
	// fast retransmission test.
	dupacknum        uint32
	lastsegmentflags uint32
	isFirstACK       bool
	segments         []unacked
}

// conversation is one Wireshark TCP conversation (one tcp.stream).
type conversation struct {
	stream int
	flows  [2]flowState
	// mruSYN is the time of the most recent SYN, firstRTT the time from it
	// to the first ACK: Wireshark's ts_mru_syn and ts_first_rtt.
	mruSYN   time.Time
	firstRTT time.Duration
	haveRTT  bool
}

type convKey struct{ a, b netip.AddrPort }

// tcpState holds the conversations of one capture.
type tcpState struct {
	convs   map[convKey]*conversation
	streams int
}

func newTCPState() *tcpState {
	return &tcpState{convs: map[convKey]*conversation{}}
}

func (s *tcpState) newConversation(k convKey) *conversation {
	c := &conversation{stream: s.streams}
	s.streams++
	for i := range c.flows {
		c.flows[i].window = 1<<32 - 1
		c.flows[i].winScale = -1
	}
	s.convs[k] = c
	return c
}

// key orders the two endpoints, and says which flow of the conversation
// the sender's direction is: Wireshark compares addresses, then ports.
func key(src, dst netip.AddrPort) (convKey, int) {
	c := src.Addr().Compare(dst.Addr())
	if c == 0 {
		if src.Port() > dst.Port() {
			c = 1
		} else {
			c = -1
		}
	}
	if c >= 0 {
		return convKey{src, dst}, 0
	}
	return convKey{dst, src}, 1
}

// nstimeZero is Wireshark's nstime_is_zero: the Unix epoch is "unset".
func nstimeZero(t time.Time) bool {
	return t.IsZero() || (t.Unix() == 0 && t.Nanosecond() == 0)
}

func ltSeq(x, y uint32) bool { return int32(x-y) < 0 }
func gtSeq(x, y uint32) bool { return int32(y-x) < 0 }
func leSeq(x, y uint32) bool { return int32(x-y) <= 0 }

// analyze finds the packet's conversation, runs the sequence analysis on
// it and records the verdicts in p.
func (s *tcpState) analyze(p *Packet) {
	k, dir := key(p.Src, p.Dst)
	c := s.convs[k]
	if c == nil {
		c = s.newConversation(k)
	}
	fwd := &c.flows[dir]
	var ta uint32

	// A SYN with a new ISN on a known 4-tuple starts a new conversation; a
	// SYN with the same ISN is a retransmission, and Wireshark rewinds the
	// next sequence number in case a RST moved it (its issue 17616). Both
	// are flagged "reused ports".
	if p.SYN && !p.ACK && fwd.baseSet {
		if p.Seq != fwd.baseSeq {
			c = s.newConversation(k)
			fwd = &c.flows[dir]
			ta |= taReusedPorts
		} else {
			fwd.nextseq = fwd.maxseqtobeacked
		}
	}
	// A SYN-ACK with a new ISN stays in the conversation and moves its base.
	if p.SYN && p.ACK && fwd.baseSet && p.Seq != fwd.baseSeq {
		fwd.baseSeq = p.Seq
		ta |= taReusedPorts
	}
	rev := &c.flows[1-dir]
	p.Stream = c.stream

	ta = c.sequence(p, fwd, rev, ta)

	p.WindowScaled = p.Window
	if !p.SYN && fwd.winScale >= 0 {
		p.WindowScaled = p.Window << fwd.winScale
	}
	if p.SYN {
		if !p.ACK {
			c.mruSYN = p.Time
		}
		fwd.isFirstACK = true
	}
	if !p.SYN && p.ACK {
		if !nstimeZero(c.mruSYN) && !c.haveRTT {
			c.firstRTT = p.Time.Sub(c.mruSYN)
			c.haveRTT = c.firstRTT != 0
		}
		fwd.isFirstACK = false
	}
	if p.WindowScale >= 0 {
		fwd.winScale = min(p.WindowScale, 14)
	}
	if p.SYN {
		// Scaling is in use only when both SYNs carry the option.
		if fwd.winScale == -1 {
			fwd.winScale, rev.winScale = -2, -2
		} else if p.ACK && rev.winScale == -2 {
			fwd.winScale = -2
		}
	}

	p.Retransmission = ta&(taRetransmission|taFastRetransmission|taSpuriousRetransmission) != 0
	p.FastRetransmission = ta&taFastRetransmission != 0
	p.SpuriousRetransmission = ta&taSpuriousRetransmission != 0
	p.OutOfOrder = ta&taOutOfOrder != 0
	p.KeepAlive = ta&taKeepAlive != 0
	p.KeepAliveACK = ta&taKeepAliveACK != 0
	p.DuplicateACK = ta&taDuplicateACK != 0
	p.ZeroWindow = ta&taZeroWindow != 0
	p.ZeroWindowProbe = ta&taZeroWindowProbe != 0
	p.ZeroWindowProbeACK = ta&taZeroWindowProbeACK != 0
	p.WindowUpdate = ta&taWindowUpdate != 0
	p.WindowFull = ta&taWindowFull != 0
	p.LostSegment = ta&taLostPacket != 0
	p.ACKedUnseen = ta&taAckLostPacket != 0
	p.ReusedPorts = ta&taReusedPorts != 0
}

// sequence is tcp_analyze_sequence_number.
func (c *conversation) sequence(p *Packet, fwd, rev *flowState, ta uint32) uint32 {
	seq, ack := p.Seq, p.Ack
	seglen := uint32(p.Payload)
	window := uint32(p.Window)
	synfin := p.SYN || p.FIN
	control := p.SYN || p.FIN || p.RST

	if !fwd.baseSet {
		fwd.baseSeq = seq - 1
		if p.SYN {
			fwd.baseSeq = seq
		}
		fwd.baseSet = true
	}
	if !rev.baseSet && p.ACK {
		rev.baseSeq = ack - 1
		rev.baseSet = true
	}

	func() {
		if seglen == 1 && seq == fwd.nextseq && rev.window == 0 {
			ta |= taZeroWindowProbe
			return
		}
		if window == 0 && !control {
			ta |= taZeroWindow
		}
		if fwd.nextseq != 0 && gtSeq(seq, fwd.nextseq) && !p.RST {
			ta |= taLostPacket
		}
		if seglen <= 1 && seq == fwd.nextseq-1 && !control {
			ta |= taKeepAlive
		}
		if seglen == 0 && window != 0 && window != fwd.window && seq == fwd.nextseq && ack == fwd.lastack && !control {
			ta |= taWindowUpdate
		}
		if seglen > 0 && rev.winScale != -1 && !control {
			shift := 0
			if !rev.isFirstACK && rev.winScale != -2 {
				shift = rev.winScale
			}
			if seq+seglen == rev.lastack+rev.window<<shift {
				ta |= taWindowFull
			}
		}
		same := seglen == 0 && window == fwd.window && seq == fwd.nextseq && ack == fwd.lastack && !control
		if same && window != 0 && rev.lastsegmentflags&taKeepAlive != 0 {
			ta |= taKeepAliveACK
			return
		}
		if same && window == 0 && rev.lastsegmentflags&taZeroWindowProbe != 0 {
			ta |= taZeroWindowProbeACK
			return
		}
		if same && window != 0 {
			if fwd.dupacknum == dupackReported {
				fwd.dupacknum = 1
			} else {
				fwd.dupacknum++
			}
			ta |= taDuplicateACK
		}
	}()

	if ack != fwd.lastack {
		fwd.dupacknum = 0
	}

	// An ACK beyond the highest contiguous sequence number seen in the
	// other direction acknowledges segments the capture missed. It is
	// flagged once per hole: the mark moves up to the next sequence number
	// when it can, and when it cannot (the other direction only sent pure
	// ACKs since), dupacknum -1 records that the hole was reported. The
	// random-trace oracle test pinned this form down against tshark 4.0.
	if rev.maxseqtobeacked != 0 && gtSeq(ack, rev.maxseqtobeacked) && p.ACK {
		if ltSeq(rev.maxseqtobeacked, rev.nextseq) {
			rev.maxseqtobeacked = rev.nextseq
			ta |= taAckLostPacket
		} else {
			if rev.dupacknum == 0 {
				ta |= taAckLostPacket
			}
			rev.dupacknum = dupackReported
		}
	}

	func() {
		if seglen == 0 && !synfin {
			return
		}
		notAdvanced := fwd.nextseq != 0 && ltSeq(seq, fwd.nextseq)
		if ta&taKeepAlive != 0 {
			return
		}
		// One byte below the next sequence number, with new data after it,
		// follows a zero-window probe: not a retransmission.
		if seglen > 1 && fwd.nextseq-1 == seq {
			notAdvanced = false
		}
		if seglen > 0 && rev.lastack != 0 && leSeq(seq+seglen, rev.lastack) {
			ta |= taSpuriousRetransmission
			return
		}
		// A fast retransmission follows two duplicate ACKs of its sequence
		// number within 20 ms; Wireshark 4.0 tests it before out-of-order
		// (its preference tcp.fastrt_supersedes_ooo).
		if t := p.Time.Sub(rev.lastackTime); notAdvanced && rev.dupacknum >= 2 && rev.lastack == seq && t >= 0 && t < 20*time.Millisecond {
			ta |= taFastRetransmission
			return
		}
		// Out of order: within one first-handshake RTT (3 ms when unknown)
		// of the segment that set the next sequence number.
		thres := 3 * time.Millisecond
		if c.haveRTT {
			thres = c.firstRTT
		}
		extra := uint32(0)
		if synfin {
			extra = 1
		}
		if t := p.Time.Sub(fwd.nextseqTime); notAdvanced && t >= 0 && (thres < 0 || t < thres) && fwd.nextseq != seq+seglen+extra {
			ta |= taOutOfOrder
			return
		}
		if notAdvanced {
			ta |= taRetransmission
		}
	}()

	nextseq := seq + seglen
	if synfin {
		nextseq++
	}
	if (seglen > 0 || synfin) && len(fwd.segments) < maxUnacked {
		fwd.segments = append(fwd.segments, unacked{seq: seq, nextseq: nextseq})
	}
	if gtSeq(nextseq, fwd.nextseq) || fwd.nextseq == 0 {
		if ta&taZeroWindowProbe == 0 {
			fwd.nextseq = nextseq
			fwd.nextseqTime = p.Time
		}
	}
	if seq == fwd.maxseqtobeacked || fwd.maxseqtobeacked == 0 {
		if ta&taZeroWindowProbe == 0 {
			fwd.maxseqtobeacked = fwd.nextseq
		}
	}
	fwd.window = window
	fwd.lastack = ack
	fwd.lastackTime = p.Time
	fwd.lastsegmentflags = ta

	// Forget the segments of the other direction that this one
	// acknowledges; a partly acknowledged segment keeps its tail.
	kept := rev.segments[:0]
	for _, u := range rev.segments {
		if ack != u.nextseq && gtSeq(ack, u.seq) && leSeq(ack, u.nextseq) {
			u.seq = ack
		}
		if ack != u.nextseq && gtSeq(u.nextseq, ack) {
			kept = append(kept, u)
		}
	}
	rev.segments = kept
	return ta
}
