// Package checks holds labrun's check kinds, one file per kind, each
// registered by name with its validation, its evaluation and its plan.
// Evaluation reads an Observations value (packets, samples, client
// results, counters), never the runner's internals, so that every kind is
// tested offline on observations recorded by the project's own runs.
//
// A check passes only on evidence: no packets, no samples, an errored
// sample, a client that never ran or an expectation the kind cannot
// evaluate each fail with a message that says what was missing.
package checks

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/labrun/labrun/actions"
	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/client"
	"github.com/labrun/labrun/iofault"
	"github.com/labrun/labrun/netem"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
)

// Observations is everything a finished run observed, as checks read it.
// The runner builds it; tests load it from testdata (observations.json
// beside the pcaps of a recorded run).
type Observations struct {
	Scenario *scenarios.Scenario `json:"-"`
	// T0 is the start of the timeline.
	T0      time.Time `json:"t0"`
	Kernel  string    `json:"kernel"`
	Flavor  string    `json:"flavor"`
	Version string    `json:"version"`
	// Addresses of the hosts on the lab network.
	Addresses map[string]netip.Addr `json:"addresses"`
	// Sysctls in force in each host's namespace, as read back, including
	// changes a step made.
	Sysctls map[string]map[string]string `json:"sysctls"`
	Steps   map[string]*Step             `json:"steps"`
	// Pcaps are the capture files by host; Analyses their analysis.
	Pcaps    map[string]string            `json:"pcaps,omitempty"`
	Analyses map[string]*capture.Analysis `json:"-"`
	Sockets  []capture.Sample             `json:"sockets,omitempty"`
	Threads  []client.ServerSample        `json:"threads,omitempty"`
	Counters []*netem.Counter             `json:"counters,omitempty"`
	// IO are the server disk's samples (observe.io).
	IO []iofault.IOSample `json:"io,omitempty"`
	// Census are the socket censuses (observe.census), Conntrack the
	// conntrack tables' samples (observe.conntrack).
	Census    []*capture.CensusResult `json:"census,omitempty"`
	Conntrack []netem.ConntrackSample `json:"conntrack,omitempty"`
	// TimeWait is the streaming analysis of each capture of a scenario
	// with a burst (capture.AnalyzeTimeWait), by host.
	TimeWait map[string]*capture.TimeWaitAnalysis `json:"-"`
	// Slow widens every timing tolerance (--slow).
	Slow float64 `json:"-"`
}

// Step is what one timeline step did.
type Step struct {
	Name  string    `json:"name"`
	Host  string    `json:"host"`
	Kind  string    `json:"kind"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Error is the step's own failure (a rule that could not be written);
	// a client's error is in Client.
	Error   string         `json:"error,omitempty"`
	Client  *client.Result `json:"client,omitempty"`
	Counter *netem.Counter `json:"counter,omitempty"`
	// Fault is what a disk fault step did (freeze, throttle, load).
	Fault *actions.FaultRecord `json:"fault,omitempty"`
	// Burst is what a burst step's connections did.
	Burst *client.BurstResult `json:"burst,omitempty"`
}

// Kind is one registered check kind: what the scenario format knows of it,
// how it is evaluated, and what the model predicts before anything runs.
type Kind struct {
	scenarios.CheckKind
	// Eval fills out: expected, observed, tolerance, evidence, the verdict
	// and the message of a failure.
	Eval func(o *Observations, c *scenarios.Check, out *reports.Check)
	// Plan predicts the expected values from the scenario alone; nil for a
	// kind that only observes (a row's value).
	Plan func(p *PlanEnv, c *scenarios.Check) (map[string]any, string)
}

var kinds = map[string]*Kind{}

func register(k Kind) {
	if k.Eval == nil {
		panic("checks: kind without Eval: " + k.Name)
	}
	scenarios.RegisterCheck(k.CheckKind)
	kinds[k.Name] = &k
}

// Kinds returns the registered kinds, sorted by name.
func Kinds() []*Kind {
	out := make([]*Kind, 0, len(kinds))
	for _, k := range kinds {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Evaluate runs every check of the scenario against the observations.
func Evaluate(o *Observations) []*reports.Check {
	out := []*reports.Check{}
	for _, c := range o.Scenario.Checks {
		out = append(out, o.Check(c))
	}
	return out
}

// Check evaluates one check. A check limited to other flavors is skipped,
// with the reason; any other outcome is a pass only with evidence.
func (o *Observations) Check(c *scenarios.Check) *reports.Check {
	out := &reports.Check{Name: c.Name, Type: c.Type, Evidence: []string{}}
	if c.Documented != nil {
		out.Documented = c.Documented
	}
	if len(c.Flavors) > 0 && !contains(c.Flavors, o.Flavor) {
		out.Skipped, out.Passed = true, true
		out.Message = fmt.Sprintf("applies to %s only; this run's server is %s", strings.Join(c.Flavors, ", "), o.Flavor)
		return out
	}
	k, ok := kinds[c.Type]
	if !ok {
		out.Message = fmt.Sprintf("no check kind %q is registered", c.Type)
		return out
	}
	k.Eval(o, c, out)
	if out.Passed && len(out.Evidence) == 0 {
		// A kind that reached a verdict without pointing at anything has
		// a bug; it must not turn into a pass.
		out.Passed = false
		out.Message = "no evidence: the check found nothing to point at (packets, samples or a client's result)"
	}
	if out.Passed && out.Observed == nil {
		out.Passed = false
		out.Message = "nothing observed"
	}
	if !out.Passed && out.Message == "" {
		out.Message = "failed without a reason: a bug in check kind " + c.Type
	}
	flavorFinding(c, out, o.Flavor, o.Version)
	return out
}

// Verdict is a scenario's result from its checks: it passes only when at
// least one check was evaluated and every evaluated check passed. A
// scenario whose every check was skipped (all for other flavors) checked
// nothing, and that is a failure with its reason, not a pass.
func Verdict(results []*reports.Check, flavor string) (passed bool, reason string) {
	evaluated, failed := 0, 0
	for _, c := range results {
		switch {
		case c.Skipped:
		case c.Passed:
			evaluated++
		default:
			evaluated++
			failed++
		}
	}
	switch {
	case len(results) == 0:
		return false, "no checks were evaluated"
	case evaluated == 0:
		return false, fmt.Sprintf("every check was skipped on this server (%s): nothing was checked", flavor)
	case failed > 0:
		return false, ""
	}
	return true, ""
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

// flavorFinding notes a check that passed on another server than the one
// the article used: the documented value is for that flavor, so what this
// run observed is a divergence to show, not an error.
func flavorFinding(c *scenarios.Check, out *reports.Check, flavor, version string) {
	d := c.Documented
	if !out.Passed || out.Skipped || out.Finding != "" || d == nil || d.Flavor == "" || d.Flavor == flavor {
		return
	}
	art := d.Flavor
	if d.Version != "" {
		art += " " + d.Version
	}
	out.Finding = fmt.Sprintf("the article's %v is for %s; this %s %s showed %s", reports.Render(d.Value), art, flavor, version, reports.Render(out.Observed))
}
