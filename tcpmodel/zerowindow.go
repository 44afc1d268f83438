package tcpmodel

import (
	"fmt"
	"math/bits"
	"time"
)

// ZeroWindowProbes predicts the sender's zero-window probes (the persist
// timer) while the receiver keeps its window closed for closed, measured
// from the receiver's zero-window segment. rto is the connection's RTO when
// the window closed (RTO gives it from the RTT samples); 0 means that of an
// idle link of microseconds, as between namespaces: tcp_rto_min.
//
// The rules, from tcp_ack_probe(), tcp_send_probe0() and tcp_probe_timer()
// in net/ipv4/tcp_input.c, tcp_output.c and tcp_timer.c (Linux 6.18):
//   - once nothing is in flight and the window is zero, the timer is armed
//     for tcp_probe0_base = max(RTO, TCP_RTO_MIN): on a fast link the RTO
//     is srtt + tcp_rto_min (200 ms), rounded up to jiffies: 204 ms at
//     HZ=250; a receiver that delays its ACKs makes srtt, and the RTO,
//     longer;
//   - each expiry sends a probe (no payload, at the sequence number before
//     the next one) and re-arms for base << icsk_backoff, icsk_backoff
//     growing by one per probe while it is below tcp_retries2, the shift
//     capped at ilog2(TCP_RTO_MAX / TCP_RTO_MIN) + 1 = 10, the result capped
//     at tcp_rto_max_ms (120 s);
//   - the receiver's answer to a probe re-arms the timer with the same
//     backoff (one RTT later, nothing to see), and resets the probe count
//     that would make the sender give up: a sender whose probes are
//     answered probes for ever (RFC 1122 4.2.2.17), so there is no give-up
//     time unless TCP_USER_TIMEOUT is set or the socket is orphaned;
//   - a window that opens resets the backoff, so every stall starts at base.
//
// Count is the number of expiries before closed; Borderline is set when the
// last of them is due within the timers' possible lateness of closed, so
// one probe fewer may be seen.
func ZeroWindowProbes(s Sysctls, rto, closed time.Duration) Schedule {
	r := &reader{s: s}
	c := newClock()
	retries2 := r.int(KeyRetries2)
	rtoMaxJ := c.msecs(r.int(KeyRTOMaxMs))
	rtoMinJ := max(c.usecs(r.int(KeyRTOMinUs)), 1)
	rtoMinUs := rtoMinJ * 1000000 / c.hz
	rtoUs := rto.Microseconds()
	how := fmt.Sprintf("the connection's RTO %s", fmtDur(rto))
	if rtoUs <= 0 {
		// An idle link of microseconds: srtt of 1 µs plus tcp_rto_min.
		rtoUs = 1 + rtoMinUs
		how = fmt.Sprintf("srtt 1 µs + tcp_rto_min %s", fmtDur(c.dur(rtoMinJ)))
	}
	rtoJ := min(max(c.usecs(rtoUs), rtoMinJ), rtoMaxJ)
	// TCP_RTO_MIN and TCP_RTO_MAX are compile-time constants here, not the
	// sysctls: tcp_probe0_base and the backoff cap in tcp_probe0_when use
	// them as such.
	constMinJ := c.hz / 5
	baseJ := max(rtoJ, constMinJ)
	shiftCapN := int64(bits.Len64(uint64(120*c.hz/constMinJ))-1) + 1

	var offs []int64
	var now int64
	backoff := int64(0)
	borderline := false
	slack := func(at int64, n int) time.Duration { return c.wheelSlack(c.dur(at), n) }
	for n := 0; n < maxSteps; n++ {
		next := now + shiftCap(baseJ, min(backoff, shiftCapN), rtoMaxJ)
		d := c.dur(next)
		if d >= closed {
			break
		}
		// Timers fire late, never early, and each probe re-arms from the
		// late one before it: an expiry due shortly before the window
		// opened may come after it.
		if closed-d <= slack(next, n+1) {
			borderline = true
		}
		offs = append(offs, next)
		now = next
		if backoff < retries2 {
			backoff++
		}
	}
	offsets := c.durs(offs)
	sc := Schedule{
		Count:      len(offsets),
		Offsets:    offsets,
		Intervals:  offsetsToIntervals(offsets),
		Borderline: borderline,
	}
	main := fmt.Sprintf("Persist timer: the first probe max(RTO, TCP_RTO_MIN) = %s after the window closed (%s, in jiffies at HZ=%d), then doubling (backoff below tcp_retries2=%d, shift at most %d), at most tcp_rto_max %s; the window stayed closed %s: %d probes (%s). Answered probes never make the sender give up.",
		fmtDur(c.dur(baseJ)), how, c.hz, retries2, shiftCapN, fmtDur(c.dur(rtoMaxJ)), fmtDur(closed.Round(time.Millisecond)), sc.Count, fmtList(sc.Intervals))
	sc.Explain = r.explain(main)
	return sc
}

// RTTSample is one RTT measurement, with what the estimator needs to tell
// round trips apart: the sender's snd_una after the ACK and its snd_nxt
// then.
type RTTSample struct {
	RTT      time.Duration
	Una, Nxt uint32
}

// RTO replays the kernel's RTT estimator over a connection's samples, in
// order, and returns the RTO after the last one, and srtt. The rules, from
// tcp_rtt_estimator() and tcp_set_rto() in net/ipv4/tcp_input.c: the first
// sample m sets srtt = m and mdev = 2m (kept as four times the mean
// deviation), rttvar = max(mdev, tcp_rto_min); each later one moves srtt by
// an eighth of the error and mdev by a quarter (by a 32nd when the RTT
// falls); mdev_max, the largest mdev of the current round trip, raises
// rttvar at once, and once per round trip (snd_una past the snd_nxt of the
// round trip's start) rttvar decays a quarter of the way down to it and
// mdev_max restarts at tcp_rto_min. RTO = srtt + rttvar in microseconds,
// rounded up to jiffies, at most tcp_rto_max. With no sample it is
// TCP_TIMEOUT_INIT (1 s).
func RTO(s Sysctls, samples []RTTSample) (rto, srtt time.Duration) {
	r := &reader{s: s}
	c := newClock()
	rtoMinUs := max(c.usecs(r.int(KeyRTOMinUs)), 1) * 1000000 / c.hz
	rtoMaxJ := c.msecs(r.int(KeyRTOMaxMs))
	if len(samples) == 0 {
		return TimeoutInit, 0
	}
	var srtt8, mdev, mdevMax, rttvar int64
	var rttSeq uint32
	for i, sm := range samples {
		m := max(sm.RTT.Microseconds(), 1)
		if i == 0 {
			srtt8 = m << 3
			mdev = m << 1
			rttvar = max(mdev, rtoMinUs)
			mdevMax = rttvar
			rttSeq = sm.Nxt
			continue
		}
		m -= srtt8 >> 3
		srtt8 += m
		if m < 0 {
			m = -m
			m -= mdev >> 2
			if m > 0 {
				m >>= 3
			}
		} else {
			m -= mdev >> 2
		}
		mdev += m
		if mdev > mdevMax {
			mdevMax = mdev
			if mdevMax > rttvar {
				rttvar = mdevMax
			}
		}
		if int32(sm.Una-rttSeq) > 0 {
			if mdevMax < rttvar {
				rttvar -= (rttvar - mdevMax) >> 2
			}
			rttSeq = sm.Nxt
			mdevMax = rtoMinUs
		}
		srtt8 = max(srtt8, 1)
	}
	rtoJ := min(c.usecs((srtt8>>3)+rttvar), rtoMaxJ)
	return c.dur(rtoJ), time.Duration(srtt8>>3) * time.Microsecond
}
