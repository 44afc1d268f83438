package tcpmodel

import (
	"fmt"
	"math/bits"
	"sort"
	"strings"
	"time"
)

// maxSteps bounds every walk. The kernel's own limits are lower in practice
// (tcp_syn_retries <= 127, and a tcp_retries2 of thousands means days), but a
// bound keeps a typo in a scenario from turning into a long loop.
const maxSteps = 4096

// Late-timer allowance used by Tolerance, measured on this workplace's
// machines: retransmissions left +16 ms to +290 ms late, up to +4.8 % on a
// 32 s timer.
const (
	LateTimerBase     = 300 * time.Millisecond
	LateTimerPercent  = 5
	packetdrillDivide = 8 // packetdrill's 12.5 % rule: interval/8
)

// Tolerance returns how far an observed time may be from the model's:
// max(floor, 12.5 % of interval), packetdrill's rule, plus the late-timer
// allowance of 300 ms + 5 % of interval, everything multiplied by slow (a
// --slow factor for loaded CI machines; slow <= 0 means 1). The timer wheel
// rounds each expiry up to its level's granularity (32 ms for delays of
// 0.25-2 s, 256 ms up to 16 s, 2.048 s up to 131 s at HZ=250), which is where
// the lateness comes from. Pass the interval being checked; for an offset
// from the original transmission pass the offset, since lateness
// accumulates along a ladder.
func Tolerance(interval, floor time.Duration, slow float64) time.Duration {
	if interval < 0 {
		interval = -interval
	}
	if slow <= 0 {
		slow = 1
	}
	t := max(floor, interval/packetdrillDivide) + LateTimerBase + interval*LateTimerPercent/100
	return time.Duration(float64(t) * slow)
}

// ModelTimeout is tcp_model_timeout() in net/ipv4/tcp_timer.c: the time that
// boundary retransmissions would take if the first waited rtoBase and each
// later one doubled it, capped at rtoMax. The kernel gives up on a connection
// when this much time has passed since its first retransmission
// (retransmits_timed_out): tcp_retries2 is a time budget, not a count. For
// established connections rtoBase is TCP_RTO_MIN (200 ms) whatever the real
// RTO; for SYN_SENT it is TCP_TIMEOUT_INIT (1 s). With the defaults
// (boundary 15, 200 ms, 120 s) it is 924.6 s.
func ModelTimeout(boundary int, rtoBase, rtoMax time.Duration) time.Duration {
	c := newClock()
	base := c.msecs(rtoBase.Milliseconds())
	return time.Duration(modelTimeoutMs(c, int64(boundary), base, c.msecs(rtoMax.Milliseconds()))) * time.Millisecond
}

// modelTimeoutMs works in jiffies, as the kernel does, and returns
// milliseconds (jiffies_to_msecs).
func modelTimeoutMs(c clock, boundary, baseJ, maxJ int64) int64 {
	if baseJ < 1 {
		baseJ = 1
	}
	thresh := int64(0)
	if q := maxJ / baseJ; q > 0 {
		thresh = int64(bits.Len64(uint64(q)) - 1) // ilog2
	}
	var j int64
	if boundary <= thresh {
		j = ((2 << boundary) - 1) * baseJ
	} else {
		j = ((2<<thresh)-1)*baseJ + (boundary-thresh)*maxJ
	}
	return c.toMsecs(j)
}

// wheelSlack bounds how late a chain of n timers spanning d can run in
// total: the timer wheel delays each expiry by at most 12.5 % of its delay,
// plus a tick.
func (c clock) wheelSlack(d time.Duration, n int) time.Duration {
	return d/8 + time.Duration(n)*c.dur(1)
}

// shiftCap returns min(base << n, limit) without overflowing.
func shiftCap(base int64, n int64, limit int64) int64 {
	if n >= 40 {
		return limit
	}
	return min(base<<n, limit)
}

// SYN predicts the client's SYN retransmissions in SYN_SENT when nothing
// answers (a dropped SYN or a dropped SYN-ACK), from the original SYN.
//
// The rules, from tcp_retransmit_timer() and tcp_write_timeout() in
// net/ipv4/tcp_timer.c: the first RTO is TCP_TIMEOUT_INIT (1 s). After the
// n-th retransmission the RTO stays at 1 s while n <= tcp_syn_linear_timeouts
// (Linux >= 6.5, default 4) and doubles otherwise, capped at tcp_rto_max_ms
// (120 s). At each timer expiry the kernel first asks whether to give up:
// when the retransmission count has reached tcp_syn_retries +
// tcp_syn_linear_timeouts, or when the time since the original SYN has
// reached ModelTimeout(tcp_syn_retries, 1 s), whichever comes first; the
// second rule ends the ladder early when the linear phase is long compared
// with tcp_syn_retries (tcp_syn_retries=2 with 4 linear timeouts gives up at
// 7 s after 5 retransmissions, not 6). connect() then fails with ETIMEDOUT
// (errno 110). A TCP_SYNCNT socket option or a BPF program that changes the
// initial timeout overrides the sysctls; the model does not see those.
func SYN(s Sysctls) Schedule {
	r := &reader{s: s}
	c := newClock()
	retries := r.int(KeySynRetries)
	linear := r.int(KeySynLinearTimeouts)
	rtoMaxJ := c.msecs(r.int(KeyRTOMaxMs))
	initJ := c.hz // TCP_TIMEOUT_INIT
	limit := time.Duration(modelTimeoutMs(c, retries, initJ, rtoMaxJ)) * time.Millisecond

	var offs []int64
	rto := initJ
	expiry := rto
	n := int64(0)
	byTime, borderline := false, false
	for step := 0; step < maxSteps; step++ {
		if n >= retries+linear {
			break
		}
		if n > 0 {
			el := c.dur(expiry) // retrans_stamp is the original SYN's time (tcp_connect)
			if el >= limit {
				byTime = true
				break
			}
			if limit-el <= c.wheelSlack(el, int(n)) {
				borderline = true
			}
		}
		offs = append(offs, expiry)
		n++
		if n > linear {
			rto = min(rto*2, rtoMaxJ)
		}
		expiry += rto
	}

	offsets := c.durs(offs)
	sc := Schedule{
		Count:      len(offsets),
		Offsets:    offsets,
		Intervals:  offsetsToIntervals(offsets),
		GiveUp:     c.dur(expiry),
		Borderline: borderline,
	}
	why := fmt.Sprintf("the count reached tcp_syn_retries + tcp_syn_linear_timeouts = %d", retries+linear)
	if byTime {
		why = fmt.Sprintf("the time since the original SYN reached %s, the model time of tcp_syn_retries=%d exponential retransmissions from 1 s", fmtDur(limit), retries)
	}
	backoff := fmt.Sprintf("exponential backoff from 1 s up to %s", fmtDur(c.dur(rtoMaxJ)))
	if linear > 0 {
		backoff = fmt.Sprintf("the RTO stays at 1 s for the first %d retransmissions, then doubles up to %s", linear, fmtDur(c.dur(rtoMaxJ)))
	}
	main := fmt.Sprintf("tcp_syn_retries=%d + tcp_syn_linear_timeouts=%d: %d SYN retransmissions, intervals %s (%s); connect() fails with ETIMEDOUT at %s because %s.",
		retries, linear, sc.Count, fmtList(sc.Intervals), backoff, fmtDur(sc.GiveUp), why)
	sc.Explain = r.explain(main)
	return sc
}

// SYNACK predicts the server's timer-driven SYN-ACK retransmissions for one
// request socket (SYN_RECV) whose SYN-ACK or final ACK is lost, measured from
// the original SYN-ACK; GiveUp is when the request is dropped and the server
// forgets the connection without telling the client.
//
// The rules, from reqsk_timer_handler() and reqsk_timeout() in
// net/ipv4/inet_connection_sock.c: the timer first fires after
// TCP_TIMEOUT_INIT (1 s); at each expiry the request is dropped if
// num_timeout has reached tcp_synack_retries (default 5), and otherwise the
// SYN-ACK is resent and the timer re-armed for 1 s << num_timeout, capped at
// tcp_rto_max_ms. So the default resends at 1, 3, 7, 15, 31 s and drops at
// 63 s. tcp_syn_linear_timeouts applies only to SYN_SENT sockets, never to
// request sockets.
//
// Not modelled here: each retransmitted SYN from the client makes the
// server answer with an immediate extra SYN-ACK and re-arm (postpone) this
// timer without advancing its backoff (tcp_check_req(); see SYNACKWithSYNs);
// a listener whose queue is more than half full of old requests lowers the
// retry count for them; TCP_DEFER_ACCEPT and TCP_SYNCNT on the listener
// change the count.
func SYNACK(s Sysctls) Schedule {
	r := &reader{s: s}
	c := newClock()
	retries := r.int(KeySynackRetries)
	rtoMaxJ := c.msecs(r.int(KeyRTOMaxMs))
	initJ := c.hz

	var offs []int64
	expiry := initJ
	for n := int64(0); n < retries && n < maxSteps; n++ {
		offs = append(offs, expiry)
		expiry += shiftCap(initJ, n+1, rtoMaxJ)
	}
	offsets := c.durs(offs)
	sc := Schedule{
		Count:     len(offsets),
		Offsets:   offsets,
		Intervals: offsetsToIntervals(offsets),
		GiveUp:    c.dur(expiry),
	}
	main := fmt.Sprintf("tcp_synack_retries=%d: the request socket's timer resends the SYN-ACK %d times, intervals %s (TCP_TIMEOUT_INIT << num_timeout, capped at %s), and drops the request at %s; tcp_syn_linear_timeouts does not apply to request sockets.",
		retries, sc.Count, fmtList(sc.Intervals), fmtDur(c.dur(rtoMaxJ)), fmtDur(sc.GiveUp))
	sc.Explain = r.explain(main)
	return sc
}

// SYNACKWithSYNs predicts every SYN-ACK a server sends for one request
// socket when all its SYN-ACKs are lost while the client keeps
// retransmitting its SYN. synOffsets are the arrival times of the
// retransmitted SYNs, measured from the original SYN (for example
// SYN(client).Offsets, the one-way delay being negligible on a veth link).
// Count and Offsets include both kinds of SYN-ACK; Explain says which is
// which; GiveUp is when the request is dropped.
//
// The rule, from tcp_check_req() in net/ipv4/tcp_minisocks.c: a pure
// retransmitted SYN is answered at once with a SYN-ACK, unless the previous
// such answer is less than tcp_invalid_ratelimit (500 ms) old, and the
// request timer is re-armed for 1 s << num_timeout from that moment, without
// advancing num_timeout. So a duplicate SYN does not reset the backoff or the
// retry count, but it does postpone the next timer-driven SYN-ACK, and the
// drop. When a SYN and the timer are due at the same nominal instant the
// model lets the timer run first (both expire in the same tick, and timers
// run before received packets are processed); such ties make the result
// Borderline. SYNs arriving after the drop start a new request, which this
// function does not follow.
func SYNACKWithSYNs(s Sysctls, synOffsets []time.Duration) Schedule {
	r := &reader{s: s}
	c := newClock()
	retries := r.int(KeySynackRetries)
	rtoMaxJ := c.msecs(r.int(KeyRTOMaxMs))
	rateJ := c.msecs(r.int(KeyInvalidRatelimit))
	initJ := c.hz

	var syns []int64
	for _, o := range synOffsets {
		if o > 0 {
			syns = append(syns, int64((o*time.Duration(c.hz)+time.Second-1)/time.Second))
		}
	}
	sort.Slice(syns, func(i, j int) bool { return syns[i] < syns[j] })

	type sent struct {
		at    int64
		bySYN bool
	}
	var out []sent
	numTimeout := int64(0)
	timer := initJ
	lastOOW := int64(-1)
	borderline := false
	for step := 0; step < maxSteps; step++ {
		if len(syns) > 0 && syns[0] < timer {
			at := syns[0]
			syns = syns[1:]
			if lastOOW >= 0 && at-lastOOW < rateJ {
				continue // rate-limited: no SYN-ACK, timer untouched
			}
			lastOOW = at
			out = append(out, sent{at: at, bySYN: true})
			timer = at + shiftCap(initJ, numTimeout, rtoMaxJ)
			continue
		}
		if len(syns) > 0 && syns[0] == timer {
			borderline = true
		}
		if numTimeout >= retries {
			break
		}
		out = append(out, sent{at: timer})
		numTimeout++
		timer += shiftCap(initJ, numTimeout, rtoMaxJ)
	}

	offs := make([]int64, len(out))
	desc := make([]string, len(out))
	bySYN := 0
	for i, o := range out {
		offs[i] = o.at
		kind := "timer"
		if o.bySYN {
			kind = "SYN"
			bySYN++
		}
		desc[i] = fmtDur(c.dur(o.at)) + " (" + kind + ")"
	}
	offsets := c.durs(offs)
	sc := Schedule{
		Count:      len(offsets),
		Offsets:    offsets,
		Intervals:  offsetsToIntervals(offsets),
		GiveUp:     c.dur(timer),
		Borderline: borderline,
	}
	list := "none"
	if len(desc) > 0 {
		list = strings.Join(desc, ", ")
	}
	main := fmt.Sprintf("tcp_synack_retries=%d with %d retransmitted SYNs: %d SYN-ACK retransmissions, %d of them answers to a duplicate SYN (each re-arms the request timer for 1 s << num_timeout without advancing num_timeout, so the drop moves to %s); sent at %s.",
		retries, len(synOffsets), sc.Count, bySYN, fmtDur(sc.GiveUp), list)
	sc.Explain = r.explain(main)
	return sc
}

// Data predicts the retransmissions of one unacknowledged data segment on an
// established connection whose peer has gone silent (the peer vanished, or
// a firewall drops everything), rtt being the connection's smoothed RTT
// (about 50 µs on a veth link). Offsets are from the original transmission;
// GiveUp is when the kernel kills the connection (ETIMEDOUT).
//
// The rules, from tcp_schedule_loss_probe() and tcp_send_loss_probe() in
// net/ipv4/tcp_output.c and tcp_retransmit_timer() in net/ipv4/tcp_timer.c:
//
//   - With tcp_early_retrans 3 or 4 (default 3) and SACK (tcp_sack=1), a tail
//     loss probe goes first, min(2*srtt + tcp_rto_min, RTO) after the
//     original. It retransmits the segment once, does not count as an RTO
//     retransmission, and re-arms the RTO timer for a full RTO from the probe.
//   - Each RTO expiry retransmits and doubles the RTO, capped at
//     tcp_rto_max_ms (120 s). With tcp_thin_linear_timeouts=1 a thin stream
//     (this one: one segment in flight) keeps its RTO for the first 6.
//   - At each RTO expiry the kernel first checks retransmits_timed_out(): the
//     connection dies once the time since the first RTO retransmission
//     (tp->retrans_stamp; the probe does not set it) has reached
//     ModelTimeout(tcp_retries2, 200 ms, tcp_rto_max_ms), 924.6 s for the
//     default 15. The model walks the expiries and stops at the first that
//     reaches it. So tcp_retries2 RTO retransmissions in the usual case, plus
//     the probe: tcp_retries2=5 gives 6, or 5 with tcp_early_retrans=0.
//
// Approximations: the RTO is taken as srtt + tcp_rto_min, the kernel's
// steady state, rounded up to jiffies (204 ms at HZ=250 for a veth RTT); a
// young connection with an RTT comparable to tcp_rto_min has a larger
// variance term (up to 3*srtt). SACK must be on at both ends; the model sees
// one host's sysctls only. A per-route rto_min, TCP_USER_TIMEOUT, orphaned
// sockets (tcp_orphan_retries) and a zero window (which turns retransmissions
// into probes) are not modelled.
func Data(s Sysctls, rtt time.Duration) Schedule { return DataRTO(s, rtt, 0) }

// DataRTO is Data for a connection whose RTO the capture gives (RTO over
// its RTT samples): the RTO a segment is first retransmitted with is then
// srtt plus the connection's rttvar, not the steady state's srtt +
// tcp_rto_min. That matters for the give-up: retransmits_timed_out compares
// the time since the first RTO retransmission with a budget made of
// 200 ms doublings, so an RTO of 216 ms (a MySQL session's 12 ms srtt)
// crosses the budget of tcp_retries2=3 one expiry earlier than 204 ms
// does. rto 0 means the steady state.
func DataRTO(s Sysctls, rtt, rto time.Duration) Schedule {
	r := &reader{s: s}
	c := newClock()
	retries2 := r.int(KeyRetries2)
	early := r.int(KeyEarlyRetrans)
	sack := r.int(KeySack)
	thin := r.int(KeyThinLinearTimeouts)
	rtoMaxJ := c.msecs(r.int(KeyRTOMaxMs))
	rtoMinJ := max(c.usecs(r.int(KeyRTOMinUs)), 1)
	rtoMinUs := rtoMinJ * 1000000 / c.hz // tcp_rto_min_us(): back from jiffies

	// The kernel never keeps a zero srtt on an established connection; a
	// floor of 1 µs keeps the arithmetic on the kernel's RTT-based path.
	srttUs := max(rtt.Microseconds(), 1)
	rtoJ := min(max(c.usecs(srttUs+rtoMinUs), rtoMinJ), rtoMaxJ)
	if rto > 0 {
		rtoJ = min(max(c.usecs(rto.Microseconds()), rtoMinJ), rtoMaxJ)
	}

	tlp := (early == 3 || early == 4) && sack != 0
	var offs []int64
	now := int64(0)
	var tlpJ int64
	if tlp {
		tlpJ = min(c.usecs(2*srttUs+rtoMinUs), rtoJ)
		now = tlpJ
		offs = append(offs, now)
	}
	limit := time.Duration(modelTimeoutMs(c, retries2, c.hz/5, rtoMaxJ)) * time.Millisecond

	cur := rtoJ
	expiry := now + cur
	n := int64(0)
	var stamp int64
	borderline, truncated := false, false
	for {
		if n > 0 {
			el := c.dur(expiry - stamp)
			if el >= limit {
				break
			}
			if limit-el <= c.wheelSlack(el, int(n)) {
				borderline = true
			}
		}
		if n >= maxSteps {
			truncated = true
			break
		}
		n++
		if n == 1 {
			stamp = expiry
		}
		offs = append(offs, expiry)
		if thin != 0 && n <= ThinLinearRetries {
			cur = rtoJ
		} else {
			cur = min(cur*2, rtoMaxJ)
		}
		expiry += cur
	}

	offsets := c.durs(offs)
	sc := Schedule{
		Count:      len(offsets),
		Offsets:    offsets,
		Intervals:  offsetsToIntervals(offsets),
		GiveUp:     c.dur(expiry),
		Borderline: borderline,
	}
	probe := fmt.Sprintf("no tail loss probe (tcp_early_retrans=%d, tcp_sack=%d)", early, sack)
	if tlp {
		probe = fmt.Sprintf("tcp_early_retrans=%d with SACK: a tail loss probe at %s", early, fmtDur(c.dur(tlpJ)))
	}
	backoff := "doubling"
	if thin != 0 {
		backoff = fmt.Sprintf("constant for the first %d (tcp_thin_linear_timeouts=1), then doubling", ThinLinearRetries)
	}
	rtoFrom := fmt.Sprintf("srtt %s + tcp_rto_min %s", fmtDur(time.Duration(srttUs)*time.Microsecond), fmtDur(c.dur(rtoMinJ)))
	if rto > 0 {
		rtoFrom = fmt.Sprintf("the connection's, from its RTT samples: srtt %s", fmtDur(time.Duration(srttUs)*time.Microsecond))
	}
	main := fmt.Sprintf("%s, then %d RTO retransmissions from an RTO of %s (%s, in jiffies at HZ=%d), %s up to %s: %d retransmissions in all. tcp_retries2=%d allows %s from the first RTO retransmission (tcp_model_timeout from TCP_RTO_MIN); the connection fails with ETIMEDOUT at the first RTO expiry past it, %s after the original.",
		probe, n, fmtDur(c.dur(rtoJ)), rtoFrom, c.hz, backoff, fmtDur(c.dur(rtoMaxJ)), sc.Count, retries2, fmtDur(limit), fmtDur(sc.GiveUp))
	if truncated {
		main += fmt.Sprintf(" The walk stopped after %d retransmissions.", maxSteps)
	}
	sc.Explain = r.explain(main)
	return sc
}

// Keepalive predicts the keepalive probes on an idle connection whose peer
// has vanished, measured from the last data or ACK received: probes at
// tcp_keepalive_time, then every tcp_keepalive_intvl, tcp_keepalive_probes of
// them; the next expiry finds that many probes unanswered, sends a RST and
// reports ETIMEDOUT, at time + probes*intvl (tcp_keepalive_timer() in
// net/ipv4/tcp_timer.c). The defaults give 7200 s + 9 × 75 s = 7875 s. The
// socket must have SO_KEEPALIVE on; TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT
// and TCP_USER_TIMEOUT on the socket override the sysctls, and unacknowledged
// data in flight makes the retransmission timer, not this one, decide.
func Keepalive(s Sysctls) Schedule {
	r := &reader{s: s}
	idle := time.Duration(r.int(KeyKeepaliveTime)) * time.Second
	intvl := time.Duration(r.int(KeyKeepaliveIntvl)) * time.Second
	probes := r.int(KeyKeepaliveProbes)
	probes = min(probes, maxSteps)

	sc := Schedule{Count: int(probes), Offsets: make([]time.Duration, 0, probes)}
	for i := int64(0); i < probes; i++ {
		sc.Offsets = append(sc.Offsets, idle+time.Duration(i)*intvl)
	}
	sc.Intervals = offsetsToIntervals(sc.Offsets)
	sc.GiveUp = idle + time.Duration(probes)*intvl
	main := fmt.Sprintf("tcp_keepalive_time=%s, tcp_keepalive_intvl=%s, tcp_keepalive_probes=%d: probes at %s after the last activity; at %s the timer finds %d unanswered probes, sends a RST and the socket reports ETIMEDOUT.",
		fmtDur(idle), fmtDur(intvl), probes, offsetList(sc.Offsets), fmtDur(sc.GiveUp), probes)
	sc.Explain = r.explain(main)
	return sc
}

// offsetList prints offsets in full when short and elided when long.
func offsetList(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none (no probes)"
	}
	if len(ds) <= 4 {
		parts := make([]string, len(ds))
		for i, d := range ds {
			parts[i] = fmtDur(d)
		}
		return strings.Join(parts, ", ")
	}
	return fmt.Sprintf("%s, %s, ..., %s", fmtDur(ds[0]), fmtDur(ds[1]), fmtDur(ds[len(ds)-1]))
}
