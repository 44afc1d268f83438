package actions

import (
	"context"

	"github.com/labrun/labrun/scenarios"
)

// Sysctl changes per-namespace sysctls of the step's host during the
// timeline; the model reads the new values for what follows.
type Sysctl map[string]string

func init() {
	register(scenarios.ActionKind{
		Name: "sysctl",
		Doc:  "Changes per-namespace sysctls (net.*) of the host during the timeline.",
		New:  func() any { return new(Sysctl) },
		Schema: map[string]any{
			"propertyNames": map[string]any{"pattern": scenarios.SysctlKey.String()},
			"minProperties": 1,
		},
		Validate: func(v *scenarios.Validator, path string, st *scenarios.Step) {
			m := *st.Action.(*Sysctl)
			if len(m) == 0 {
				v.Add(path, "want at least one sysctl")
			}
			v.Sysctls(path, m)
		},
	})
}

// Apply writes the sysctls in the host's namespace.
func (a *Sysctl) Apply(_ context.Context, env Env, st *scenarios.Step) (Result, error) {
	return Result{}, env.SetSysctls(st.Host, *a)
}
