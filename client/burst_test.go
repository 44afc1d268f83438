package client

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

func TestBurstSpecNormalize(t *testing.T) {
	tests := []struct {
		name string
		spec BurstSpec
		want string // "" means valid
	}{
		{"minimal", BurstSpec{Rate: 10, Max: 5}, ""},
		{"no rate", BurstSpec{Max: 5}, "rate 0"},
		{"rate too high", BurstSpec{Rate: 1e6, Max: 5}, "rate 1e+06"},
		{"no max", BurstSpec{Rate: 10}, "max 0"},
		{"negative for", BurstSpec{Rate: 10, Max: 5, For: -time.Second}, "negative"},
		{"bad close", BurstSpec{Rate: 10, Max: 5, Close: "linger"}, `close "linger"`},
		{"bad source", BurstSpec{Rate: 10, Max: 5, Sources: []netip.Addr{{}}}, "source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.spec
			err := s.normalize()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if s.Close != CloseQuit || s.Query != "SELECT 1" || s.Concurrency != 10 || s.Timeout != DefaultBurstTimeout || s.Slack != DefaultBurstSlack {
					t.Errorf("defaults: %+v", s)
				}
				return
			}
			if !errors.Is(err, ErrBurstSpec) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("normalize() = %v, want ErrBurstSpec naming %q", err, tt.want)
			}
		})
	}
}

// scheduleOnly runs a burst's schedule with a launcher that records the
// start times; hold keeps every launched connection in flight.
func scheduleOnly(t *testing.T, ctx context.Context, spec BurstSpec, hold bool) (*burst, []time.Time) {
	t.Helper()
	if err := spec.normalize(); err != nil {
		t.Fatal(err)
	}
	b := &burst{spec: spec, res: BurstResult{Errors: map[string]int{}}}
	b.t0 = time.Now()
	var starts []time.Time
	b.schedule(ctx, func(slot int, at time.Time) {
		starts = append(starts, time.Now())
		if hold {
			b.inflight.Add(1)
		}
	})
	return b, starts
}

// checkRate checks the schedule's promise: start k is never before k/Rate,
// and no window of length w holds more than (w+slack)*rate+1 starts.
func checkRate(t *testing.T, t0 time.Time, starts []time.Time, rate float64, slack time.Duration) {
	t.Helper()
	for k, s := range starts {
		if early := t0.Add(time.Duration(float64(k) * float64(time.Second) / rate)).Sub(s); early > 0 {
			t.Fatalf("start %d is %s before k/rate", k, early)
		}
	}
	for _, w := range []time.Duration{time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond} {
		bound := int((w+slack).Seconds()*rate) + 1
		j := 0
		for i := range starts {
			for j < len(starts) && starts[j].Sub(starts[i]) < w {
				j++
			}
			if n := j - i; n > bound {
				t.Fatalf("%d starts in the %s from start %d, bound %d", n, w, i, bound)
			}
		}
	}
}

func TestBurstScheduleNeverExceedsRate(t *testing.T) {
	const rate = 3000
	spec := BurstSpec{Rate: rate, Max: 600}
	b, starts := scheduleOnly(t, context.Background(), spec, false)
	checkRate(t, b.t0, starts, rate, DefaultBurstSlack)
	if b.res.Slots != 600 || b.res.Attempted+b.res.Late != 600 || b.res.Dropped != 0 || len(starts) != b.res.Attempted {
		t.Errorf("slots %d attempted %d late %d dropped %d, %d launches; want 600 slots, all attempted or late",
			b.res.Slots, b.res.Attempted, b.res.Late, b.res.Dropped, len(starts))
	}
	t.Logf("%d of 600 started, %d late", b.res.Attempted, b.res.Late)
}

func TestBurstScheduleBounds(t *testing.T) {
	t.Run("max", func(t *testing.T) {
		b, _ := scheduleOnly(t, context.Background(), BurstSpec{Rate: 5000, Max: 37}, false)
		if b.res.Slots != 37 {
			t.Errorf("slots %d, want 37", b.res.Slots)
		}
	})
	t.Run("for", func(t *testing.T) {
		start := time.Now()
		b, _ := scheduleOnly(t, context.Background(), BurstSpec{Rate: 1000, Max: 100000, For: 30 * time.Millisecond}, false)
		// Slots at 0, 1, ..., 29 ms.
		if b.res.Slots != 30 {
			t.Errorf("slots %d, want 30", b.res.Slots)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("took %s", d)
		}
	})
	t.Run("ctx", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		b, _ := scheduleOnly(t, ctx, BurstSpec{Rate: 1000, Max: 100000}, false)
		// About 30; the bound allows a slow machine.
		if b.res.Slots == 0 || b.res.Slots > 30+int(DefaultBurstSlack.Seconds()*1000)+1000 {
			t.Errorf("slots %d after a 30 ms context", b.res.Slots)
		}
	})
	t.Run("concurrency drops, never queues", func(t *testing.T) {
		b, starts := scheduleOnly(t, context.Background(), BurstSpec{Rate: 5000, Max: 50, Concurrency: 3}, true)
		if len(starts) != 3 || b.res.Attempted != 3 || b.res.Dropped+b.res.Late != 47 || b.res.Dropped == 0 {
			t.Errorf("%d launched, attempted %d, dropped %d, late %d; want 3 launched and the rest dropped",
				len(starts), b.res.Attempted, b.res.Dropped, b.res.Late)
		}
	})
}

// A generator that stalls skips the slots it missed instead of starting
// them all at once.
func TestBurstScheduleSkipsLateSlots(t *testing.T) {
	spec := BurstSpec{Rate: 1000, Max: 60, Slack: 2 * time.Millisecond}
	if err := spec.normalize(); err != nil {
		t.Fatal(err)
	}
	b := &burst{spec: spec, res: BurstResult{Errors: map[string]int{}}}
	b.t0 = time.Now()
	var starts []time.Time
	b.schedule(context.Background(), func(slot int, at time.Time) {
		starts = append(starts, time.Now())
		if slot == 10 {
			time.Sleep(30 * time.Millisecond) // a stall of the generator
		}
	})
	checkRate(t, b.t0, starts, 1000, spec.Slack)
	if b.res.Late < 25 || b.res.Slots != 60 {
		t.Errorf("late %d of %d slots after a 30 ms stall at 1000/s, want at least 25", b.res.Late, b.res.Slots)
	}
}

func TestPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	l := percentiles(d)
	if l.N != 100 || l.P50 != 50*time.Millisecond || l.P99 != 99*time.Millisecond || l.Max != 100*time.Millisecond {
		t.Errorf("percentiles = %v", l)
	}
	if l := percentiles(nil); l != (Latencies{}) {
		t.Errorf("percentiles(nil) = %v", l)
	}
	if l := percentiles([]time.Duration{7}); l.P50 != 7 || l.P99 != 7 || l.Max != 7 {
		t.Errorf("percentiles(one) = %v", l)
	}
}

func TestAppendRecordIsJSON(t *testing.T) {
	recs := []BurstRecord{
		{Slot: 3, StartUS: 1000, Close: CloseQuit, Local: "10.0.0.1:40000", ConnectUS: 120, SYNRetrans: 1,
			HandshakeUS: 300, QueryUS: 80, CloseUS: 40},
		{Slot: 4, StartUS: 1333, Skipped: "concurrency", ConnectUS: -1, HandshakeUS: -1, QueryUS: -1, CloseUS: -1},
		{Slot: 5, StartUS: 1666, Close: CloseLong, Reused: true, ConnectUS: -1, HandshakeUS: -1, QueryUS: 9, CloseUS: -1,
			ErrorKind: "mysql 1040", Error: "Error 1040 (08004): Too many \"connections\"\n\x00é"},
	}
	for _, r := range recs {
		line := appendRecord(nil, &r)
		var got BurstRecord
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if got != r {
			t.Errorf("%s decodes to %+v, want %+v", line, got, r)
		}
		want, _ := json.Marshal(r)
		var a, b map[string]any
		json.Unmarshal(line, &a)
		json.Unmarshal(want, &b)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("fields %v, encoding/json has %v", a, b)
		}
	}
}

func TestErrorKind(t *testing.T) {
	dial := func(e syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", e)}
	}
	tests := []struct {
		err  error
		want string
	}{
		{dial(syscall.ECONNREFUSED), "refused"},
		{dial(syscall.ETIMEDOUT), "timeout"},
		{dial(syscall.EADDRNOTAVAIL), "addrnotavail"},
		{fmt.Errorf("read: %w (invalid connection)", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), "reset"},
		{fmt.Errorf("%w: %w", os.ErrDeadlineExceeded, context.DeadlineExceeded), "timeout"},
		{context.Canceled, "canceled"},
		{&mysql.MySQLError{Number: 1040, Message: "Too many connections"}, "mysql 1040"},
		{fmt.Errorf("%w (invalid connection)", io.EOF), "eof"},
		{errors.New("something"), "other"},
	}
	for _, tt := range tests {
		if got := errorKind(tt.err); got != tt.want {
			t.Errorf("errorKind(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// fakeServer speaks enough of the MySQL protocol for a burst: handshake
// (mysql_native_password, any password), COM_QUERY answered with one row,
// COM_QUIT. It logs what each connection saw.
type fakeServer struct {
	// refuse answers the handshake with this error number instead.
	refuse uint16
	mu     sync.Mutex
	seen   []string // per connection: "quit", "eof" (client closed first) ...
	conns  atomic.Int64
	wg     sync.WaitGroup
	live   atomic.Int64
	peak   atomic.Int64
}

func (f *fakeServer) serve(c net.Conn) {
	defer f.wg.Done()
	defer c.Close()
	f.conns.Add(1)
	n := f.live.Add(1)
	defer f.live.Add(-1)
	for {
		p := f.peak.Load()
		if n <= p || f.peak.CompareAndSwap(p, n) {
			break
		}
	}
	end := func(what string) {
		f.mu.Lock()
		f.seen = append(f.seen, what)
		f.mu.Unlock()
	}
	r := bufio.NewReader(c)
	if f.refuse != 0 {
		msg := append([]byte{0xff, byte(f.refuse), byte(f.refuse >> 8), '#'}, "08004Too many connections"...)
		writePkt(c, 0, msg)
		end("refused")
		return
	}
	// HandshakeV10.
	const caps = 0x00000001 | 0x00000008 | 0x00000200 | 0x00002000 | 0x00008000 | 0x00080000
	h := []byte{10}
	h = append(h, "8.0.0-fake\x00"...)
	h = binary.LittleEndian.AppendUint32(h, 7)
	h = append(h, "abcdefgh"...)
	h = append(h, 0)
	h = binary.LittleEndian.AppendUint16(h, caps&0xffff)
	h = append(h, 45)
	h = binary.LittleEndian.AppendUint16(h, 2)
	h = binary.LittleEndian.AppendUint16(h, caps>>16)
	h = append(h, 21)
	h = append(h, make([]byte, 10)...)
	h = append(h, "ijklmnopqrst\x00"...)
	h = append(h, "mysql_native_password\x00"...)
	writePkt(c, 0, h)
	if _, _, err := readPkt(r); err != nil {
		end("eof in handshake")
		return
	}
	ok := []byte{0, 0, 0, 2, 0, 0, 0}
	writePkt(c, 2, ok)
	for {
		_, p, err := readPkt(r)
		if err != nil {
			end("eof")
			return
		}
		switch p[0] {
		case 0x01: // COM_QUIT
			end("quit")
			return
		case 0x03: // COM_QUERY
			col := []byte{3, 'd', 'e', 'f', 0, 0, 0, 1, '1', 0, 0x0c, 63, 0, 1, 0, 0, 0, 0x08, 0x81, 0, 0, 0, 0}
			eof := []byte{0xfe, 0, 0, 2, 0}
			writePkt(c, 1, []byte{1})
			writePkt(c, 2, col)
			writePkt(c, 3, eof)
			writePkt(c, 4, []byte{1, '1'})
			writePkt(c, 5, eof)
		default:
			writePkt(c, 1, append([]byte{0xff, 0x17, 0x04, '#'}, "08S01Unknown command"...))
		}
	}
}

// outcomes waits for the connections to end and counts what they saw.
func (f *fakeServer) outcomes() map[string]int {
	f.wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	m := map[string]int{}
	for _, s := range f.seen {
		m[s]++
	}
	return m
}

func writePkt(w io.Writer, seq byte, p []byte) error {
	h := []byte{byte(len(p)), byte(len(p) >> 8), byte(len(p) >> 16), seq}
	_, err := w.Write(append(h, p...))
	return err
}

func readPkt(r io.Reader) (byte, []byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	p := make([]byte, int(h[0])|int(h[1])<<8|int(h[2])<<16)
	_, err := io.ReadFull(r, p)
	return h[3], p, err
}

// pipeDial dials the fake server over net.Pipe: no network at all.
func (f *fakeServer) pipeDial(ctx context.Context, slot int) (net.Conn, string, int, error) {
	c, s := net.Pipe()
	f.wg.Add(1)
	go f.serve(s)
	return c, fmt.Sprintf("pipe:%d", slot), 0, nil
}

var fakeTarget = Target{Flavor: "fake", Addr: netip.MustParseAddrPort("10.89.253.1:3306"), User: "lab", Password: "pw"}

// readRecords parses a records file and checks that it is well formed: one
// JSON object per line, one line per slot.
func readRecords(t *testing.T, path string, slots int) []BurstRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []BurstRecord
	seen := map[int]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		var r BurstRecord
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("line %d %q: %v", len(out)+1, sc.Text(), err)
		}
		if seen[r.Slot] {
			t.Errorf("slot %d twice", r.Slot)
		}
		seen[r.Slot] = true
		out = append(out, r)
	}
	if len(out) != slots {
		t.Errorf("%d records, want %d (one per slot)", len(out), slots)
	}
	return out
}

func TestBurstFakeCloseModes(t *testing.T) {
	want := map[string]string{CloseQuit: "quit", CloseQuitNow: "quit", CloseFIN: "eof", CloseRST: "eof"}
	for _, mode := range []string{CloseQuit, CloseQuitNow, CloseFIN, CloseRST} {
		t.Run(mode, func(t *testing.T) {
			f := &fakeServer{}
			path := filepath.Join(t.TempDir(), "records.jsonl")
			res, err := runBurst(context.Background(), fakeTarget,
				BurstSpec{Rate: 2000, Max: 40, Close: mode, RecordsPath: path}, f.pipeDial)
			if err != nil {
				t.Fatal(err)
			}
			if res.Completed != res.Attempted || res.Attempted+res.Late != 40 || len(res.Errors) != 0 {
				t.Errorf("attempted %d completed %d late %d errors %v", res.Attempted, res.Completed, res.Late, res.Errors)
			}
			if got := f.outcomes(); got[want[mode]] != res.Attempted || len(got) != 1 {
				t.Errorf("server saw %v, want %d × %s", got, res.Attempted, want[mode])
			}
			for _, r := range readRecords(t, path, res.Slots) {
				if r.Skipped != "" {
					continue
				}
				if r.Close != mode || r.ConnectUS < 0 || r.HandshakeUS < 0 || r.QueryUS < 0 || r.CloseUS < 0 || r.Error != "" {
					t.Errorf("record %+v", r)
				}
			}
			if res.Connect.N != res.Attempted || res.Query.N != res.Attempted || res.Rate <= 0 || res.Rate > 2000*1.01 {
				t.Errorf("aggregates %+v", res)
			}
		})
	}
}

func TestBurstFakeLong(t *testing.T) {
	f := &fakeServer{}
	res, err := runBurst(context.Background(), fakeTarget, BurstSpec{Rate: 2000, Max: 50, Close: CloseLong, Concurrency: 4}, f.pipeDial)
	if err != nil {
		t.Fatal(err)
	}
	if res.Completed != res.Attempted || res.Connected < 1 || res.Connected > 4 || f.conns.Load() != int64(res.Connected) {
		t.Errorf("attempted %d completed %d connections %d (server %d), want at most 4 connections", res.Attempted,
			res.Completed, res.Connected, f.conns.Load())
	}
	// The long connections end with COM_QUIT at the end of the burst.
	if got := f.outcomes(); got["quit"] != res.Connected {
		t.Errorf("server saw %v", got)
	}
}

func TestBurstFakeErrors(t *testing.T) {
	t.Run("server error", func(t *testing.T) {
		f := &fakeServer{refuse: 1040}
		res, err := runBurst(context.Background(), fakeTarget, BurstSpec{Rate: 1000, Max: 5}, f.pipeDial)
		if err != nil {
			t.Fatal(err)
		}
		if res.Errors["mysql 1040"] != res.Attempted || res.Completed != 0 || res.Connected != res.Attempted {
			t.Errorf("errors %v, attempted %d, connected %d", res.Errors, res.Attempted, res.Connected)
		}
	})
	t.Run("refused", func(t *testing.T) {
		refused := func(ctx context.Context, slot int) (net.Conn, string, int, error) {
			return nil, "", 0, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
		}
		path := filepath.Join(t.TempDir(), "r.jsonl")
		res, err := runBurst(context.Background(), fakeTarget, BurstSpec{Rate: 1000, Max: 5, RecordsPath: path}, refused)
		if err != nil {
			t.Fatal(err)
		}
		if res.Errors["refused"] != res.Attempted || res.Connected != 0 || res.Connect.N != 0 {
			t.Errorf("errors %v, connected %d", res.Errors, res.Connected)
		}
		for _, r := range readRecords(t, path, res.Slots) {
			if r.Skipped == "" && (r.ErrorKind != "refused" || r.ConnectUS != -1) {
				t.Errorf("record %+v", r)
			}
		}
	})
	t.Run("server closes in the handshake", func(t *testing.T) {
		dial := func(ctx context.Context, slot int) (net.Conn, string, int, error) {
			c, s := net.Pipe()
			s.Close()
			return c, "", 0, nil
		}
		res, err := runBurst(context.Background(), fakeTarget, BurstSpec{Rate: 1000, Max: 3}, dial)
		if err != nil {
			t.Fatal(err)
		}
		if res.Errors["eof"] != res.Attempted {
			t.Errorf("errors %v, want eof: the driver's invalid connection traced to its cause", res.Errors)
		}
	})
	t.Run("hung server bounded by timeout", func(t *testing.T) {
		dial := func(ctx context.Context, slot int) (net.Conn, string, int, error) {
			c, s := net.Pipe()
			t.Cleanup(func() { s.Close() })
			return c, "", 0, nil // the server never speaks
		}
		start := time.Now()
		res, err := runBurst(context.Background(), fakeTarget, BurstSpec{Rate: 1000, Max: 3, Timeout: 50 * time.Millisecond}, dial)
		if err != nil {
			t.Fatal(err)
		}
		if res.Errors["timeout"] != res.Attempted {
			t.Errorf("errors %v", res.Errors)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("took %s", d)
		}
	})
}

// BenchmarkBurstFake is the generator's own cost per connection, against
// the fake server over net.Pipe (the fake server's cost included).
func BenchmarkBurstFake(b *testing.B) {
	f := &fakeServer{}
	b.ReportAllocs()
	b.ResetTimer()
	res, err := runBurst(context.Background(), fakeTarget, BurstSpec{Rate: BurstMaxRate, Max: b.N, Close: CloseQuitNow, Slack: time.Hour}, f.pipeDial)
	if err != nil {
		b.Fatal(err)
	}
	if res.Completed != b.N {
		b.Fatalf("completed %d of %d: %v", res.Completed, b.N, res.Errors)
	}
}
