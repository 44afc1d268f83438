package actions

import (
	"context"
	"fmt"

	"github.com/labrun/labrun/netem"
	"github.com/labrun/labrun/scenarios"
)

// Iptables is a rule in iptables syntax, applied in the step's host's
// namespace: "-A INPUT -p tcp --dport 3306 -j DROP" adds, "-D ..." removes,
// "-t mangle -A ..." names a table. It is parsed, never run by a shell.
type Iptables string

func init() {
	register(scenarios.ActionKind{
		Name: "iptables",
		Doc:  "A rule in iptables syntax, applied in the host's namespace: \"-A INPUT -p tcp --dport 3306 -j DROP\" adds, \"-D ...\" removes, \"-t mangle -A ...\" names a table. Not run by a shell.",
		New:  func() any { return new(Iptables) },
		Validate: func(v *scenarios.Validator, path string, st *scenarios.Step) {
			if _, err := netem.ParseRule(string(*st.Action.(*Iptables))); err != nil {
				v.Add(path, "bad iptables rule: %v", err)
			}
		},
		ValidateAll: deletes,
		// STEP.iptables: an axis sets the whole rule.
		Settable: []string{"iptables"},
	})
}

// Apply adds or deletes the rule; a deleted rule's counter is kept.
func (a *Iptables) Apply(_ context.Context, env Env, st *scenarios.Step) (Result, error) {
	rule, err := netem.ParseRule(string(*a))
	if err != nil {
		return Result{}, err
	}
	c, err := env.Rules(st.Host).Apply(rule, st.Name)
	return Result{Counter: c}, err
}

// deletes checks that every rule a step deletes was added, on the same
// host, by a step that certainly runs before it: iptables -D fails on a
// rule that is not there, and the run would stop halfway. With a rule that
// does not parse, its -D or -A would be missing here and the report would
// blame the wrong step, so nothing is said then.
func deletes(v *scenarios.Validator) {
	steps := v.Scenario().Timeline
	rules := make([]*netem.Rule, len(steps))
	for i, st := range steps {
		// A skipped step neither adds nor deletes its rule.
		if st == nil || st.Kind != "iptables" || st.Skip {
			continue
		}
		r, err := netem.ParseRule(string(*st.Action.(*Iptables)))
		if err != nil {
			return
		}
		rules[i] = &r
	}
	for i, r := range rules {
		if r == nil || r.Op != "-D" {
			continue
		}
		host := steps[i].Host
		candidate := -1
		found := false
		for j, a := range rules {
			if a == nil || a.Op == "-D" || steps[j].Host != host || a.Key() != r.Key() {
				continue
			}
			if v.Before(j, i) {
				found = true
				break
			}
			if candidate < 0 {
				candidate = j
			}
		}
		path := fmt.Sprintf("timeline[%d].iptables", i)
		switch {
		case found:
		case candidate >= 0:
			v.Add(path, "impossible timeline: deletes the rule before step %q certainly adds it (make this step start after %q)", steps[candidate].Name, steps[candidate].Name)
		default:
			v.Add(path, "impossible timeline: no step adds this rule on host %s before this step deletes it", host)
		}
	}
}
