package tcpmodel

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestTimeWaits(t *testing.T) {
	tests := []struct {
		name    string
		s       Sysctls
		load    TimeWaitLoad
		peak    int
		by      string
		explain string
	}{
		{"article: 3000/s for long", Defaults(), TimeWaitLoad{Rate: 3000, For: 10 * time.Minute}, 131072, "tcp_max_tw_buckets", "caps them"},
		{"article with many buckets", with("tcp_max_tw_buckets", "1000000"), TimeWaitLoad{Rate: 3000, For: 10 * time.Minute}, 180000, "rate × TIME_WAIT", "60 s"},
		{"short load", Defaults(), TimeWaitLoad{Rate: 200, For: 10 * time.Second}, 2000, "load", "for 10 s"},
		{"narrow NAT", Defaults(), TimeWaitLoad{Rate: 200, For: 10 * time.Second, Tuples: 100}, 100, "4-tuples", "100 distinct"},
		{"buckets 0", with("tcp_max_tw_buckets", "0"), TimeWaitLoad{Rate: 200, For: 10 * time.Second, Tuples: 100}, 0, "tcp_max_tw_buckets", "no TIME_WAIT"},
		{"buckets below tuples", with("tcp_max_tw_buckets", "37"), TimeWaitLoad{Rate: 200, For: 10 * time.Second, Tuples: 100}, 37, "tcp_max_tw_buckets", "=37"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := TimeWaits(tt.s, tt.load)
			if got.Peak != tt.peak || got.By != tt.by || got.Lifetime != 60*time.Second {
				t.Errorf("got peak %d by %q lifetime %s, want %d by %q 60s", got.Peak, got.By, got.Lifetime, tt.peak, tt.by)
			}
			if !strings.Contains(got.Explain, tt.explain) {
				t.Errorf("explain %q lacks %q", got.Explain, tt.explain)
			}
		})
	}
}

// The peak is the least of its three bounds for every value, not only the
// library's.
func TestTimeWaitsSweep(t *testing.T) {
	for _, rate := range []float64{1, 7, 50, 200, 999, 3000} {
		for _, dur := range []time.Duration{time.Second, 13 * time.Second, 59 * time.Second, 2 * time.Minute} {
			for _, tuples := range []int{0, 1, 100, 4096, 64512} {
				for _, buckets := range []int{0, 5, 1000, 131072} {
					got := TimeWaits(with("tcp_max_tw_buckets", strconv.Itoa(buckets)), TimeWaitLoad{Rate: rate, For: dur, Tuples: tuples})
					want := int(rate*min(dur, 60*time.Second).Seconds() + 0.5)
					if tuples > 0 {
						want = min(want, tuples)
					}
					want = min(want, buckets)
					if got.Peak != want {
						t.Fatalf("rate %v for %s tuples %d buckets %d: peak %d, want %d", rate, dur, tuples, buckets, got.Peak, want)
					}
				}
			}
		}
	}
}

func TestSYNOnTimeWait(t *testing.T) {
	tests := []struct {
		name     string
		client   Sysctls
		ru       Reuse
		kernel   string
		rejected float64
		first    time.Duration
	}{
		{"NAT strips timestamps", Defaults(), Reuse{Translated: true, Clocks: 1}, "6.18.44", 0.5, 8 * time.Millisecond},
		{"NAT keeps timestamps, one client, offsets per connection", Defaults(), Reuse{Translated: true, Timestamps: true, Clocks: 1}, "6.18.44", 0.5, 8 * time.Millisecond},
		{"NAT keeps timestamps, one client, offsets per host", Defaults(), Reuse{Translated: true, Timestamps: true, Clocks: 1}, "6.12.48", 0, 8 * time.Millisecond},
		{"no NAT, timestamps, offsets per connection", Defaults(), Reuse{Timestamps: true, Clocks: 1}, "6.18.44", 0, 8 * time.Millisecond},
		{"NAT keeps timestamps, three clients", Defaults(), Reuse{Translated: true, Timestamps: true, Clocks: 3}, "6.1.0", 0.5, 8 * time.Millisecond},
		{"no NAT, no timestamps", Defaults(), Reuse{Clocks: 1}, "6.18.44", 0, 8 * time.Millisecond},
		// Before 5.10 the client waits for its SYN timer, TCP_TIMEOUT_INIT
		// whatever the retries and linear timeouts.
		{"the article's kernel", Defaults(), Reuse{Translated: true}, "4.15.0-36-generic", 0.5, time.Second},
		{"5.9", with("tcp_syn_linear_timeouts", "0", "tcp_syn_retries", "2"), Reuse{Translated: true}, "5.9.16", 0.5, time.Second},
		{"5.10", Defaults(), Reuse{Translated: true}, "5.10.0-30-amd64", 0.5, 8 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SYNOnTimeWait(tt.client, tt.kernel, tt.ru)
			if got.Rejected != tt.rejected || got.FirstResend != tt.first || got.LaterResend != time.Second || got.Explain == "" {
				t.Errorf("got %+v, want rejected %v first resend %s", got, tt.rejected, tt.first)
			}
		})
	}
}

// TCP_TIMEOUT_MIN is 2 jiffies whatever HZ.
func TestSYNOnTimeWaitHZ(t *testing.T) {
	for _, hz := range []int{100, 250, 300, 1000} {
		setHZ(t, hz)
		got := SYNOnTimeWait(Defaults(), "6.18", Reuse{Translated: true})
		if want := 2 * time.Second / time.Duration(hz); got.FirstResend != want {
			t.Errorf("HZ=%d: first resend %s, want %s", hz, got.FirstResend, want)
		}
	}
}

func TestBinomial(t *testing.T) {
	tests := []struct {
		n    int
		p    float64
		want float64
		tol  int
	}{
		{1000, 0.5, 500, 64},
		{100, 0.5, 50, 20},
		{0, 0.5, 0, 2},
		{1000, 0, 0, 2},
	}
	for _, tt := range tests {
		w, tol := Binomial(tt.n, tt.p)
		if w != tt.want || tol != tt.tol {
			t.Errorf("Binomial(%d, %v) = %v ± %d, want %v ± %d", tt.n, tt.p, w, tol, tt.want, tt.tol)
		}
	}
}

func TestLocalPortsAndConntrack(t *testing.T) {
	tests := []struct {
		s     Sysctls
		ports int
		ct    time.Duration
	}{
		{Sysctls{}, 28232, 120 * time.Second},
		{Sysctls{KeyLocalPortRange: "20000 20099", KeyConntrackTimeWait: "5"}, 100, 5 * time.Second},
		{Sysctls{KeyLocalPortRange: "bad", KeyConntrackTimeWait: "x"}, 28232, 120 * time.Second},
	}
	for _, tt := range tests {
		if got := LocalPorts(tt.s); got != tt.ports {
			t.Errorf("LocalPorts(%v) = %d, want %d", tt.s, got, tt.ports)
		}
		if got := ConntrackTimeWait(tt.s); got != tt.ct {
			t.Errorf("ConntrackTimeWait(%v) = %s, want %s", tt.s, got, tt.ct)
		}
	}
}

// Measured on Linux 6.18 (MySQL 9.7.4, a NAT that forgets at once, half
// the SYNs on a TIME_WAIT rejected): 100 4-tuples at 200/s for 10 s held
// 59 to 69; 60000 at 2967/s for 30 s held 37245.
func TestTimeWaitsRandom(t *testing.T) {
	tests := []struct {
		load   TimeWaitLoad
		lo, hi int
	}{
		{TimeWaitLoad{Rate: 200, For: 10 * time.Second, Tuples: 100, Random: true, Rejected: 0.5}, 65, 68},
		{TimeWaitLoad{Rate: 2967, For: 30 * time.Second, Tuples: 60000, Random: true, Rejected: 0.5}, 37000, 38500},
		// Nothing rejected: every 4-tuple ends up in TIME_WAIT.
		{TimeWaitLoad{Rate: 200, For: 10 * time.Second, Tuples: 100, Random: true}, 99, 100},
		// A short load: 1 - e^(-rt/T) of the tuples, no more than started.
		{TimeWaitLoad{Rate: 100, For: 2 * time.Second, Tuples: 100000, Random: true, Rejected: 0.5}, 199, 200},
		// Past TCP_TIMEWAIT_LEN the oldest expire: 10/s for 100 s holds
		// about 10 × 60 of 100000.
		{TimeWaitLoad{Rate: 10, For: 100 * time.Second, Tuples: 100000, Random: true, Rejected: 0.5}, 595, 601},
	}
	for _, tt := range tests {
		got := TimeWaits(with("tcp_max_tw_buckets", "1000000"), tt.load)
		if got.Peak < tt.lo || got.Peak > tt.hi || got.By != "4-tuples drawn at random" {
			t.Errorf("%+v: peak %d by %q, want %d to %d", tt.load, got.Peak, got.By, tt.lo, tt.hi)
		}
	}
	// Steady state: 1/(1+q) of the tuples, for any share rejected.
	for _, q := range []float64{0, 0.25, 0.5, 0.75, 1} {
		got := TimeWaits(with("tcp_max_tw_buckets", "1000000"), TimeWaitLoad{Rate: 1000, For: 50 * time.Second, Tuples: 1000, Random: true, Rejected: q})
		want := 1000 / (1 + q)
		if d := float64(got.Peak) - want; d > 0.02*want || -d > 0.02*want {
			t.Errorf("rejected %v: peak %d, want about %.0f", q, got.Peak, want)
		}
	}
}
