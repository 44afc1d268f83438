package capture

import (
	"net/netip"
	"time"
)

// ZeroWindowPeriod is a stretch of a flow during which the receiver
// advertised a zero receive window, and what the sender did meanwhile.
type ZeroWindowPeriod struct {
	// Start is the receiver's first segment with a zero window: Wireshark's
	// tcp.analysis.zero_window (raw window 0 on a segment without SYN, FIN
	// or RST).
	Start Packet
	// ZeroWindows counts the receiver's zero-window segments in the period,
	// Start and its answers to probes included.
	ZeroWindows int
	// End is the receiver's first later segment that opens the window
	// again; nil when the connection was reset first or the capture ended
	// with the window still closed.
	End *Packet
	// Reset is a RST, from either side, that ended the connection while the
	// window was closed.
	Reset *Packet
	// Last is End's time, else Reset's, else the time of the flow's last
	// packet: how long the window is known to have stayed closed.
	Last time.Time
	// Probes are the sender's zero-window probes in the period. Linux's
	// persist timer sends no payload at the sequence number before the next
	// one (tcp_xmit_probe_skb), which Wireshark flags as
	// tcp.analysis.keep_alive; other stacks send one byte at the next
	// sequence number, tcp.analysis.zero_window_probe. Both count.
	Probes []Packet
	// SentBefore is the payload the sender had sent, in bytes, when the
	// window closed: the highest sequence number it had sent, from its
	// first data byte (retransmissions and probes add nothing).
	SentBefore int64
}

// Duration is how long the window is known to have stayed closed.
func (z *ZeroWindowPeriod) Duration() time.Duration { return z.Last.Sub(z.Start.Time) }

// ProbeIntervals returns the time from the window's closing to the first
// probe, then between successive probes: the persist timer's ladder.
func (z *ZeroWindowPeriod) ProbeIntervals() []time.Duration {
	if len(z.Probes) == 0 {
		return nil
	}
	return Intervals(append([]Packet{z.Start}, z.Probes...))
}

// ZeroWindows is the zero-window analysis of one direction of a flow.
type ZeroWindows struct {
	// Receiver advertises the windows; Sender sends the data and probes.
	Receiver, Sender netip.AddrPort
	// Periods are the zero-window periods in capture order.
	Periods []ZeroWindowPeriod
	// Sent is the payload the sender sent in the whole flow, in bytes
	// (highest sequence number, from its first data byte).
	Sent int64
	// FIN is the sender's first FIN, if any.
	FIN *Packet
}

// First is the first period, when the window closed for the first time;
// nil when it never did.
func (z *ZeroWindows) First() *ZeroWindowPeriod {
	if len(z.Periods) == 0 {
		return nil
	}
	return &z.Periods[0]
}

// Stall is the first period in which the sender probed: its persist timer
// fired, so it had data it could not send for at least one probe interval
// (about 200 ms). A window that closes and opens again sooner is a reader
// catching up with a burst, not a stalled sender. nil when there is none.
func (z *ZeroWindows) Stall() *ZeroWindowPeriod {
	for i := range z.Periods {
		if len(z.Periods[i].Probes) > 0 {
			return &z.Periods[i]
		}
	}
	return nil
}

// SentAfter is the payload the sender sent after the window closed in p,
// in bytes: once the window opened again, what it had kept queued in its
// send buffer meanwhile (and anything written later).
func (z *ZeroWindows) SentAfter(p *ZeroWindowPeriod) int64 { return z.Sent - p.SentBefore }

// ZeroWindows follows the receive window that receiver advertises to the
// other end of the flow.
func (f *Flow) ZeroWindows(receiver netip.AddrPort) *ZeroWindows {
	sender := f.Server
	if receiver == f.Server {
		sender = f.Client
	}
	z := &ZeroWindows{Receiver: receiver, Sender: sender}
	// The sender's byte count starts after its SYN when the handshake was
	// captured, else at its first segment with data.
	var base, high uint32
	baseSet := false
	var cur *ZeroWindowPeriod
	closePeriod := func(t time.Time) {
		cur.Last = t
		z.Periods = append(z.Periods, *cur)
		cur = nil
	}
	for i := range f.Packets {
		p := &f.Packets[i]
		switch {
		case p.Src == sender:
			if p.SYN {
				base, high, baseSet = p.Seq+1, p.Seq+1, true
			}
			if p.Payload > 0 && !p.KeepAlive {
				if !baseSet {
					base, high, baseSet = p.Seq, p.Seq, true
				}
				// Sequence numbers wrap: compare by signed difference.
				if end := p.Seq + uint32(p.Payload); int32(end-high) > 0 {
					high = end
				}
			}
			if p.FIN && z.FIN == nil {
				z.FIN = p
			}
			if cur != nil && (p.KeepAlive || p.ZeroWindowProbe) {
				cur.Probes = append(cur.Probes, *p)
			}
		case p.Src == receiver:
			zero := p.Window == 0 && !p.SYN && !p.FIN && !p.RST
			switch {
			case zero && cur == nil:
				cur = &ZeroWindowPeriod{Start: *p, ZeroWindows: 1, SentBefore: int64(high - base)}
			case zero:
				cur.ZeroWindows++
			case cur != nil && !p.RST && p.Window > 0:
				cur.End = p
				closePeriod(p.Time)
			}
		}
		if p.RST && cur != nil {
			cur.Reset = p
			closePeriod(p.Time)
		}
	}
	if cur != nil && len(f.Packets) > 0 {
		closePeriod(f.Packets[len(f.Packets)-1].Time)
	}
	z.Sent = int64(high - base)
	return z
}

// RTTSample is one round-trip time measurement the sender's kernel takes
// (tcp_clean_rtx_queue): an ACK that acknowledges new data, timed from the
// transmission of the oldest segment it acknowledges, or the ACK of the
// sender's SYN. An ACK that acknowledges retransmitted data gives none
// (Karn's rule).
type RTTSample struct {
	// At is the ACK's time; RTT is the measurement.
	At  time.Time
	RTT time.Duration
	// Una is the ACK number: the sender's snd_una after the ACK. Nxt is
	// the highest sequence number the sender had sent by then: its
	// snd_nxt. The kernel's estimator decays the RTT variance once per
	// round trip, which it tells by these.
	Una, Nxt uint32
}

// RTTSamples returns the RTT samples the sender's kernel took on the flow,
// in order, as the capture shows them (a capture on either end: on a
// link of microseconds the difference is negligible).
func (f *Flow) RTTSamples(sender netip.AddrPort) []RTTSample {
	type sent struct {
		seq, end uint32
		at       time.Time
		retrans  bool
	}
	var (
		out      []RTTSample
		queue    []sent
		una, nxt uint32
		started  bool
	)
	for i := range f.Packets {
		p := &f.Packets[i]
		if p.Src == sender {
			n := uint32(p.Payload)
			if p.SYN || p.FIN {
				n++
			}
			if n == 0 || p.RST || p.KeepAlive {
				continue
			}
			if !started {
				una, nxt, started = p.Seq, p.Seq, true
			}
			end := p.Seq + n
			if int32(p.Seq-nxt) < 0 {
				// Sent before: the queued segments it covers are
				// retransmitted.
				for j := range queue {
					if int32(queue[j].seq-end) < 0 && int32(queue[j].end-p.Seq) > 0 {
						queue[j].retrans = true
					}
				}
			}
			if int32(end-nxt) > 0 {
				queue = append(queue, sent{seq: max32(p.Seq, nxt), end: end, at: p.Time, retrans: int32(p.Seq-nxt) < 0})
				nxt = end
			}
			continue
		}
		if !started || !p.ACK || p.RST || int32(p.Ack-una) <= 0 || int32(p.Ack-nxt) > 0 {
			continue
		}
		// The oldest segment the ACK acknowledges, whole or in part.
		var oldest *sent
		retrans := false
		kept := queue[:0]
		for j := range queue {
			q := queue[j]
			if int32(q.seq-p.Ack) < 0 {
				if oldest == nil {
					oldest = &sent{at: q.at}
				}
				retrans = retrans || q.retrans
				if int32(q.end-p.Ack) > 0 {
					q.seq = p.Ack
					kept = append(kept, q)
				}
				continue
			}
			kept = append(kept, q)
		}
		queue = kept
		una = p.Ack
		if oldest != nil && !retrans {
			out = append(out, RTTSample{At: p.Time, RTT: p.Time.Sub(oldest.at), Una: una, Nxt: nxt})
		}
	}
	return out
}

// max32 is the later of two sequence numbers.
func max32(a, b uint32) uint32 {
	if int32(a-b) > 0 {
		return a
	}
	return b
}
