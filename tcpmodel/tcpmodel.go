// Package tcpmodel predicts what the Linux kernel (written against 6.18, the
// kernel of this workplace's machines) does with TCP timers for a given set
// of sysctl values: client SYN retransmissions, a server's SYN-ACK
// retransmissions, retransmissions of data on an established connection
// (tail loss probe included), keepalive probes, and the TIME_WAIT lifetime.
//
// The package is pure arithmetic. It reads nothing but the Sysctls it is
// given (Read, the one exception, collects them from a /proc/sys tree), so a
// check can compute the "model" column of a report on any machine, without
// root. Each Schedule carries an Explain sentence naming the sysctls and the
// kernel rules that produced it, for the report's reader.
//
// The model works in jiffies, as the kernel does: retransmission timeouts are
// rounded up to whole ticks of HZ (250 on this workplace's kernels), and that
// rounding decides some counts (see Data). Everything the model returns is a
// nominal time: real timers fire later (the timer wheel rounds every expiry
// up to the granularity of its level, up to 12.5 % of the delay), which is
// what Tolerance allows for.
package tcpmodel

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Sysctls are the values read back from one host's namespace, keyed like
// "net.ipv4.tcp_syn_retries". A missing key means the kernel lacks it (for
// example tcp_syn_linear_timeouts before 6.5): the model then uses the
// behaviour of kernels without it. Keys that every supported kernel has
// (tcp_syn_retries, tcp_retries2, the keepalive keys, ...) fall back to their
// kernel defaults when missing.
type Sysctls map[string]string

// Schedule is one predicted ladder of retransmissions or probes.
type Schedule struct {
	Count     int             // number of retransmissions (or keepalive probes)
	Intervals []time.Duration // gap from each transmission to the next: Intervals[0] is original -> 1st retransmission; len == Count
	Offsets   []time.Duration // time of each retransmission from the original transmission (cumulative Intervals)
	GiveUp    time.Duration   // from the original transmission (for keepalive: from the last data/ACK activity) to the moment the kernel reports the error / drops the request
	Explain   string          // one or two sentences in English: which sysctls and kernel rules produced this

	// Borderline is set when late timers could change the outcome: at an
	// earlier expiry the time-based give-up rule fell short by less than
	// the timers' possible lateness, so the kernel may stop one
	// retransmission sooner (in SYNACKWithSYNs: a retransmitted SYN and the
	// request timer were due at the same instant, a race). A check should
	// then accept the neighbouring outcome too, or report it as explained.
	Borderline bool
}

// Sysctl keys the model reads.
const (
	KeySynRetries         = "net.ipv4.tcp_syn_retries"
	KeySynLinearTimeouts  = "net.ipv4.tcp_syn_linear_timeouts" // Linux >= 6.5
	KeySynackRetries      = "net.ipv4.tcp_synack_retries"
	KeyRetries2           = "net.ipv4.tcp_retries2"
	KeyEarlyRetrans       = "net.ipv4.tcp_early_retrans"
	KeySack               = "net.ipv4.tcp_sack"
	KeyThinLinearTimeouts = "net.ipv4.tcp_thin_linear_timeouts"
	KeyRTOMaxMs           = "net.ipv4.tcp_rto_max_ms" // Linux >= 6.15
	KeyRTOMinUs           = "net.ipv4.tcp_rto_min_us" // Linux >= 6.11
	KeyInvalidRatelimit   = "net.ipv4.tcp_invalid_ratelimit"
	KeyKeepaliveTime      = "net.ipv4.tcp_keepalive_time"
	KeyKeepaliveIntvl     = "net.ipv4.tcp_keepalive_intvl"
	KeyKeepaliveProbes    = "net.ipv4.tcp_keepalive_probes"
)

// Kernel constants from include/net/tcp.h.
const (
	TimeWait    = 60 * time.Second       // TCP_TIMEWAIT_LEN: not a sysctl, and not 2*MSL = 120 s as often quoted
	TimeoutInit = 1 * time.Second        // TCP_TIMEOUT_INIT: first SYN and SYN-ACK timeout (RFC 6298)
	RTOMin      = 200 * time.Millisecond // TCP_RTO_MIN: HZ/5; also the base of the tcp_retries2 time model
	RTOMax      = 120 * time.Second      // TCP_RTO_MAX: backoff cap unless tcp_rto_max_ms says otherwise

	// ThinLinearRetries is TCP_THIN_LINEAR_RETRIES: with
	// tcp_thin_linear_timeouts=1 a thin stream keeps its RTO unchanged for
	// this many RTO retransmissions before backing off.
	ThinLinearRetries = 6
)

// HZ is CONFIG_HZ of the kernel under test, in ticks per second. The kernel
// keeps retransmission timeouts in jiffies and rounds microsecond values up
// to whole ticks, so an RTO of 200 ms plus a 50 µs RTT becomes 204 ms at
// HZ=250 and 201 ms at HZ=1000; that difference decides some retransmission
// counts. This workplace's kernels are built with HZ=250 (zcat
// /proc/config.gz | grep CONFIG_HZ=). Set it before calling the model when
// the kernel under test differs; values below 1 are treated as 250.
var HZ = 250

// keyInfo says how a key behaves when it is missing.
type keyInfo struct {
	def    int64 // default of Linux 6.18
	absent int64 // value whose behaviour equals that of a kernel without the key
	since  string
}

// keys lists every key the model reads. Keys that all kernels the labs run
// on have (tcp_early_retrans since 3.5, the others older still) fall back to
// their defaults when missing; keys added recently fall back to the
// behaviour before them: no linear SYN timeouts, no rate limit on answers to
// duplicate SYNs, and the compiled-in RTO bounds.
var keys = map[string]keyInfo{
	KeySynRetries:         {def: 6, absent: 6},
	KeySynLinearTimeouts:  {def: 4, absent: 0, since: "6.5"},
	KeySynackRetries:      {def: 5, absent: 5},
	KeyRetries2:           {def: 15, absent: 15},
	KeyEarlyRetrans:       {def: 3, absent: 3},
	KeySack:               {def: 1, absent: 1},
	KeyThinLinearTimeouts: {def: 0, absent: 0},
	KeyRTOMaxMs:           {def: 120000, absent: 120000, since: "6.15"},
	KeyRTOMinUs:           {def: 200000, absent: 200000, since: "6.11"},
	KeyInvalidRatelimit:   {def: 500, absent: 0, since: "4.0"},
	KeyKeepaliveTime:      {def: 7200, absent: 7200},
	KeyKeepaliveIntvl:     {def: 75, absent: 75},
	KeyKeepaliveProbes:    {def: 9, absent: 9},
	// tcp_max_tw_buckets' default scales with the machine's memory (half
	// the established hash's size); 131072 is this workplace's.
	KeyMaxTwBuckets: {def: 131072, absent: 131072},
	KeyTimestamps:   {def: 1, absent: 1},
	KeyRFC1337:      {def: 0, absent: 0},
}

// Keys returns the sysctl keys the model reads, sorted. A run reads these in
// each host's namespace and hands them to the model unchanged.
func Keys() []string {
	out := make([]string, 0, len(keys))
	for k := range keys {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Defaults returns the Linux 6.18 default of every key the model reads, as a
// fresh network namespace shows them.
func Defaults() Sysctls {
	out := make(Sysctls, len(keys))
	for k, ki := range keys {
		out[k] = strconv.FormatInt(ki.def, 10)
	}
	return out
}

// Read reads the keys the model uses from a /proc/sys-like directory tree
// (for example "/proc/sys", which shows the caller's network namespace).
// Files that do not exist are left out, so that the model applies the
// behaviour of a kernel without them. Values are stored with their
// whitespace normalised to single spaces.
func Read(procSys string) (Sysctls, error) {
	out := Sysctls{}
	for _, k := range Keys() {
		p := filepath.Join(procSys, filepath.FromSlash(strings.ReplaceAll(k, ".", "/")))
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read sysctl %s: %w", k, err)
		}
		out[k] = strings.Join(strings.Fields(string(b)), " ")
	}
	return out, nil
}

// reader looks values up and collects notes about missing or invalid ones,
// so that Explain can say what the model assumed.
type reader struct {
	s     Sysctls
	notes []string
}

func (r *reader) int(key string) int64 {
	ki, known := keys[key]
	if !known {
		panic("tcpmodel: unknown key " + key)
	}
	raw, ok := r.s[key]
	if !ok {
		if ki.since != "" && ki.absent != ki.def {
			r.notes = append(r.notes, fmt.Sprintf("%s is absent, as in kernels before %s, so it counts as %d", short(key), ki.since, ki.absent))
		}
		return ki.absent
	}
	v, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
	if err != nil || v < 0 {
		r.notes = append(r.notes, fmt.Sprintf("%s=%q is not a non-negative integer, so the default %d was used", short(key), raw, ki.def))
		return ki.def
	}
	return v
}

func (r *reader) explain(main string) string {
	if len(r.notes) == 0 {
		return main
	}
	return main + " Assumed: " + strings.Join(r.notes, "; ") + "."
}

func short(key string) string { return strings.TrimPrefix(key, "net.ipv4.") }

// clock converts between jiffies and real time for one HZ.
type clock struct{ hz int64 }

func newClock() clock {
	if HZ < 1 {
		return clock{hz: 250}
	}
	return clock{hz: int64(HZ)}
}

// usecs is usecs_to_jiffies: it rounds up.
func (c clock) usecs(us int64) int64 { return (us*c.hz + 999999) / 1000000 }

// msecs is msecs_to_jiffies: it rounds up.
func (c clock) msecs(ms int64) int64 { return (ms*c.hz + 999) / 1000 }

// toMsecs is jiffies_to_msecs, exact when HZ divides 1000 and rounded up
// otherwise, as the kernel does.
func (c clock) toMsecs(j int64) int64 { return (j*1000 + c.hz - 1) / c.hz }

// dur converts jiffies to a duration.
func (c clock) dur(j int64) time.Duration {
	return time.Duration(j) * time.Second / time.Duration(c.hz)
}

func (c clock) durs(js []int64) []time.Duration {
	out := make([]time.Duration, len(js))
	for i, j := range js {
		out[i] = c.dur(j)
	}
	return out
}

// offsetsToIntervals returns the gaps between consecutive offsets, the first
// one measured from 0 (the original transmission).
func offsetsToIntervals(offsets []time.Duration) []time.Duration {
	out := make([]time.Duration, len(offsets))
	var prev time.Duration
	for i, o := range offsets {
		out[i] = o - prev
		prev = o
	}
	return out
}

// fmtDur prints a duration the way the explanations and reports use it:
// "1 s", "204 ms", "928.896 s".
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', -1, 64) + " µs"
	case d < time.Second && d%time.Millisecond == 0:
		return fmt.Sprintf("%d ms", d/time.Millisecond)
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', -1, 64) + " ms"
	case d%time.Second == 0:
		return fmt.Sprintf("%d s", d/time.Second)
	default:
		return strconv.FormatFloat(float64(d)/float64(time.Second), 'f', -1, 64) + " s"
	}
}

// fmtList prints durations compactly, runs of equal values collapsed:
// "1 s ×5, 2 s, 4 s".
func fmtList(ds []time.Duration) string {
	var parts []string
	for i := 0; i < len(ds); {
		j := i
		for j < len(ds) && ds[j] == ds[i] {
			j++
		}
		if n := j - i; n > 2 {
			parts = append(parts, fmt.Sprintf("%s ×%d", fmtDur(ds[i]), n))
		} else {
			for k := i; k < j; k++ {
				parts = append(parts, fmtDur(ds[k]))
			}
		}
		i = j
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// Early is the neighbouring outcome of a Borderline schedule: the kernel
// gives up at the expiry where it was predicted to send its last
// retransmission, because its timers fired late enough for the time-based
// rule to be met there. Count is one less, and GiveUp is that expiry.
func (s Schedule) Early() Schedule {
	if !s.Borderline || s.Count == 0 {
		return s
	}
	e := s
	e.Count = s.Count - 1
	e.Offsets = append([]time.Duration{}, s.Offsets[:e.Count]...)
	e.Intervals = append([]time.Duration{}, s.Intervals[:e.Count]...)
	e.GiveUp = s.Offsets[e.Count]
	e.Explain = s.Explain + fmt.Sprintf(" That last expiry fell within the timers' lateness of the give-up time, so the kernel may give up there instead: %d retransmissions, ETIMEDOUT at %s.", e.Count, fmtDur(e.GiveUp))
	return e
}

// ranges are the values the kernel accepts for the keys it bounds
// (net/ipv4/sysctl_net_ipv4.c: proc_dointvec_minmax and friends); the
// model's other keys take any integer.
var ranges = map[string][2]int64{
	KeySynRetries:         {1, 127},
	KeySynLinearTimeouts:  {0, 127},
	KeyEarlyRetrans:       {0, 4},
	KeySack:               {0, 1},
	KeyThinLinearTimeouts: {0, 1},
	KeyRTOMaxMs:           {1000, 120000},
	KeyRTOMinUs:           {1, 2147483647},
	KeyTimestamps:         {0, 2},
	KeyRFC1337:            {0, 1},
}

// CheckValue says whether the kernel would take value for key, for the
// keys the model reads: an integer, within the kernel's bounds where it has
// them. Other keys are left to the kernel (nil).
func CheckValue(key, value string) error {
	if _, known := keys[key]; !known {
		return nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
	if err != nil {
		return fmt.Errorf("want an integer")
	}
	if r, ok := ranges[key]; ok && (n < r[0] || n > r[1]) {
		return fmt.Errorf("out of the kernel's range %d to %d", r[0], r[1])
	}
	if n < 0 {
		return fmt.Errorf("want 0 or more")
	}
	return nil
}
