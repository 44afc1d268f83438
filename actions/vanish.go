package actions

import (
	"context"
	"strings"

	"github.com/labrun/labrun/netem"
	"github.com/labrun/labrun/scenarios"
)

// Vanish makes the step's host disappear from the network without a FIN
// or a RST (true), or brings it back (false).
type Vanish bool

func init() {
	register(scenarios.ActionKind{
		Name: "vanish",
		Doc:  "true: the host disappears without a FIN or a RST (every IPv4 packet in or out of its namespace is dropped; ARP still answers); false: it comes back.",
		New:  func() any { return new(Vanish) },
	})
}

// vanishRules drop every IPv4 packet in and out of a host's namespace. ARP
// is not IP, so the host still answers it and its peers keep sending: the
// host is gone without a FIN, a RST or an unreachable neighbour.
var vanishRules = []string{"-A INPUT -j DROP", "-A OUTPUT -j DROP"}

// Apply adds the rules, or deletes them.
func (a *Vanish) Apply(_ context.Context, env Env, st *scenarios.Step) (Result, error) {
	for _, txt := range vanishRules {
		if !*a {
			txt = "-D" + strings.TrimPrefix(txt, "-A")
		}
		rule, err := netem.ParseRule(txt)
		if err != nil {
			return Result{}, err
		}
		if _, err := env.Rules(st.Host).Apply(rule, st.Name); err != nil {
			return Result{}, err
		}
	}
	return Result{}, nil
}
