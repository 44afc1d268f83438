package checks

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
	"github.com/labrun/labrun/tcpmodel"
)

func init() {
	register(Kind{
		CheckKind: scenarios.CheckKind{
			Name:   "data_retransmits",
			Doc:    "Retransmissions of the data segment that is never acknowledged (the client's, or the server's when host is the server's): count and intervals from its first transmission; the model is tcpmodel.Data for the sender's tcp_retries2, tcp_early_retrans (tail loss probe) and RTO bounds.",
			Expect: []string{"count", "intervals", "tolerance"},
			Step:   scenarios.StepConnection,
		},
		Eval: checkData,
		Plan: func(p *PlanEnv, c *scenarios.Check) (map[string]any, string) {
			return planSchedule(tcpmodel.Data(p.Sysctls(p.Prober(c)), 0), "gives_up_s")
		},
	})
}

// checkData follows the data segment that is never acknowledged: the
// client's, or the server's when the check's host is the server's (a result
// sent to a client that has vanished). The model takes the sender's
// sysctls. The ladder starts at the segment's first transmission, which
// must be in the capture.
func checkData(o *Observations, c *scenarios.Check, out *reports.Check) {
	res, f, host, ok := o.stepFlow(c, out, false)
	if !ok {
		return
	}
	from, fromHost := o.sender(c, res, f)
	rtx := f.DataRetransmits(from)
	model := o.dataModel(f, from, fromHost, rtx)
	pkts := rtx
	if len(rtx) > 0 {
		for i := range f.Packets {
			p := f.Packets[i]
			if p.Src == from && p.Seq == rtx[0].Seq && p.Payload > 0 && !p.Retransmission {
				pkts = append([]capture.Packet{p}, rtx...)
				break
			}
		}
		out.Evidence = o.evidence(host, pkts, "data")
	}
	o.ladder(c, model, len(rtx), intervals(pkts), f, host, out)
	o.finding(c, out, len(rtx))
}

// dataModel is the data-retransmission schedule of the sender on the flow,
// with the RTO the sender's kernel had when the lost segment was first
// sent: its RTT estimator replayed over the capture's samples before then.
// Without samples it is the steady state (srtt ≈ 0 on a veth link).
func (o *Observations) dataModel(f *capture.Flow, from netip.AddrPort, fromHost string, rtx []capture.Packet) tcpmodel.Schedule {
	sys := o.Sysctls[fromHost]
	var before time.Time
	if len(rtx) > 0 {
		before = rtx[0].Time
		for _, p := range f.Packets {
			if p.Src == from && p.Seq == rtx[0].Seq && p.Payload > 0 && !p.Retransmission {
				before = p.Time
				break
			}
		}
	}
	var samples []tcpmodel.RTTSample
	for _, sm := range f.RTTSamples(from) {
		if before.IsZero() || !sm.At.After(before) {
			samples = append(samples, tcpmodel.RTTSample{RTT: sm.RTT, Una: sm.Una, Nxt: sm.Nxt})
		}
	}
	m := tcpmodel.Data(sys, 0)
	if len(samples) > 0 {
		rto, srtt := tcpmodel.RTO(sys, samples)
		m = tcpmodel.DataRTO(sys, srtt, rto)
		m.Explain = fmt.Sprintf("The sender's RTO when the segment was sent, from %d RTT samples in the capture: %.0f ms. %s", len(samples), float64(rto.Microseconds())/1000, m.Explain)
	}
	// The kernel gives up on time, not on a count: when the last predicted
	// retransmission was due within the timers' lateness of the give-up
	// time, late timers (the wheel rounds each expiry up by up to an eighth)
	// make it give up there instead, and the capture shows which.
	if m.Borderline && len(rtx) == m.Count-1 {
		m = m.Early()
	}
	return m
}
