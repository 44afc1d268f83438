package capture

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// randomTrace builds a capture of many short TCP conversations whose
// segments mostly follow the protocol and sometimes do not: lost, repeated,
// reordered and acknowledged-ahead segments, duplicate ACKs, keepalives,
// zero windows, resets with odd sequence numbers, SYNs that reuse a 4-tuple
// with the same or a new ISN, and sequence numbers that wrap. It exercises
// every rule of the analysis against tshark; the traces are deterministic
// for a seed.
func randomTrace(seed uint64, conns int) *trace {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	tr := newTrace()
	gaps := []time.Duration{0, 10 * time.Microsecond, 100 * time.Microsecond, time.Millisecond,
		2 * time.Millisecond, 5 * time.Millisecond, 25 * time.Millisecond, 300 * time.Millisecond, 2 * time.Second}
	var segs []seg
	for c := 0; c < conns; c++ {
		// A few ports only, so that 4-tuples get reused.
		port := uint16(40000 + r.IntN(conns/3+1))
		at := time.Duration(r.Int64N(int64(20 * time.Second)))
		segs = append(segs, randomConn(r, port, at, gaps)...)
	}
	// Interleave the conversations by time; equal times keep their order.
	sort.SliceStable(segs, func(i, j int) bool { return segs[i].At < segs[j].At })
	tr.Segs = segs
	return tr
}

type endState struct {
	isn, nxt uint32 // initial and next sequence number
	win      uint16
	ws       int
	sent     []seg // data segments, for retransmissions
}

func randomConn(r *rand.Rand, port uint16, at time.Duration, gaps []time.Duration) []seg {
	var out []seg
	isn := func() uint32 {
		switch r.IntN(4) {
		case 0:
			return 0xffffffff - uint32(r.IntN(3000)) // wraps soon
		case 1:
			return uint32(r.IntN(3)) // 0 is "unknown" to Wireshark
		default:
			return r.Uint32()
		}
	}
	ws := func() int {
		if r.IntN(4) == 0 {
			return -1
		}
		return r.IntN(15)
	}
	c := &endState{isn: isn(), win: 64240, ws: ws()}
	s := &endState{isn: isn(), win: 65160, ws: ws()}
	c.nxt, s.nxt = c.isn+1, s.isn+1
	emit := func(from string, flags string, seq, ack uint32, win uint16, n int, wscale int) {
		at += gaps[r.IntN(len(gaps))]
		if win == 0 {
			flags += "0"
		}
		out = append(out, seg{At: at, From: from, Flags: flags, Seq: seq, Ack: ack, Win: win, Len: n, WScale: wscale, CPort: port})
	}
	// Handshake, with repeated SYNs and SYN-ACKs now and then, and
	// sometimes without it at all (a capture that starts mid-connection).
	if r.IntN(8) != 0 {
		for i := r.IntN(3); i >= 0; i-- {
			emit("c", "S", c.isn, 0, c.win, 0, c.ws)
		}
		if r.IntN(6) != 0 {
			for i := r.IntN(3); i >= 0; i-- {
				emit("s", "SA", s.isn, c.nxt, s.win, 0, s.ws)
			}
			emit("c", "A", c.nxt, s.nxt, c.win, 0, -1)
		}
	}
	steps := 5 + r.IntN(40)
	for i := 0; i < steps; i++ {
		from, me, peer := "c", c, s
		if r.IntN(2) == 0 {
			from, me, peer = "s", s, c
		}
		ack := peer.nxt
		if r.IntN(5) == 0 {
			ack -= uint32(r.IntN(3000)) // an older ACK
		}
		win := me.win
		switch k := r.IntN(100); {
		case k < 30: // new data
			n := 1 + r.IntN(1400)
			if r.IntN(10) == 0 {
				n = 1
			}
			sg := seg{Seq: me.nxt, Len: n}
			me.sent = append(me.sent, sg)
			if r.IntN(12) == 0 {
				me.nxt += uint32(n) // lost: never shown
				i--
				continue
			}
			emit(from, "PA", me.nxt, ack, win, n, -1)
			me.nxt += uint32(n)
		case k < 40: // retransmission of earlier data, maybe out of order
			if len(me.sent) == 0 {
				continue
			}
			sg := me.sent[r.IntN(len(me.sent))]
			emit(from, "A", sg.Seq, ack, win, sg.Len, -1)
		case k < 60: // pure ACK, sometimes a duplicate burst
			for j := r.IntN(4); j >= 0; j-- {
				emit(from, "A", me.nxt, ack, win, 0, -1)
			}
		case k < 66: // keepalive, 0 or 1 byte
			emit(from, "A", me.nxt-1, ack, win, r.IntN(2), -1)
		case k < 72: // zero window, then maybe a probe and an update
			me.win = 0
			emit(from, "A", me.nxt, ack, 0, 0, -1)
			if r.IntN(2) == 0 {
				emit(map[string]string{"c": "s", "s": "c"}[from], "A", peer.nxt, me.nxt, peer.win, 1, -1)
			}
			if r.IntN(2) == 0 {
				me.win = uint16(1 + r.IntN(65535))
				emit(from, "A", me.nxt, ack, me.win, 0, -1)
			}
		case k < 76: // window change
			me.win = uint16(r.IntN(65536))
			emit(from, "A", me.nxt, ack, me.win, 0, -1)
		case k < 80: // FIN
			emit(from, "FA", me.nxt, ack, win, 0, -1)
			me.nxt++
		case k < 84: // RST, at the next sequence number or anywhere
			seq := me.nxt
			if r.IntN(2) == 0 {
				seq = r.Uint32()
			}
			flags := "R"
			if r.IntN(2) == 0 {
				flags = "RA"
			}
			emit(from, flags, seq, ack, 0, 0, -1)
		case k < 88: // the client starts over on the same 4-tuple
			if r.IntN(2) == 0 {
				c.isn = isn()
				c.nxt = c.isn + 1
			}
			emit("c", "S", c.isn, 0, c.win, 0, c.ws)
			if r.IntN(2) == 0 {
				if r.IntN(2) == 0 {
					s.isn = isn()
					s.nxt = s.isn + 1
				}
				emit("s", "SA", s.isn, c.nxt, s.win, 0, s.ws)
			}
		case k < 92: // acknowledges data never seen
			emit(from, "A", me.nxt, peer.nxt+uint32(1+r.IntN(5000)), win, 0, -1)
		case k < 95: // a data segment that starts one byte early
			n := 2 + r.IntN(100)
			emit(from, "PA", me.nxt-1, ack, win, n, -1)
			me.nxt += uint32(n - 1)
		default: // noise
			emit(from, "A", r.Uint32(), r.Uint32(), uint16(r.IntN(65536)), r.IntN(3), -1)
		}
	}
	return out
}

func TestRandomTracesAgreeWithTshark(t *testing.T) {
	tshark := needTshark(t)
	traces := 12
	if testing.Short() {
		traces = 2
	}
	dir := t.TempDir()
	for i := 0; i < traces; i++ {
		seed := uint64(i + 1)
		path := filepath.Join(dir, fmt.Sprintf("random-%d.pcap", seed))
		randomTrace(seed, 60).write(t, path)
		if n := compareWithTshark(t, tshark, path); n > 0 {
			t.Errorf("seed %d: %d disagreements with tshark", seed, n)
		}
	}
}
