package client

import (
	"bufio"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/labrun/labrun/netem"
)

// Close modes of a burst's connections.
const (
	// CloseQuit sends COM_QUIT (the driver's Close), then waits for the
	// server to close before closing the socket: the server sends the
	// first FIN and holds TIME_WAIT, every time.
	CloseQuit = "quit"
	// CloseQuitNow is the driver's Close as it is, and what
	// libmysqlclient's mysql_close and PHP's mysqlnd do too: COM_QUIT,
	// then the socket is closed at once. Which side sends the first FIN is
	// a race: measured over veth on 2 CPUs, the server won it for 2 of 30
	// connections on MariaDB 10.11 and 13 of 30 on MySQL 9.7, and TIME_WAIT
	// was split the same way.
	CloseQuitNow = "quit-now"
	// CloseFIN closes the client's socket after the query without
	// COM_QUIT: the client sends the first FIN and, on MariaDB, holds
	// TIME_WAIT. MySQL 9.7 answers the FIN with an error packet (1158, "Got
	// an error reading communication packets"); the client's closed socket
	// resets on that data, so nobody holds TIME_WAIT.
	CloseFIN = "fin"
	// CloseRST sets SO_LINGER 0 and closes: the client resets the
	// connection and nobody holds TIME_WAIT.
	CloseRST = "rst"
	// CloseLong reuses long connections for every query instead of one
	// connection per query: at most Concurrency of them, opened when every
	// open one is busy, closed with COM_QUIT at the end of the burst.
	CloseLong = "long"
)

// CloseModes lists the close modes.
func CloseModes() []string { return []string{CloseQuit, CloseQuitNow, CloseFIN, CloseRST, CloseLong} }

// Defaults and limits of a burst.
const (
	// BurstMaxRate bounds BurstSpec.Rate.
	BurstMaxRate = 100000
	// DefaultBurstTimeout bounds one connection's life when
	// BurstSpec.Timeout is 0.
	DefaultBurstTimeout = 10 * time.Second
	// DefaultBurstSlack is BurstSpec.Slack when 0.
	DefaultBurstSlack = 5 * time.Millisecond
)

// ErrBurstSpec is returned for an invalid BurstSpec.
var ErrBurstSpec = errors.New("invalid burst")

// BurstSpec is a short-connection load: connections opened open-loop at
// Rate, each running Query once and closing as Close says.
type BurstSpec struct {
	// Rate is connection starts per second (at most BurstMaxRate). The
	// schedule is open-loop: start k is due k/Rate after the first,
	// whatever happened to the earlier ones.
	Rate float64
	// For bounds the schedule in time (0: Max/Rate).
	For time.Duration
	// Max bounds the schedule in count: at most Max slots, whether a slot
	// starts a connection or is skipped. Required.
	Max int
	// Concurrency bounds the connections in flight (0: Rate, one second's
	// worth). A slot due while Concurrency connections are in flight is
	// skipped and counted in BurstResult.Dropped, never queued.
	Concurrency int
	// Query runs once per connection ("SELECT 1" when empty).
	Query string
	// Database is the default database of the connections ("": none).
	Database string
	// Close is one of CloseModes (default CloseQuit).
	Close string
	// Sources are local addresses to bind, taken in turn (round robin);
	// they must exist in the client's namespace. The port stays the
	// kernel's choice at connect (IP_BIND_ADDRESS_NO_PORT). Empty: the
	// kernel chooses the address too.
	Sources []netip.Addr
	// ConnectTimeout bounds the TCP connect (0: only Timeout).
	ConnectTimeout time.Duration
	// Timeout bounds one connection from its start to its close, the wait
	// for the server's FIN included (0: DefaultBurstTimeout).
	Timeout time.Duration
	// Slack is how late a slot may start: a slot the generator reaches
	// later than that after its due time is skipped and counted in
	// BurstResult.Late, so that a stalled generator never catches up with
	// a burst. In any window of length W there are thus at most
	// (W+Slack)*Rate+1 starts, and start k is never before k/Rate.
	// 0: DefaultBurstSlack.
	Slack time.Duration
	// RecordsPath receives one JSON line per slot (BurstRecord); empty:
	// none.
	RecordsPath string
}

// BurstRecord is one line of the records file: one slot of the schedule.
type BurstRecord struct {
	Slot int `json:"slot"`
	// StartUS is when the slot started (or was skipped), in microseconds
	// after the burst's start.
	StartUS int64 `json:"start_us"`
	// Skipped is "late" or "concurrency" for a slot that started nothing.
	Skipped string `json:"skipped,omitempty"`
	Close   string `json:"close,omitempty"`
	// Local is the client's address and port ("" if none was chosen).
	Local string `json:"local,omitempty"`
	// ConnectUS is the TCP connect's duration from the slot's start
	// (socket, connect, SYN-ACK); -1 if the connect failed.
	ConnectUS int64 `json:"connect_us"`
	// SYNRetrans is how many times the SYN was retransmitted
	// (tcpi_total_retrans read when the connect completed).
	SYNRetrans int `json:"syn_retrans"`
	// HandshakeUS is the MySQL handshake and authentication; QueryUS the
	// query with its result; CloseUS the close (for CloseQuit, the wait for
	// the server's FIN). -1 for a phase not reached.
	HandshakeUS int64 `json:"handshake_us"`
	QueryUS     int64 `json:"query_us"`
	CloseUS     int64 `json:"close_us"`
	// Reused is true for a query on a long connection opened before.
	Reused    bool   `json:"reused,omitempty"`
	ErrorKind string `json:"error_kind,omitempty"`
	Error     string `json:"error,omitempty"`
}

// Latencies are percentiles of a set of durations (nearest rank).
type Latencies struct {
	N             int
	P50, P99, Max time.Duration
}

func (l Latencies) String() string {
	return fmt.Sprintf("n=%d p50=%s p99=%s max=%s", l.N, l.P50, l.P99, l.Max)
}

// BurstResult is a burst's aggregates; the per-connection detail is in the
// records file.
type BurstResult struct {
	Spec  BurstSpec
	Start time.Time
	// Elapsed runs from the first slot to the end of the last connection.
	Elapsed time.Duration
	// Slots is the number of schedule slots reached: Attempted + Dropped +
	// Late.
	Slots int
	// Attempted counts connection starts (for CloseLong, queries started).
	Attempted int
	// Dropped counts slots skipped because Concurrency connections were in
	// flight (dropped by the generator).
	Dropped int
	// Late counts slots skipped because the generator reached them more
	// than Slack after their due time.
	Late int
	// Connected counts TCP connects that succeeded (for CloseLong, the long
	// connections opened).
	Connected int
	// Completed counts connections that ran their query and closed without
	// error (for CloseLong, queries that succeeded).
	Completed int
	// SYNRetransmitted counts connections whose SYN was retransmitted.
	SYNRetransmitted int
	// Rate is the achieved rate of starts: (Attempted-1) over the time
	// from the first start to the last.
	Rate float64
	// Connect is the TCP connect's latency; Handshake MySQL's handshake
	// and authentication; Query the query's.
	Connect, Handshake, Query Latencies
	// Errors counts failed connections by kind: timeout, refused, reset,
	// canceled, eof (the server closed), addrnotavail (no local port),
	// "mysql N" (a server error), other.
	Errors map[string]int
	// Records is the records file (RecordsPath).
	Records string
}

// String summarizes the result on one line.
func (r *BurstResult) String() string {
	return fmt.Sprintf("%s %.0f/s asked, %.0f/s achieved: %d slots, %d attempted, %d dropped, %d late, %d connected, %d completed, %d SYN retransmitted, errors %v; connect %v; handshake %v; query %v",
		r.Spec.Close, r.Spec.Rate, r.Rate, r.Slots, r.Attempted, r.Dropped, r.Late, r.Connected, r.Completed,
		r.SYNRetransmitted, r.Errors, r.Connect, r.Handshake, r.Query)
}

func (s *BurstSpec) normalize() error {
	var probs []string
	if !(s.Rate > 0 && s.Rate <= BurstMaxRate) {
		probs = append(probs, fmt.Sprintf("rate %v: want (0, %d] connections per second", s.Rate, BurstMaxRate))
	}
	if s.Max <= 0 {
		probs = append(probs, fmt.Sprintf("max %d: want a positive bound on connections", s.Max))
	}
	if s.For < 0 || s.Concurrency < 0 || s.ConnectTimeout < 0 || s.Timeout < 0 || s.Slack < 0 {
		probs = append(probs, "negative for, concurrency, timeout or slack")
	}
	if s.Close == "" {
		s.Close = CloseQuit
	}
	if !slices.Contains(CloseModes(), s.Close) {
		probs = append(probs, fmt.Sprintf("close %q: want one of %v", s.Close, CloseModes()))
	}
	for _, a := range s.Sources {
		if !a.IsValid() || a.IsUnspecified() {
			probs = append(probs, fmt.Sprintf("source %q: want an address", a))
		}
	}
	if len(probs) > 0 {
		return fmt.Errorf("%w: %v", ErrBurstSpec, probs)
	}
	if s.Concurrency == 0 {
		s.Concurrency = int(math.Ceil(s.Rate))
	}
	if s.Query == "" {
		s.Query = "SELECT 1"
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultBurstTimeout
	}
	if s.Slack == 0 {
		s.Slack = DefaultBurstSlack
	}
	return nil
}

// Burst runs a short-connection load from namespace ns against t and
// returns its aggregates. It returns when the schedule is over (Max, For
// or ctx) and every connection has ended; a cancelled ctx also ends the
// connections in flight. The error is for a burst that could not run at
// all; failed connections are counted in the result.
func Burst(ctx context.Context, ns netns.NsHandle, t Target, spec BurstSpec) (*BurstResult, error) {
	if err := spec.normalize(); err != nil {
		return nil, err
	}
	for _, a := range spec.Sources {
		if a.Is4() != t.Addr.Addr().Is4() {
			return nil, fmt.Errorf("%w: source %s and target %s are of different families", ErrBurstSpec, a, t.Addr)
		}
	}
	f, err := newSocketFactory(ns, t.Addr.Addr().Is4())
	if err != nil {
		return nil, err
	}
	defer f.stop()
	d := &nsDialer{f: f, dst: t.Addr, sources: spec.Sources}
	return runBurst(ctx, t, spec, d.dial)
}

// dialFunc opens one TCP connection for slot; it returns the connection
// (nil on error), the local address if one was chosen, and how often the
// SYN was retransmitted.
type dialFunc func(ctx context.Context, slot int) (net.Conn, string, int, error)

// burst is one running burst.
type burst struct {
	spec      BurstSpec
	dial      dialFunc
	connector driver.Connector
	t0        time.Time

	inflight atomic.Int64
	wg       sync.WaitGroup

	mu      sync.Mutex
	res     BurstResult
	connect []time.Duration
	hand    []time.Duration
	query   []time.Duration
	first   time.Time
	last    time.Time
	rec     *bufio.Writer
	recBuf  []byte
	recErr  error

	// idle holds CloseLong's idle connections; opened counts them.
	idle   chan *longConn
	opened atomic.Int64
}

// runBurst is Burst with the dialing given: tests dial fakes.
func runBurst(ctx context.Context, t Target, spec BurstSpec, dial dialFunc) (*BurstResult, error) {
	if err := spec.normalize(); err != nil {
		return nil, err
	}
	b := &burst{spec: spec, dial: dial}
	b.res.Spec = spec
	b.res.Errors = map[string]int{}
	cfg := t.DSNConfig()
	cfg.DBName = spec.Database
	cfg.Logger = nopLogger{}
	cfg.CheckConnLiveness = false
	// The connection is dialed before Connect, by the burst, which times
	// it; the driver only takes it.
	cfg.DialFunc = func(ctx context.Context, _, _ string) (net.Conn, error) {
		if c, ok := ctx.Value(preDialed{}).(net.Conn); ok {
			return c, nil
		}
		return nil, errors.New("burst: no dialed connection")
	}
	var err error
	if b.connector, err = mysql.NewConnector(cfg); err != nil {
		return nil, fmt.Errorf("burst: %w", err)
	}
	if spec.RecordsPath != "" {
		f, err := os.Create(spec.RecordsPath)
		if err != nil {
			return nil, fmt.Errorf("burst records: %w", err)
		}
		defer f.Close()
		b.rec = bufio.NewWriterSize(f, 64<<10)
		b.res.Records = spec.RecordsPath
	}
	if spec.Close == CloseLong {
		b.idle = make(chan *longConn, spec.Concurrency)
	}

	b.t0 = time.Now()
	b.res.Start = b.t0
	b.schedule(ctx, func(slot int, at time.Time) {
		b.inflight.Add(1)
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer b.inflight.Add(-1)
			if spec.Close == CloseLong {
				b.runLong(ctx, slot, at)
			} else {
				b.runShort(ctx, slot, at)
			}
		}()
	})
	b.wg.Wait()
	if b.idle != nil {
		close(b.idle)
		for lc := range b.idle {
			lc.dc.Close()
		}
	}
	b.res.Elapsed = time.Since(b.t0)
	b.finish()
	if b.rec != nil {
		if err := b.rec.Flush(); err != nil && b.recErr == nil {
			b.recErr = err
		}
		if b.recErr != nil {
			return &b.res, fmt.Errorf("burst records: %w", b.recErr)
		}
	}
	return &b.res, nil
}

// schedule calls launch for each slot due, open-loop, until Max slots, For
// or ctx; it skips the slots that are too late or over Concurrency.
func (b *burst) schedule(ctx context.Context, launch func(slot int, at time.Time)) {
	s := b.spec
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i := 0; i < s.Max; i++ {
		off := time.Duration(float64(i) * float64(time.Second) / s.Rate)
		if s.For > 0 && off >= s.For {
			return
		}
		due := b.t0.Add(off)
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		now := time.Now()
		skip := ""
		switch {
		case now.Sub(due) > s.Slack:
			skip = "late"
		case b.inflight.Load() >= int64(s.Concurrency):
			skip = "concurrency"
		}
		b.mu.Lock()
		b.res.Slots++
		switch skip {
		case "late":
			b.res.Late++
		case "concurrency":
			b.res.Dropped++
		default:
			b.res.Attempted++
			if b.first.IsZero() {
				b.first = now
			}
			b.last = now
		}
		if skip != "" {
			b.record(&BurstRecord{Slot: i, StartUS: now.Sub(b.t0).Microseconds(), Skipped: skip,
				ConnectUS: -1, HandshakeUS: -1, QueryUS: -1, CloseUS: -1})
		}
		b.mu.Unlock()
		if skip == "" {
			launch(i, now)
		}
	}
}

// preDialed is the context key of the connection the DialFunc returns.
type preDialed struct{}

// open dials and hands the connection to the driver: the TCP connect, then
// the handshake. r receives the timings.
func (b *burst) open(ctx context.Context, slot int, at time.Time, r *BurstRecord) (driver.Conn, *burstConn, error) {
	dctx := ctx
	if b.spec.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, b.spec.ConnectTimeout)
		defer cancel()
	}
	nc, local, synRetrans, err := b.dial(dctx, slot)
	r.Local, r.SYNRetrans = local, synRetrans
	if err != nil {
		return nil, nil, err
	}
	connected := time.Now()
	r.ConnectUS = connected.Sub(at).Microseconds()
	bc := &burstConn{Conn: nc}
	dc, err := b.connector.Connect(context.WithValue(ctx, preDialed{}, net.Conn(bc)))
	if err != nil {
		bc.closeRaw(false)
		return nil, bc, bc.cause(err)
	}
	r.HandshakeUS = time.Since(connected).Microseconds()
	return dc, bc, nil
}

// runShort is one short connection: connect, query, close.
func (b *burst) runShort(ctx context.Context, slot int, at time.Time) {
	ctx, cancel := context.WithTimeout(ctx, b.spec.Timeout)
	defer cancel()
	r := &BurstRecord{Slot: slot, StartUS: at.Sub(b.t0).Microseconds(), Close: b.spec.Close,
		ConnectUS: -1, HandshakeUS: -1, QueryUS: -1, CloseUS: -1}
	dc, bc, err := b.open(ctx, slot, at, r)
	if err == nil {
		q := time.Now()
		_, _, err = connQueryer{dc}.query(ctx, nil, b.spec.Query, false, nil)
		err = bc.cause(err)
		c := time.Now()
		r.QueryUS = c.Sub(q).Microseconds()
		switch b.spec.Close {
		case CloseQuit:
			// The driver writes COM_QUIT, then closes the burstConn,
			// which waits for the server's FIN.
			bc.waitFIN, _ = ctx.Deadline()
		case CloseFIN:
			bc.closeRaw(false)
		case CloseRST:
			bc.closeRaw(true)
		}
		dc.Close()
		if cerr := bc.closeError(); err == nil && cerr != nil {
			err = fmt.Errorf("close: %w", cerr)
		}
		r.CloseUS = time.Since(c).Microseconds()
	}
	b.done(r, err)
}

// longConn is a long connection of CloseLong.
type longConn struct {
	dc driver.Conn
	bc *burstConn
}

// runLong runs one query on an idle long connection, or on a new one when
// every open one is busy.
func (b *burst) runLong(ctx context.Context, slot int, at time.Time) {
	ctx, cancel := context.WithTimeout(ctx, b.spec.Timeout)
	defer cancel()
	r := &BurstRecord{Slot: slot, StartUS: at.Sub(b.t0).Microseconds(), Close: CloseLong,
		ConnectUS: -1, HandshakeUS: -1, QueryUS: -1, CloseUS: -1}
	var lc *longConn
	select {
	case lc = <-b.idle:
		r.Reused = true
		r.Local = lc.bc.LocalAddr().String()
	default:
		dc, bc, err := b.open(ctx, slot, at, r)
		if err != nil {
			b.done(r, err)
			return
		}
		b.opened.Add(1)
		lc = &longConn{dc: dc, bc: bc}
	}
	q := time.Now()
	_, _, err := connQueryer{lc.dc}.query(ctx, nil, b.spec.Query, false, nil)
	err = lc.bc.cause(err)
	r.QueryUS = time.Since(q).Microseconds()
	if err != nil {
		lc.dc.Close()
	} else {
		select {
		case b.idle <- lc:
		default:
			// Not reached: a connection is opened only when every open
			// one is busy, by at most Concurrency connections in flight.
			lc.dc.Close()
		}
	}
	b.done(r, err)
}

// done counts a connection's outcome and writes its record.
func (b *burst) done(r *BurstRecord, err error) {
	if err != nil {
		r.ErrorKind = errorKind(err)
		r.Error = err.Error()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.ConnectUS >= 0 {
		b.res.Connected++
		b.connect = append(b.connect, time.Duration(r.ConnectUS)*time.Microsecond)
	}
	if r.SYNRetrans > 0 {
		b.res.SYNRetransmitted++
	}
	if r.HandshakeUS >= 0 {
		b.hand = append(b.hand, time.Duration(r.HandshakeUS)*time.Microsecond)
	}
	if r.QueryUS >= 0 && err == nil {
		b.query = append(b.query, time.Duration(r.QueryUS)*time.Microsecond)
	}
	if err != nil {
		b.res.Errors[r.ErrorKind]++
	} else {
		b.res.Completed++
	}
	b.record(r)
}

// finish computes the aggregates.
func (b *burst) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.spec.Close == CloseLong {
		b.res.Connected = int(b.opened.Load())
	}
	if b.res.Attempted > 1 {
		if span := b.last.Sub(b.first); span > 0 {
			b.res.Rate = float64(b.res.Attempted-1) / span.Seconds()
		}
	}
	b.res.Connect = percentiles(b.connect)
	b.res.Handshake = percentiles(b.hand)
	b.res.Query = percentiles(b.query)
}

// percentiles sorts d in place.
func percentiles(d []time.Duration) Latencies {
	if len(d) == 0 {
		return Latencies{}
	}
	slices.Sort(d)
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(d)))) - 1
		return d[max(i, 0)]
	}
	return Latencies{N: len(d), P50: rank(0.50), P99: rank(0.99), Max: d[len(d)-1]}
}

// record writes one JSON line; the caller holds b.mu. It is encoded by
// hand: encoding/json's reflection was most of a record's cost.
func (b *burst) record(r *BurstRecord) {
	if b.rec == nil || b.recErr != nil {
		return
	}
	buf := appendRecord(b.recBuf[:0], r)
	b.recBuf = buf
	if _, err := b.rec.Write(buf); err != nil {
		b.recErr = err
	}
}

func appendRecord(buf []byte, r *BurstRecord) []byte {
	buf = append(buf, `{"slot":`...)
	buf = strconv.AppendInt(buf, int64(r.Slot), 10)
	buf = append(buf, `,"start_us":`...)
	buf = strconv.AppendInt(buf, r.StartUS, 10)
	str := func(name, v string) {
		if v != "" {
			buf = append(buf, `,"`...)
			buf = append(buf, name...)
			buf = append(buf, `":`...)
			buf = appendJSONString(buf, v)
		}
	}
	str("skipped", r.Skipped)
	str("close", r.Close)
	str("local", r.Local)
	buf = append(buf, `,"connect_us":`...)
	buf = strconv.AppendInt(buf, r.ConnectUS, 10)
	buf = append(buf, `,"syn_retrans":`...)
	buf = strconv.AppendInt(buf, int64(r.SYNRetrans), 10)
	buf = append(buf, `,"handshake_us":`...)
	buf = strconv.AppendInt(buf, r.HandshakeUS, 10)
	buf = append(buf, `,"query_us":`...)
	buf = strconv.AppendInt(buf, r.QueryUS, 10)
	buf = append(buf, `,"close_us":`...)
	buf = strconv.AppendInt(buf, r.CloseUS, 10)
	if r.Reused {
		buf = append(buf, `,"reused":true`...)
	}
	str("error_kind", r.ErrorKind)
	str("error", r.Error)
	return append(buf, "}\n"...)
}

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes
// U+FFFD, as with encoding/json.
func appendJSONString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			buf = append(buf, '\\', byte(r))
		case r < 0x20:
			buf = append(buf, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
		case r == utf8.RuneError:
			buf = append(buf, `\ufffd`...)
		default:
			buf = utf8.AppendRune(buf, r)
		}
	}
	return append(buf, '"')
}

// errorKind classifies a connection's error.
func errorKind(err error) string {
	var me *mysql.MySQLError
	switch {
	case errors.As(err, &me):
		return "mysql " + strconv.Itoa(int(me.Number))
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "addrnotavail"
	case errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "other"
}

// nopLogger drops the driver's log lines: a burst's errors are counted
// from the connection's own I/O errors (burstConn.cause).
type nopLogger struct{}

func (nopLogger) Print(...any) {}

// burstConn is a burst's connection as the driver sees it. It keeps the
// first I/O error, which the driver replaces with "invalid connection",
// and it closes as the close mode says. Not being a *net.TCPConn, it also
// spares the driver's SO_KEEPALIVE.
type burstConn struct {
	net.Conn
	mu      sync.Mutex
	ioErr   error
	closed  bool
	waitFIN time.Time // CloseQuit: the deadline of the wait for the server's FIN
	// closeErr is the error of the wait for the server's FIN.
	closeErr error
}

func (c *burstConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.note(err)
	}
	return n, err
}

func (c *burstConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.note(err)
	}
	return n, err
}

func (c *burstConn) note(err error) {
	c.mu.Lock()
	if c.ioErr == nil && !c.closed {
		c.ioErr = err
	}
	c.mu.Unlock()
}

// cause returns the I/O error behind the driver's err, if any.
func (c *burstConn) cause(err error) error {
	if err == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ioErr != nil && (errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
		return fmt.Errorf("%w (%v)", c.ioErr, err)
	}
	return err
}

// Close is the driver's close of the socket, after COM_QUIT: with a
// waitFIN deadline it first reads until the server's FIN.
func (c *burstConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	wait := c.waitFIN
	c.mu.Unlock()
	if !wait.IsZero() {
		c.Conn.SetReadDeadline(wait)
		var buf [64]byte
		for {
			if _, err := c.Conn.Read(buf[:]); err != nil {
				if !errors.Is(err, io.EOF) {
					c.mu.Lock()
					c.closeErr = err
					c.mu.Unlock()
				}
				break
			}
		}
	}
	return c.Conn.Close()
}

func (c *burstConn) closeError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeErr
}

// closeRaw closes the socket without COM_QUIT, resetting the connection
// with linger0. The driver's Close afterwards finds it closed.
func (c *burstConn) closeRaw(linger0 bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	if linger0 {
		if tc, ok := c.Conn.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
	}
	c.Conn.Close()
}

// socketFactory creates TCP sockets inside a namespace, on one OS thread
// that stays there for the whole burst: a socket belongs to the namespace
// it was created in, and everything after (bind, connect, I/O) runs on
// any thread. netem.Do per connection would create and throw away an OS
// thread per connection.
type socketFactory struct {
	stock chan sockOrErr
	quit  chan struct{}
	done  chan struct{}
}

type sockOrErr struct {
	fd  int
	err error
}

func newSocketFactory(ns netns.NsHandle, v4 bool) (*socketFactory, error) {
	f := &socketFactory{stock: make(chan sockOrErr, 8), quit: make(chan struct{}), done: make(chan struct{})}
	family := unix.AF_INET
	if !v4 {
		family = unix.AF_INET6
	}
	started := make(chan error, 1)
	go func() {
		defer close(f.done)
		err := netem.Do(ns, func() error {
			started <- nil
			for {
				fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					err = os.NewSyscallError("socket", err)
				}
				select {
				case f.stock <- sockOrErr{fd, err}:
				case <-f.quit:
					if err == nil {
						unix.Close(fd)
					}
					return nil
				}
			}
		})
		if err != nil {
			started <- err
		}
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return f, nil
}

// socket returns a new socket of the namespace.
func (f *socketFactory) socket(ctx context.Context) (int, error) {
	select {
	case s := <-f.stock:
		return s.fd, s.err
	case <-ctx.Done():
		return -1, ctx.Err()
	}
}

// stop ends the factory and closes the sockets it made and nobody took.
func (f *socketFactory) stop() {
	close(f.quit)
	<-f.done
	for {
		select {
		case s := <-f.stock:
			if s.err == nil {
				unix.Close(s.fd)
			}
		default:
			return
		}
	}
}

// nsDialer dials TCP connections from sockets of a namespace.
type nsDialer struct {
	f       *socketFactory
	dst     netip.AddrPort
	sources []netip.Addr
}

// dial connects a socket of the namespace to the target: a non-blocking
// connect whose completion is awaited in Go's poller, so that a connect
// waiting for a SYN retransmission holds no thread. The SYN's
// retransmissions are tcpi_total_retrans when the connect completes: no
// data has been sent yet, so every retransmission so far was of the SYN.
func (d *nsDialer) dial(ctx context.Context, slot int) (net.Conn, string, int, error) {
	fd, err := d.f.socket(ctx)
	if err != nil {
		return nil, "", 0, err
	}
	if len(d.sources) > 0 {
		src := d.sources[slot%len(d.sources)]
		// Without IP_BIND_ADDRESS_NO_PORT, bind would choose the port now,
		// from the ports free for any destination; with it, connect
		// chooses as it does without a bind.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1); err != nil {
			unix.Close(fd)
			return nil, "", 0, os.NewSyscallError("setsockopt IP_BIND_ADDRESS_NO_PORT", err)
		}
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(src, 0))); err != nil {
			unix.Close(fd)
			return nil, "", 0, &net.OpError{Op: "bind", Net: "tcp", Addr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Err: os.NewSyscallError("bind", err)}
		}
	}
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(d.dst), Err: err}
	}
	if err := unix.Connect(fd, sockaddr(d.dst)); err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		return nil, "", 0, opErr(os.NewSyscallError("connect", err))
	}
	// FileConn duplicates the descriptor and registers the copy with the
	// poller. Blocking for a moment, the descriptor does not get
	// registered itself by NewFile, which would cost two epoll_ctl; the
	// copy is made non-blocking again (the flag is shared).
	unix.SetNonblock(fd, false)
	file := os.NewFile(uintptr(fd), "")
	nc, err := net.FileConn(file)
	file.Close()
	if err != nil {
		return nil, "", 0, opErr(err)
	}
	local := ""
	if la := nc.LocalAddr(); la != nil {
		local = la.String()
	}
	tc := nc.(*net.TCPConn)
	rc, err := tc.SyscallConn()
	if err != nil {
		nc.Close()
		return nil, local, 0, opErr(err)
	}
	if dl, ok := ctx.Deadline(); ok {
		tc.SetWriteDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { tc.SetWriteDeadline(time.Unix(1, 0)) })
	var cerr error
	retrans := 0
	werr := rc.Write(func(fd uintptr) bool {
		ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			cerr = os.NewSyscallError("getsockopt TCP_INFO", err)
			return true
		}
		retrans = int(ti.Total_retrans)
		switch ti.State {
		case tcpSynSent:
			return false
		case tcpClose:
			v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
			switch {
			case err != nil:
				cerr = os.NewSyscallError("getsockopt SO_ERROR", err)
			case v != 0:
				cerr = os.NewSyscallError("connect", syscall.Errno(v))
			default:
				cerr = os.NewSyscallError("connect", syscall.ECONNABORTED)
			}
		}
		// Established, or already past it (the server may have closed).
		return true
	})
	stopped := stop()
	if werr == nil {
		werr = cerr
	}
	if werr != nil {
		if !stopped || (errors.Is(werr, os.ErrDeadlineExceeded) && ctx.Err() != nil) {
			// The deadline was ctx's.
			werr = fmt.Errorf("%w: %w", werr, context.Cause(ctx))
		}
		nc.Close()
		return nil, local, retrans, opErr(werr)
	}
	tc.SetWriteDeadline(time.Time{})
	return tc, local, retrans, nil
}

// TCP states (include/net/tcp_states.h).
const (
	tcpSynSent = 2
	tcpClose   = 7
)

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}
