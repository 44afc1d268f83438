package actions

import (
	"context"
	"fmt"

	"github.com/labrun/labrun/scenarios"
)

// End ends the disk fault an earlier step applied without a duration:
// thaws a freeze, lifts a throttle, removes a latency.
type End string

func init() {
	register(scenarios.ActionKind{
		Name: "end",
		Doc:  "Ends the disk fault (freeze, throttle or latency) that the named earlier step applied without for: thaws the filesystem, lifts the limits, removes the delay.",
		New:  func() any { return new(End) },
		Host: scenarios.HostOptional,
		Validate: func(v *scenarios.Validator, path string, st *scenarios.Step) {
			name := string(*st.Action.(*End))
			target, ti := v.Step(name)
			_, si := v.Step(st.Name)
			switch {
			case target == nil:
				v.Add(path, "no step named %q", name)
			case target.Kind != "freeze" && target.Kind != "throttle" && target.Kind != "latency":
				v.Add(path, "step %q is a %s step; end ends a freeze, a throttle or a latency", name, target.Kind)
			case faultFor(target) > 0:
				v.Add(path, "step %q ends by itself after its for", name)
			case si >= 0 && !v.Before(ti, si):
				v.Add(path, "step %q does not certainly start before this one", name)
			}
		},
	})
}

func faultFor(st *scenarios.Step) scenarios.Duration {
	switch a := st.Action.(type) {
	case *Freeze:
		return a.For
	case *Throttle:
		return a.For
	case *Latency:
		return a.For
	}
	return 0
}

// Apply ends the fault.
func (a *End) Apply(_ context.Context, env Env, st *scenarios.Step) (Result, error) {
	name := string(*a)
	if !env.Faults().Live(name) {
		return Result{}, fmt.Errorf("no fault of step %s is in force", name)
	}
	return Result{}, env.Faults().End(name, st.Name)
}
