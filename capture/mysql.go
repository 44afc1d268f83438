package capture

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// This file decodes the MySQL client/server protocol (MySQL 4.1 and later,
// MariaDB too) from the TCP segments of a capture, in the same single pass
// as the TCP analysis. No maintained Go library decodes MySQL from packets,
// so it is written by hand from the protocol documentation
// (dev.mysql.com/doc/dev/mysql-server/latest/PAGE_PROTOCOL.html and
// mariadb.com/kb/en/clientserver-protocol), and tested against tshark's
// MySQL dissector as the oracle.
//
// Memory is bounded per direction: the decoder keeps a packet's header and
// its first myKeep bytes, skips the rest by length (a 20 MB result set is
// never buffered), and holds at most myMaxHeld bytes of segments that
// arrived after a gap. Result sets are summarised as one message, never one
// message per row.

// MySQLConn is one MySQL connection: one TCP stream whose server sent a
// greeting, or, for a stream to one of the MySQL ports (Options.MySQLPorts)
// whose start could not be decoded, the connection with Lost saying why.
type MySQLConn struct {
	// Stream is the connection's tcp.stream.
	Stream         int
	Client, Server netip.AddrPort
	// Version is the server version from the greeting, without the
	// "5.5.5-" prefix MariaDB puts in front of its own version.
	Version string
	// ConnID is the thread (connection) id from the greeting, what
	// CONNECTION_ID() returns and KILL takes.
	ConnID uint32
	// MariaDB: the server is MariaDB (it does not set CLIENT_MYSQL in the
	// greeting).
	MariaDB bool
	// User is the user name of the login request.
	User string
	// Capabilities are the capability flags both sides set: the client's
	// login flags masked by the server's greeting flags.
	Capabilities uint32
	// TLS: the client asked for TLS in its login request (SSLRequest).
	// What follows is encrypted and not decoded; Undecoded says so.
	TLS bool
	// Compressed: CLIENT_COMPRESS (or zstd compression) was negotiated. After
	// the handshake both directions are compressed packets; zlib ones are
	// inflated (up to myMaxInflate bytes each) and decoded as usual, zstd
	// ones are not (Undecoded says so).
	Compressed bool
	// DeprecateEOF: CLIENT_DEPRECATE_EOF was negotiated, result sets end
	// with an OK packet instead of EOF packets.
	DeprecateEOF bool
	// Lost is non-empty when a gap in the capture stopped the decoding of a
	// direction: a segment never captured, a payload cut short by the
	// snaplen, a capture that starts after the greeting. It says where (the
	// frame) and why, one clause per direction. Without the client's
	// requests the server's replies cannot be decoded, so a loss on the
	// client's side stops both.
	Lost string
	// Undecoded is non-empty when the rest of the connection is readable
	// but not decoded: TLS, zstd compression, a compressed packet too large
	// to inflate. It says from which frame and why.
	Undecoded string
	// Messages are in the order their last byte arrived (in sequence
	// order, see MySQLMessage.Frame). Messages still in progress when the
	// capture ends come last, with Incomplete set.
	Messages []MySQLMessage
}

// MySQLMessage is one protocol message: one MySQL packet, or several when
// they form one unit (a result set, a prepared statement's definitions,
// the contents of a LOAD DATA LOCAL file, a packet of 16 MB or more).
//
// Kind is one of:
//
//	greeting          server's initial handshake packet
//	login             client's handshake response
//	ssl_request       client's SSLRequest: TLS follows, nothing more is decoded
//	auth_switch       server asks for another auth plugin (Message: its name)
//	auth_more_data    server's extra auth data (caching_sha2_password: Message
//	                  "fast auth success" or "full authentication required")
//	auth_next_factor  server asks for the next factor (multi-factor auth)
//	auth              client's auth data after auth_switch / auth_more_data
//	command           client command (Command, SQL, StmtID)
//	ok, err, eof      server's OK, ERR (Code, SQLState, Message), EOF packets
//	progress          MariaDB progress report (an ERR packet with code 65535)
//	result_set        a whole result set: column count, definitions, rows and
//	                  the final EOF/OK, or the ERR that cut it short (Code set)
//	stmt_prepare_ok   COM_STMT_PREPARE reply with its parameter and column
//	                  definitions (StmtID, Params, Columns)
//	local_infile      server asks for a LOAD DATA LOCAL file (Message: name)
//	local_infile_data client's file contents, up to its empty packet
//	statistics        COM_STATISTICS reply (Message: the text)
//	field_list        COM_FIELD_LIST reply (Columns)
//	binlog            COM_BINLOG_DUMP events up to EOF/ERR (Rows: events)
//	unknown           a packet that fits nowhere in the protocol state
type MySQLMessage struct {
	// Index is the message's position in MySQLConn.Messages.
	Index int
	// Frame holds the message's last byte: tshark shows the PDU there,
	// with reassembly on. When the bytes arrived out of order it is the
	// frame that made them contiguous.
	Frame int
	// FirstFrame holds its first byte.
	FirstFrame int
	// Time is Frame's time.
	Time       time.Time
	FromClient bool
	// Seq is the sequence id of the message's first packet.
	Seq  int
	Kind string
	// Command is MySQL's name of a client command: COM_QUERY,
	// COM_STMT_PREPARE, COM_STMT_EXECUTE, COM_QUIT, ... (COM_0xNN when
	// unknown).
	Command string
	// SQL is the text of COM_QUERY and COM_STMT_PREPARE, at most 256 bytes
	// (query attributes skipped).
	SQL string
	// StmtID is the statement of COM_STMT_EXECUTE, _CLOSE, _RESET, _FETCH,
	// _SEND_LONG_DATA and of stmt_prepare_ok.
	StmtID uint32
	// Code, SQLState and Message come from an ERR packet; Message also
	// carries the text of auth_switch, local_infile and statistics.
	Code              int
	SQLState, Message string
	// Columns and Rows summarise a result_set (Rows is the number of rows,
	// binary or text, or of binlog events); Params and Columns the
	// definitions of a stmt_prepare_ok.
	Columns, Rows, Params int
	// AffectedRows of an OK packet.
	AffectedRows uint64
	// Status is the server status of an OK or EOF, for a result set of its
	// final EOF/OK (0x0001 in transaction, 0x0002 autocommit, 0x0008 more
	// results exist, ...).
	Status uint16
	// Len is the payload size of all the message's packets, headers not
	// included.
	Len int
	// Request is, for a server message, the index of the client message it
	// answers; -1 for client messages and for server messages that answer
	// nothing (the greeting, an ERR sent before closing an idle connection).
	Request int
	// Incomplete: the message had not ended when the capture did (or when
	// a loss stopped the decoding); Frame is then the last frame seen.
	Incomplete bool
}

// Commands returns the client's commands, in order.
func (c *MySQLConn) Commands() []MySQLMessage {
	var out []MySQLMessage
	for _, m := range c.Messages {
		if m.FromClient && m.Kind == "command" {
			out = append(out, m)
		}
	}
	return out
}

// ReplyTo returns the server's first message answering client message i
// (an index into Messages), nil if there is none: the command expects no
// reply (COM_QUIT, COM_STMT_CLOSE), the reply was not captured, or the
// connection closed first.
func (c *MySQLConn) ReplyTo(i int) *MySQLMessage {
	for j := i + 1; j < len(c.Messages); j++ {
		if m := &c.Messages[j]; !m.FromClient && m.Request == i {
			return m
		}
	}
	return nil
}

// Options tune the analysis.
type Options struct {
	// MySQLPorts are MySQL server ports. A stream is MySQL when its server
	// sends a greeting first, on any port; a stream to one of these ports
	// whose start cannot be decoded (payload cut by the snaplen, capture
	// started mid-connection, greeting not captured) is listed too, with
	// Lost saying why, instead of silently missing. nil means 3306; an
	// empty non-nil slice means none.
	MySQLPorts []uint16
}

// AnalyzeWith is Analyze with options.
func AnalyzeWith(path string, opt Options) (*Analysis, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("analyze: %w", err)
	}
	defer f.Close()
	a, err := analyzeReader(f, opt)
	if err != nil {
		return nil, fmt.Errorf("analyze %s: %w", path, err)
	}
	return a, nil
}

// AnalyzeReaderWith is AnalyzeReader with options.
func AnalyzeReaderWith(r io.Reader, opt Options) (*Analysis, error) {
	return analyzeReader(r, opt)
}

// Limits that keep the decoder's memory bounded.
const (
	// myKeep is how much of a packet's payload is kept for parsing: enough
	// for any header and 256 bytes of SQL after query attributes.
	myKeep = 1024
	// myMaxHeld bounds the segments held per direction after a gap, waiting
	// for the gap to be filled; myMaxHeldSegs their number.
	myMaxHeld     = 512 << 10
	myMaxHeldSegs = 512
	// myMaxPending bounds the commands awaiting a reply (pipelining).
	myMaxPending = 64
	// myMaxInflate bounds the compressed payload buffered for inflating.
	myMaxInflate = 256 << 10
	// myMaxStmts bounds the prepared statements remembered per connection
	// (for the column count of COM_STMT_FETCH).
	myMaxStmts = 4096
	// mySQLMax is how much SQL text a message keeps.
	mySQLMax = 256
	// myMaxFirst is the largest first packet taken for a greeting or a
	// pre-handshake ERR; anything longer is not MySQL.
	myMaxFirst = 64 << 10
)

// Capability flags (include/mysql_com.h).
const (
	myCapLongPassword     = 1 << 0 // CLIENT_MYSQL since 8.0; MariaDB clears it
	myCapCompress         = 1 << 5
	myCapProtocol41       = 1 << 9
	myCapSSL              = 1 << 11
	myCapDeprecateEOF     = 1 << 24
	myCapOptionalMetadata = 1 << 25
	myCapZstd             = 1 << 26
	myCapQueryAttributes  = 1 << 27
	// MariaDB's extended capabilities, sent where MySQL has filler.
	mariaCapCacheMetadata = 1 << 4
)

// Server status flags.
const (
	myStatusMoreResults  = 0x0008
	myStatusCursorExists = 0x0040
)

// Commands (include/my_command.h, and MariaDB's).
const (
	comQuit             = 0x01
	comQuery            = 0x03
	comFieldList        = 0x04
	comStatistics       = 0x09
	comProcessInfo      = 0x0a
	comChangeUser       = 0x11
	comBinlogDump       = 0x12
	comStmtPrepare      = 0x16
	comStmtExecute      = 0x17
	comStmtSendLongData = 0x18
	comStmtClose        = 0x19
	comStmtReset        = 0x1a
	comStmtFetch        = 0x1c
	comBinlogDumpGTID   = 0x1e
	comStmtBulkExecute  = 0xfa // MariaDB
)

var myCommandNames = map[byte]string{
	0x00: "COM_SLEEP", 0x01: "COM_QUIT", 0x02: "COM_INIT_DB", 0x03: "COM_QUERY",
	0x04: "COM_FIELD_LIST", 0x05: "COM_CREATE_DB", 0x06: "COM_DROP_DB", 0x07: "COM_REFRESH",
	0x08: "COM_SHUTDOWN", 0x09: "COM_STATISTICS", 0x0a: "COM_PROCESS_INFO", 0x0b: "COM_CONNECT",
	0x0c: "COM_PROCESS_KILL", 0x0d: "COM_DEBUG", 0x0e: "COM_PING", 0x0f: "COM_TIME",
	0x10: "COM_DELAYED_INSERT", 0x11: "COM_CHANGE_USER", 0x12: "COM_BINLOG_DUMP", 0x13: "COM_TABLE_DUMP",
	0x14: "COM_CONNECT_OUT", 0x15: "COM_REGISTER_SLAVE", 0x16: "COM_STMT_PREPARE", 0x17: "COM_STMT_EXECUTE",
	0x18: "COM_STMT_SEND_LONG_DATA", 0x19: "COM_STMT_CLOSE", 0x1a: "COM_STMT_RESET", 0x1b: "COM_SET_OPTION",
	0x1c: "COM_STMT_FETCH", 0x1d: "COM_DAEMON", 0x1e: "COM_BINLOG_DUMP_GTID", 0x1f: "COM_RESET_CONNECTION",
	0x20: "COM_CLONE", 0x21: "COM_SUBSCRIBE_GROUP_REPLICATION_STREAM",
	0xfa: "COM_STMT_BULK_EXECUTE", 0xfe: "COM_MULTI",
}

// myCommandName is MySQL's name for a command byte.
func myCommandName(b byte) string {
	if n, ok := myCommandNames[b]; ok {
		return n
	}
	return fmt.Sprintf("COM_0x%02X", b)
}

// mysqlDecoder follows every TCP stream of a capture and decodes those that
// carry MySQL.
type mysqlDecoder struct {
	ports   map[uint16]bool
	streams map[int]*myStream
}

func newMySQLDecoder(ports []uint16) *mysqlDecoder {
	if ports == nil {
		ports = []uint16{3306}
	}
	d := &mysqlDecoder{ports: map[uint16]bool{}, streams: map[int]*myStream{}}
	for _, p := range ports {
		d.ports[p] = true
	}
	return d
}

type myStreamState int

const (
	stUnknown myStreamState = iota // no payload decoded yet
	stMySQL
	stIgnored // not MySQL: segments are dropped
)

type myPhase int

const (
	phGreeting myPhase = iota // waiting for the server's greeting
	phLogin                   // waiting for the client's login request
	phAuth                    // authentication exchange
	phCommand                 // command phase
	phClosed                  // authentication failed or the server refused
	phDead                    // the start was not decoded: nothing more is
)

// myStream is one TCP stream.
type myStream struct {
	d  *mysqlDecoder
	id int
	// ends[0] sent the first segment seen; dirs[i] is the direction from
	// ends[i].
	ends    [2]netip.AddrPort
	dirs    [2]myDir
	synFrom int // the end that sent the first SYN, -1 if none seen
	state   myStreamState
	// first is the end whose payload came first, -1 before any.
	first  int
	server int
	conn   *MySQLConn
	phase  myPhase
	// srvCaps and caps: the server's capabilities and the negotiated ones;
	// maria the negotiated MariaDB extended capabilities.
	srvCaps, caps   uint32
	srvMaria, maria uint32
	lastClient      int // index of the client's last handshake message
	queue           []*myExchange
	stmtCols        map[uint32]int
	lost, undecoded []string
}

// myDir is one direction of a stream: sequence-number reassembly, then the
// MySQL packet framing (compressed or not).
type myDir struct {
	started bool
	next    uint32 // next sequence number expected
	base    uint32 // sequence number of the first payload byte, for messages
	noSYN   bool   // the direction's SYN was not seen
	held    []myHeld
	heldLen int
	done    bool // nothing more is decoded in this direction
	sawData bool
	// ack is the last acknowledgement number this direction sent.
	ack    uint32
	ackSet bool
	fr     myFramer
	comp   *myCompressed
}

// myHeld is a segment that arrived after a gap, waiting for it to fill.
type myHeld struct {
	seq   uint32
	n     int    // payload length the headers state
	data  []byte // the captured bytes (a copy)
	frame int
}

// myPacket is one MySQL packet (or a run of packets of 16 MB - 1 and the one
// that ends it), with the first myKeep bytes of its payload.
type myPacket struct {
	seq         byte
	n           int
	body        []byte
	first, last int
	lastTime    time.Time
}

// myFramer cuts a byte stream into MySQL packets.
type myFramer struct {
	hdr  [4]byte
	hn   int // header bytes read of the current packet
	left int // payload bytes still to come
	cur  int // length field of the current packet
	cont bool
	pkt  myPacket
}

// feed consumes b up to the end of the current header or packet; it
// returns the bytes used and the packet if one ended.
func (f *myFramer) feed(b []byte, frame int, t time.Time) (int, *myPacket) {
	used := 0
	if f.hn < 4 {
		if f.hn == 0 && !f.cont {
			f.pkt = myPacket{body: f.pkt.body[:0], first: frame}
		}
		n := copy(f.hdr[f.hn:], b)
		f.hn += n
		used = n
		if f.hn < 4 {
			return used, nil
		}
		f.cur = int(f.hdr[0]) | int(f.hdr[1])<<8 | int(f.hdr[2])<<16
		if !f.cont {
			f.pkt.seq = f.hdr[3]
		}
		f.left = f.cur
		f.pkt.n += f.cur
		if f.cur > 0 {
			return used, nil
		}
	}
	take := min(f.left, len(b)-used)
	if room := myKeep - len(f.pkt.body); room > 0 {
		if f.pkt.body == nil {
			f.pkt.body = make([]byte, 0, myKeep)
		}
		f.pkt.body = append(f.pkt.body, b[used:used+min(take, room)]...)
	}
	f.left -= take
	used += take
	if f.left > 0 {
		return used, nil
	}
	f.hn = 0
	if f.cur == 0xffffff {
		// A payload of 16 MB or more continues in the next packet.
		f.cont = true
		return used, nil
	}
	f.cont = false
	f.pkt.last = frame
	f.pkt.lastTime = t
	return used, &f.pkt
}

// busy reports whether the framer is inside a packet.
func (f *myFramer) busy() bool { return f.hn > 0 || f.cont }

// myCompressed reads the compressed protocol's packets: a 7-byte header
// (compressed length, sequence id, uncompressed length) and a payload that
// is zlib data, or the packets themselves when the uncompressed length is 0.
type myCompressed struct {
	hdr    [7]byte
	hn     int
	left   int
	clen   int
	ulen   int
	first  int
	zbuf   []byte
	tooBig bool
}

// feed is called for each TCP segment with payload, in file order.
// payload holds the captured bytes (fewer than p.Payload when the snaplen
// cut the frame).
func (d *mysqlDecoder) feed(p *Packet, payload []byte) {
	if p.Payload == 0 && !p.SYN {
		return
	}
	s := d.streams[p.Stream]
	if s == nil {
		s = &myStream{d: d, id: p.Stream, ends: [2]netip.AddrPort{p.Src, p.Dst}, synFrom: -1, first: -1, server: -1}
		d.streams[p.Stream] = s
	}
	if s.state == stIgnored {
		return
	}
	di := 0
	if p.Src != s.ends[0] {
		di = 1
	}
	if p.ACK {
		s.dirs[di].ack, s.dirs[di].ackSet = p.Ack, true
	}
	seq := p.Seq
	if p.SYN {
		if s.synFrom < 0 && !p.ACK {
			s.synFrom = di
		}
		dir := &s.dirs[di]
		if !dir.started {
			dir.started, dir.next, dir.base = true, p.Seq+1, p.Seq+1
		}
		seq++ // data on a SYN (TCP Fast Open) starts after it
	}
	if p.Payload == 0 {
		return
	}
	if len(payload) > p.Payload {
		payload = payload[:p.Payload] // Ethernet padding
	}
	s.segment(di, seq, p.Payload, payload, p.Frame, p.Time)
}

func seqAfter(a, b uint32) bool { return int32(a-b) > 0 }

// segment reassembles by sequence number: bytes already consumed are
// dropped, bytes after a gap are held until the gap fills.
func (s *myStream) segment(di int, seq uint32, n int, data []byte, frame int, t time.Time) {
	dir := &s.dirs[di]
	if dir.done || s.state == stIgnored {
		return
	}
	if !dir.started {
		dir.started, dir.next, dir.base, dir.noSYN = true, seq, seq, true
	}
	if !seqAfter(seq+uint32(n), dir.next) {
		return // a retransmission, or a keepalive's byte
	}
	if seqAfter(seq, dir.next) {
		s.hold(di, seq, n, data, frame)
		return
	}
	s.take(di, seq, n, data, frame, t)
	// The segment may have filled a gap: deliver what was held after it,
	// as of this frame, the one that made it contiguous.
	for !dir.done && len(dir.held) > 0 {
		i := slices.IndexFunc(dir.held, func(h myHeld) bool { return !seqAfter(h.seq, dir.next) })
		if i < 0 {
			break
		}
		h := dir.held[i]
		dir.held = slices.Delete(dir.held, i, i+1)
		dir.heldLen -= len(h.data)
		if seqAfter(h.seq+uint32(h.n), dir.next) {
			s.take(di, h.seq, h.n, h.data, frame, t)
		}
	}
}

// take delivers the part of a segment at or after the next expected
// sequence number.
func (s *myStream) take(di int, seq uint32, n int, data []byte, frame int, t time.Time) {
	dir := &s.dirs[di]
	skip := int(dir.next - seq)
	if len(data) < n {
		if skip < len(data) {
			s.deliver(di, data[skip:], frame, t)
		}
		s.lose(di, frame, fmt.Sprintf("payload cut to %d of %d bytes by the capture's snaplen", len(data), n))
		return
	}
	// next moves after the delivery: what the bytes trigger (the check of
	// a client speaking first) sees the direction as it was before them.
	s.deliver(di, data[skip:], frame, t)
	dir.next = seq + uint32(n)
}

// hold keeps a segment that arrived after a gap, within bounds.
func (s *myStream) hold(di int, seq uint32, n int, data []byte, frame int) {
	dir := &s.dirs[di]
	for _, h := range dir.held {
		if h.seq == seq && h.n >= n && len(h.data) >= len(data) {
			return // a retransmission of a segment already held
		}
	}
	if dir.heldLen+len(data) > myMaxHeld || len(dir.held) >= myMaxHeldSegs {
		h := s.lowestHeld(di, myHeld{seq: seq, frame: frame})
		s.lose(di, h.frame, fmt.Sprintf("%d bytes before it were not captured (relative seq %d), and more than %d KiB arrived after the gap without filling it",
			h.seq-dir.next, dir.next-dir.base, myMaxHeld>>10))
		return
	}
	dir.held = append(dir.held, myHeld{seq: seq, n: n, data: append([]byte(nil), data...), frame: frame})
	dir.heldLen += len(data)
}

// lowestHeld is the held segment right after the gap (or h).
func (s *myStream) lowestHeld(di int, h myHeld) myHeld {
	for _, x := range s.dirs[di].held {
		if seqAfter(h.seq, x.seq) {
			h = x
		}
	}
	return h
}

// deliver passes in-sequence bytes to the MySQL framing.
func (s *myStream) deliver(di int, b []byte, frame int, t time.Time) {
	dir := &s.dirs[di]
	dir.sawData = true
	if s.state == stUnknown {
		if s.first < 0 {
			s.first = di
		} else if s.first != di {
			// The server speaks first in MySQL, and nobody answers before
			// its greeting is complete.
			s.reject(s.first, frame, "both sides sent data before a complete greeting")
			return
		}
	}
	for len(b) > 0 && !dir.done && s.state != stIgnored {
		if dir.comp != nil {
			b = b[s.compFeed(di, b, frame, t):]
			continue
		}
		n, pk := dir.fr.feed(b, frame, t)
		b = b[n:]
		s.framed(di, pk, frame)
	}
}

// framed handles what the framer produced: a first header to check before
// waiting for a whole packet, or a packet.
func (s *myStream) framed(di int, pk *myPacket, frame int) {
	dir := &s.dirs[di]
	if s.state == stUnknown && pk == nil && dir.fr.hn == 4 && !dir.fr.cont {
		if dir.fr.hdr[3] != 0 || dir.fr.cur == 0 || dir.fr.cur > myMaxFirst {
			s.reject(di, frame, fmt.Sprintf("the first packet (sequence id %d, %d bytes) is not a greeting", dir.fr.hdr[3], dir.fr.cur))
		}
		return
	}
	if pk != nil {
		s.packet(di, pk)
	}
}

// compFeed reads compressed packets; it returns the bytes used.
func (s *myStream) compFeed(di int, b []byte, frame int, t time.Time) int {
	dir := &s.dirs[di]
	c := dir.comp
	used := 0
	if c.hn < 7 {
		if c.hn == 0 {
			c.first = frame
		}
		n := copy(c.hdr[c.hn:], b)
		c.hn += n
		used = n
		if c.hn < 7 {
			return used
		}
		c.clen = int(c.hdr[0]) | int(c.hdr[1])<<8 | int(c.hdr[2])<<16
		c.ulen = int(c.hdr[4]) | int(c.hdr[5])<<8 | int(c.hdr[6])<<16
		c.left, c.zbuf, c.tooBig = c.clen, c.zbuf[:0], false
		if c.clen == 0 {
			c.hn = 0
		}
		return used
	}
	take := min(c.left, len(b))
	chunk := b[:take]
	c.left -= take
	used = take
	if c.ulen == 0 {
		// Stored as is: the payload is the packet stream itself.
		s.inner(di, chunk, frame, t)
	} else if !c.tooBig {
		if len(c.zbuf)+len(chunk) > myMaxInflate {
			c.tooBig, c.zbuf = true, nil
		} else {
			c.zbuf = append(c.zbuf, chunk...)
		}
	}
	if c.left == 0 {
		c.hn = 0
		if c.ulen > 0 && !dir.done {
			s.inflate(di, frame, t)
		}
	}
	return used
}

// inner feeds bytes of the uncompressed packet stream to the framer.
func (s *myStream) inner(di int, b []byte, frame int, t time.Time) {
	dir := &s.dirs[di]
	for len(b) > 0 && !dir.done {
		n, pk := dir.fr.feed(b, frame, t)
		b = b[n:]
		s.framed(di, pk, frame)
	}
}

// inflate decompresses one compressed packet into the packet stream,
// streaming its output in small chunks.
func (s *myStream) inflate(di int, frame int, t time.Time) {
	c := s.dirs[di].comp
	switch {
	case c.tooBig:
		s.stopDir(di, frame, fmt.Sprintf("a compressed packet of %d bytes is larger than the %d KiB the decoder inflates", c.clen, myMaxInflate>>10))
		return
	case bytes.HasPrefix(c.zbuf, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		s.stopDir(di, frame, "zstd-compressed packets are not decoded")
		return
	}
	zr, err := zlib.NewReader(bytes.NewReader(c.zbuf))
	if err != nil {
		s.stopDir(di, frame, fmt.Sprintf("a compressed packet does not inflate: %v", err))
		return
	}
	var buf [4096]byte
	total := 0
	for total < c.ulen && !s.dirs[di].done {
		n, err := zr.Read(buf[:min(len(buf), c.ulen-total)])
		total += n
		s.inner(di, buf[:n], frame, t)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			s.stopDir(di, frame, fmt.Sprintf("a compressed packet does not inflate: %v", err))
			return
		}
	}
	if total != c.ulen && !s.dirs[di].done {
		s.stopDir(di, frame, fmt.Sprintf("a compressed packet inflates to %d bytes, its header says %d", total, c.ulen))
	}
}

// dirName names a direction for Lost and Undecoded.
func (s *myStream) dirName(di int) string {
	switch {
	case s.server < 0:
		return fmt.Sprintf("%s→%s", s.ends[di], s.ends[1-di])
	case di == s.server:
		return "server→client"
	default:
		return "client→server"
	}
}

// lose records a gap that stops a direction.
func (s *myStream) lose(di int, frame int, why string) {
	s.halt(di, frame, why, true)
}

// stopDir stops a direction that is readable but not decoded.
func (s *myStream) stopDir(di int, frame int, why string) {
	s.halt(di, frame, why, false)
}

func (s *myStream) halt(di int, frame int, why string, lost bool) {
	dir := &s.dirs[di]
	if dir.done {
		return
	}
	dir.done, dir.held, dir.heldLen, dir.comp = true, nil, 0, nil
	if s.state == stUnknown {
		srv := s.portServer()
		if srv < 0 {
			s.ignore()
			return
		}
		s.adopt(srv)
	}
	if s.state != stMySQL {
		return
	}
	note := fmt.Sprintf("%s: frame %d: %s", s.dirName(di), frame, why)
	if di != s.server && s.phase != phDead {
		if other := &s.dirs[s.server]; !other.done {
			other.done, other.held, other.heldLen = true, nil, 0
			note += " (the server's side is not decoded past it either: replies need their requests)"
		}
	}
	if lost {
		s.lost = append(s.lost, note)
	} else {
		s.undecoded = append(s.undecoded, note)
	}
}

// portServer is the end on a MySQL port, -1 if none: when both are, the one
// that did not send the SYN.
func (s *myStream) portServer() int {
	a, b := s.d.ports[s.ends[0].Port()], s.d.ports[s.ends[1].Port()]
	switch {
	case a && b:
		if s.synFrom == 0 {
			return 1
		}
		return 0
	case a:
		return 0
	case b:
		return 1
	}
	return -1
}

// ignore drops a stream that is not MySQL.
func (s *myStream) ignore() {
	s.state = stIgnored
	s.dirs = [2]myDir{}
	s.queue = nil
}

// adopt lists a stream to a MySQL port whose start was not decoded: nothing
// more is decoded, but later gaps are still reported.
func (s *myStream) adopt(server int) {
	s.state = stMySQL
	s.server = server
	s.conn = s.newConn()
	s.phase = phDead
}

func (s *myStream) newConn() *MySQLConn {
	return &MySQLConn{Stream: s.id, Client: s.ends[1-s.server], Server: s.ends[s.server]}
}

// reject handles a stream whose first packet (from end di) is not a
// greeting: not MySQL, unless it goes to a MySQL port and its start was
// evidently not captured.
func (s *myStream) reject(di int, frame int, why string) {
	srv := s.portServer()
	switch {
	case srv < 0:
		s.ignore()
	case di != srv:
		// The client spoke first. Either the server's greeting was not
		// captured (the client acknowledges server bytes never seen, or
		// nothing of the server was seen), or this is not MySQL.
		if sd, cd := &s.dirs[srv], &s.dirs[di]; sd.started && !(cd.ackSet && seqAfter(cd.ack, sd.next)) {
			s.ignore()
			return
		}
		s.adopt(srv)
		s.lost = append(s.lost, fmt.Sprintf("%s: frame %d: the client spoke first: the server's greeting was not captured", s.dirName(di), frame))
	case s.dirs[di].noSYN:
		s.adopt(srv)
		s.lost = append(s.lost, fmt.Sprintf("%s: frame %d: the capture starts mid-connection (no SYN): %s", s.dirName(di), frame, why))
	default:
		// The server spoke first and it is not MySQL.
		s.ignore()
	}
}

// classify decides on the stream's first packet.
func (s *myStream) classify(di int, pk *myPacket) bool {
	_, okG := parseGreeting(pk.body)
	if pk.seq == 0 && (okG || isPreAuthErr(pk)) {
		s.state, s.server, s.phase = stMySQL, di, phGreeting
		s.conn = s.newConn()
		return true
	}
	s.reject(di, pk.last, "the first packet is not a greeting")
	return false
}

// packet handles one MySQL packet of direction di.
func (s *myStream) packet(di int, pk *myPacket) {
	if s.state == stUnknown && !s.classify(di, pk) {
		return
	}
	if s.state != stMySQL || s.phase == phDead {
		return
	}
	if di == s.server {
		s.serverPacket(pk)
	} else {
		s.clientPacket(pk)
	}
}

func (s *myStream) msg(pk *myPacket, fromClient bool, kind string) MySQLMessage {
	return MySQLMessage{Frame: pk.last, FirstFrame: pk.first, Time: pk.lastTime, FromClient: fromClient,
		Seq: int(pk.seq), Kind: kind, Len: pk.n, Request: -1}
}

func (s *myStream) emit(m MySQLMessage) int {
	m.Index = len(s.conn.Messages)
	s.conn.Messages = append(s.conn.Messages, m)
	return m.Index
}

// head is the first byte of a packet, 0 for an empty one (callers check
// pk.n).
func head(pk *myPacket) byte {
	if len(pk.body) == 0 {
		return 0
	}
	return pk.body[0]
}

// isEOF: an EOF packet is 0xfe and shorter than 9 bytes (a row can start
// with 0xfe only as an 8-byte length, so it is longer).
func isEOF(pk *myPacket) bool { return pk.n > 0 && pk.n < 9 && head(pk) == 0xfe }

// isEnd reports the packet that ends rows or definitions: EOF, or with
// CLIENT_DEPRECATE_EOF an OK packet with the 0xfe header, which is shorter
// than 16 MB (a row starting with 0xfe would need a 16 MB value).
func (s *myStream) isEnd(pk *myPacket) bool {
	if s.caps&myCapDeprecateEOF != 0 {
		return pk.n > 0 && pk.n < 0xffffff && head(pk) == 0xfe
	}
	return isEOF(pk)
}

// endStatus is the server status of an EOF, or of an OK packet ending
// rows.
func (s *myStream) endStatus(pk *myPacket) uint16 {
	if isEOF(pk) && s.caps&myCapDeprecateEOF == 0 {
		if len(pk.body) >= 5 {
			return binary.LittleEndian.Uint16(pk.body[3:5])
		}
		return 0
	}
	_, st := parseOK(pk.body)
	return st
}

func (s *myStream) serverPacket(pk *myPacket) {
	switch s.phase {
	case phGreeting:
		if g, ok := parseGreeting(pk.body); ok && pk.seq == 0 {
			s.greeting(pk, g)
			return
		}
		s.unsolicited(pk)
		if head(pk) == 0xff {
			s.phase = phClosed
		}
	case phAuth:
		m := s.msg(pk, false, "unknown")
		m.Request = s.lastClient
		b := pk.body
		switch {
		case pk.n == 0:
		case b[0] == 0x00:
			m.Kind = "ok"
			m.AffectedRows, m.Status = parseOK(b)
			s.emit(m)
			s.phase = phCommand
			s.startCompression(pk.last)
			return
		case b[0] == 0xff:
			parseErr(&m, b)
			s.phase = phClosed
		case b[0] == 0xfe:
			m.Kind = "auth_switch"
			m.Message = cstring(b[1:])
			if pk.n == 1 {
				m.Message = "mysql_old_password"
			}
		case b[0] == 0x01:
			m.Kind = "auth_more_data"
			if pk.n == 2 {
				switch b[1] {
				case 3:
					m.Message = "fast auth success"
				case 4:
					m.Message = "full authentication required"
				}
			}
		case b[0] == 0x02:
			m.Kind = "auth_next_factor"
			m.Message = cstring(b[1:])
		}
		s.emit(m)
	case phCommand:
		// Replies carry the request's sequence id + 1 onwards: a packet
		// with sequence id 0 answers nothing, like the ERR the server
		// sends before closing an idle connection, unless the ids of a
		// long reply wrapped to it.
		if len(s.queue) > 0 && (pk.seq != 0 || s.queue[0].expect == 0) {
			ex := s.queue[0]
			ex.expect = pk.seq + 1
			s.reply(ex, pk)
			return
		}
		s.unsolicited(pk)
	default: // phLogin: the server speaks before the login; phClosed
		s.unsolicited(pk)
		if head(pk) == 0xff && s.phase == phLogin {
			s.phase = phClosed
		}
	}
}

// unsolicited records a server packet that answers nothing.
func (s *myStream) unsolicited(pk *myPacket) {
	m := s.msg(pk, false, "unknown")
	s.generic(&m, pk)
	s.emit(m)
}

// generic names a packet by its header: OK, ERR, EOF or unknown.
func (s *myStream) generic(m *MySQLMessage, pk *myPacket) {
	switch {
	case pk.n == 0:
	case head(pk) == 0xff:
		parseErr(m, pk.body)
	case head(pk) == 0x00 && pk.n >= 3:
		m.Kind = "ok"
		m.AffectedRows, m.Status = parseOK(pk.body)
	case isEOF(pk):
		m.Kind = "eof"
		m.Status = s.endStatus(pk)
	}
}

type myGreeting struct {
	version string
	connID  uint32
	caps    uint32
	maria   uint32
	mariaDB bool
}

// parseGreeting parses a protocol 10 handshake; ok requires the protocol
// byte, a printable version and the thread id.
func parseGreeting(b []byte) (myGreeting, bool) {
	var g myGreeting
	if len(b) < 1 || b[0] != 10 {
		return g, false
	}
	nul := bytes.IndexByte(b[1:], 0)
	if nul < 1 || nul > 255 {
		return g, false
	}
	for _, c := range b[1 : 1+nul] {
		if c < 0x20 || c > 0x7e {
			return g, false
		}
	}
	g.version = string(b[1 : 1+nul])
	off := 1 + nul + 1
	if len(b) < off+4 {
		return g, false
	}
	g.connID = binary.LittleEndian.Uint32(b[off:])
	off += 4 + 8 + 1 // thread id, auth-plugin-data-part-1, filler
	if len(b) >= off+2 {
		g.caps = uint32(binary.LittleEndian.Uint16(b[off:]))
	}
	off += 2
	if len(b) >= off+5 {
		g.caps |= uint32(binary.LittleEndian.Uint16(b[off+3:])) << 16
	}
	off += 1 + 2 + 2 + 1 // character set, status, upper capabilities, auth data length
	g.mariaDB = strings.HasPrefix(g.version, "5.5.5-") || (len(b) > 1+nul+4+8+1+2 && g.caps&myCapLongPassword == 0)
	if g.mariaDB {
		g.version = strings.TrimPrefix(g.version, "5.5.5-")
		// MariaDB puts its extended capabilities in the last 4 of the 10
		// reserved bytes.
		if len(b) >= off+10 {
			g.maria = binary.LittleEndian.Uint32(b[off+6:])
		}
	}
	return g, true
}

// isPreAuthErr: a server may refuse a connection with an ERR instead of a
// greeting ("Too many connections", "Host ... is not allowed"): a code and
// a printable message.
func isPreAuthErr(pk *myPacket) bool {
	b := pk.body
	if pk.n < 4 || pk.n > myKeep || len(b) != pk.n || b[0] != 0xff {
		return false
	}
	for _, c := range b[3:] {
		if c < 0x20 && c != '\n' && c != '\t' {
			return false
		}
	}
	return true
}

func (s *myStream) greeting(pk *myPacket, g myGreeting) {
	m := s.msg(pk, false, "greeting")
	s.conn.Version, s.conn.ConnID, s.conn.MariaDB = g.version, g.connID, g.mariaDB
	s.srvCaps, s.srvMaria = g.caps, g.maria
	s.emit(m)
	s.phase = phLogin
}

func (s *myStream) clientPacket(pk *myPacket) {
	switch s.phase {
	case phLogin:
		s.login(pk)
	case phAuth:
		s.lastClient = s.emit(s.msg(pk, true, "auth"))
	case phCommand, phClosed:
		if len(s.queue) > 0 {
			if ex := s.queue[0]; (ex.st == rsInfileData || ex.st == rsAuth) && pk.seq == ex.expect {
				ex.expect++
				s.clientData(ex, pk)
				return
			}
		}
		if pk.seq == 0 && pk.n > 0 {
			s.command(pk)
			return
		}
		s.emit(s.msg(pk, true, "unknown"))
	default: // the client speaks before the greeting
		s.emit(s.msg(pk, true, "unknown"))
	}
}

// login handles the handshake response (or the SSLRequest, its first 32
// bytes with CLIENT_SSL set).
func (s *myStream) login(pk *myPacket) {
	b := pk.body
	m := s.msg(pk, true, "login")
	var caps, maria uint32
	if len(b) >= 2 {
		caps = uint32(binary.LittleEndian.Uint16(b))
	}
	if caps&myCapProtocol41 != 0 {
		if len(b) >= 4 {
			caps = binary.LittleEndian.Uint32(b)
		}
		if len(b) >= 32 && caps&myCapLongPassword == 0 {
			maria = binary.LittleEndian.Uint32(b[28:])
		}
		if len(b) > 32 {
			s.conn.User = cstring(b[32:])
		}
	} else if len(b) > 5 {
		s.conn.User = cstring(b[5:])
	}
	s.caps = caps & s.srvCaps
	s.maria = maria & s.srvMaria
	s.conn.Capabilities = s.caps
	s.conn.DeprecateEOF = s.caps&myCapDeprecateEOF != 0
	s.conn.Compressed = s.caps&(myCapCompress|myCapZstd) != 0
	if caps&myCapSSL != 0 {
		m.Kind = "ssl_request"
		s.emit(m)
		s.conn.TLS = true
		s.undecoded = append(s.undecoded, fmt.Sprintf("frame %d: the client asked for TLS: the rest of the connection is encrypted", pk.last))
		for i := range s.dirs {
			s.dirs[i].done = true
			s.dirs[i].held, s.dirs[i].heldLen = nil, 0
		}
		return
	}
	s.lastClient = s.emit(m)
	s.phase = phAuth
}

// startCompression switches both directions to compressed packets after
// the handshake's OK: the OK itself is not compressed, and the client reads
// it before it compresses anything.
func (s *myStream) startCompression(frame int) {
	if !s.conn.Compressed {
		return
	}
	if s.caps&myCapCompress == 0 {
		// zstd only: the framing is the same, the payloads are not inflated.
		s.undecoded = append(s.undecoded, fmt.Sprintf("frame %d: zstd-compressed packets follow and are not decoded", frame))
	}
	for i := range s.dirs {
		s.dirs[i].comp = &myCompressed{}
		if s.dirs[i].fr.busy() {
			// Bytes of an uncompressed packet are pending: the framing is
			// lost either way.
			s.stopDir(i, frame, "a packet straddles the switch to compression")
		}
	}
	if s.caps&myCapCompress == 0 {
		for i := range s.dirs {
			s.dirs[i].done = true
		}
	}
}

// Reply states of a command.
type myReplyState int

const (
	rsFirst          myReplyState = iota // the first packet of a (next) result
	rsColumns                            // column definitions
	rsColumnsEOF                         // the EOF after them
	rsRows                               // rows up to EOF/OK/ERR
	rsPrepParams                         // COM_STMT_PREPARE: parameter definitions
	rsPrepParamsEOF                      //
	rsPrepColumns                        // column definitions
	rsPrepColumnsEOF                     //
	rsFetch                              // COM_STMT_FETCH: rows
	rsInfileData                         // the client sends a LOCAL INFILE
	rsInfileResult                       // the server's OK/ERR after it
	rsSimple                             // one OK/ERR/EOF
	rsStatistics                         // one string
	rsFieldList                          // column definitions up to EOF
	rsAuth                               // COM_CHANGE_USER's auth exchange
	rsBinlog                             // binlog events up to EOF/ERR
)

// myExchange is a command and the state of its reply.
type myExchange struct {
	req int // index of the command message
	cmd byte
	// expect is the sequence id of the exchange's next packet: ids count
	// on from the command's across both sides and wrap at 256.
	expect byte
	stmt   uint32
	st     myReplyState
	msg    MySQLMessage // the summarised message in progress
	active bool
	left   uint64 // definitions still to come
	cols   int    // COM_STMT_PREPARE's column count
}

// command handles a client packet with sequence id 0 in the command phase.
func (s *myStream) command(pk *myPacket) {
	b := pk.body
	op := b[0]
	m := s.msg(pk, true, "command")
	m.Command = myCommandName(op)
	switch op {
	case comQuery:
		m.SQL = s.querySQL(b[1:])
	case comStmtPrepare:
		m.SQL = sqlText(b[1:])
	case comStmtExecute, comStmtClose, comStmtReset, comStmtSendLongData, comStmtFetch, comStmtBulkExecute:
		if len(b) >= 5 {
			m.StmtID = binary.LittleEndian.Uint32(b[1:])
		}
	}
	ex := &myExchange{cmd: op, stmt: m.StmtID, st: rsSimple, expect: pk.seq + 1}
	ex.req = s.emit(m)
	switch op {
	case comQuit, comStmtClose, comStmtSendLongData:
		return // no reply
	case comQuery, comProcessInfo, comStmtExecute, comStmtBulkExecute, comStmtPrepare:
		ex.st = rsFirst
	case comStmtFetch:
		ex.st = rsFetch
	case comFieldList:
		ex.st = rsFieldList
	case comStatistics:
		ex.st = rsStatistics
	case comChangeUser:
		ex.st = rsAuth
	case comBinlogDump, comBinlogDumpGTID:
		ex.st = rsBinlog
	}
	if len(s.queue) >= myMaxPending {
		s.flush(s.queue[0])
		s.queue = slices.Delete(s.queue, 0, 1)
	}
	s.queue = append(s.queue, ex)
}

// querySQL is COM_QUERY's text, after the query attributes that precede it
// when CLIENT_QUERY_ATTRIBUTES is on.
func (s *myStream) querySQL(b []byte) string {
	if s.caps&myCapQueryAttributes == 0 {
		return sqlText(b)
	}
	n, l, ok := lenenc(b)
	if !ok {
		return ""
	}
	b = b[l:]
	if _, l, ok = lenenc(b); !ok { // parameter set count, always 1
		return ""
	}
	b = b[l:]
	if n > 0 {
		if n > uint64(len(b)) {
			return ""
		}
		nulls := int(n+7) / 8
		if len(b) < nulls+1 {
			return ""
		}
		bitmap, bind := b[:nulls], b[nulls]
		b = b[nulls+1:]
		types := make([]byte, 0, n)
		if bind == 1 {
			for range n {
				if len(b) < 2 {
					return ""
				}
				types = append(types, b[0])
				b = b[2:]
				v, l, ok := lenenc(b)
				if !ok || v > uint64(len(b)-l) {
					return ""
				}
				b = b[l+int(v):]
			}
		}
		for i, typ := range types {
			if bitmap[i/8]&(1<<(i%8)) != 0 {
				continue // NULL: no value
			}
			l, ok := myBinaryLen(typ, b)
			if !ok {
				return ""
			}
			b = b[l:]
		}
	}
	return sqlText(b)
}

// myBinaryLen is the length of a value of the binary protocol.
func myBinaryLen(typ byte, b []byte) (int, bool) {
	n := 0
	switch typ {
	case 0x06: // NULL
	case 0x01: // TINY
		n = 1
	case 0x02, 0x0d: // SHORT, YEAR
		n = 2
	case 0x03, 0x09, 0x04: // LONG, INT24, FLOAT
		n = 4
	case 0x08, 0x05: // LONGLONG, DOUBLE
		n = 8
	case 0x07, 0x0a, 0x0b, 0x0c: // TIMESTAMP, DATE, TIME, DATETIME
		if len(b) < 1 {
			return 0, false
		}
		n = 1 + int(b[0])
	default: // strings, decimals, blobs, JSON, ...
		v, l, ok := lenenc(b)
		if !ok || v > uint64(len(b)-l) {
			return 0, false
		}
		n = l + int(v)
	}
	return n, n <= len(b)
}

// reply handles a server packet answering the command at the queue's head.
func (s *myStream) reply(ex *myExchange, pk *myPacket) {
	h := head(pk)
	if ex.active && !ex.msg.FromClient {
		ex.msg.Len += pk.n
		ex.msg.Frame, ex.msg.Time = pk.last, pk.lastTime
	}
	switch ex.st {
	case rsFirst:
		s.firstReply(ex, pk)
	case rsColumns:
		if h == 0xff && ex.left > 0 && pk.n < 0xffffff && s.plausibleErr(pk) {
			s.endWithErr(ex, pk)
			return
		}
		if ex.left--; ex.left == 0 {
			ex.st = rsRows
			if s.caps&myCapDeprecateEOF == 0 {
				ex.st = rsColumnsEOF
			}
		}
	case rsColumnsEOF:
		switch {
		case isEOF(pk):
			// A cursor was opened: the rows come with COM_STMT_FETCH.
			if st := s.endStatus(pk); st&myStatusCursorExists != 0 {
				s.endResult(ex, st)
				return
			}
			ex.st = rsRows
		case h == 0xff:
			s.endWithErr(ex, pk)
		default: // no EOF where one was due: take it for a row
			ex.msg.Rows++
			ex.st = rsRows
		}
	case rsRows:
		s.rows(ex, pk)
	case rsFetch:
		if !ex.active {
			if h == 0xff {
				s.settle(ex, s.replyMsg(ex, pk), false)
				return
			}
			ex.msg = s.msg(pk, false, "result_set")
			ex.msg.Request, ex.msg.Columns, ex.active = ex.req, s.stmtCols[ex.stmt], true
		}
		s.rows(ex, pk)
	case rsPrepParams, rsPrepColumns:
		if h == 0xff && s.plausibleErr(pk) {
			s.endWithErr(ex, pk)
			return
		}
		if ex.left--; ex.left > 0 {
			return
		}
		switch {
		case s.caps&myCapDeprecateEOF == 0 && ex.st == rsPrepParams:
			ex.st = rsPrepParamsEOF
		case s.caps&myCapDeprecateEOF == 0:
			ex.st = rsPrepColumnsEOF
		case ex.st == rsPrepParams && ex.cols > 0:
			ex.st, ex.left = rsPrepColumns, uint64(ex.cols)
		default:
			s.endMsg(ex)
		}
	case rsPrepParamsEOF:
		if ex.cols > 0 {
			ex.st, ex.left = rsPrepColumns, uint64(ex.cols)
			return
		}
		s.endMsg(ex)
	case rsPrepColumnsEOF:
		s.endMsg(ex)
	case rsInfileData, rsInfileResult:
		// The server does not wait for the rest of a file it refuses.
		if ex.active {
			s.emit(ex.msg)
			ex.active = false
		}
		s.settle(ex, s.replyMsg(ex, pk), true)
	case rsStatistics:
		m := s.msg(pk, false, "statistics")
		m.Request = ex.req
		if h == 0xff {
			parseErr(&m, pk.body)
		} else {
			m.Message = text(pk.body, myKeep)
		}
		s.emit(m)
		s.done(ex)
	case rsFieldList:
		if !ex.active {
			if h == 0xff {
				s.settle(ex, s.replyMsg(ex, pk), false)
				return
			}
			ex.msg = s.msg(pk, false, "field_list")
			ex.msg.Request, ex.active = ex.req, true
		}
		switch {
		case s.isEnd(pk):
			ex.msg.Status = s.endStatus(pk)
			s.endMsg(ex)
		case h == 0xff:
			s.endWithErr(ex, pk)
		default:
			ex.msg.Columns++
		}
	case rsAuth:
		m := s.msg(pk, false, "unknown")
		m.Request = ex.req
		switch {
		case pk.n == 0:
		case h == 0xfe:
			m.Kind, m.Message = "auth_switch", cstring(pk.body[1:])
			s.emit(m)
			return
		case h == 0x01:
			m.Kind = "auth_more_data"
			s.emit(m)
			return
		default:
			s.generic(&m, pk)
		}
		s.emit(m)
		s.done(ex)
	case rsBinlog:
		if !ex.active {
			if h == 0xff || isEOF(pk) {
				s.settle(ex, s.replyMsg(ex, pk), false)
				return
			}
			ex.msg = s.msg(pk, false, "binlog")
			ex.msg.Request, ex.active = ex.req, true
		}
		switch {
		case h == 0xff:
			s.endWithErr(ex, pk)
		case isEOF(pk):
			s.endMsg(ex)
		default:
			ex.msg.Rows++
		}
	default: // rsSimple
		s.settle(ex, s.replyMsg(ex, pk), false)
	}
}

// firstReply handles the first packet of a result: OK, ERR, a LOCAL INFILE
// request, COM_STMT_PREPARE's OK, or a result set's column count.
func (s *myStream) firstReply(ex *myExchange, pk *myPacket) {
	b := pk.body
	h := head(pk)
	results := ex.cmd == comQuery || ex.cmd == comProcessInfo || ex.cmd == comStmtExecute || ex.cmd == comStmtBulkExecute
	switch {
	case pk.n == 0 || h == 0xff:
		s.settle(ex, s.replyMsg(ex, pk), results)
	case h == 0x00 && ex.cmd == comStmtPrepare:
		m := s.msg(pk, false, "stmt_prepare_ok")
		m.Request = ex.req
		follows := true
		if len(b) >= 9 {
			m.StmtID = binary.LittleEndian.Uint32(b[1:])
			m.Columns = int(binary.LittleEndian.Uint16(b[5:]))
			m.Params = int(binary.LittleEndian.Uint16(b[7:]))
		}
		if s.caps&myCapOptionalMetadata != 0 && len(b) >= 13 {
			follows = b[12] != 0
		}
		if len(s.stmtCols) >= myMaxStmts {
			clear(s.stmtCols)
		}
		if s.stmtCols == nil {
			s.stmtCols = map[uint32]int{}
		}
		s.stmtCols[m.StmtID] = m.Columns
		ex.msg, ex.active, ex.cols = m, true, m.Columns
		switch {
		case !follows:
			s.endMsg(ex)
		case m.Params > 0:
			ex.st, ex.left = rsPrepParams, uint64(m.Params)
		case m.Columns > 0:
			ex.st, ex.left = rsPrepColumns, uint64(m.Columns)
		default:
			s.endMsg(ex)
		}
	case h == 0x00 || isEOF(pk) || !results:
		s.settle(ex, s.replyMsg(ex, pk), results)
	case h == 0xfb:
		m := s.msg(pk, false, "local_infile")
		m.Request, m.Message = ex.req, text(b[1:], myKeep)
		s.emit(m)
		ex.st = rsInfileData
	default:
		n, l, ok := lenenc(b)
		if !ok || n == 0 {
			s.settle(ex, s.replyMsg(ex, pk), false)
			return
		}
		m := s.msg(pk, false, "result_set")
		m.Request, m.Columns = ex.req, int(min(n, 1<<31-1))
		// Optional metadata (MySQL's resultset_metadata, MariaDB's cached
		// metadata for EXECUTE) may leave the column definitions out.
		follows := true
		if s.caps&myCapOptionalMetadata != 0 && len(b) > l {
			follows = b[l] != 0
		} else if s.maria&mariaCapCacheMetadata != 0 && ex.cmd == comStmtExecute && len(b) > l {
			follows = b[l] != 0
		}
		ex.msg, ex.active = m, true
		ex.st, ex.left = rsColumns, n
		if !follows {
			ex.st = rsRows
		}
	}
}

// rows counts a result set's rows up to its end.
func (s *myStream) rows(ex *myExchange, pk *myPacket) {
	switch {
	case head(pk) == 0xff && pk.n < 0xffffff:
		s.endWithErr(ex, pk)
	case s.isEnd(pk):
		s.endResult(ex, s.endStatus(pk))
	default:
		ex.msg.Rows++
	}
}

// endResult ends a result set; more may follow.
func (s *myStream) endResult(ex *myExchange, status uint16) {
	ex.msg.Status = status
	s.emit(ex.msg)
	ex.active = false
	if status&myStatusMoreResults != 0 && ex.st != rsFetch {
		ex.st = rsFirst
		return
	}
	s.done(ex)
}

// endWithErr ends the summarised message with the ERR that cut it short.
func (s *myStream) endWithErr(ex *myExchange, pk *myPacket) {
	parseErr(&ex.msg, pk.body)
	s.endMsg(ex)
}

// endMsg emits the summarised message and ends the reply.
func (s *myStream) endMsg(ex *myExchange) {
	if ex.active {
		s.emit(ex.msg)
		ex.active = false
	}
	s.done(ex)
}

// replyMsg emits a one-packet reply named by its header.
func (s *myStream) replyMsg(ex *myExchange, pk *myPacket) MySQLMessage {
	m := s.msg(pk, false, "unknown")
	m.Request = ex.req
	s.generic(&m, pk)
	s.emit(m)
	return m
}

// settle ends the exchange after a one-packet reply m, unless m is a
// progress report (MariaDB sends them before the real reply) or, for a
// command with results, an OK announcing more results.
func (s *myStream) settle(ex *myExchange, m MySQLMessage, results bool) {
	switch {
	case m.Kind == "progress":
	case results && m.Kind == "ok" && m.Status&myStatusMoreResults != 0:
		ex.st = rsFirst
	default:
		s.done(ex)
	}
}

// plausibleErr tells an ERR packet from a definition or row that happens
// to start with 0xff: an error code, and a '#' SQL state when CLIENT_
// PROTOCOL_41 is on.
func (s *myStream) plausibleErr(pk *myPacket) bool {
	b := pk.body
	if len(b) < 3 {
		return false
	}
	if s.caps&myCapProtocol41 != 0 && len(b) >= 4 && b[3] != '#' {
		return binary.LittleEndian.Uint16(b[1:]) == 0xffff // MariaDB progress
	}
	return true
}

// clientData handles a client packet that continues an exchange: a LOCAL
// INFILE's contents, or COM_CHANGE_USER's auth data.
func (s *myStream) clientData(ex *myExchange, pk *myPacket) {
	if ex.st == rsAuth {
		s.emit(s.msg(pk, true, "auth"))
		return
	}
	if !ex.active {
		ex.msg = s.msg(pk, true, "local_infile_data")
		ex.msg.Len, ex.active = 0, true
	}
	ex.msg.Len += pk.n
	ex.msg.Frame, ex.msg.Time = pk.last, pk.lastTime
	if pk.n == 0 {
		s.emit(ex.msg)
		ex.active = false
		ex.st = rsInfileResult
	}
}

// done removes a finished exchange from the queue.
func (s *myStream) done(ex *myExchange) {
	if i := slices.Index(s.queue, ex); i >= 0 {
		s.queue = slices.Delete(s.queue, i, i+1)
	}
}

// flush emits a summarised message still in progress as incomplete.
func (s *myStream) flush(ex *myExchange) {
	if ex.active {
		ex.msg.Incomplete = true
		s.emit(ex.msg)
		ex.active = false
	}
}

// finish ends the decoding and returns the MySQL connections in stream
// order.
func (d *mysqlDecoder) finish() []*MySQLConn {
	ids := make([]int, 0, len(d.streams))
	for id := range d.streams {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []*MySQLConn
	for _, id := range ids {
		s := d.streams[id]
		if s.state == stIgnored {
			continue
		}
		// A gap still open at the end was never filled.
		order := []int{0, 1}
		if s.server == 1 {
			order = []int{1, 0}
		}
		for _, di := range order {
			dir := &s.dirs[di]
			if dir.done || len(dir.held) == 0 {
				continue
			}
			h := s.lowestHeld(di, dir.held[0])
			s.lose(di, h.frame, fmt.Sprintf("%d bytes before it were never captured (relative seq %d)", h.seq-dir.next, dir.next-dir.base))
		}
		if s.state == stUnknown {
			srv := s.portServer()
			if srv < 0 || (!s.dirs[0].sawData && !s.dirs[1].sawData) {
				continue
			}
			s.adopt(srv)
			s.lost = append(s.lost, "the capture ends inside the connection's first packet")
		}
		if s.state != stMySQL {
			continue
		}
		for _, ex := range s.queue {
			s.flush(ex)
		}
		s.conn.Lost = strings.Join(s.lost, "; ")
		s.conn.Undecoded = strings.Join(s.undecoded, "; ")
		out = append(out, s.conn)
	}
	return out
}

// lenenc reads a length-encoded integer; 0xfb (NULL) reads as 0.
func lenenc(b []byte) (uint64, int, bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	switch c := b[0]; {
	case c < 0xfb:
		return uint64(c), 1, true
	case c == 0xfb:
		return 0, 1, true
	case c == 0xfc && len(b) >= 3:
		return uint64(binary.LittleEndian.Uint16(b[1:])), 3, true
	case c == 0xfd && len(b) >= 4:
		return uint64(b[1]) | uint64(b[2])<<8 | uint64(b[3])<<16, 4, true
	case c == 0xfe && len(b) >= 9:
		return binary.LittleEndian.Uint64(b[1:]), 9, true
	}
	return 0, 0, false
}

// parseOK reads an OK packet's affected rows and status.
func parseOK(b []byte) (uint64, uint16) {
	if len(b) < 1 {
		return 0, 0
	}
	off := 1
	rows, l, ok := lenenc(b[off:])
	if !ok {
		return 0, 0
	}
	off += l
	if _, l, ok = lenenc(b[off:]); !ok {
		return rows, 0
	}
	off += l
	if len(b) < off+2 {
		return rows, 0
	}
	return rows, binary.LittleEndian.Uint16(b[off:])
}

// parseErr fills an ERR packet's code, SQL state and message into m.
func parseErr(m *MySQLMessage, b []byte) {
	if m.Kind == "unknown" || m.Kind == "" {
		m.Kind = "err"
	}
	if len(b) < 3 {
		return
	}
	m.Code = int(binary.LittleEndian.Uint16(b[1:]))
	if m.Code == 0xffff && m.Kind == "err" {
		m.Kind = "progress"
		return
	}
	rest := b[3:]
	if len(rest) >= 6 && rest[0] == '#' {
		m.SQLState = text(rest[1:6], 5)
		rest = rest[6:]
	}
	m.Message = text(rest, myKeep)
}

// cstring is the NUL-terminated string at the start of b.
func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return text(b, 256)
}

// sqlText is a statement's text, first mySQLMax bytes.
func sqlText(b []byte) string { return text(b, mySQLMax) }

// text is b as a valid UTF-8 string of at most max bytes.
func text(b []byte, max int) string {
	if len(b) > max {
		b = b[:max]
	}
	if utf8.Valid(b) {
		return string(b)
	}
	// A replacement character is longer than the byte it replaces: trim
	// whole runes to stay within max.
	t := strings.ToValidUTF8(string(b), "\uFFFD")
	for len(t) > max {
		_, n := utf8.DecodeLastRuneInString(t)
		t = t[:len(t)-n]
	}
	return t
}
