package checks

import (
	"os"
	"strings"

	"github.com/labrun/labrun/actions"
	"github.com/labrun/labrun/scenarios"
	"github.com/labrun/labrun/tcpmodel"
)

// Lab B's plans: what the model says of a burst before it runs, for the
// load asked (rate × for), this machine's kernel and the hosts' sysctls
// over the kernel's defaults.

// planObservations stands in for a run's observations in a plan.
func planObservations(p *PlanEnv) *Observations {
	o := &Observations{Scenario: p.Scenario, Flavor: p.Scenario.Server.Flavor, Sysctls: map[string]map[string]string{}}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		o.Kernel = strings.TrimSpace(string(b))
	}
	for h := range p.Scenario.Hosts {
		o.Sysctls[h] = p.Sysctls(h)
	}
	return o
}

func planBurst(p *PlanEnv, c *scenarios.Check) (*Observations, *scenarios.Step, *actions.Burst, bool) {
	st := stepNamed(p.Scenario, c.Step)
	if st == nil {
		return nil, nil, nil, false
	}
	b, ok := st.Action.(*actions.Burst)
	return planObservations(p), st, b, ok
}

func planTimeWait(p *PlanEnv, c *scenarios.Check) (map[string]any, string) {
	o, st, b, ok := planBurst(p, c)
	if !ok {
		return nil, ""
	}
	holder, why := twHolder(b.CloseMode(), o.Flavor)
	path := o.pathOf(st.Host, b)
	load := tcpmodel.TimeWaitLoad{Rate: b.Rate, For: b.For.D(), Tuples: path.Tuples}
	if path.SNAT != "" && o.conntrackTimeWait() == 0 {
		load.Random = true
		load.Rejected = tcpmodel.SYNOnTimeWait(o.Sysctls[st.Host], o.Kernel, path.reuse()).Rejected
	}
	m := tcpmodel.TimeWaits(o.Sysctls[p.Scenario.Server.Host], load)
	// The lifetime is not an event of the timeline: no "_s" key, which
	// PredictedLength would wait for.
	return map[string]any{"holder": holder, "server_peak": m.Peak, "by": m.By, "lifetime": m.Lifetime.String()},
		why + ". " + m.Explain + " Server-side 4-tuples: " + path.Explain + "."
}

func planSYNBareACK(p *PlanEnv, c *scenarios.Check) (map[string]any, string) {
	o, st, b, ok := planBurst(p, c)
	if !ok {
		return nil, ""
	}
	path := o.pathOf(st.Host, b)
	m := tcpmodel.SYNOnTimeWait(o.Sysctls[st.Host], o.Kernel, path.reuse())
	return map[string]any{"rejected_share": m.Rejected, "first_resend_ms": ms(m.FirstResend), "later_resend_ms": ms(m.LaterResend)},
		m.Explain + " (" + timestampText(path) + "; kernel " + o.Kernel + ")."
}

func planFirstFIN(p *PlanEnv, c *scenarios.Check) (map[string]any, string) {
	o, _, b, ok := planBurst(p, c)
	if !ok {
		return nil, ""
	}
	holder, why := twHolder(b.CloseMode(), o.Flavor)
	first := map[string]string{"server": "server", "client": "client", "none": "none (a reset) or the client", "long": "either", "either": "either"}[holder]
	return map[string]any{"first_fin": first}, why
}
