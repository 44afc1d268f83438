package actions

import (
	"context"

	"github.com/labrun/labrun/netem"
	"github.com/labrun/labrun/scenarios"
)

// Netem sets, replaces or removes the netem qdisc on the step's host's
// eth0: delay, jitter and loss on everything the host sends.
type Netem struct {
	Delay  scenarios.Duration `yaml:"delay,omitempty" json:"delay,omitempty"`
	Jitter scenarios.Duration `yaml:"jitter,omitempty" json:"jitter,omitempty"`
	// Loss is a percentage, "10%".
	Loss string `yaml:"loss,omitempty" json:"loss,omitempty"`
	// Remove takes the qdisc away; no other field may be set with it.
	Remove bool `yaml:"remove,omitempty" json:"remove,omitempty"`
}

func init() {
	register(scenarios.ActionKind{
		Name: "netem",
		Doc:  "Impairs the host's egress on eth0 with the netem qdisc. On a kernel without sch_netem the scenario is skipped, with that reason.",
		New:  func() any { return new(Netem) },
		TypeDocs: map[string]string{
			"Netem": "Delay, jitter and loss on everything the host sends, through the netem qdisc on its eth0.",
		},
		FieldDocs: map[string]string{
			"Netem.delay":  "Delay added to every packet the host sends.",
			"Netem.jitter": "Random variation of the delay; only with delay.",
			"Netem.loss":   "Probability of dropping a packet, as a percentage: \"10%\".",
			"Netem.remove": "Removes the netem qdisc; takes no other field.",
		},
		Needs: []scenarios.Requirement{{Name: "sch_netem", Probe: netem.NetemAvailable}},
		Validate: func(v *scenarios.Validator, path string, st *scenarios.Step) {
			n := st.Action.(*Netem)
			if n.Loss != "" {
				if _, err := netem.ParsePercent(n.Loss); err != nil {
					v.Add(path+".loss", "%v", err)
				}
			}
			switch {
			case n.Remove && (n.Delay != 0 || n.Jitter != 0 || n.Loss != ""):
				v.Add(path, "remove takes no delay, jitter or loss")
			case !n.Remove && n.Delay == 0 && n.Loss == "":
				v.Add(path, "want delay or loss, or remove: true")
			case n.Jitter != 0 && n.Delay == 0:
				v.Add(path+".jitter", "only with delay")
			}
		},
	})
}

// Apply sets the qdisc, or removes it.
func (a *Netem) Apply(_ context.Context, env Env, st *scenarios.Step) (Result, error) {
	var imp netem.Impairment
	if !a.Remove {
		imp.Delay, imp.Jitter = a.Delay.D(), a.Jitter.D()
		if a.Loss != "" {
			imp.Loss, _ = netem.ParsePercent(a.Loss)
		}
	}
	return Result{}, env.Host(st.Host).Impair(imp)
}
