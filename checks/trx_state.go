package checks

import (
	"fmt"

	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
)

func init() {
	register(Kind{
		CheckKind: scenarios.CheckKind{
			Name:        "trx_state",
			Doc:         "The transaction of the step's connection in INNODB_TRX samples (RUNNING, LOCK WAIT, ...): for, gone (committed, rolled back, or its session closed), or model session_end: the transaction of an idle session whose client vanished is rolled back when keepalive or wait_timeout ends the session.",
			Expect:      []string{"for", "gone", "model"},
			Required:    []string{"state"},
			Models:      []string{"session_end"},
			Step:        scenarios.StepConnection,
			Processlist: true,
		},
		Eval: checkTrxState,
		Plan: planStateModel,
	})
}

// checkTrxState follows the transaction of the step's connection in
// INNODB_TRX (RUNNING, LOCK WAIT, ...); gone means it ended: committed,
// rolled back, or its session was closed.
func checkTrxState(o *Observations, c *scenarios.Check, out *reports.Check) {
	res, ok := o.sampledStep(c, out)
	if !ok {
		return
	}
	id := res.Client.ConnID
	if id == 0 {
		out.Message = fmt.Sprintf("step %s has no server thread id: use the go client", c.Step)
		return
	}
	var sp span
	seen := map[string]int{}
	for _, s := range o.Threads {
		has := false
		for _, tx := range s.Trx {
			if tx.ThreadID == id {
				seen[tx.State]++
				has = has || tx.State == c.Expect.State
			}
		}
		sp.see(s.Time, has, s.Error)
	}
	u, ok := o.stateUntil(c, res, o.processlistEvery(), out)
	if !ok {
		return
	}
	o.judge(fmt.Sprintf("transaction of thread %d", id), "server-threads.json", c.Expect, sp, u, map[string]any{"states_seen": sortedCounts(seen)}, out)
}
