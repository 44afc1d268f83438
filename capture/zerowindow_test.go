package capture

import (
	"bytes"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// Lab D's traces: a server streams a result to a client that stops reading.
// The client's window closes; Linux's persist timer then probes with no
// payload at the sequence number before the next one, 204 ms after the
// window closed (the RTO of a fast link at HZ=250) and doubling; the client
// answers each probe with a zero window unless its answer is rate-limited
// (tcp_invalid_ratelimit, 500 ms).

const mss = 1448

// stall describes one synthetic slow-reader trace.
type stall struct {
	// before is the number of full segments the server sends before the
	// window closes, after its 79-byte greeting.
	before int
	// transient adds a window that closes and opens again 1 ms later,
	// after the first two segments, before the stall.
	transient bool
	// probes are the probe times after the window closed; answered says
	// which ones the client answers.
	probes   []time.Duration
	answered []bool
	// oneByte makes the probes one byte at the next sequence number, as
	// stacks other than Linux send them.
	oneByte bool
	// then is what ends the stall: "update" (the reader reads again and
	// the server sends after more full segments and a FIN), "reset" (the
	// server resets the connection, as MariaDB does after
	// net_write_timeout), or "" (the capture ends).
	then  string
	at    time.Duration // when the stall ends, after the window closed
	after int           // segments sent after the window opened again
	// open leaves the window open: the reader keeps up.
	open bool
}

// build writes the trace and returns it with the time the window closed.
func (st stall) build() (*trace, time.Duration) {
	tr := newTrace()
	t := tr.handshake(0, isnC)
	s, c := isnS+1, isnC+1
	t += time.Millisecond
	tr.add(seg{At: t, From: "s", Flags: "PA", Seq: s, Ack: c, Len: 79})
	s += 79
	t += time.Millisecond
	tr.add(seg{At: t, From: "c", Flags: "PA", Seq: c, Ack: s, Len: 40})
	c += 40
	send := func(n int) {
		for i := 0; i < n; i++ {
			t += 20 * time.Microsecond
			tr.add(seg{At: t, From: "s", Flags: "A", Seq: s, Ack: c, Len: mss})
			s += mss
			if i%2 == 1 && i < n-1 {
				tr.add(seg{At: t + 5*time.Microsecond, From: "c", Flags: "A", Seq: c, Ack: s, Win: 40})
			}
		}
	}
	if st.transient {
		send(2)
		t += 30 * time.Microsecond
		tr.add(seg{At: t, From: "c", Flags: "A0", Seq: c, Ack: s, Win: 0})
		t += time.Millisecond
		tr.add(seg{At: t, From: "c", Flags: "A", Seq: c, Ack: s, Win: 40})
		st.before -= 2
	}
	send(st.before)
	t += 30 * time.Microsecond
	closed := t
	if st.open {
		tr.add(seg{At: t, From: "c", Flags: "A", Seq: c, Ack: s, Win: 40})
		return tr, closed
	}
	tr.add(seg{At: t, From: "c", Flags: "A0", Seq: c, Ack: s, Win: 0})
	for i, d := range st.probes {
		p := seg{At: closed + d, From: "s", Flags: "A", Seq: s - 1, Ack: c}
		if st.oneByte {
			p.Seq, p.Len = s, 1
		}
		tr.add(p)
		if st.answered[i] {
			tr.add(seg{At: closed + d + 20*time.Microsecond, From: "c", Flags: "A0", Seq: c, Ack: s, Win: 0})
		}
	}
	t = closed + st.at
	switch st.then {
	case "update":
		tr.add(seg{At: t, From: "c", Flags: "A", Seq: c, Ack: s, Win: 100})
		send(st.after)
		t += 20 * time.Microsecond
		tr.add(seg{At: t, From: "s", Flags: "FPA", Seq: s, Ack: c, Len: 10})
		s += 11
		tr.add(seg{At: t + 20*time.Microsecond, From: "c", Flags: "FA", Seq: c, Ack: s, Win: 100})
		tr.add(seg{At: t + 40*time.Microsecond, From: "s", Flags: "A", Seq: s, Ack: c + 1})
	case "reset":
		tr.add(seg{At: t, From: "s", Flags: "RA", Seq: s, Ack: c})
	}
	return tr, closed
}

var linuxProbes = ms(204, 612, 1428, 3060)

func TestZeroWindows(t *testing.T) {
	tests := []struct {
		name string
		st   stall
		// Want: periods, the stall's index, probes, their intervals, zero
		// windows in the stall, bytes before it and in all, how it ended.
		periods, stallAt, probes, zeros int
		intervals                       []time.Duration
		before, sent                    int64
		ended                           string
		fin                             bool
	}{
		{
			name: "linux persist timer, reader resumes",
			st: stall{before: 6, probes: linuxProbes, answered: []bool{true, false, true, true},
				then: "update", at: 5 * time.Second, after: 3},
			periods: 1, stallAt: 0, probes: 4, zeros: 4,
			intervals: ms(204, 408, 816, 1632),
			before:    79 + 6*mss, sent: 79 + 9*mss + 10, ended: "update", fin: true,
		},
		{
			name: "a burst closes the window first",
			st: stall{before: 6, transient: true, probes: linuxProbes[:2], answered: []bool{true, true},
				then: "update", at: time.Second, after: 1},
			periods: 2, stallAt: 1, probes: 2, zeros: 3,
			intervals: ms(204, 408),
			before:    79 + 6*mss, sent: 79 + 7*mss + 10, ended: "update", fin: true,
		},
		{
			name: "server resets after net_write_timeout",
			st: stall{before: 4, probes: linuxProbes[:3], answered: []bool{true, false, true},
				then: "reset", at: 2 * time.Second},
			periods: 1, stallAt: 0, probes: 3, zeros: 3,
			intervals: ms(204, 408, 816),
			before:    79 + 4*mss, sent: 79 + 4*mss, ended: "reset",
		},
		{
			name: "one-byte probes",
			st: stall{before: 4, oneByte: true, probes: ms(300, 900), answered: []bool{true, true},
				then: "update", at: 2 * time.Second, after: 1},
			periods: 1, stallAt: 0, probes: 2, zeros: 3,
			intervals: ms(300, 600),
			// The receiver drops the probe's byte; the sender sends it
			// again at the head of the data that follows.
			before: 79 + 4*mss, sent: 79 + 5*mss + 10, ended: "update", fin: true,
		},
		{
			name:    "capture ends in the stall",
			st:      stall{before: 2, probes: linuxProbes[:1], answered: []bool{true}},
			periods: 1, stallAt: 0, probes: 1, zeros: 2,
			intervals: ms(204),
			before:    79 + 2*mss, sent: 79 + 2*mss, ended: "",
		},
		{
			name:    "window never closes",
			st:      stall{before: 2, open: true},
			periods: 0, stallAt: -1,
			before: 79 + 2*mss, sent: 79 + 2*mss,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, closed := tt.st.build()
			a, err := AnalyzeReader(bytes.NewReader(tr.bytes(t)))
			if err != nil {
				t.Fatal(err)
			}
			z := onlyFlow(t, a).ZeroWindows(synthClient)
			if z.Receiver != synthClient || z.Sender != synthServer {
				t.Errorf("receiver %s sender %s", z.Receiver, z.Sender)
			}
			if len(z.Periods) != tt.periods {
				t.Fatalf("%d periods, want %d: %+v", len(z.Periods), tt.periods, z.Periods)
			}
			if z.Sent != tt.sent {
				t.Errorf("sent %d bytes, want %d", z.Sent, tt.sent)
			}
			if (z.FIN != nil) != tt.fin {
				t.Errorf("FIN %v, want %v", z.FIN, tt.fin)
			}
			st := z.Stall()
			if tt.stallAt < 0 {
				if st != nil || z.First() != nil {
					t.Errorf("stall %+v, want none", st)
				}
				return
			}
			if st != &z.Periods[tt.stallAt] {
				t.Fatalf("stall is not period %d", tt.stallAt)
			}
			if got := st.Start.Time.Sub(synthStart); got != closed {
				t.Errorf("window closed at %v, want %v", got, closed)
			}
			if len(st.Probes) != tt.probes || st.ZeroWindows != tt.zeros {
				t.Errorf("%d probes, %d zero windows; want %d, %d", len(st.Probes), st.ZeroWindows, tt.probes, tt.zeros)
			}
			if got := st.ProbeIntervals(); !slices.Equal(got, tt.intervals) {
				t.Errorf("probe intervals %v, want %v", got, tt.intervals)
			}
			if st.SentBefore != tt.before {
				t.Errorf("sent %d bytes before the window closed, want %d", st.SentBefore, tt.before)
			}
			if got := z.SentAfter(st); got != tt.sent-tt.before {
				t.Errorf("sent after %d, want %d", got, tt.sent-tt.before)
			}
			ended := ""
			switch {
			case st.End != nil:
				ended = "update"
				if st.Last != st.End.Time {
					t.Errorf("last %v, want the update's time", st.Last)
				}
			case st.Reset != nil:
				ended = "reset"
				if st.Last != st.Reset.Time {
					t.Errorf("last %v, want the reset's time", st.Last)
				}
			default:
				if want := a.Packets[len(a.Packets)-1].Time; st.Last != want {
					t.Errorf("last %v, want the capture's last packet %v", st.Last, want)
				}
			}
			if ended != tt.ended {
				t.Errorf("stall ended by %q, want %q", ended, tt.ended)
			}
			if tt.stallAt > 0 && z.First() != &z.Periods[0] {
				t.Errorf("first period is not the first")
			}
		})
	}
}

// TestZeroWindowsAgreeWithTshark checks the frame verdicts the analysis
// builds on (zero_window, keep_alive, zero_window_probe and the others)
// against tshark, and its counts against tshark's filters.
func TestZeroWindowsAgreeWithTshark(t *testing.T) {
	tshark := needTshark(t)
	dir := t.TempDir()
	for i, st := range []stall{
		{before: 6, probes: linuxProbes, answered: []bool{true, false, true, true}, then: "update", at: 5 * time.Second, after: 3},
		{before: 6, transient: true, probes: linuxProbes[:2], answered: []bool{true, true}, then: "update", at: time.Second, after: 1},
		{before: 4, probes: linuxProbes[:3], answered: []bool{true, false, true}, then: "reset", at: 2 * time.Second},
		{before: 4, oneByte: true, probes: ms(300, 900), answered: []bool{true, true}, then: "update", at: 2 * time.Second, after: 1},
	} {
		tr, _ := st.build()
		path := filepath.Join(dir, "stall"+string(rune('a'+i))+".pcap")
		tr.write(t, path)
		if n := compareWithTshark(t, tshark, path); n > 0 {
			t.Fatalf("%s: %d disagreements with tshark", path, n)
		}
		a, err := Analyze(path)
		if err != nil {
			t.Fatal(err)
		}
		z := onlyFlow(t, a).ZeroWindows(synthClient)
		zeros, probes := 0, 0
		for _, p := range z.Periods {
			zeros += p.ZeroWindows
			probes += len(p.Probes)
		}
		c, s := synthClient.Addr().String(), synthServer.Addr().String()
		if want := tsharkCount(t, tshark, path, "tcp.analysis.zero_window && ip.src=="+c); zeros != want {
			t.Errorf("%s: %d zero windows, tshark %d", path, zeros, want)
		}
		if want := tsharkCount(t, tshark, path, "(tcp.analysis.keep_alive || tcp.analysis.zero_window_probe) && ip.src=="+s); probes != want {
			t.Errorf("%s: %d probes, tshark %d", path, probes, want)
		}
	}
}

// TestZeroWindowsRecordedRuns reads the captures of two runs of
// scenarios/lab-d/slow-reader-ftwrl.yaml (Linux 6.18; client 10.89.0.10,
// server 10.89.0.11:3306), cut after the TCP headers. The go reader (first
// flow) and the cli reader (second) stall; Oracle MySQL keeps the queued
// data and sends it once the readers read again, MariaDB resets them at
// net_write_timeout (6 s).
func TestZeroWindowsRecordedRuns(t *testing.T) {
	client := netip.MustParseAddr("10.89.0.10")
	server := netip.MustParseAddrPort("10.89.0.11:3306")
	type flowWant struct {
		periods, probes int
		before, sent    int64
		ended           string
	}
	tests := []struct {
		pcap  string
		flows []flowWant
	}{
		{"slow-reader-ftwrl.client.pcap", []flowWant{
			{2, 5, 410020, 598480, "update"},
			{20, 5, 2255241, 2476785, "update"},
		}},
		{"slow-reader-ftwrl-mariadb.client.pcap", []flowWant{
			{2, 4, 414691, 414691, "reset"},
			{9, 4, 2288827, 2288827, "reset"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.pcap, func(t *testing.T) {
			path := filepath.Join("testdata", "runs", tt.pcap)
			a, err := Analyze(path)
			if err != nil {
				t.Fatal(err)
			}
			flows := a.Flows(client, server)
			if len(flows) < len(tt.flows) {
				t.Fatalf("%d flows, want at least %d", len(flows), len(tt.flows))
			}
			for i, want := range tt.flows {
				z := flows[i].ZeroWindows(flows[i].Client)
				st := z.Stall()
				if st == nil {
					t.Fatalf("flow %s: no stall", flows[i].Client)
				}
				ended := "update"
				if st.Reset != nil {
					ended = "reset"
				}
				got := flowWant{len(z.Periods), len(st.Probes), st.SentBefore, z.Sent, ended}
				if got != want {
					t.Errorf("flow %s: %+v, want %+v", flows[i].Client, got, want)
				}
				// The persist timer's ladder: 204 ms doubling, each
				// expiry up to the timer wheel's granularity late.
				for j, iv := range st.ProbeIntervals() {
					model := 204 * time.Millisecond << j
					if iv < model || iv > model+model/8+20*time.Millisecond {
						t.Errorf("flow %s: probe %d after %v, want %v and at most 12.5 %% + 20 ms late", flows[i].Client, j+1, iv, model)
					}
				}
			}
			if tshark, err := exec.LookPath("tshark"); err == nil {
				if n := compareWithTshark(t, tshark, path); n > 0 {
					t.Errorf("%d disagreements with tshark", n)
				}
				probes := 0
				for _, f := range flows {
					for _, p := range f.ZeroWindows(f.Client).Periods {
						probes += len(p.Probes)
					}
				}
				if want := tsharkCount(t, tshark, path, "tcp.srcport==3306 && (tcp.analysis.keep_alive || tcp.analysis.zero_window_probe)"); probes != want {
					t.Errorf("%d probes, tshark %d", probes, want)
				}
			}
		})
	}
}

func TestRTTSamples(t *testing.T) {
	tr := newTrace()
	at := tr.handshake(0, isnC) // SYN-ACK at 50 µs, its ACK at 100 µs
	s, c := isnS+1, isnC+1
	t0 := at + time.Millisecond
	for i := 0; i < 3; i++ {
		tr.add(seg{At: t0 + time.Duration(i)*10*time.Microsecond, From: "s", Flags: "A", Seq: s + uint32(i*mss), Ack: c, Len: mss})
	}
	// The first two, timed from the first.
	tr.add(seg{At: t0 + time.Millisecond, From: "c", Flags: "A", Seq: c, Ack: s + 2*mss})
	// The third is retransmitted, then acknowledged: no sample (Karn).
	tr.add(seg{At: t0 + 200*time.Millisecond, From: "s", Flags: "A", Seq: s + 2*mss, Ack: c, Len: mss})
	tr.add(seg{At: t0 + 201*time.Millisecond, From: "c", Flags: "A", Seq: c, Ack: s + 3*mss})
	// A segment acknowledged in two parts, timed from itself both times.
	tr.add(seg{At: t0 + 300*time.Millisecond, From: "s", Flags: "A", Seq: s + 3*mss, Ack: c, Len: mss})
	tr.add(seg{At: t0 + 302*time.Millisecond, From: "c", Flags: "A", Seq: c, Ack: s + 3*mss + 100})
	tr.add(seg{At: t0 + 305*time.Millisecond, From: "c", Flags: "A", Seq: c, Ack: s + 4*mss})
	// A duplicate ACK acknowledges nothing new.
	tr.add(seg{At: t0 + 306*time.Millisecond, From: "c", Flags: "A", Seq: c, Ack: s + 4*mss})
	a, err := AnalyzeReader(bytes.NewReader(tr.bytes(t)))
	if err != nil {
		t.Fatal(err)
	}
	got := onlyFlow(t, a).RTTSamples(synthServer)
	want := []struct {
		rtt      time.Duration
		una, nxt uint32
	}{
		{50 * time.Microsecond, isnS + 1, isnS + 1},
		{time.Millisecond, s + 2*mss, s + 3*mss},
		{2 * time.Millisecond, s + 3*mss + 100, s + 4*mss},
		{5 * time.Millisecond, s + 4*mss, s + 4*mss},
	}
	if len(got) != len(want) {
		t.Fatalf("%d samples %+v, want %d", len(got), got, len(want))
	}
	for i, w := range want {
		if got[i].RTT != w.rtt || got[i].Una != w.una || got[i].Nxt != w.nxt {
			t.Errorf("sample %d: %v una %d nxt %d; want %v una %d nxt %d", i, got[i].RTT, got[i].Una, got[i].Nxt, w.rtt, w.una, w.nxt)
		}
	}
}
