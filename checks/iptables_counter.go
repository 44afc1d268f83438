package checks

import (
	"fmt"
	"strings"

	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
	"github.com/labrun/labrun/tcpmodel"
)

func init() {
	register(Kind{
		CheckKind: scenarios.CheckKind{
			Name:   "iptables_counter",
			Doc:    "Packets matched by labrun's iptables rules on host: the rule an iptables step added, or every rule there for another step; expect.count, or model syn for the first SYN plus the retransmissions tcpmodel.SYN predicts for the step's client host (a second source beside the capture).",
			Expect: []string{"count", "model"},
			Models: []string{"syn"},
			Step:   scenarios.StepOptional,
			Validate: func(v *scenarios.Validator, path string, c *scenarios.Check) {
				if c.Host == "" {
					v.Add(path+".host", "required for iptables_counter: the host whose rules are counted")
				}
				e := c.Expect
				switch {
				case e == nil || e.Count == nil && e.Model == "":
					v.Add(path+".expect", "want count or model: a counter compared with nothing would pass on any packet")
				case e.Count != nil && e.Model != "":
					v.Add(path+".expect", "count and model are exclusive")
				case e.Model == "syn":
					if st, _ := v.Step(c.Step); st == nil || !st.Connects() {
						v.Add(path+".step", "model syn needs a client step, whose host's sysctls predict the SYNs")
					}
				}
			},
		},
		Eval: checkIptables,
		Plan: func(p *PlanEnv, c *scenarios.Check) (map[string]any, string) {
			if c.Expect == nil || c.Expect.Model != "syn" {
				return nil, ""
			}
			m := tcpmodel.SYN(p.Sysctls(p.StepHost(c.Step)))
			return map[string]any{"packets": m.Count + 1}, "the first SYN plus " + m.Explain
		},
	})
}

// checkIptables reads the packet counters of labrun's rules on a host. With
// an iptables step it is that step's rule; with a client step it is every
// rule on the host, and "model: syn" expects the original SYN plus the
// retransmissions the kernel model predicts for the client's host: a second
// source, beside the capture, for the SYN count.
func checkIptables(o *Observations, c *scenarios.Check, out *reports.Check) {
	res := o.Steps[c.Step]
	var got uint64
	var rules []string
	found := false
	for _, ct := range o.Counters {
		if !strings.HasPrefix(ct.Rule, c.Host+": ") {
			continue
		}
		if res != nil && res.Client == nil && ct.Step != c.Step {
			continue
		}
		got += ct.Packets
		rules = append(rules, ct.Rule)
		found = true
	}
	if !found && res != nil && res.Counter != nil {
		got, rules, found = res.Counter.Packets, []string{res.Counter.Rule}, true
	}
	if !found {
		out.Message = fmt.Sprintf("no labrun rule counters on %s for step %s", c.Host, c.Step)
		return
	}
	out.Observed = map[string]any{"packets": got}
	for _, r := range rules {
		out.Evidence = append(out.Evidence, "iptables -S -v on "+r)
	}
	out.Tolerance = "exact"
	var want int
	switch {
	case c.Expect != nil && c.Expect.Count != nil:
		want = *c.Expect.Count
	case c.Expect != nil && c.Expect.Model == "syn" && res != nil:
		m := tcpmodel.SYN(o.Sysctls[res.Host])
		want = m.Count + 1
		out.Explain = "the first SYN plus " + m.Explain
	default:
		// The validator requires count or model; a step that did not run
		// leaves the model nothing to predict from.
		out.Message = fmt.Sprintf("no expectation: step %s did not run, so the model cannot predict the count", c.Step)
		return
	}
	out.Expected = map[string]any{"packets": want}
	out.Passed = uint64(want) == got
	if !out.Passed {
		out.Message = fmt.Sprintf("%d packets matched, expected %d", got, want)
	}
}
