package checks

import (
	"fmt"
	"strings"
	"time"

	"github.com/labrun/labrun/scenarios"
	"github.com/labrun/labrun/tcpmodel"
)

// PlannedCheck is what the kernel model predicts for one check before
// anything runs.
type PlannedCheck struct {
	Name       string                `json:"name"`
	Type       string                `json:"type"`
	Documented *scenarios.Documented `json:"documented,omitempty"`
	// Expected is the model's prediction; empty for checks that only
	// observe (a thread state, a row value).
	Expected map[string]any `json:"expected,omitempty"`
	Explain  string         `json:"explain,omitempty"`
}

// PlanEnv is what a kind's plan reads: the scenario, with each host's
// sysctls laid over the kernel's defaults.
type PlanEnv struct {
	Scenario *scenarios.Scenario
}

// Sysctls are a host's sysctls as a namespace would start with them: the
// kernel's defaults (tcpmodel.Defaults) under the scenario's own.
func (p *PlanEnv) Sysctls(host string) tcpmodel.Sysctls {
	s := tcpmodel.Defaults()
	if h := p.Scenario.Hosts[host]; h != nil {
		for k, v := range h.Sysctls {
			s[k] = v
		}
	}
	return s
}

// StepHost is the host of a step, "" for none.
func (p *PlanEnv) StepHost(step string) string {
	for _, st := range p.Scenario.Timeline {
		if st != nil && st.Name == step {
			return st.Host
		}
	}
	return ""
}

// Prober is the host whose sysctls a check's sender uses: the server's
// when the check names the server's host, else the step's.
func (p *PlanEnv) Prober(c *scenarios.Check) string {
	if c.Host != "" && c.Host == p.Scenario.Server.Host {
		return c.Host
	}
	return p.StepHost(c.Step)
}

// Plan computes the model's expectations for a scenario's checks from its
// sysctls laid over the kernel's defaults, without creating anything. It
// is how a scenario too long to run (the article's 2-hour keepalive) still
// shows what this kernel would do.
func Plan(sc *scenarios.Scenario) []PlannedCheck {
	p := &PlanEnv{Scenario: sc}
	var out []PlannedCheck
	for _, c := range sc.Checks {
		pc := PlannedCheck{Name: c.Name, Type: c.Type, Documented: c.Documented}
		if k, ok := kinds[c.Type]; ok && k.Plan != nil {
			pc.Expected, pc.Explain = k.Plan(p, c)
		}
		if pc.Expected == nil {
			pc.Explain = fmt.Sprintf("%s is observed, not modelled: run the scenario", c.Type)
		}
		out = append(out, pc)
	}
	return out
}

// planSchedule renders a kernel schedule as a plan's expectation.
func planSchedule(m tcpmodel.Schedule, giveUp string) (map[string]any, string) {
	return map[string]any{"count": m.Count, "intervals_s": seconds(m.Intervals), giveUp: round3(m.GiveUp.Seconds())}, m.Explain
}

// PredictedLength estimates how long a scenario's timeline takes, before
// anything runs, so that a batch can start the longest first: the latest
// fixed start of a step, and for each check the latest time the model
// puts on it (a give-up, a reset, a state's end), from its step's start.
// It is an estimate for ordering, bounded by the scenario's limit.
func PredictedLength(sc *scenarios.Scenario) time.Duration {
	start := map[string]time.Duration{}
	var longest time.Duration
	for _, st := range sc.Timeline {
		if st != nil && st.At != nil {
			start[st.Name] = st.At.D()
			longest = max(longest, st.At.D())
		}
	}
	for _, pc := range Plan(sc) {
		var step string
		for _, c := range sc.Checks {
			if c.Name == pc.Name {
				step = c.Step
			}
		}
		for k, v := range pc.Expected {
			f, ok := v.(float64)
			if !ok || !strings.HasSuffix(k, "_s") || strings.HasPrefix(k, "intervals") || strings.HasPrefix(k, "offsets") {
				continue
			}
			from := start[step]
			// A waiter's release is counted from the step whose session
			// it waits on, not from its own start.
			if other, ok := strings.CutPrefix(k, "proceeds_after_step_"); ok {
				from = start[strings.TrimSuffix(other, "_s")]
			}
			longest = max(longest, from+time.Duration(f*float64(time.Second)))
		}
	}
	return min(longest, sc.Limit.D())
}
