package tcpmodel

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

const (
	ms = time.Millisecond
	s  = time.Second
)

// with returns the kernel defaults with some keys changed; short keys get the
// "net.ipv4." prefix.
func with(kv ...string) Sysctls {
	out := Defaults()
	for i := 0; i+1 < len(kv); i += 2 {
		out["net.ipv4."+kv[i]] = kv[i+1]
	}
	return out
}

// without returns the kernel defaults with some keys removed, as a kernel
// that lacks them would show.
func without(keys ...string) Sysctls {
	out := Defaults()
	for _, k := range keys {
		delete(out, "net.ipv4."+k)
	}
	return out
}

func secs(vs ...float64) []time.Duration {
	out := make([]time.Duration, len(vs))
	for i, v := range vs {
		out[i] = time.Duration(v * float64(time.Second))
	}
	return out
}

// setHZ changes HZ for one test and restores it afterwards.
func setHZ(t *testing.T, hz int) {
	t.Helper()
	old := HZ
	HZ = hz
	t.Cleanup(func() { HZ = old })
}

// checkShape verifies the invariants every Schedule keeps: one interval and
// one offset per retransmission, offsets the running sum of intervals, and
// the give-up after the last retransmission.
func checkShape(t *testing.T, sc Schedule) {
	t.Helper()
	if len(sc.Intervals) != sc.Count || len(sc.Offsets) != sc.Count {
		t.Fatalf("Count %d, %d intervals, %d offsets", sc.Count, len(sc.Intervals), len(sc.Offsets))
	}
	var sum time.Duration
	for i := range sc.Intervals {
		sum += sc.Intervals[i]
		if sc.Offsets[i] != sum {
			t.Fatalf("Offsets[%d] = %v, running sum of intervals %v", i, sc.Offsets[i], sum)
		}
	}
	if sc.GiveUp < sum {
		t.Fatalf("GiveUp %v before the last retransmission %v", sc.GiveUp, sum)
	}
	if sc.Explain == "" {
		t.Fatal("empty Explain")
	}
}

func TestSYN(t *testing.T) {
	tests := []struct {
		name      string
		sysctls   Sysctls
		count     int
		intervals []time.Duration
		giveUp    time.Duration
		explain   string
	}{
		{
			// Measured on this workplace's 6.18 machines: 19.5 s observed.
			name:      "measured syn_retries 3 linear 4",
			sysctls:   with("tcp_syn_retries", "3", "tcp_syn_linear_timeouts", "4"),
			count:     7,
			intervals: secs(1, 1, 1, 1, 1, 2, 4),
			giveUp:    19 * s,
			explain:   "count reached",
		},
		{
			// Measured: 7.2 s observed.
			name:      "measured syn_retries 2 linear 0",
			sysctls:   with("tcp_syn_retries", "2", "tcp_syn_linear_timeouts", "0"),
			count:     2,
			intervals: secs(1, 2),
			giveUp:    7 * s,
		},
		{
			// The article (kernel 4.15): retransmissions at 1, 3, 7, 15,
			// 31, 63 s, then ERROR 2003 (110).
			name:      "article syn_retries 6 linear 0",
			sysctls:   with("tcp_syn_retries", "6", "tcp_syn_linear_timeouts", "0"),
			count:     6,
			intervals: secs(1, 2, 4, 8, 16, 32),
			giveUp:    127 * s,
		},
		{
			name:      "6.18 defaults",
			sysctls:   Defaults(),
			count:     10,
			intervals: secs(1, 1, 1, 1, 1, 2, 4, 8, 16, 32),
			giveUp:    131 * s,
		},
		{
			// The time rule (ModelTimeout(2, 1 s) = 7 s) ends the ladder
			// before the count rule (2+4 = 6) does.
			name:      "time rule before count rule",
			sysctls:   with("tcp_syn_retries", "2", "tcp_syn_linear_timeouts", "4"),
			count:     5,
			intervals: secs(1, 1, 1, 1, 1),
			giveUp:    7 * s,
			explain:   "time since the original SYN reached 7 s",
		},
		{
			name:      "time rule with syn_retries 1",
			sysctls:   with("tcp_syn_retries", "1"),
			count:     2,
			intervals: secs(1, 1),
			giveUp:    3 * s,
		},
		{
			name:      "kernel without tcp_syn_linear_timeouts",
			sysctls:   without("tcp_syn_linear_timeouts"),
			count:     6,
			intervals: secs(1, 2, 4, 8, 16, 32),
			giveUp:    127 * s,
			explain:   "absent, as in kernels before 6.5",
		},
		{
			name:      "empty map: core keys take their defaults",
			sysctls:   Sysctls{},
			count:     6,
			intervals: secs(1, 2, 4, 8, 16, 32),
			giveUp:    127 * s,
		},
		{
			name:      "tcp_rto_max_ms caps the backoff",
			sysctls:   with("tcp_syn_retries", "8", "tcp_syn_linear_timeouts", "0", "tcp_rto_max_ms", "10000"),
			count:     8,
			intervals: secs(1, 2, 4, 8, 10, 10, 10, 10),
			giveUp:    65 * s,
		},
		{
			name:      "invalid value falls back to the default",
			sysctls:   with("tcp_syn_retries", "many", "tcp_syn_linear_timeouts", "0"),
			count:     6,
			intervals: secs(1, 2, 4, 8, 16, 32),
			giveUp:    127 * s,
			explain:   `tcp_syn_retries="many" is not a non-negative integer`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SYN(tt.sysctls)
			checkShape(t, got)
			if got.Count != tt.count {
				t.Errorf("Count = %d, want %d", got.Count, tt.count)
			}
			if !reflect.DeepEqual(got.Intervals, tt.intervals) {
				t.Errorf("Intervals = %v, want %v", got.Intervals, tt.intervals)
			}
			if got.GiveUp != tt.giveUp {
				t.Errorf("GiveUp = %v, want %v", got.GiveUp, tt.giveUp)
			}
			if got.Borderline {
				t.Errorf("Borderline set: %s", got.Explain)
			}
			if !strings.Contains(got.Explain, tt.explain) {
				t.Errorf("Explain = %q, want it to contain %q", got.Explain, tt.explain)
			}
		})
	}
}

func TestSYNACK(t *testing.T) {
	tests := []struct {
		name      string
		sysctls   Sysctls
		count     int
		intervals []time.Duration
		giveUp    time.Duration
	}{
		{"article default 5", with("tcp_synack_retries", "5"), 5, secs(1, 2, 4, 8, 16), 63 * s},
		{"one retry", with("tcp_synack_retries", "1"), 1, secs(1), 3 * s},
		{"no retries", with("tcp_synack_retries", "0"), 0, secs(), 1 * s},
		{"missing key takes the default", Sysctls{}, 5, secs(1, 2, 4, 8, 16), 63 * s},
		{"linear timeouts do not apply", with("tcp_syn_linear_timeouts", "10"), 5, secs(1, 2, 4, 8, 16), 63 * s},
		{"tcp_rto_max_ms caps the backoff", with("tcp_rto_max_ms", "4000"), 5, secs(1, 2, 4, 4, 4), 19 * s},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SYNACK(tt.sysctls)
			checkShape(t, got)
			if got.Count != tt.count || !reflect.DeepEqual(got.Intervals, tt.intervals) || got.GiveUp != tt.giveUp {
				t.Errorf("got %d %v give-up %v, want %d %v give-up %v", got.Count, got.Intervals, got.GiveUp, tt.count, tt.intervals, tt.giveUp)
			}
			if !strings.Contains(got.Explain, "does not apply to request sockets") {
				t.Errorf("Explain does not say that linear timeouts are SYN_SENT only: %q", got.Explain)
			}
		})
	}
}

func TestSYNACKWithSYNs(t *testing.T) {
	tests := []struct {
		name       string
		sysctls    Sysctls
		syns       []time.Duration
		offsets    []time.Duration
		giveUp     time.Duration
		borderline bool
	}{
		{
			name:    "no duplicate SYNs is the timer ladder",
			sysctls: Defaults(),
			offsets: secs(1, 3, 7, 15, 31),
			giveUp:  63 * s,
		},
		{
			// Each SYN re-arms the timer for 1 s << num_timeout; the 0.2 s
			// gap to the previous answer is under tcp_invalid_ratelimit, so
			// the SYN at 1.7 s gets no SYN-ACK; 2.0 s is exactly 500 ms
			// later and does.
			name:    "re-arm and rate limit",
			sysctls: with("tcp_synack_retries", "2"),
			syns:    secs(1.5, 1.7, 2.0),
			offsets: secs(1, 1.5, 2.0, 4),
			giveUp:  8 * s,
		},
		{
			name:    "kernel without tcp_invalid_ratelimit answers every SYN",
			sysctls: func() Sysctls { x := with("tcp_synack_retries", "2"); delete(x, KeyInvalidRatelimit); return x }(),
			syns:    secs(1.5, 1.7, 2.0),
			offsets: secs(1, 1.5, 1.7, 2.0, 4),
			giveUp:  8 * s,
		},
		{
			// The client's exponential SYNs land on the same instants as
			// the server's timer: races, so Borderline.
			name:       "article: client SYNs without linear timeouts",
			sysctls:    Defaults(),
			syns:       SYN(with("tcp_syn_linear_timeouts", "0")).Offsets,
			offsets:    secs(1, 1, 3, 3, 7, 7, 15, 15, 31, 31),
			giveUp:     63 * s,
			borderline: true,
		},
		{
			// With linear SYN timeouts the client's 1 s SYNs keep
			// postponing the server's timer, which moves the drop.
			name:       "6.18 defaults on both sides",
			sysctls:    Defaults(),
			syns:       SYN(Defaults()).Offsets,
			offsets:    secs(1, 1, 2, 3, 4, 5, 7, 7, 11, 11, 19, 19, 35, 35),
			giveUp:     67 * s,
			borderline: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SYNACKWithSYNs(tt.sysctls, tt.syns)
			checkShape(t, got)
			if !reflect.DeepEqual(got.Offsets, tt.offsets) || got.GiveUp != tt.giveUp || got.Borderline != tt.borderline {
				t.Errorf("got %v give-up %v borderline %v, want %v give-up %v borderline %v\n%s",
					got.Offsets, got.GiveUp, got.Borderline, tt.offsets, tt.giveUp, tt.borderline, got.Explain)
			}
		})
	}
}

func TestData(t *testing.T) {
	const veth = 50 * time.Microsecond
	tests := []struct {
		name       string
		hz         int
		sysctls    Sysctls
		rtt        time.Duration
		count      int
		offsets    []time.Duration // checked when set
		giveUp     time.Duration   // checked when set
		borderline bool
		explain    string
	}{
		{
			// Measured: 6 retransmissions with the tail loss probe.
			name:    "measured retries2 5 with TLP",
			sysctls: with("tcp_retries2", "5"),
			rtt:     veth,
			count:   6,
			offsets: secs(0.204, 0.408, 0.816, 1.632, 3.264, 6.528),
			giveUp:  13056 * ms,
			explain: "tail loss probe at 204 ms",
		},
		{
			// Measured: 5 with tcp_early_retrans=0.
			name:    "measured retries2 5 without TLP",
			sysctls: with("tcp_retries2", "5", "tcp_early_retrans", "0"),
			rtt:     veth,
			count:   5,
			offsets: secs(0.204, 0.612, 1.428, 3.060, 6.324),
			giveUp:  12852 * ms,
			explain: "no tail loss probe",
		},
		{
			name:    "tcp_early_retrans 4 keeps the probe",
			sysctls: with("tcp_retries2", "5", "tcp_early_retrans", "4"),
			rtt:     veth,
			count:   6,
		},
		{
			name:    "tcp_early_retrans 2 has no probe",
			sysctls: with("tcp_retries2", "5", "tcp_early_retrans", "2"),
			rtt:     veth,
			count:   5,
		},
		{
			name:    "no SACK, no probe",
			sysctls: with("tcp_retries2", "5", "tcp_sack", "0"),
			rtt:     veth,
			count:   5,
		},
		{
			// The article: tcp_retries2=10 gave 11 retransmissions.
			name:    "article retries2 10",
			sysctls: with("tcp_retries2", "10"),
			rtt:     veth,
			count:   11,
			giveUp:  328896 * ms,
		},
		{
			// 924.6 s of budget from the first RTO retransmission at 408 ms.
			name:    "defaults",
			sysctls: Defaults(),
			rtt:     veth,
			count:   16,
			giveUp:  928896 * ms,
			explain: "tcp_retries2=15 allows 924.6 s",
		},
		{
			name:    "missing keys take their defaults",
			sysctls: Sysctls{},
			rtt:     veth,
			count:   16,
			giveUp:  928896 * ms,
		},
		{
			// At HZ=1000 the RTO is 201 ms, and the sixth expiry comes
			// 138 ms short of the 12.6 s budget: the kernel retransmits once
			// more unless its timers run late by that much.
			name:       "HZ 1000 is borderline",
			hz:         1000,
			sysctls:    with("tcp_retries2", "5", "tcp_early_retrans", "0"),
			rtt:        veth,
			count:      6,
			borderline: true,
		},
		{
			name:    "thin stream keeps the RTO for 6 retransmissions",
			sysctls: with("tcp_retries2", "5", "tcp_early_retrans", "0", "tcp_thin_linear_timeouts", "1"),
			rtt:     veth,
			count:   11,
			offsets: secs(0.204, 0.408, 0.612, 0.816, 1.020, 1.224, 1.428, 1.836, 2.652, 4.284, 7.548),
			giveUp:  14076 * ms,
			explain: "tcp_thin_linear_timeouts=1",
		},
		{
			// A smaller tcp_rto_min shortens the RTO, but the time budget
			// still starts from TCP_RTO_MIN, so more retransmissions fit.
			// 50 ms is 12.5 jiffies, kept as 13 (52 ms); with the RTT the
			// RTO is 14 jiffies, 56 ms.
			name:    "tcp_rto_min_us 50 ms",
			sysctls: with("tcp_retries2", "5", "tcp_rto_min_us", "50000"),
			rtt:     veth,
			count:   8,
			offsets: secs(0.056, 0.112, 0.224, 0.448, 0.896, 1.792, 3.584, 7.168),
		},
		{
			// The probe waits min(2*srtt + 200 ms, RTO) = RTO = 300 ms.
			name:    "100 ms RTT",
			sysctls: with("tcp_retries2", "2"),
			rtt:     100 * ms,
			count:   3,
			offsets: secs(0.3, 0.6, 1.2),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.hz != 0 {
				setHZ(t, tt.hz)
			}
			got := Data(tt.sysctls, tt.rtt)
			checkShape(t, got)
			if got.Count != tt.count {
				t.Errorf("Count = %d, want %d: %s", got.Count, tt.count, got.Explain)
			}
			if tt.offsets != nil && !reflect.DeepEqual(got.Offsets, tt.offsets) {
				t.Errorf("Offsets = %v, want %v", got.Offsets, tt.offsets)
			}
			if tt.giveUp != 0 && got.GiveUp != tt.giveUp {
				t.Errorf("GiveUp = %v, want %v", got.GiveUp, tt.giveUp)
			}
			if got.Borderline != tt.borderline {
				t.Errorf("Borderline = %v, want %v: %s", got.Borderline, tt.borderline, got.Explain)
			}
			if !strings.Contains(got.Explain, tt.explain) {
				t.Errorf("Explain = %q, want it to contain %q", got.Explain, tt.explain)
			}
		})
	}
}

func TestKeepalive(t *testing.T) {
	tests := []struct {
		name    string
		sysctls Sysctls
		offsets []time.Duration
		giveUp  time.Duration
	}{
		{"article 40/10/2", with("tcp_keepalive_time", "40", "tcp_keepalive_intvl", "10", "tcp_keepalive_probes", "2"), secs(40, 50), 60 * s},
		{"defaults", Defaults(), secs(7200, 7275, 7350, 7425, 7500, 7575, 7650, 7725, 7800), 7875 * s},
		{"missing keys take their defaults", Sysctls{}, secs(7200, 7275, 7350, 7425, 7500, 7575, 7650, 7725, 7800), 7875 * s},
		{"no probes resets at once", with("tcp_keepalive_time", "5", "tcp_keepalive_probes", "0"), secs(), 5 * s},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Keepalive(tt.sysctls)
			checkShape(t, got)
			if !reflect.DeepEqual(got.Offsets, tt.offsets) || got.GiveUp != tt.giveUp || got.Count != len(tt.offsets) {
				t.Errorf("got %d probes at %v, give-up %v; want %v, give-up %v", got.Count, got.Offsets, got.GiveUp, tt.offsets, tt.giveUp)
			}
		})
	}
}

func TestModelTimeout(t *testing.T) {
	tests := []struct {
		boundary int
		base     time.Duration
		max      time.Duration
		want     time.Duration
	}{
		{15, RTOMin, RTOMax, 924600 * ms}, // ip-sysctl.rst's 924.6 s
		{10, RTOMin, RTOMax, 324600 * ms},
		{9, RTOMin, RTOMax, 204600 * ms},
		{5, RTOMin, RTOMax, 12600 * ms},
		{0, RTOMin, RTOMax, 200 * ms},
		{6, TimeoutInit, RTOMax, 127 * s},
		{3, TimeoutInit, RTOMax, 15 * s},
		{8, TimeoutInit, 10 * s, 65 * s},
	}
	for _, tt := range tests {
		if got := ModelTimeout(tt.boundary, tt.base, tt.max); got != tt.want {
			t.Errorf("ModelTimeout(%d, %v, %v) = %v, want %v", tt.boundary, tt.base, tt.max, got, tt.want)
		}
	}
}

func TestTolerance(t *testing.T) {
	tests := []struct {
		interval, floor time.Duration
		slow            float64
		want            time.Duration
	}{
		{1 * s, 0, 1, 475 * ms},                     // 125 + 300 + 50
		{1 * s, 500 * ms, 1, 850 * ms},              // the floor wins over 12.5 %
		{32 * s, 0, 1, 5900 * ms},                   // 4 s + 300 ms + 1.6 s
		{1 * s, 0, 2, 950 * ms},                     // everything times slow
		{1 * s, 0, 0, 475 * ms},                     // slow <= 0 means 1
		{-1 * s, 0, 1, 475 * ms},                    // a negative difference counts by size
		{0, 100 * ms, 1, 400 * ms},                  // floor + base allowance
		{200 * ms, 50 * ms, 1.5, 540 * ms},          // (50 + 300 + 10) × 1.5
		{204 * ms, 0, 1, 335700 * time.Microsecond}, // 25.5 + 300 + 10.2 ms
	}
	for _, tt := range tests {
		if got := Tolerance(tt.interval, tt.floor, tt.slow); got != tt.want {
			t.Errorf("Tolerance(%v, %v, %v) = %v, want %v", tt.interval, tt.floor, tt.slow, got, tt.want)
		}
	}
}

func TestKeysAndDefaults(t *testing.T) {
	k := Keys()
	if !sort.StringsAreSorted(k) {
		t.Errorf("Keys not sorted: %v", k)
	}
	d := Defaults()
	if len(d) != len(k) {
		t.Errorf("Defaults has %d keys, Keys %d", len(d), len(k))
	}
	for _, key := range k {
		if _, ok := d[key]; !ok {
			t.Errorf("Defaults lacks %s", key)
		}
		if !strings.HasPrefix(key, "net.ipv4.tcp_") {
			t.Errorf("unexpected key %s", key)
		}
	}
	want := map[string]string{
		KeySynRetries:        "6",
		KeySynLinearTimeouts: "4",
		KeySynackRetries:     "5",
		KeyRetries2:          "15",
		KeyEarlyRetrans:      "3",
		KeyKeepaliveTime:     "7200",
		KeyKeepaliveIntvl:    "75",
		KeyKeepaliveProbes:   "9",
		KeyRTOMaxMs:          "120000",
		KeyRTOMinUs:          "200000",
	}
	for key, v := range want {
		if d[key] != v {
			t.Errorf("Defaults()[%s] = %q, want %q", key, d[key], v)
		}
	}
	// Defaults returns a fresh map each time.
	d[KeySynRetries] = "1"
	if Defaults()[KeySynRetries] != "6" {
		t.Error("Defaults shares its map between calls")
	}
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(key, value string) {
		t.Helper()
		p := filepath.Join(dir, filepath.FromSlash(strings.ReplaceAll(key, ".", "/")))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(KeySynRetries, "3\n")
	write(KeyKeepaliveTime, "  40 \n")
	write("net.ipv4.tcp_fin_timeout", "60\n") // not a model key: ignored

	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := Sysctls{KeySynRetries: "3", KeyKeepaliveTime: "40"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Read = %v, want %v", got, want)
	}
	// The missing tcp_syn_linear_timeouts makes this an old kernel.
	if sc := SYN(got); sc.Count != 3 || sc.GiveUp != 15*s {
		t.Errorf("SYN after Read: %d retransmissions, give-up %v; want 3, 15 s", sc.Count, sc.GiveUp)
	}

	t.Run("unreadable entry", func(t *testing.T) {
		bad := t.TempDir()
		p := filepath.Join(bad, "net", "ipv4", "tcp_retries2")
		if err := os.MkdirAll(p, 0o755); err != nil { // a directory where a file should be
			t.Fatal(err)
		}
		_, err := Read(bad)
		if err == nil || !strings.Contains(err.Error(), "read sysctl net.ipv4.tcp_retries2") {
			t.Errorf("Read = %v, want an error naming the key", err)
		}
	})

	t.Run("missing tree", func(t *testing.T) {
		got, err := Read(filepath.Join(dir, "nonexistent"))
		if err != nil || len(got) != 0 {
			t.Errorf("Read = %v, %v; want an empty map", got, err)
		}
	})
}

// TestShapes runs every function over a grid of values and checks the
// invariants, so that unusual values never produce a malformed Schedule.
func TestShapes(t *testing.T) {
	for _, hz := range []int{100, 250, 300, 1000, 0} {
		setHZ(t, hz)
		for _, r := range []string{"0", "1", "2", "3", "7", "15", "40"} {
			for _, lin := range []string{"0", "1", "4", "9"} {
				for _, er := range []string{"0", "3"} {
					for _, rtoMax := range []string{"1000", "10000", "120000"} {
						x := with("tcp_syn_retries", r, "tcp_syn_linear_timeouts", lin, "tcp_synack_retries", r,
							"tcp_retries2", r, "tcp_early_retrans", er, "tcp_rto_max_ms", rtoMax, "tcp_keepalive_probes", r)
						checkShape(t, SYN(x))
						checkShape(t, SYNACK(x))
						checkShape(t, SYNACKWithSYNs(x, SYN(x).Offsets))
						for _, rtt := range []time.Duration{0, 50 * time.Microsecond, 30 * ms, 2 * s} {
							checkShape(t, Data(x, rtt))
						}
						checkShape(t, Keepalive(x))
					}
				}
			}
		}
	}
}

func TestFmtDur(t *testing.T) {
	tests := map[time.Duration]string{
		50 * time.Microsecond:   "50 µs",
		204 * ms:                "204 ms",
		1500 * time.Microsecond: "1.5 ms",
		19 * s:                  "19 s",
		928896 * ms:             "928.896 s",
	}
	for d, want := range tests {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", d, got, want)
		}
	}
	if got := fmtList(secs(1, 1, 1, 1, 1, 2, 4)); got != "1 s ×5, 2 s, 4 s" {
		t.Errorf("fmtList = %q", got)
	}
}
