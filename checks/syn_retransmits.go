package checks

import (
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
	"github.com/labrun/labrun/tcpmodel"
)

func init() {
	register(Kind{
		CheckKind: scenarios.CheckKind{
			Name:   "syn_retransmits",
			Doc:    "The client's SYN retransmissions of the step's connection: count and intervals, from the capture; the model is tcpmodel.SYN for the client host's tcp_syn_retries and tcp_syn_linear_timeouts.",
			Expect: []string{"count", "intervals", "tolerance"},
			Step:   scenarios.StepConnection,
		},
		Eval: checkSYN,
		Plan: func(p *PlanEnv, c *scenarios.Check) (map[string]any, string) {
			return planSchedule(tcpmodel.SYN(p.Sysctls(p.StepHost(c.Step))), "gives_up_s")
		},
	})
}

func checkSYN(o *Observations, c *scenarios.Check, out *reports.Check) {
	res, f, host, ok := o.stepFlow(c, out, false)
	if !ok {
		return
	}
	syns := f.SYNs()
	model := tcpmodel.SYN(o.Sysctls[res.Host])
	out.Evidence = o.evidence(host, syns, "SYN")
	o.ladder(c, model, len(syns)-1, intervals(syns), f, host, out)
	o.finding(c, out, len(syns)-1)
}
