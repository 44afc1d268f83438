package capture

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// FuzzMySQL feeds arbitrary byte streams, both directions, to the MySQL
// decoder through its TCP reassembly: it must not panic, its memory must
// stay within its bounds after every segment, and what it reports must be
// consistent (checkMessages).
//
// The input is a script. Byte 0 configures: bit 0 the SYNs are seen, bit 1
// the server port is 3306 (a MySQL port) rather than 4000, bit 2 no MySQL
// ports at all. Then records of a control byte, a length byte and that many
// payload bytes. Control bit 0: the server sends (else the client); bits 1-3
// the fate of the segment: in order; a retransmission of the direction's
// previous segment; a gap (its bytes skipped, never sent); cut by the
// snaplen to half; held back and sent after the direction's next segment;
// sent with the 8 bytes before it again (a partial overlap).
func FuzzMySQL(f *testing.F) {
	for _, tc := range mysqlCases {
		c := newMyConv(3306)
		c.handshake()
		tc.build(f, c, map[string]int{})
		// The fuzzer spends its time minimising what it finds from large
		// seeds; the 157 KB result set is covered by the unit tests.
		if s := fuzzScript(c); len(s) <= 32<<10 {
			f.Add(s)
		}
	}
	f.Add([]byte{})
	f.Add([]byte{3, 1, 5, 1, 0, 0, 0, 10})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range fuzzFeed(t, data) {
			checkMessages(t, c)
		}
		if len(data) == 0 {
			return
		}
		// Where the segments end must not matter: the same bytes, in the
		// same order, cut into pieces of 1 to 32 bytes decode the same.
		whole, pieces := fuzzInOrder(t, data, 1<<20), fuzzInOrder(t, data, int(data[0]>>3)+1)
		if len(whole) != len(pieces) {
			t.Fatalf("%d connections whole, %d in pieces", len(whole), len(pieces))
		}
		for i := range whole {
			a, b := whole[i], pieces[i]
			if !slices.Equal(fuzzSummaries(a), fuzzSummaries(b)) || (a.Lost == "") != (b.Lost == "") || (a.Undecoded == "") != (b.Undecoded == "") {
				t.Fatalf("whole:\n%q\nlost %q undecoded %q\nin pieces:\n%q\nlost %q undecoded %q",
					fuzzSummaries(a), a.Lost, a.Undecoded, fuzzSummaries(b), b.Lost, b.Undecoded)
			}
		}
	})
}

func fuzzSummaries(c *MySQLConn) []string {
	var out []string
	for _, m := range c.Messages {
		out = append(out, fmt.Sprintf("%s len=%d req=%d seq=%d", summary(m), m.Len, m.Request, m.Seq))
	}
	return out
}

// fuzzInOrder sends every record of a script in order, in segments of at
// most piece bytes.
func fuzzInOrder(t *testing.T, data []byte, piece int) []*MySQLConn {
	var script []byte
	script = append(script, data[0])
	for b := data[1:]; len(b) >= 2; {
		ctrl, n := b[0], min(int(b[1]), len(b)-2)
		rec := b[2 : 2+n]
		b = b[2+n:]
		for len(rec) > 0 {
			k := min(piece, len(rec))
			script = append(script, ctrl&1, byte(k))
			script = append(script, rec[:k]...)
			rec = rec[k:]
		}
	}
	return fuzzFeed(t, script)
}

// fuzzScript turns a synthetic conversation into a fuzz input: its payload
// segments in order, cut into records.
func fuzzScript(c *myConv) []byte {
	out := []byte{3}
	for _, fr := range c.frames {
		ctrl := byte(0)
		if !fr.fromClient {
			ctrl = 1
		}
		for p := fr.payload; len(p) > 0; {
			n := min(len(p), 255)
			out = append(out, ctrl, byte(n))
			out = append(out, p[:n]...)
			p = p[n:]
		}
	}
	return out
}

func fuzzFeed(t *testing.T, data []byte) []*MySQLConn {
	if len(data) == 0 {
		return newMySQLDecoder(nil).finish()
	}
	cfg := data[0]
	data = data[1:]
	var ports []uint16
	if cfg&4 != 0 {
		ports = []uint16{}
	}
	d := newMySQLDecoder(ports)
	cli := netip.MustParseAddrPort("10.0.0.1:40000")
	srv := netip.MustParseAddrPort("10.0.0.2:4000")
	if cfg&2 != 0 {
		srv = netip.AddrPortFrom(srv.Addr(), 3306)
	}
	frame := 0
	start := time.Unix(1e9, 0)
	send := func(fromServer bool, seq uint32, payload []byte, captured int, flags string) {
		frame++
		p := Packet{Frame: frame, Time: start.Add(time.Duration(frame) * time.Millisecond), Src: cli, Dst: srv, Seq: seq,
			Payload: len(payload), ACK: flags != "S", SYN: flags == "S" || flags == "SA"}
		if fromServer {
			p.Src, p.Dst = srv, cli
		}
		d.feed(&p, payload[:captured])
		checkBounds(t, d)
	}
	next := [2]uint32{0x10000000, 0xfffffff0} // the server's wraps
	if cfg&1 != 0 {
		send(false, next[0]-1, nil, 0, "S")
		send(true, next[1]-1, nil, 0, "SA")
	}
	type seg struct {
		seq  uint32
		data []byte
	}
	var prev, held [2]*seg
	for len(data) >= 2 {
		ctrl, n := data[0], int(data[1])
		data = data[2:]
		n = min(n, len(data))
		payload := data[:n]
		data = data[n:]
		di := int(ctrl & 1)
		s := &seg{seq: next[di], data: payload}
		switch (ctrl >> 1) & 7 {
		case 1: // a retransmission
			if prev[di] != nil {
				send(di == 1, prev[di].seq, prev[di].data, len(prev[di].data), "PA")
			}
			continue
		case 2: // a gap
			next[di] += uint32(n)
			continue
		case 3: // cut by the snaplen
			send(di == 1, s.seq, s.data, n/2, "PA")
		case 4: // held back
			if held[di] == nil {
				held[di] = s
				next[di] += uint32(n)
				continue
			}
			send(di == 1, s.seq, s.data, n, "PA")
		case 5: // a partial overlap with what came before
			if prev[di] != nil && len(prev[di].data) >= 8 {
				b := append(append([]byte(nil), prev[di].data[len(prev[di].data)-8:]...), s.data...)
				send(di == 1, s.seq-8, b, len(b), "PA")
				break
			}
			send(di == 1, s.seq, s.data, n, "PA")
		default:
			send(di == 1, s.seq, s.data, n, "PA")
		}
		next[di] += uint32(n)
		prev[di] = s
		if h := held[di]; h != nil && h != s {
			send(di == 1, h.seq, h.data, len(h.data), "PA")
			held[di] = nil
		}
	}
	return d.finish()
}

// checkBounds fails when the decoder holds more than its limits allow.
func checkBounds(t *testing.T, d *mysqlDecoder) {
	t.Helper()
	for _, s := range d.streams {
		for i := range s.dirs {
			dir := &s.dirs[i]
			if dir.heldLen > myMaxHeld || len(dir.held) > myMaxHeldSegs || cap(dir.fr.pkt.body) > myKeep {
				t.Fatalf("direction %d holds %d bytes in %d segments, keeps %d", i, dir.heldLen, len(dir.held), cap(dir.fr.pkt.body))
			}
			if dir.comp != nil && cap(dir.comp.zbuf) > 2*myMaxInflate {
				t.Fatalf("direction %d buffers %d compressed bytes", i, cap(dir.comp.zbuf))
			}
		}
		if len(s.queue) > myMaxPending || len(s.stmtCols) > myMaxStmts {
			t.Fatalf("%d pending commands, %d statements", len(s.queue), len(s.stmtCols))
		}
	}
}
