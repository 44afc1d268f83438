package checks

import (
	"strings"
	"time"

	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
	"github.com/labrun/labrun/tcpmodel"
)

func init() {
	register(Kind{
		CheckKind: scenarios.CheckKind{
			Name:   "keepalive_probes",
			Doc:    "Keepalive probes on the step's connection (the client's, or the server's when host is the server's): count and intervals from the last segment the prober received; the model is tcpmodel.Keepalive for the prober's tcp_keepalive_time, _intvl and _probes.",
			Expect: []string{"count", "intervals", "tolerance"},
			Step:   scenarios.StepConnection,
		},
		Eval: checkKeepalive,
		Plan: func(p *PlanEnv, c *scenarios.Check) (map[string]any, string) {
			m := tcpmodel.Keepalive(p.Sysctls(p.Prober(c)))
			exp, explain := planSchedule(m, "reset_s")
			exp["reset_after"] = m.GiveUp.Round(time.Second).String()
			return exp, explain
		},
	})
}

// checkKeepalive counts the probes and times them from the last segment
// the prober received and processed: retransmitted segments (a SYN-ACK
// again, data again) are answered with a duplicate ACK and do not count as
// activity. Without that segment in the capture the first interval is
// unknown, and the check fails.
func checkKeepalive(o *Observations, c *scenarios.Check, out *reports.Check) {
	res, f, host, ok := o.stepFlow(c, out, false)
	if !ok {
		return
	}
	from, fromHost := o.sender(c, res, f)
	probes := f.KeepAlives(from)
	model := tcpmodel.Keepalive(o.Sysctls[fromHost])
	var pkts []capture.Packet
	if len(probes) > 0 {
		for _, p := range f.Packets {
			if p.Time.Before(probes[0].Time) && p.Dst == from && !p.Retransmission && !p.KeepAlive {
				pkts = []capture.Packet{p}
			}
		}
	}
	if len(pkts) > 0 {
		out.Evidence = o.evidence(host, pkts, "last segment received by the prober")
	}
	out.Evidence = append(out.Evidence, o.evidence(host, probes, "keepalive probe")...)
	o.ladder(c, model, len(probes), intervals(append(pkts, probes...)), f, host, out)
	out.Message = strings.Replace(out.Message, "retransmissions", "keepalive probes", 1)
	o.finding(c, out, len(probes))
}
