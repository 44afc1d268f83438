package checks

import (
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
	model := tcpmodel.Data(o.Sysctls[fromHost], 0)
	rtx := f.DataRetransmits(from)
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
