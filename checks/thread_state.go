package checks

import (
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
)

func init() {
	register(Kind{
		CheckKind: scenarios.CheckKind{
			Name:        "thread_state",
			Doc:         "The step's server thread in the processlist samples: expect.state is its State (\"Sending to client\", \"Waiting for table flush\") or, for an idle thread, its Command (\"Sleep\"); for, gone, or model session_end: the thread of an idle session whose client vanished goes when keepalive or wait_timeout ends it.",
			Expect:      []string{"for", "gone", "model"},
			Required:    []string{"state"},
			Models:      []string{"session_end"},
			Step:        scenarios.StepConnection,
			Processlist: true,
		},
		Eval: checkThreadState,
		Plan: planStateModel,
	})
}

// checkThreadState follows the step's server thread in the processlist:
// expect.state is matched against State ("Sending to client", "Waiting
// for table flush") or, for an idle thread, Command ("Sleep").
func checkThreadState(o *Observations, c *scenarios.Check, out *reports.Check) {
	res, ok := o.sampledStep(c, out)
	if !ok {
		return
	}
	var sp span
	seen := map[string]int{}
	for _, s := range o.Threads {
		has := false
		for _, th := range s.Threads {
			if !threadOf(res, th) {
				continue
			}
			st := th.State
			if st == "" {
				st = th.Command
			}
			seen[st]++
			has = has || th.State == c.Expect.State || (th.State == "" && th.Command == c.Expect.State)
		}
		sp.see(s.Time, has, s.Error)
	}
	u, ok := o.stateUntil(c, res, o.processlistEvery(), out)
	if !ok {
		return
	}
	o.judge("thread of step "+c.Step, "server-threads.json", c.Expect, sp, u, map[string]any{"states_seen": sortedCounts(seen)}, out)
}
