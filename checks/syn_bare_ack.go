package checks

import (
	"cmp"
	"fmt"
	"strconv"
	"time"

	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
	"github.com/labrun/labrun/tcpmodel"
)

func init() {
	register(Kind{
		CheckKind: scenarios.CheckKind{
			Name: "syn_bare_ack",
			Doc: "SYNs of a burst that land on a server TIME_WAIT and are answered by a bare ACK carrying the old connection's sequence, in host's capture (default the server's): " +
				"their count is the SYNs that met a TIME_WAIT times the model's share (tcpmodel.SYNOnTimeWait: one half behind a NAT without timestamps, none with one client clock and timestamps), within 4 standard deviations; each is reset by the client and costs it its first SYN timeout (1 s). expect.count replaces the model's count.",
			Expect: []string{"count", "tolerance"},
			Step:   scenarios.StepAny,
			Validate: func(v *scenarios.Validator, path string, c *scenarios.Check) {
				host := validateBurst(v, path, c)
				for _, h := range v.Scenario().Captures {
					if h == host {
						return
					}
				}
				v.Add(path+".host", "syn_bare_ack reads the capture of host %s: add it to captures", host)
			},
		},
		Eval: checkSYNBareACK,
		Plan: planSYNBareACK,
	})
}

func checkSYNBareACK(o *Observations, c *scenarios.Check, out *reports.Check) {
	st, b, res, a, ok := o.burstCapture(c, out)
	if !ok {
		return
	}
	host := cmp.Or(c.Host, o.Scenario.Server.Host)
	path := o.pathOf(st.Host, b)
	model := tcpmodel.SYNOnTimeWait(o.Sysctls[st.Host], o.Kernel, path.reuse())
	// Behind a NAT, a 4-tuple whose conntrack entry is still in TIME_WAIT
	// is handed out again only for a SYN whose sequence has advanced
	// (nf_nat_used_tuple_harder), which the server accepts: only the
	// TIME_WAITs the NAT has forgotten can meet a random sequence.
	met, forgotten := a.MetTimeWait, a.MetForgottenTimeWait
	exposed := forgotten
	nat := ""
	if path.SNAT != "" {
		nat = fmt.Sprintf(" Behind the NAT, a 4-tuple whose conntrack entry is still in TIME_WAIT (nf_conntrack_tcp_timeout_time_wait %s) is handed out again only to a SYN whose sequence has advanced, which the server accepts: %d of the %d SYNs met a TIME_WAIT the NAT had forgotten.",
			o.conntrackTimeWait(), forgotten, met)
	} else {
		exposed = met
	}
	explain := ""
	if v := o.Sysctls[o.Scenario.Server.Host][tcpmodel.KeyMaxTwBuckets]; v == "0" {
		exposed = 0
		explain = "tcp_max_tw_buckets=0 on the server: no TIME_WAIT to meet. "
	}
	want, tol := tcpmodel.Binomial(exposed, model.Rejected)
	lo, hi := want-float64(tol), want+float64(tol)
	if buckets, err := strconv.Atoi(o.Sysctls[o.Scenario.Server.Host][tcpmodel.KeyMaxTwBuckets]); err == nil && buckets > 0 && buckets < path.Tuples {
		// The server kept TIME_WAITs for only some of the 4-tuples the
		// capture shows closed: which SYNs met one, it cannot tell.
		lo = 0
		explain += fmt.Sprintf("tcp_max_tw_buckets=%d on the server, fewer than the %d 4-tuples: some closed connections left no TIME_WAIT, so the count is bounded from 0. ", buckets, path.Tuples)
	}
	if path.SNAT != "" && o.conntrackTimeWait() > 0 && model.Rejected > 0 {
		// A NAT that remembers closed connections for a while picks the
		// SYNs that get the 4-tuples it has just forgotten: measured on
		// Linux 6.18 with a 1 s conntrack TIME_WAIT, 198 of 202 of them
		// were rejected, not half. The model bounds the count between
		// half and all (and the binomial's floor of 2: 2 of 1897 SYNs met
		// a TIME_WAIT the NAT still remembered and were rejected all the
		// same, at 120 s).
		hi = float64(exposed + tol)
		nat += fmt.Sprintf(" A NAT that remembers closed connections (%s) hands a just-forgotten 4-tuple to a SYN it could not place elsewhere, most often one whose sequence is behind: between half and all of those SYNs are rejected.", o.conntrackTimeWait())
	}
	if c.Expect != nil && c.Expect.Count != nil {
		want, tol = float64(*c.Expect.Count), 0
		lo, hi = want, want
	}
	out.Expected = map[string]any{"bare_acks": round3(want), "met_time_wait": met, "exposed": exposed, "rejected_share": model.Rejected,
		"first_resend_ms": ms(model.FirstResend), "old_sequence": "every one", "client_rst": "every one"}
	obs := map[string]any{"bare_acks": a.BareACKs, "old_sequence": a.BareACKsOldSequence, "client_rst": a.BareACKsWithRST,
		"connections": a.Connections, "reused_ports": a.ReusedPorts, "client_syn_retransmitted": res.SYNRetransmitted}
	out.Observed = obs
	out.Explain = explain + model.Explain + fmt.Sprintf(". %d SYNs met a TIME_WAIT left by a connection the server closed first (%s; %s).", met, path.Explain, timestampText(path)) + nat
	out.Evidence = append(out.Evidence, fmt.Sprintf("%s.pcap: %s", host, a))
	for i, an := range a.Anomalies {
		if i == 5 {
			break
		}
		out.Evidence = append(out.Evidence, fmt.Sprintf("%s.pcap frames %v: SYN %s → %s seq %d, answered by ACK seq %d ack %d (the old connection's: %v)",
			host, an.Frames(), an.Client, an.Server, an.SYNSeq, an.Seq, an.Ack, an.OldSequence))
	}
	var fails []string
	if n := float64(a.BareACKs); n < lo || n > hi {
		fails = append(fails, fmt.Sprintf("%d SYNs answered by a bare ACK, expected %.0f to %.0f", a.BareACKs, max(lo, 0), hi))
	}
	out.Expected.(map[string]any)["bare_acks_range"] = []float64{max(lo, 0), hi}
	tolText := fmt.Sprintf("count from %.0f to %.0f (4 standard deviations of the binomial, or the NAT's bound)", max(lo, 0), hi)
	if a.BareACKs > 0 {
		if a.BareACKsOldSequence != a.BareACKs {
			fails = append(fails, fmt.Sprintf("%d of %d bare ACKs carried the old connection's sequence", a.BareACKsOldSequence, a.BareACKs))
		}
		// What an anomaly costs is seen where the whole attempt is: in the
		// client's capture, before the NAT gives a resent SYN another port.
		ca := o.TimeWait[st.Host]
		if ca == nil {
			fails = append(fails, fmt.Sprintf("no capture on %s: what the bare ACKs cost the client is unobserved", st.Host))
		} else {
			costTol := tcpmodel.Tolerance(model.FirstResend, 20*time.Millisecond, o.Slow)
			if c.Expect != nil && c.Expect.Tolerance != 0 {
				costTol = c.Expect.Tolerance.D()
			}
			tolText += fmt.Sprintf("; first resend within %s of the model", costTol)
			d := ca.FirstResendDelay
			obs["client_bare_acks"] = ca.BareACKs
			obs["client_rst"] = ca.BareACKsWithRST
			obs["first_resend_ms"] = map[string]any{"n": d.N, "min": ms(d.Min), "p50": ms(d.P50), "max": ms(d.Max)}
			obs["attempt_cost_ms"] = map[string]any{"n": ca.AnomalyCost.N, "p50": ms(ca.AnomalyCost.P50), "p99": ms(ca.AnomalyCost.P99), "max": ms(ca.AnomalyCost.Max)}
			out.Evidence = append(out.Evidence, fmt.Sprintf("%s.pcap: %s", st.Host, ca))
			switch {
			case ca.BareACKs == 0:
				fails = append(fails, fmt.Sprintf("the client's capture shows none of the bare ACKs the server sent"))
			case ca.BareACKsWithRST != ca.BareACKs:
				fails = append(fails, fmt.Sprintf("the client reset %d of %d bare ACKs", ca.BareACKsWithRST, ca.BareACKs))
			case d.N == 0:
				fails = append(fails, "the client never resent a SYN after a bare ACK: the cost is unobserved")
			case d.Min < model.FirstResend-costTol || d.Max > model.FirstResend+costTol:
				fails = append(fails, fmt.Sprintf("the client resent its SYN %s to %s after the first bare ACK, expected %s ± %s", d.Min, d.Max, model.FirstResend, costTol))
			}
		}
	}
	out.Tolerance = tolText
	out.Passed = len(fails) == 0
	if !out.Passed {
		out.Message = joinFails(fails)
	}
}

func ms(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }

func timestampText(p Path) string {
	switch {
	case p.Stripped != "":
		return "timestamps stripped by " + p.Stripped
	case !p.Timestamps:
		return "timestamps off"
	}
	return "timestamps kept"
}

// timeWait is the TIME_WAIT analysis of a host's capture.
func (o *Observations) timeWait(host string, out *reports.Check) (*capture.TimeWaitAnalysis, bool) {
	a := o.TimeWait[host]
	if a == nil {
		out.Message = fmt.Sprintf("no TIME_WAIT analysis of host %s's capture: is it captured?", host)
		return nil, false
	}
	if a.TCPPackets == 0 {
		out.Message = fmt.Sprintf("the capture of host %s holds no segment of the server's port", host)
		return nil, false
	}
	return a, true
}
