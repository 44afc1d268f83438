package checks

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/client"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
	"github.com/labrun/labrun/tcpmodel"
)

func init() {
	register(Kind{
		CheckKind: scenarios.CheckKind{
			Name: "time_wait",
			Doc: "The TIME_WAITs a burst leaves on host (default the server), from its socket census (observe.census): who holds them follows the burst's close and the flavor, their peak tcpmodel.TimeWaits (rate × 60 s, the 4-tuples of the SNAT pool or ports, tcp_max_tw_buckets), " +
				"and each timer starts at TCP_TIMEWAIT_LEN, 60 s. Every other host with a census must hold none unless the model says so; expect.count replaces the peak.",
			Expect: []string{"count"},
			Step:   scenarios.StepAny,
			Validate: func(v *scenarios.Validator, path string, c *scenarios.Check) {
				host := validateBurst(v, path, c)
				for _, o := range v.Scenario().Observe.Census {
					if o.Host == host {
						return
					}
				}
				v.Add(path+".host", "time_wait reads the socket census of host %s: add it to observe.census", host)
			},
		},
		Eval: checkTimeWait,
		Plan: planTimeWait,
	})
}

// twHolder says which side of a burst's connections sends the first FIN and
// keeps TIME_WAIT: "server", "client", "none", or "either" for a race.
func twHolder(close, flavor string) (string, string) {
	switch close {
	case client.CloseQuit:
		return "server", "after COM_QUIT the server closes first (the client waits for its FIN, as PHP's close does), so the server holds TIME_WAIT"
	case client.CloseFIN:
		if flavor == "mysql" {
			return "none", "the client closes without COM_QUIT; MySQL answers the client's FIN with an error packet (1158), the client's closed socket resets on it, and nobody keeps TIME_WAIT"
		}
		return "client", "the client closes without COM_QUIT and sends the first FIN, so the client holds TIME_WAIT"
	case client.CloseRST:
		return "none", "the client resets its connections (SO_LINGER 0): no FIN, no TIME_WAIT on either side"
	case client.CloseLong:
		return "long", "long connections: only the few long connections close, at the end, with COM_QUIT and an immediate close, so each leaves one TIME_WAIT on whichever side wins the race for the first FIN"
	}
	return "either", "COM_QUIT then an immediate close: who sends the first FIN is a race the model cannot call"
}

func checkTimeWait(o *Observations, c *scenarios.Check, out *reports.Check) {
	st, b, res, ok := o.burstOf(c, out)
	if !ok {
		return
	}
	host := c.Host
	if host == "" {
		host = o.Scenario.Server.Host
	}
	var census *capture.CensusResult
	others := map[string]*capture.CensusResult{}
	for _, cr := range o.Census {
		if cr.Host == host {
			census = cr
		} else {
			others[cr.Host] = cr
		}
	}
	if census == nil || len(census.Samples) == 0 {
		out.Message = fmt.Sprintf("no socket census of host %s: nothing to count", host)
		return
	}
	holder, why := twHolder(b.CloseMode(), o.Flavor)
	role := func(h string) string {
		switch h {
		case o.Scenario.Server.Host:
			return "server"
		case st.Host:
			return "client"
		}
		return "other"
	}
	path := o.pathOf(st.Host, b)
	want := func(h string) (int, tcpmodel.TimeWaitCount) {
		if holder == "long" && role(h) != "other" {
			return res.Connected, tcpmodel.TimeWaitCount{Peak: res.Connected, By: "long connections", Lifetime: tcpmodel.TimeWait}
		}
		if role(h) != holder {
			return 0, tcpmodel.TimeWaitCount{Lifetime: tcpmodel.TimeWait, By: "no TIME_WAIT on this side"}
		}
		load := tcpmodel.TimeWaitLoad{Rate: float64(res.Completed) / b.For.D().Seconds(), For: b.For.D()}
		if role(h) == "server" {
			// Server side, every connection is one of the pool's
			// 4-tuples; client side, one of the client's own. A NAT that
			// forgets closed connections at once draws them at random.
			load.Tuples = path.Tuples
			if path.SNAT != "" && o.conntrackTimeWait() == 0 {
				load.Random = true
				load.Rejected = tcpmodel.SYNOnTimeWait(o.Sysctls[st.Host], o.Kernel, path.reuse()).Rejected
			}
		}
		m := tcpmodel.TimeWaits(o.Sysctls[h], load)
		return m.Peak, m
	}

	peak, peakAt := census.TimeWaitPeak()
	if peak < 0 {
		out.Message = fmt.Sprintf("every census sample of host %s failed (%s): nothing counted", host, census.Samples[0].Error)
		return
	}
	wantPeak, model := want(host)
	if holder == "either" && (c.Expect == nil || c.Expect.Count == nil) {
		out.Observed = map[string]any{"peak": peak}
		out.Message = "close quit-now makes the first FIN a race: the model cannot say who holds TIME_WAIT; give expect.count"
		return
	}
	lo, hi := peakBand(wantPeak, model.By)
	if model.By == "4-tuples drawn at random" && path.TuplesLow != path.TuplesHigh {
		// The pool addresses the clients hash to are themselves drawn.
		load := tcpmodel.TimeWaitLoad{Rate: float64(res.Completed) / b.For.D().Seconds(), For: b.For.D(), Random: true,
			Rejected: tcpmodel.SYNOnTimeWait(o.Sysctls[st.Host], o.Kernel, path.reuse()).Rejected}
		load.Tuples = path.TuplesLow
		lo, _ = peakBand(tcpmodel.TimeWaits(o.Sysctls[host], load).Peak, model.By)
		load.Tuples = path.TuplesHigh
		_, hi = peakBand(tcpmodel.TimeWaits(o.Sysctls[host], load).Peak, model.By)
	}
	if c.Expect != nil && c.Expect.Count != nil {
		wantPeak, lo, hi = *c.Expect.Count, *c.Expect.Count, *c.Expect.Count
	}
	lt := census.TimeWaits
	exp := map[string]any{"holder": holder, "peak": wantPeak, "peak_band": []int{lo, hi}, "by": model.By}
	obs := map[string]any{"peak": peak, "peak_at_s": round3(peakAt.Sub(o.T0).Seconds()), "seen": lt.Seen,
		"completed": res.Completed, "tuples": path.Tuples}
	var fails []string
	if peak < lo || peak > hi {
		fails = append(fails, fmt.Sprintf("%s held at most %d TIME_WAITs, expected %d (%d to %d, %s)", host, peak, wantPeak, lo, hi, model.By))
	}
	if lt.Seen > 0 {
		// The timer is TCP_TIMEWAIT_LEN when the socket enters TIME_WAIT
		// and is first seen at most one gap later.
		slack := 50 * time.Millisecond
		exp["lifetime_s"] = tcpmodel.TimeWait.Seconds()
		exp["conntrack_time_wait_s"] = o.conntrackTimeWait().Seconds()
		obs["timer_at_first_sight_s"] = []float64{round3(lt.TimerMin.Seconds()), round3(lt.TimerMax.Seconds())}
		obs["sample_gap_s"] = round3(lt.Gap.Seconds())
		if lt.TimerMax > tcpmodel.TimeWait+slack || lt.TimerMin < tcpmodel.TimeWait-lt.Gap-slack {
			fails = append(fails, fmt.Sprintf("TIME_WAIT timers at first sight ran %s to %s, expected %s minus at most one sample gap (%s)",
				lt.TimerMin, lt.TimerMax, tcpmodel.TimeWait, lt.Gap))
		}
		if lt.Expired > 0 {
			obs["expired"] = lt.Expired
			obs["expired_lived_s"] = []float64{round3(lt.ExpiredMin.Seconds()), round3((lt.ExpiredMax + 2*lt.Gap).Seconds())}
			if lt.ExpiredMax+2*lt.Gap+slack < tcpmodel.TimeWait || lt.ExpiredMin > tcpmodel.TimeWait+slack {
				fails = append(fails, fmt.Sprintf("TIME_WAITs that ran out lived %s to %s, expected %s", lt.ExpiredMin, lt.ExpiredMax+2*lt.Gap, tcpmodel.TimeWait))
			}
		}
		obs["ended_early"] = lt.Ended
	} else if wantPeak > 0 {
		fails = append(fails, fmt.Sprintf("the census of %s followed no TIME_WAIT, so their lifetime is unobserved", host))
	}
	for _, h := range slices.Sorted(maps.Keys(others)) {
		p, _ := others[h].TimeWaitPeak()
		w, m := want(h)
		l, u := peakBand(w, m.By)
		if m.By != "long connections" {
			l, u = peakBand(w, "")
		}
		obs[h+"_peak"] = p
		exp[h+"_peak"] = w
		if p < l || p > u {
			fails = append(fails, fmt.Sprintf("%s held %d TIME_WAITs at most, expected %d: the %s", h, p, w, why))
		}
	}
	out.Expected, out.Observed = exp, obs
	out.Tolerance = fmt.Sprintf("peak within %d to %d; timers within one sample gap + 50ms of %s", lo, hi, tcpmodel.TimeWait)
	out.Explain = why + ". " + model.Explain + fmt.Sprintf(" Server-side 4-tuples: %s. Linux's TIME_WAIT is TCP_TIMEWAIT_LEN, %s; conntrack keeps its own TIME_WAIT entries for nf_conntrack_tcp_timeout_time_wait (%s here).",
		path.Explain, tcpmodel.TimeWait, o.conntrackTimeWait())
	out.Evidence = append(out.Evidence, fmt.Sprintf("socket census of %s: %d samples, %d TIME_WAITs followed", host, len(census.Samples), lt.Seen))
	out.Passed = len(fails) == 0
	if !out.Passed {
		out.Message = joinFails(fails)
	}
}

// peakBand is the accepted range of a TIME_WAIT peak. Below rate × 60 s or
// the load's own count, TIME_WAITs that a new SYN on their 4-tuple
// recycled or reset, and sockets the census missed between two samples,
// lower the peak a little; a 4-tuple bound loses more, to the 4-tuples
// taken by connections being set up (a SYN answered by a bare ACK waits a
// second for its retransmission, holding its 4-tuple). No peak may exceed
// its bound.
func peakBand(want int, by string) (int, int) {
	switch by {
	case "4-tuples drawn at random":
		// The draw itself, and the NAT's own entries of reset attempts
		// (conntrack state CLOSE, about a third of 100 4-tuples at once),
		// which the model leaves out: measured 56 to 69 at 100 4-tuples
		// for a model of 67, 37245 at 60000 for 37724. Plus two for the
		// run's own connections.
		return int(math.Floor(float64(want) * 0.8)), int(math.Ceil(float64(want)*1.1)) + 2
	case "4-tuples":
		// Taken in turn, every 4-tuple is in TIME_WAIT but those in use;
		// plus two: the run's own connections from the server's host (its
		// readiness probe, its setup) may leave TIME_WAITs too.
		return int(math.Floor(float64(want) * 0.9)), want + 2
	case "tcp_max_tw_buckets":
		// The kernel caps them; between two samples a few may be gone.
		return int(math.Floor(float64(want) * 0.9)), want
	case "long connections":
		// Each long connection's TIME_WAIT is on one side or the other;
		// when both close at once behind a NAT that forgets at once, the
		// last segments pass untranslated, a second 4-tuple that the
		// server may hold too (measured on MariaDB: 2 for 1).
		return 0, 2 * want
	case "":
		return want, want
	}
	return int(math.Floor(float64(want)*0.95)) - 2, want + max(2, int(math.Ceil(float64(want)*0.02)))
}

// conntrackTimeWait is conntrack's TIME_WAIT timeout on the router that
// translates, else its default.
func (o *Observations) conntrackTimeWait() time.Duration {
	for _, nr := range natRules(o.Scenario) {
		if nr.Rule.Table == "nat" {
			return tcpmodel.ConntrackTimeWait(o.Sysctls[nr.Host])
		}
	}
	return tcpmodel.ConntrackTimeWaitDefault
}
