package capture

import (
	"bytes"
	"compress/zlib"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// The MySQL decoder is checked three ways: against tshark's MySQL dissector
// on every recorded capture (the oracle), on synthetic captures written
// payload byte by payload byte for the cases the recordings lack, and by
// fuzzing (mysql_fuzz_test.go).

// mysqlPcaps lists the captures the oracle test reads: everything under
// testdata/ (new fixtures are picked up without editing the test) and the
// labrun runs under checks/testdata/runs.
func mysqlPcaps(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir("testdata", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".pcap") || strings.HasSuffix(path, ".pcapng")) {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	runs, err := filepath.Glob(filepath.Join("..", "checks", "testdata", "runs", "*", "*.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	return append(out, runs...)
}

// myOracleKeys are what tshark and the decoder must agree on, per frame:
// "frame 13 COM_QUERY", "frame 16 error 1064", "frame 6 greeting". A
// multiset, as one frame can end several PDUs.
type myOracleKeys map[string]int

// decoderKeys are the decoder's keys for a capture.
func decoderKeys(conns []*MySQLConn) myOracleKeys {
	keys := myOracleKeys{}
	for _, c := range conns {
		for _, m := range c.Messages {
			if m.Command != "" {
				keys[fmt.Sprintf("frame %d %s", m.Frame, m.Command)]++
			}
			if m.Code != 0 {
				keys[fmt.Sprintf("frame %d error %d", m.Frame, m.Code)]++
			}
			if m.Kind == "greeting" {
				keys[fmt.Sprintf("frame %d greeting", m.Frame)]++
			}
		}
	}
	return keys
}

// tsharkKeys dissects path with tshark's MySQL dissector: on 3306, and on
// the other server ports given. It also returns the frames where a MySQL
// PDU ends.
func tsharkKeys(t testing.TB, tshark, path string, ports []uint16) (myOracleKeys, map[int]bool) {
	t.Helper()
	// The decoder reassembles out-of-order segments; tshark 4.0 does only
	// when asked (by default it dissects the segment after a gap as if a
	// PDU started there).
	args := []string{"-r", path, "-n", "-o", "tcp.reassemble_out_of_order:TRUE", "-Y", "mysql",
		"-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,",
		"-e", "frame.number", "-e", "mysql.command", "-e", "mysql.error_code", "-e", "mysql.version"}
	for _, p := range ports {
		if p != 3306 {
			args = append(args, "-d", fmt.Sprintf("tcp.port==%d,mysql", p))
		}
	}
	cmd := exec.Command(tshark, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %s: %v\n%s", path, err, stderr.String())
	}
	keys := myOracleKeys{}
	frames := map[int]bool{}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		cols := strings.Split(line, "\t")
		for len(cols) < 4 {
			cols = append(cols, "")
		}
		frame := cols[0]
		n, err := strconv.Atoi(frame)
		if err != nil {
			t.Fatalf("tshark frame.number %q: %v", frame, err)
		}
		frames[n] = true
		for _, c := range strings.Split(cols[1], ",") {
			if c == "" {
				continue
			}
			n, err := strconv.Atoi(c)
			if err != nil {
				t.Fatalf("tshark mysql.command %q: %v", c, err)
			}
			keys[fmt.Sprintf("frame %s %s", frame, myCommandName(byte(n)))]++
		}
		for _, c := range strings.Split(cols[2], ",") {
			if c != "" {
				keys[fmt.Sprintf("frame %s error %s", frame, c)]++
			}
		}
		if cols[3] != "" {
			keys[fmt.Sprintf("frame %s greeting", frame)]++
		}
	}
	return keys, frames
}

// endsOutsidePDUs lists the decoder's messages that end in a frame where
// tshark ends no MySQL PDU. Compressed connections are left out: tshark
// shows their compressed packets, not the packets inside.
func endsOutsidePDUs(conns []*MySQLConn, frames map[int]bool) []string {
	var out []string
	for _, c := range conns {
		if c.Compressed {
			continue
		}
		for _, m := range c.Messages {
			if !m.Incomplete && !frames[m.Frame] {
				out = append(out, fmt.Sprintf("stream %d: %s ends in frame %d, where tshark ends no MySQL PDU", c.Stream, summary(m), m.Frame))
			}
		}
	}
	return out
}

// keyDiff lists the keys only one side has.
func keyDiff(tshark, decoder myOracleKeys) []string {
	var out []string
	for k, n := range tshark {
		if d := n - decoder[k]; d > 0 {
			out = append(out, fmt.Sprintf("tshark has %s, the decoder not (x%d)", k, d))
		}
	}
	for k, n := range decoder {
		if d := n - tshark[k]; d > 0 {
			out = append(out, fmt.Sprintf("the decoder has %s, tshark not (x%d)", k, d))
		}
	}
	slices.Sort(out)
	return out
}

func serverPorts(conns []*MySQLConn) []uint16 {
	var ports []uint16
	for _, c := range conns {
		if !slices.Contains(ports, c.Server.Port()) {
			ports = append(ports, c.Server.Port())
		}
	}
	return ports
}

// TestMySQLAgreesWithTshark compares, for every recorded capture, the frames
// where tshark shows a MySQL command, an error code or a greeting with the
// decoder's messages. Captures whose frames were cut after the TCP header
// (the snaplen) carry no MySQL for tshark; the decoder must list their
// MySQL streams with Lost set instead of decoding anything.
func TestMySQLAgreesWithTshark(t *testing.T) {
	tshark := needTshark(t)
	var pcaps, frames, mysqlFrames, cutPcaps int
	for _, path := range mysqlPcaps(t) {
		t.Run(path, func(t *testing.T) {
			a, err := Analyze(path)
			if err != nil {
				t.Fatal(err)
			}
			want, pdus := tsharkKeys(t, tshark, path, serverPorts(a.MySQL))
			for _, d := range keyDiff(want, decoderKeys(a.MySQL)) {
				t.Error(d)
			}
			for _, d := range endsOutsidePDUs(a.MySQL, pdus) {
				t.Error(d)
			}
			pcaps++
			frames += a.Frames
			mysqlFrames += len(pdus)
			cut := tsharkCount(t, tshark, path, "tcp.len > 0 && frame.cap_len < frame.len")
			if cut == 0 {
				for _, c := range a.MySQL {
					if c.Lost != "" {
						t.Errorf("stream %d: Lost %q in a capture with full payloads", c.Stream, c.Lost)
					}
				}
				return
			}
			cutPcaps++
			// Every stream with payload to 3306 must be listed, as lost.
			listed := map[int]*MySQLConn{}
			for _, c := range a.MySQL {
				listed[c.Stream] = c
			}
			for _, p := range a.Packets {
				if p.Payload == 0 || (p.Dst.Port() != 3306 && p.Src.Port() != 3306) {
					continue
				}
				c := listed[p.Stream]
				switch {
				case c == nil:
					t.Errorf("stream %d (frame %d) carries payload to 3306 in a cut capture and is not listed", p.Stream, p.Frame)
				case !strings.Contains(c.Lost, "snaplen"):
					t.Errorf("stream %d: Lost %q, want the snaplen named", c.Stream, c.Lost)
				}
				listed[p.Stream] = &MySQLConn{Lost: "snaplen"} // report once
			}
		})
	}
	t.Logf("compared %d captures (%d frames, %d with MySQL for tshark; %d cut by the snaplen)", pcaps, frames, mysqlFrames, cutPcaps)
}

// TestMySQLBothSides: a run records the client's and the server's view of
// the same connections; both must decode to the same conversation.
func TestMySQLBothSides(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("..", "checks", "testdata", "runs", "*"))
	if err != nil {
		t.Fatal(err)
	}
	compared := 0
	for _, dir := range dirs {
		ca, err1 := Analyze(filepath.Join(dir, "client.pcap"))
		sa, err2 := Analyze(filepath.Join(dir, "server.pcap"))
		if err1 != nil || err2 != nil {
			continue // only one side recorded
		}
		t.Run(filepath.Base(dir), func(t *testing.T) {
			byClient := map[netip.AddrPort]*MySQLConn{}
			for _, c := range sa.MySQL {
				byClient[c.Client] = c
			}
			for _, c := range ca.MySQL {
				s := byClient[c.Client]
				if s == nil {
					t.Errorf("%s: in client.pcap, not in server.pcap", c.Client)
					continue
				}
				if c.Lost != "" || s.Lost != "" {
					continue // the cut captures: nothing decoded
				}
				got, want := summaries(c), summaries(s)
				if !slices.Equal(got, want) {
					t.Errorf("%s:\nclient.pcap %q\nserver.pcap %q", c.Client, got, want)
				}
				compared++
			}
		})
	}
	t.Logf("%d connections compared", compared)
}

// summary renders a message compactly for the tests: direction, kind and
// what distinguishes it.
func summary(m MySQLMessage) string {
	var b strings.Builder
	if m.FromClient {
		b.WriteString("c ")
	} else {
		b.WriteString("s ")
	}
	b.WriteString(m.Kind)
	if m.Command != "" {
		b.WriteString(" " + m.Command)
	}
	if m.SQL != "" {
		fmt.Fprintf(&b, " %q", m.SQL)
	}
	if m.StmtID != 0 {
		fmt.Fprintf(&b, " stmt=%d", m.StmtID)
	}
	if m.Code != 0 {
		fmt.Fprintf(&b, " %d %s", m.Code, m.SQLState)
	}
	switch m.Kind {
	case "result_set", "field_list":
		fmt.Fprintf(&b, " cols=%d rows=%d", m.Columns, m.Rows)
	case "stmt_prepare_ok":
		fmt.Fprintf(&b, " params=%d cols=%d", m.Params, m.Columns)
	case "binlog":
		fmt.Fprintf(&b, " events=%d", m.Rows)
	}
	if m.Incomplete {
		b.WriteString(" incomplete")
	}
	return b.String()
}

func summaries(c *MySQLConn) []string {
	var out []string
	for _, m := range c.Messages {
		out = append(out, summary(m))
	}
	return out
}

// Synthetic captures. myConv scripts a MySQL connection segment by segment,
// with real payload bytes, the way the kernel would send it; myPcap writes
// it. The trace type of synth_test.go carries payload lengths only.

type myFrame struct {
	at         time.Duration
	fromClient bool
	flags      string
	seq, ack   uint32
	payload    []byte
	// captured is how many payload bytes the capture keeps; -1 all.
	captured int
}

type myConv struct {
	client, server netip.AddrPort
	cseq, sseq     uint32 // next sequence numbers
	at             time.Duration
	frames         []myFrame
}

func newMyConv(serverPort uint16) *myConv {
	return &myConv{
		client: netip.MustParseAddrPort("10.89.0.10:40000"),
		server: netip.AddrPortFrom(netip.MustParseAddr("10.89.0.11"), serverPort),
		cseq:   0x10000000, sseq: 0xfffff000, // the server's wraps
	}
}

func (c *myConv) add(f myFrame) int {
	c.at += 100 * time.Microsecond
	f.at = c.at
	if f.captured == 0 {
		f.captured = -1
	}
	c.frames = append(c.frames, f)
	return len(c.frames)
}

// handshake adds SYN, SYN-ACK, ACK.
func (c *myConv) handshake() {
	c.add(myFrame{fromClient: true, flags: "S", seq: c.cseq - 1})
	c.add(myFrame{flags: "SA", seq: c.sseq - 1, ack: c.cseq})
	c.add(myFrame{fromClient: true, flags: "A", seq: c.cseq, ack: c.sseq})
}

// send adds one segment; it returns its frame number.
func (c *myConv) send(fromClient bool, data []byte) int {
	return c.sendCut(fromClient, data, -1)
}

// sendCut adds a segment whose capture keeps only captured bytes.
func (c *myConv) sendCut(fromClient bool, data []byte, captured int) int {
	f := myFrame{fromClient: fromClient, flags: "PA", payload: data, captured: captured}
	if fromClient {
		f.seq, f.ack = c.cseq, c.sseq
		c.cseq += uint32(len(data))
	} else {
		f.seq, f.ack = c.sseq, c.cseq
		c.sseq += uint32(len(data))
	}
	return c.add(f)
}

// sendSplit sends data in segments of at most mss bytes; it returns the
// first and last frame.
func (c *myConv) sendSplit(fromClient bool, data []byte, mss int) (int, int) {
	first := len(c.frames) + 1
	for len(data) > 0 {
		n := min(mss, len(data))
		c.send(fromClient, data[:n])
		data = data[n:]
	}
	return first, len(c.frames)
}

// skip advances the sequence number as if data was sent, without a frame:
// a segment the capture missed.
func (c *myConv) skip(fromClient bool, data []byte) {
	if fromClient {
		c.cseq += uint32(len(data))
	} else {
		c.sseq += uint32(len(data))
	}
}

// resend repeats frame i (1-based), a retransmission.
func (c *myConv) resend(i int) int {
	f := c.frames[i-1]
	return c.add(f)
}

// fin closes both directions.
func (c *myConv) fin() {
	c.add(myFrame{fromClient: true, flags: "FA", seq: c.cseq, ack: c.sseq})
	c.add(myFrame{flags: "FA", seq: c.sseq, ack: c.cseq + 1})
	c.add(myFrame{fromClient: true, flags: "A", seq: c.cseq + 1, ack: c.sseq + 1})
}

func (c *myConv) write(t testing.TB, path string) {
	t.Helper()
	if err := os.WriteFile(path, c.pcap(t), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (c *myConv) pcap(t testing.TB) []byte {
	t.Helper()
	var out bytes.Buffer
	w := pcapgo.NewWriter(&out)
	if err := w.WriteFileHeader(snaplen, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for i, f := range c.frames {
		src, dst, smac, dmac := c.client, c.server, clientMAC, serverMAC
		if !f.fromClient {
			src, dst, smac, dmac = dst, src, dmac, smac
		}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment,
			SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: f.seq, Ack: f.ack, Window: 502,
			SYN: strings.Contains(f.flags, "S"), ACK: strings.Contains(f.flags, "A"), PSH: strings.Contains(f.flags, "P"), FIN: strings.Contains(f.flags, "F")}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		buf := gopacket.NewSerializeBuffer()
		err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			&layers.Ethernet{SrcMAC: smac, DstMAC: dmac, EthernetType: layers.EthernetTypeIPv4}, ip, tcp, gopacket.Payload(f.payload))
		if err != nil {
			t.Fatalf("frame %d: %v", i+1, err)
		}
		b := buf.Bytes()
		ci := gopacket.CaptureInfo{Timestamp: synthStart.Add(f.at), CaptureLength: len(b), Length: len(b)}
		if f.captured >= 0 {
			ci.CaptureLength = len(b) - len(f.payload) + f.captured
			b = b[:ci.CaptureLength]
		}
		if err := w.WritePacket(ci, b); err != nil {
			t.Fatal(err)
		}
	}
	return out.Bytes()
}

// MySQL payloads.

// Capabilities of the synthetic MySQL 9 server and of its usual client.
const (
	tcapBase = 0x0001 | 0x0004 | 0x0008 | myCapProtocol41 | 0x2000 | 0x8000 | 1<<16 | 1<<17 | 1<<18 | 1<<19 | 1<<21 | 1<<23
	tcapSrv  = tcapBase | myCapCompress | myCapSSL | myCapDeprecateEOF | myCapQueryAttributes | 1<<20
	tcapCli  = tcapBase | myCapDeprecateEOF
)

// myPkts frames payloads as packets with consecutive sequence ids.
func myPkts(seq byte, payloads ...[]byte) []byte {
	var out []byte
	for _, p := range payloads {
		out = append(out, byte(len(p)), byte(len(p)>>8), byte(len(p)>>16), seq)
		out = append(out, p...)
		seq++
	}
	return out
}

func le16(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) }
func le32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }

func lenencStr(b []byte, s string) []byte {
	if len(s) >= 0xfb {
		b = append(b, 0xfc, byte(len(s)), byte(len(s)>>8))
	} else {
		b = append(b, byte(len(s)))
	}
	return append(b, s...)
}

func greetingPayload(version string, connID, caps uint32) []byte {
	b := append([]byte{10}, version...)
	b = append(b, 0)
	b = le32(b, connID)
	b = append(b, "abcdefgh"...)
	b = append(b, 0)
	b = le16(b, uint16(caps))
	b = append(b, 0xff)
	b = le16(b, 0x0002)
	b = le16(b, uint16(caps>>16))
	b = append(b, 21)
	b = append(b, make([]byte, 10)...)
	b = append(b, "ijklmnopqrst"...)
	b = append(b, 0)
	b = append(b, "caching_sha2_password"...)
	return append(b, 0)
}

func loginPayload(caps uint32, user string) []byte {
	b := le32(nil, caps)
	b = le32(b, 1<<24)
	b = append(b, 0xff)
	b = append(b, make([]byte, 23)...)
	if caps&myCapSSL != 0 {
		return b // the SSLRequest stops here
	}
	b = append(b, user...)
	b = append(b, 0, 32)
	b = append(b, bytes.Repeat([]byte{0x5a}, 32)...)
	b = append(b, "caching_sha2_password"...)
	return append(b, 0)
}

func okPayload(affected byte, status uint16) []byte {
	return le16(le16([]byte{0x00, affected, 0}, status), 0)
}

// okEnd is the OK packet that ends rows with CLIENT_DEPRECATE_EOF.
func okEnd(status uint16) []byte { return le16(le16([]byte{0xfe, 0, 0}, status), 0) }

func eofPayload(status uint16) []byte { return le16(le16([]byte{0xfe}, 0), status) }

func errPayload(code uint16, state, msg string) []byte {
	b := le16([]byte{0xff}, code)
	b = append(b, '#')
	b = append(b, state...)
	return append(b, msg...)
}

func colDef(name string, typ byte) []byte {
	b := lenencStr(nil, "def")
	b = lenencStr(b, "lab")
	b = lenencStr(b, "t1")
	b = lenencStr(b, "t1")
	b = lenencStr(b, name)
	b = lenencStr(b, name)
	b = append(b, 0x0c)
	b = le16(b, 0x3f)
	b = le32(b, 11)
	b = append(b, typ)
	b = le16(b, 0)
	return append(b, 0, 0, 0)
}

func textRow(vals ...string) []byte {
	var b []byte
	for _, v := range vals {
		b = lenencStr(b, v)
	}
	return b
}

// binRow is a binary-protocol row of LONG values.
func binRow(vals ...uint32) []byte {
	b := append([]byte{0x00}, make([]byte, (len(vals)+9)/8)...)
	for _, v := range vals {
		b = le32(b, v)
	}
	return b
}

func prepareOK(stmt uint32, cols, params uint16) []byte {
	b := le32([]byte{0x00}, stmt)
	b = le16(b, cols)
	b = le16(b, params)
	return le16(append(b, 0), 0)
}

func comQueryPayload(sql string) []byte { return append([]byte{comQuery}, sql...) }

// resultSet is a text result set: column count, definitions, [EOF], rows,
// and the end (OK with deprecateEOF, EOF otherwise).
func resultSet(seq byte, deprecateEOF bool, status uint16, cols []string, rows [][]string) []byte {
	p := [][]byte{{byte(len(cols))}}
	for _, c := range cols {
		p = append(p, colDef(c, 0x03))
	}
	if !deprecateEOF {
		p = append(p, eofPayload(status&^myStatusMoreResults))
	}
	for _, r := range rows {
		p = append(p, textRow(r...))
	}
	if deprecateEOF {
		p = append(p, okEnd(status))
	} else {
		p = append(p, eofPayload(status))
	}
	return myPkts(seq, p...)
}

// login runs greeting, login, caching_sha2 fast auth and OK.
func (c *myConv) login(srvCaps, cliCaps uint32) {
	c.send(false, myPkts(0, greetingPayload("9.7.4-2", 12, srvCaps)))
	c.send(true, myPkts(1, loginPayload(cliCaps, "labrun")))
	c.send(false, myPkts(2, []byte{0x01, 0x03}))
	c.send(false, myPkts(3, okPayload(0, 2)))
}

// clientHello is a real TLS ClientHello record.
func clientHello(t testing.TB) []byte {
	t.Helper()
	c1, c2 := net.Pipe()
	defer c2.Close()
	go func() {
		_ = tls.Client(c1, &tls.Config{ServerName: "mysql", InsecureSkipVerify: true}).Handshake()
		c1.Close()
	}()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c2, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(binary.BigEndian.Uint16(hdr[3:])))
	if _, err := io.ReadFull(c2, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// compressed frames a packet stream as one compressed packet: zlib when
// it is at least 50 bytes (as MySQL does), stored as is otherwise.
func compressed(t testing.TB, seq byte, inner []byte) []byte {
	t.Helper()
	payload, ulen := inner, 0
	if len(inner) >= 50 {
		var z bytes.Buffer
		zw := zlib.NewWriter(&z)
		if _, err := zw.Write(inner); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		payload, ulen = z.Bytes(), len(inner)
	}
	b := []byte{byte(len(payload)), byte(len(payload) >> 8), byte(len(payload) >> 16), seq, byte(ulen), byte(ulen >> 8), byte(ulen >> 16)}
	return append(b, payload...)
}

// mysqlCase is one synthetic capture and what the decoder must find in it.
type mysqlCase struct {
	name string
	port uint16 // the server's, 3306 when 0
	// build scripts the connection; it may record frame numbers in f for
	// check.
	build func(t testing.TB, c *myConv, f map[string]int)
	want  []string // summaries of the messages, in order; nil: none
	// absent: the stream must not be listed.
	absent bool
	check  func(t *testing.T, conn *MySQLConn, f map[string]int)
	// tsharkDiffers says why tshark's dissector does not agree on this
	// capture; its differences are then logged, not failed.
	tsharkDiffers string
}

var mysqlCases = []mysqlCase{
	{
		name: "query-deprecate-eof",
		build: func(t testing.TB, c *myConv, f map[string]int) {
			c.login(tcapSrv, tcapCli)
			f["query"] = c.send(true, myPkts(0, comQueryPayload("SELECT id, v FROM lab.t1")))
			f["rs"] = c.send(false, resultSet(1, true, 0x0002, []string{"id", "v"}, [][]string{{"1", "10"}, {"2", "20"}, {"3", ""}}))
			c.send(true, myPkts(0, comQueryPayload("SELECT * FROM lab.nope")))
			f["err"] = c.send(false, myPkts(1, errPayload(1146, "42S02", "Table 'lab.nope' doesn't exist")))
			c.send(true, myPkts(0, []byte{0x0e}))
			c.send(false, myPkts(1, okPayload(0, 2)))
			f["quit"] = c.send(true, myPkts(0, []byte{comQuit}))
			c.fin()
		},
		want: []string{"s greeting", "c login", "s auth_more_data", "s ok",
			`c command COM_QUERY "SELECT id, v FROM lab.t1"`, "s result_set cols=2 rows=3",
			`c command COM_QUERY "SELECT * FROM lab.nope"`, "s err 1146 42S02",
			"c command COM_PING", "s ok",
			"c command COM_QUIT"},
		check: func(t *testing.T, conn *MySQLConn, f map[string]int) {
			if conn.Version != "9.7.4-2" || conn.ConnID != 12 || conn.User != "labrun" || !conn.DeprecateEOF || conn.MariaDB {
				t.Errorf("conn %+v", conn)
			}
			rs := conn.ReplyTo(4)
			if rs == nil || rs.Kind != "result_set" || rs.Frame != f["rs"] || rs.Request != 4 {
				t.Errorf("ReplyTo(4) = %+v, want the result set in frame %d", rs, f["rs"])
			}
			e := conn.Messages[7]
			if e.Message != "Table 'lab.nope' doesn't exist" || e.Frame != f["err"] {
				t.Errorf("ERR %+v", e)
			}
			if q := conn.Messages[len(conn.Messages)-1]; conn.ReplyTo(q.Index) != nil {
				t.Errorf("COM_QUIT has a reply: %+v", conn.ReplyTo(q.Index))
			}
			if n := len(conn.Commands()); n != 4 {
				t.Errorf("%d commands, want 4", n)
			}
		},
	},
	{
		name: "query-eof-multi-results",
		build: func(t testing.TB, c *myConv, f map[string]int) {
			caps := uint32(tcapBase) // no CLIENT_DEPRECATE_EOF on either side
			c.login(caps, caps)
			c.send(true, myPkts(0, comQueryPayload("CALL lab.p()")))
			rs1 := resultSet(1, false, 0x000a, []string{"a"}, [][]string{{"1"}})
			rs2 := resultSet(6, false, 0x000a, []string{"b", "c"}, [][]string{{"x", "y"}, {"z", "w"}})
			c.send(false, append(append(rs1, rs2...), myPkts(13, okPayload(0, 0x0002))...))
		},
		want: []string{"s greeting", "c login", "s auth_more_data", "s ok",
			`c command COM_QUERY "CALL lab.p()"`, "s result_set cols=1 rows=1", "s result_set cols=2 rows=2", "s ok"},
		check: func(t *testing.T, conn *MySQLConn, f map[string]int) {
			for _, m := range conn.Messages[5:] {
				if m.Request != 4 {
					t.Errorf("%s answers %d, want 4", summary(m), m.Request)
				}
			}
		},
	},
	{
		name: "prepared-statement",
		build: func(t testing.TB, c *myConv, f map[string]int) {
			c.login(tcapSrv, tcapCli)
			c.send(true, myPkts(0, append([]byte{comStmtPrepare}, "SELECT id, v FROM lab.t1 WHERE id > ?"...)))
			f["prep"] = c.send(false, myPkts(1, prepareOK(1, 2, 1), colDef("?", 0x08), colDef("id", 0x03), colDef("v", 0x03)))
			exec := le32([]byte{comStmtExecute}, 1)
			exec = append(exec, 0)
			exec = le32(exec, 1)
			exec = append(exec, 0, 1, 0x08, 0)
			exec = binary.LittleEndian.AppendUint64(exec, 0)
			c.send(true, myPkts(0, exec))
			c.send(false, myPkts(1, []byte{2}, colDef("id", 0x03), colDef("v", 0x03), binRow(1, 10), binRow(2, 20), okEnd(0x0002)))
			c.send(true, myPkts(0, le32([]byte{comStmtReset}, 1)))
			c.send(false, myPkts(1, okPayload(0, 2)))
			c.send(true, myPkts(0, le32([]byte{comStmtClose}, 1)))
			c.send(true, myPkts(0, comQueryPayload("DO 1")))
			c.send(false, myPkts(1, okPayload(0, 2)))
		},
		want: []string{"s greeting", "c login", "s auth_more_data", "s ok",
			`c command COM_STMT_PREPARE "SELECT id, v FROM lab.t1 WHERE id > ?"`, "s stmt_prepare_ok stmt=1 params=1 cols=2",
			"c command COM_STMT_EXECUTE stmt=1", "s result_set cols=2 rows=2",
			"c command COM_STMT_RESET stmt=1", "s ok",
			"c command COM_STMT_CLOSE stmt=1",
			`c command COM_QUERY "DO 1"`, "s ok"},
		check: func(t *testing.T, conn *MySQLConn, f map[string]int) {
			if r := conn.ReplyTo(10); r != nil {
				t.Errorf("COM_STMT_CLOSE has a reply: %s", summary(*r))
			}
			if r := conn.ReplyTo(11); r == nil || r.Index != 12 {
				t.Errorf("COM_QUERY after COM_STMT_CLOSE: reply %v", r)
			}
		},
	},
	{
		name: "prepared-statement-eof",
		build: func(t testing.TB, c *myConv, f map[string]int) {
			caps := uint32(tcapBase)
			c.login(caps, caps)
			c.send(true, myPkts(0, append([]byte{comStmtPrepare}, "SELECT v FROM lab.t1 WHERE id = ?"...)))
			c.send(false, myPkts(1, prepareOK(7, 1, 1), colDef("?", 0x08), eofPayload(2), colDef("v", 0x03), eofPayload(2)))
			exec := le32([]byte{comStmtExecute}, 7)
			exec = append(exec, 1) // a read-only cursor: rows come with COM_STMT_FETCH
			exec = le32(exec, 1)
			exec = append(exec, 0, 1, 0x08, 0)
			exec = binary.LittleEndian.AppendUint64(exec, 1)
			c.send(true, myPkts(0, exec))
			c.send(false, myPkts(1, []byte{1}, colDef("v", 0x03), eofPayload(0x0042)))
			c.send(true, myPkts(0, le32(le32([]byte{comStmtFetch}, 7), 100)))
			c.send(false, myPkts(1, binRow(5), binRow(6), binRow(7), eofPayload(0x00c2)))
		},
		want: []string{"s greeting", "c login", "s auth_more_data", "s ok",
			`c command COM_STMT_PREPARE "SELECT v FROM lab.t1 WHERE id = ?"`, "s stmt_prepare_ok stmt=7 params=1 cols=1",
			"c command COM_STMT_EXECUTE stmt=7", "s result_set cols=1 rows=0",
			"c command COM_STMT_FETCH stmt=7", "s result_set cols=1 rows=3"},
	},
	{
		name: "result-split-across-segments",
		build: func(t testing.TB, c *myConv, f map[string]int) {
			c.login(tcapSrv, tcapCli)
			c.send(true, myPkts(0, comQueryPayload("SELECT id, pad FROM lab.big")))
			var rows [][]string
			for i := range 500 {
				rows = append(rows, []string{strconv.Itoa(i), strings.Repeat("p", 300)})
			}
			f["first"], f["last"] = c.sendSplit(false, resultSet(1, true, 2, []string{"id", "pad"}, rows), 1448)
			c.send(true, myPkts(0, []byte{comQuit}))
		},
		want: []string{"s greeting", "c login", "s auth_more_data", "s ok",
			`c command COM_QUERY "SELECT id, pad FROM lab.big"`, "s result_set cols=2 rows=500", "c command COM_QUIT"},
		check: func(t *testing.T, conn *MySQLConn, f map[string]int) {
			rs := conn.Messages[5]
			if rs.FirstFrame != f["first"] || rs.Frame != f["last"] {
				t.Errorf("result set in frames %d-%d, want %d-%d", rs.FirstFrame, rs.Frame, f["first"], f["last"])
			}
		},
	},
	{
		name: "retransmitted-segment",
		build: func(t testing.TB, c *myConv, f map[string]int) {
			c.login(tcapSrv, tcapCli)
			q := c.send(true, myPkts(0, comQueryPayload("SELECT 1")))
			c.resend(q) // the tail loss probe: already consumed
			rs := resultSet(1, true, 2, []string{"1"}, [][]string{{"1"}})
			a := c.send(false, rs[:20])
			c.resend(a)
			c.send(false, rs[20:])
			c.send(true, myPkts(0, []byte{comQuit}))
		},
		want: []string{"s greeting", "c login", "s auth_more_data", "s ok",
			`c command COM_QUERY "SELECT 1"`, "s result_set cols=1 rows=1", "c command COM_QUIT"},
	},
	{
		name: "out-of-order-segment",
		build: func(t testing.TB, c *myConv, f map[string]int) {
			c.login(tcapSrv, tcapCli)
			c.send(true, myPkts(0, comQueryPayload("SELECT 1")))
			rs := resultSet(1, true, 2, []string{"1"}, [][]string{{"1"}})
			c.skip(false, rs[:30])
			c.send(false, rs[30:]) // arrives first
			c.sseq -= uint32(len(rs))
			f["fill"] = c.send(false, rs[:30])
			c.sseq += uint32(len(rs) - 30)
		},
		want: []string{"s greeting", "c login", "s auth_more_data", "s ok",
			`c command COM_QUERY "SELECT 1"`, "s result_set cols=1 rows=1"},
		check: func(t *testing.T, conn *MySQLConn, f map[string]int) {
			if rs := conn.Messages[5]; rs.Frame != f["fill"] {
				t.Errorf("result set ends in frame %d, want %d, the one that filled the gap", rs.Frame, f["fill"])
			}
		},
	},
	{
		name: "lost-segment",
		build: func(t testing.TB, c *myConv, f map[string]int) {
			c.login(tcapSrv, tcapCli)
			c.send(true, myPkts(0, comQueryPayload("SELECT id, pad FROM lab.big")))
			var rows [][]string
			for i := range 20 {
				rows = append(rows, []string{strconv.Itoa(i), strings.Repeat("p", 100)})
			}
			rs := resultSet(1, true, 2, []string{"id", "pad"}, rows)
			c.send(false, rs[:1000])
			c.skip(false, rs[1000:2000])
			f["after"] = c.send(false, rs[2000:])
			c.send(true, myPkts(0, comQueryPayload("SELECT 2")))
		},
		want: []string{"s greeting", "c login", "s auth_more_data", "s ok",
			`c command COM_QUERY "SELECT id, pad FROM lab.big"`, `c command COM_QUERY "SELECT 2"`, "s result_set cols=2 rows=8 incomplete"},
		check: func(t *testing.T, conn *MySQLConn, f map[string]int) {
			want := fmt.Sprintf("server→client: frame %d: 1000 bytes before it were never captured", f["after"])
			if !strings.HasPrefix(conn.Lost, want) {
				t.Errorf("Lost %q, want it to start with %q", conn.Lost, want)
			}
		},
	},
	{
		name: "payload-cut-by-snaplen",
		build: func(t testing.TB, c *myConv, f map[string]int) {
			c.login(tcapSrv, tcapCli)
			f["cut"] = c.sendCut(true, myPkts(0, comQueryPayload("SELECT 1")), 4)
			c.send(false, resultSet(1, true, 2, []string{"1"}, [][]string{{"1"}}))
		},
		want: []string{"s greeting", "c login", "s auth_more_data", "s ok"},
		check: func(t *testing.T, conn *MySQLConn, f map[string]int) {
			want := fmt.Sprintf("client→server: frame %d: payload cut to 4 of 13 bytes by the capture's snaplen (the server's side", f["cut"])
			if !strings.HasPrefix(conn.Lost, want) {
				t.Errorf("Lost %q, want it to start with %q", conn.Lost, want)
			}
		},
	},
	{
		name: "tls",
		build: func(t testing.TB, c *myConv, f map[string]int) {
			c.send(false, myPkts(0, greetingPayload("9.7.4-2", 12, tcapSrv)))
			f["ssl"] = c.send(true, myPkts(1, loginPayload(tcapCli|myCapSSL, "")))
			c.send(true, clientHello(t))
			c.send(false, []byte{0x16, 0x03, 0x03, 0x00, 0x02, 0x02, 0x00}) // looks like a server hello
			c.send(true, myPkts(0, comQueryPayload("SELECT 1")))            // not decoded: TLS
		},
		want: []string{"s greeting", "c ssl_request"},
		check: func(t *testing.T, conn *MySQLConn, f map[string]int) {
			if !conn.TLS || !strings.Contains(conn.Undecoded, fmt.Sprintf("frame %d: the client asked for TLS", f["ssl"])) {
				t.Errorf("TLS %v, Undecoded %q", conn.TLS, conn.Undecoded)
			}
		},
	},
	{
		name: "compressed",
		build: func(t testing.TB, c *myConv, f map[string]int) {
			c.login(tcapSrv, tcapCli|myCapCompress)
			sql := "SELECT id, v FROM lab.t1 WHERE v > 0 AND id < 1000 ORDER BY id"
			c.send(true, compressed(t, 0, myPkts(0, comQueryPayload(sql))))
			var rows [][]string
			for i := range 50 {
				rows = append(rows, []string{strconv.Itoa(i), strings.Repeat("v", 40)})
			}
			c.send(false, compressed(t, 1, resultSet(1, true, 2, []string{"id", "v"}, rows)))
			f["ping"] = c.send(true, compressed(t, 0, myPkts(0, []byte{0x0e})))
			c.send(false, compressed(t, 1, myPkts(1, okPayload(0, 2))))
		},
		want: []string{"s greeting", "c login", "s auth_more_data", "s ok",
			`c command COM_QUERY "SELECT id, v FROM lab.t1 WHERE v > 0 AND id < 1000 ORDER BY id"`, "s result_set cols=2 rows=50",
			"c command COM_PING", "s ok"},
		check: func(t *testing.T, conn *MySQLConn, f map[string]int) {
			if !conn.Compressed || conn.Undecoded != "" {
				t.Errorf("Compressed %v, Undecoded %q", conn.Compressed, conn.Undecoded)
			}
		},
		tsharkDiffers: "tshark 4.0 reads a zlib payload as if it were a packet (it decodes the stored, uncompressed ones right)",
	},
	{
		name: "unsolicited-4031-err",
		build: func(t testing.TB, c *myConv, f map[string]int) {
			c.login(tcapSrv, tcapCli)
			c.send(true, myPkts(0, comQueryPayload("BEGIN")))
			c.send(false, myPkts(1, okPayload(0, 3)))
			f["4031"] = c.send(false, myPkts(0, errPayload(4031, "HY000", "The client was disconnected by the server because of inactivity.")))
			c.fin()
		},
		want: []string{"s greeting", "c login", "s auth_more_data", "s ok",
			`c command COM_QUERY "BEGIN"`, "s ok", "s err 4031 HY000"},
		check: func(t *testing.T, conn *MySQLConn, f map[string]int) {
			e := conn.Messages[6]
			if e.Request != -1 || e.Frame != f["4031"] || e.Seq != 0 {
				t.Errorf("4031 %+v, want no request", e)
			}
			if s := conn.Messages[5].Status; s&1 == 0 {
				t.Errorf("OK after BEGIN: status %#x, want in transaction", s)
			}
		},
	},
	{
		name: "mariadb-auth-switch",
		build: func(t testing.TB, c *myConv, f map[string]int) {
			caps := uint32(tcapBase|myCapDeprecateEOF) &^ myCapLongPassword
			c.send(false, myPkts(0, greetingPayload("5.5.5-10.11.18-MariaDB-0+deb12u1", 7, caps)))
			c.send(true, myPkts(1, loginPayload(caps, "labrun")))
			c.send(false, myPkts(2, append(append([]byte{0xfe}, "mysql_native_password\x00"...), bytes.Repeat([]byte{0x41}, 20)...)))
			c.send(true, myPkts(3, bytes.Repeat([]byte{0x42}, 20)))
			c.send(false, myPkts(4, okPayload(0, 2)))
			c.send(true, myPkts(0, comQueryPayload("SELECT CONNECTION_ID()")))
			c.send(false, resultSet(1, true, 2, []string{"CONNECTION_ID()"}, [][]string{{"7"}}))
		},
		want: []string{"s greeting", "c login", "s auth_switch", "c auth", "s ok",
			`c command COM_QUERY "SELECT CONNECTION_ID()"`, "s result_set cols=1 rows=1"},
		check: func(t *testing.T, conn *MySQLConn, f map[string]int) {
			if !conn.MariaDB || conn.Version != "10.11.18-MariaDB-0+deb12u1" || conn.Messages[2].Message != "mysql_native_password" {
				t.Errorf("MariaDB %v, Version %q, auth switch %q", conn.MariaDB, conn.Version, conn.Messages[2].Message)
			}
		},
	},
	{
		name: "local-infile",
		build: func(t testing.TB, c *myConv, f map[string]int) {
			c.login(tcapSrv, tcapCli|0x80)
			c.send(true, myPkts(0, comQueryPayload("LOAD DATA LOCAL INFILE '/tmp/t.csv' INTO TABLE lab.t1")))
			c.send(false, myPkts(1, append([]byte{0xfb}, "/tmp/t.csv"...)))
			c.send(true, myPkts(2, []byte("1,10\n2,20\n"), []byte("3,30\n"), nil))
			c.send(false, myPkts(5, okPayload(3, 2)))
		},
		want: []string{"s greeting", "c login", "s auth_more_data", "s ok",
			`c command COM_QUERY "LOAD DATA LOCAL INFILE '/tmp/t.csv' INTO TABLE lab.t1"`, "s local_infile", "c local_infile_data", "s ok"},
		tsharkDiffers: "tshark takes each packet of the file for a command",
	},
	{
		name: "query-attributes",
		build: func(t testing.TB, c *myConv, f map[string]int) {
			c.login(tcapSrv, tcapCli|myCapQueryAttributes)
			// No attributes, as libmysqlclient sends: count 0, set count 1.
			c.send(true, myPkts(0, append([]byte{comQuery, 0, 1}, "SELECT 1"...)))
			c.send(false, resultSet(1, true, 2, []string{"1"}, [][]string{{"1"}}))
			// One string attribute.
			q := []byte{comQuery, 1, 1, 0x00, 1, 0xfe, 0x00}
			q = lenencStr(q, "trace")
			q = lenencStr(q, "abc")
			q = append(q, "SELECT 2"...)
			c.send(true, myPkts(0, q))
			c.send(false, resultSet(1, true, 2, []string{"2"}, [][]string{{"2"}}))
		},
		want: []string{"s greeting", "c login", "s auth_more_data", "s ok",
			`c command COM_QUERY "SELECT 1"`, "s result_set cols=1 rows=1",
			`c command COM_QUERY "SELECT 2"`, "s result_set cols=1 rows=1"},
	},
	{
		name: "other-port",
		port: 13306,
		build: func(t testing.TB, c *myConv, f map[string]int) {
			c.login(tcapSrv, tcapCli)
			c.send(true, myPkts(0, comQueryPayload("SELECT 1")))
			c.send(false, resultSet(1, true, 2, []string{"1"}, [][]string{{"1"}}))
		},
		want: []string{"s greeting", "c login", "s auth_more_data", "s ok",
			`c command COM_QUERY "SELECT 1"`, "s result_set cols=1 rows=1"},
	},
	{
		name: "not-mysql",
		port: 8080,
		build: func(t testing.TB, c *myConv, f map[string]int) {
			c.send(true, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
			c.send(false, []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
		},
		absent: true,
	},
	{
		name: "mid-connection",
		build: func(t testing.TB, c *myConv, f map[string]int) {
			c.frames = nil // the capture starts after the handshake and the greeting
			f["first"] = c.send(true, myPkts(0, comQueryPayload("SELECT 1")))
			c.send(false, resultSet(1, true, 2, []string{"1"}, [][]string{{"1"}}))
		},
		check: func(t *testing.T, conn *MySQLConn, f map[string]int) {
			want := fmt.Sprintf("client→server: frame %d: the client spoke first", f["first"])
			if !strings.HasPrefix(conn.Lost, want) {
				t.Errorf("Lost %q, want it to start with %q", conn.Lost, want)
			}
		},
		tsharkDiffers: "tshark decodes from wherever the capture starts; the decoder does not guess where packets begin",
	},
}

func TestMySQLSynthetic(t *testing.T) {
	tshark, _ := exec.LookPath("tshark")
	dir := t.TempDir()
	for _, tc := range mysqlCases {
		t.Run(tc.name, func(t *testing.T) {
			port := tc.port
			if port == 0 {
				port = 3306
			}
			c := newMyConv(port)
			c.handshake()
			f := map[string]int{}
			tc.build(t, c, f)
			path := filepath.Join(dir, tc.name+".pcap")
			c.write(t, path)
			a, err := Analyze(path)
			if err != nil {
				t.Fatal(err)
			}
			if tc.absent {
				if len(a.MySQL) != 0 {
					t.Fatalf("listed: %+v", a.MySQL[0])
				}
				return
			}
			if len(a.MySQL) != 1 {
				t.Fatalf("%d MySQL connections, want 1", len(a.MySQL))
			}
			conn := a.MySQL[0]
			if conn.Server != c.server || conn.Client != c.client {
				t.Errorf("client %s server %s, want %s %s", conn.Client, conn.Server, c.client, c.server)
			}
			if got := summaries(conn); !slices.Equal(got, tc.want) {
				t.Errorf("messages:\n got %q\nwant %q", got, tc.want)
			}
			checkMessages(t, conn)
			if tc.check != nil {
				tc.check(t, conn, f)
			}
			if tshark == "" {
				t.Log("tshark (the oracle) is not in PATH: not compared with it")
				return
			}
			want, pdus := tsharkKeys(t, tshark, path, []uint16{port})
			for _, d := range append(keyDiff(want, decoderKeys(a.MySQL)), endsOutsidePDUs(a.MySQL, pdus)...) {
				if tc.tsharkDiffers != "" {
					t.Logf("known difference (%s): %s", tc.tsharkDiffers, d)
				} else {
					t.Error(d)
				}
			}
		})
	}
}

// checkMessages verifies what holds for any decoding.
func checkMessages(t testing.TB, conn *MySQLConn) {
	t.Helper()
	for i, m := range conn.Messages {
		if m.Index != i || m.Request >= i || m.Request < -1 || m.Frame < m.FirstFrame || m.Len < 0 ||
			len(m.SQL) > mySQLMax || (m.FromClient && m.Request != -1) {
			t.Fatalf("message %d: %+v", i, m)
		}
		if m.Request >= 0 && conn.Messages[m.Request].FromClient == m.FromClient {
			t.Fatalf("message %d answers message %d of the same side", i, m.Request)
		}
	}
}

// TestMySQLOptionsPorts: without 3306 among the MySQL ports, a stream whose
// greeting was not captured is not listed; with it, it is, as lost.
func TestMySQLOptionsPorts(t *testing.T) {
	c := newMyConv(3306)
	c.send(true, myPkts(0, comQueryPayload("SELECT 1")))
	b := c.pcap(t)
	for _, tc := range []struct {
		ports  []uint16
		listed bool
	}{{nil, true}, {[]uint16{3306}, true}, {[]uint16{}, false}, {[]uint16{3307}, false}} {
		a, err := AnalyzeReaderWith(bytes.NewReader(b), Options{MySQLPorts: tc.ports})
		if err != nil {
			t.Fatal(err)
		}
		if got := len(a.MySQL) == 1 && a.MySQL[0].Lost != ""; got != tc.listed {
			t.Errorf("ports %v: listed as lost %v, want %v", tc.ports, got, tc.listed)
		}
	}
}

// TestMySQLBigResultBoundedMemory feeds a 20 MB result set through the
// decoder segment by segment: it must not be buffered.
func TestMySQLBigResultBoundedMemory(t *testing.T) {
	d := newMySQLDecoder(nil)
	cli := netip.MustParseAddrPort("10.89.0.10:40000")
	srv := netip.MustParseAddrPort("10.89.0.11:3306")
	var frame int
	cseq, sseq := uint32(1000), uint32(5000)
	send := func(fromClient bool, data []byte) {
		frame++
		p := Packet{Frame: frame, Src: srv, Dst: cli, Seq: sseq, Payload: len(data), ACK: true}
		if fromClient {
			p.Src, p.Dst, p.Seq = cli, srv, cseq
			cseq += uint32(len(data))
		} else {
			sseq += uint32(len(data))
		}
		d.feed(&p, data)
	}
	send(false, myPkts(0, greetingPayload("9.7.4-2", 1, tcapSrv)))
	send(true, myPkts(1, loginPayload(tcapCli, "labrun")))
	send(false, myPkts(2, okPayload(0, 2)))
	send(true, myPkts(0, comQueryPayload("SELECT pad FROM lab.big")))
	send(false, myPkts(1, []byte{1}, colDef("pad", 0xfc)))

	row := myPkts(0, textRow(strings.Repeat("r", 2000)))
	const rows = 10_000 // 20 MB
	seg := make([]byte, 0, 1448)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range rows {
		row[3] = byte(3 + i)
		for b := row; len(b) > 0; {
			n := min(cap(seg)-len(seg), len(b))
			seg = append(seg, b[:n]...)
			b = b[n:]
			if len(seg) == cap(seg) {
				send(false, seg)
				seg = seg[:0]
			}
		}
	}
	end := 3 + rows
	seg = append(seg, myPkts(byte(end), okEnd(2))...)
	send(false, seg)
	runtime.ReadMemStats(&after)
	conns := d.finish()
	if len(conns) != 1 {
		t.Fatalf("%d connections", len(conns))
	}
	rs := conns[0].Messages[len(conns[0].Messages)-1]
	if rs.Kind != "result_set" || rs.Rows != rows || rs.Len < 20_000_000 {
		t.Errorf("%s len %d", summary(rs), rs.Len)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("decoding %d bytes of rows allocated %d bytes", rs.Len, alloc)
	}
}
