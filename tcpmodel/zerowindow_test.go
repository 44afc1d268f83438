package tcpmodel

import (
	"slices"
	"testing"
	"time"
)

func msList(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestZeroWindowProbes(t *testing.T) {
	tests := []struct {
		name       string
		sys        Sysctls
		hz         int
		closed     time.Duration
		intervals  []time.Duration
		borderline bool
	}{
		// Lab D quick: the reader pauses 12 s; measured 212, 420, 864, 1696,
		// 3552 ms.
		{"defaults, 12 s", Defaults(), 250, 12 * time.Second, msList(204, 408, 816, 1632, 3264), false},
		// The documented variant: about 65 s closed.
		{"defaults, 65 s", Defaults(), 250, 65 * time.Second, msList(204, 408, 816, 1632, 3264, 6528, 13056, 26112), false},
		{"window opens first", Defaults(), 250, 150 * time.Millisecond, nil, false},
		// The last probe, due at 6.324 s, may come after a window that
		// opens at 6.4 s.
		{"borderline", Defaults(), 250, 6400 * time.Millisecond, msList(204, 408, 816, 1632, 3264), true},
		{"tcp_retries2 caps the backoff", Sysctls{KeyRetries2: "2"}, 250, 3 * time.Second, msList(204, 408, 816, 816), false},
		{"tcp_rto_max_ms caps the interval", Sysctls{KeyRTOMaxMs: "500"}, 250, 2 * time.Second, msList(204, 408, 500, 500), false},
		{"HZ=1000", Defaults(), 1000, time.Second, msList(201, 402), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func(h int) { HZ = h }(HZ)
			HZ = tt.hz
			sc := ZeroWindowProbes(tt.sys, 0, tt.closed)
			if !slices.Equal(sc.Intervals, tt.intervals) {
				t.Errorf("intervals %v, want %v", sc.Intervals, tt.intervals)
			}
			if sc.Count != len(tt.intervals) || len(sc.Offsets) != sc.Count {
				t.Errorf("count %d, offsets %d, want %d", sc.Count, len(sc.Offsets), len(tt.intervals))
			}
			if sc.Borderline != tt.borderline {
				t.Errorf("borderline %v, want %v", sc.Borderline, tt.borderline)
			}
			if sc.GiveUp != 0 || sc.Explain == "" {
				t.Errorf("give-up %v, explain %q", sc.GiveUp, sc.Explain)
			}
		})
	}
}

// The backoff stops doubling at 2^10 × base, then tcp_rto_max_ms caps it.
func TestZeroWindowProbesCap(t *testing.T) {
	sc := ZeroWindowProbes(Defaults(), 0, 20*time.Minute)
	last := sc.Intervals[len(sc.Intervals)-1]
	if last != 120*time.Second {
		t.Errorf("last interval %v, want the 120 s cap", last)
	}
	if sc.Intervals[9] != 104448*time.Millisecond {
		t.Errorf("tenth interval %v, want 204 ms << 9", sc.Intervals[9])
	}
}

func TestRTO(t *testing.T) {
	steady := func(n int, rtt time.Duration) []RTTSample {
		var out []RTTSample
		for i := 0; i < n; i++ {
			// Each ACK starts a new round trip: it acknowledges all that
			// was sent when the one before came.
			out = append(out, RTTSample{RTT: rtt, Una: uint32(1000 * (i + 1)), Nxt: uint32(1000 * (i + 1))})
		}
		return out
	}
	tests := []struct {
		name      string
		sys       Sysctls
		samples   []RTTSample
		rto, srtt time.Duration
	}{
		{"no sample: TCP_TIMEOUT_INIT", Defaults(), nil, time.Second, 0},
		// 200 ms + 50 µs is 50.0125 jiffies, rounded up to 51.
		{"one fast sample", Defaults(), steady(1, 50*time.Microsecond), 204 * time.Millisecond, 50 * time.Microsecond},
		// Lab D's cli reader on MariaDB: a client that acks every 43 ms.
		{"delayed ACKs", Defaults(), steady(200, 43*time.Millisecond), 244 * time.Millisecond, 43 * time.Millisecond},
		// mdev starts at twice the first sample: rto = 3 × rtt.
		{"one slow sample", Defaults(), steady(1, 300*time.Millisecond), 900 * time.Millisecond, 300 * time.Millisecond},
		{"tcp_rto_max_ms caps it", Sysctls{KeyRTOMaxMs: "500"}, steady(1, 300*time.Millisecond), 500 * time.Millisecond, 300 * time.Millisecond},
		// 5 ms is 2 jiffies (8 ms) as the kernel keeps it; 8.1 ms rounds
		// up to 3.
		{"tcp_rto_min_us sets the floor", Sysctls{KeyRTOMinUs: "5000"}, steady(50, 100*time.Microsecond), 12 * time.Millisecond, 100 * time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func(h int) { HZ = h }(HZ)
			HZ = 250
			rto, srtt := RTO(tt.sys, tt.samples)
			if rto != tt.rto || srtt != tt.srtt {
				t.Errorf("RTO %v, srtt %v; want %v, %v", rto, srtt, tt.rto, tt.srtt)
			}
		})
	}
}

// The base follows the connection's RTO.
func TestZeroWindowProbesFromRTO(t *testing.T) {
	sc := ZeroWindowProbes(Defaults(), 244*time.Millisecond, 10*time.Second)
	if want := msList(244, 488, 976, 1952, 3904); !slices.Equal(sc.Intervals, want) {
		t.Errorf("intervals %v, want %v", sc.Intervals, want)
	}
}
