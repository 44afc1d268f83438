package checks

import (
	"fmt"
	"time"

	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
)

func init() {
	register(Kind{
		CheckKind: scenarios.CheckKind{
			Name:     "ends_after",
			Doc:      "The check's step, which started while the step named by expect.after was not over, is over only once that one is, and within expect.tolerance (default 1 s) of it: a query released when a slow reader is gone or killed.",
			Expect:   []string{"tolerance"},
			Required: []string{"after"},
			Step:     scenarios.StepConnection,
		},
		Eval: checkEndsAfter,
	})
}

// endsAfterGrace allows for a processlist sample that still lists a thread
// for an instant after it released its tables: the sample's time is taken
// before its query runs, and a thread leaves the list a little after it
// finished its statement.
const endsAfterGrace = 50 * time.Millisecond

// defaultEndsAfterWithin is how soon after the other step is over the
// check's step must finish, unless expect.tolerance says otherwise: "at
// once", with room for a loaded machine.
const defaultEndsAfterWithin = time.Second

// checkEndsAfter: the check's step is over only once the step named by
// expect.after is over, and promptly then (within expect.tolerance,
// default 1 s), and it had started before: a query that waits for a slow
// reader's table completes when the reader is gone; a KILL frees every
// waiter at once and ends the reader's thread. Either step is over as
// overOf says. The check's step may end while the other is still being
// reported over (a KILL takes effect before its client hears back), so the
// other counts as over from its start when it was short (within the
// tolerance), or from its thread's last running sample less a grace for
// the sampling. A check's step that started once the other was over, or
// was over before it, never waited: that fails, whatever the lag.
func checkEndsAfter(o *Observations, c *scenarios.Check, out *reports.Check) {
	x, ok := o.clientStep(c, out)
	if !ok {
		return
	}
	name := c.Expect.After
	y := o.Steps[name]
	if y == nil {
		out.Message = fmt.Sprintf("step %s did not run", name)
		return
	}
	within := defaultEndsAfterWithin
	if c.Expect.Tolerance > 0 {
		within = c.Expect.Tolerance.D()
	}
	within = time.Duration(float64(within) * max(o.Slow, 1))
	xo, yo := o.overOf(c.Step, x), o.overOf(name, y)
	// A step without thread samples is over somewhere between its start
	// and its end: a KILL frees its waiters before its own client hears
	// back. That is only precise enough when the step was short; a long
	// one counts as over at its end, or a waiter released in its middle,
	// by something else, would pass.
	earliest := yo.at
	switch {
	case yo.thread:
		earliest = yo.low.Add(-endsAfterGrace)
	case y.End.Sub(y.Start) <= within:
		earliest = y.Start
	}
	// The lag is measured from what is certain: the last moment the check's
	// step was seen not over.
	lag := xo.low.Sub(yo.at)
	out.Expected = map[string]any{"ends": "after " + name + " is over", "within_s": round3(within.Seconds())}
	out.Observed = map[string]any{"started_s": o.sec(x.Start), "over_s": o.sec(xo.at), "other_over_s": o.sec(yo.at), "lag_s": round3(xo.at.Sub(yo.at).Seconds())}
	out.Tolerance = map[string]any{"within_s": round3(within.Seconds()), "sampling_s": round3(max(xo.at.Sub(xo.low), yo.at.Sub(yo.low)).Seconds())}
	out.Evidence = []string{xo.how, yo.how}
	switch {
	case !x.Start.Before(earliest):
		out.Message = fmt.Sprintf("step %s started at %s, after %s was over (%s): it never waited for it", c.Step, o.offset(x.Start), name, o.offset(earliest))
	case xo.at.Before(earliest) && !(xo.thread && xo.at.Add(endsAfterGrace).After(earliest)):
		// A thread's sample is timed before its query runs: a sample
		// taken just before the other step started may already show the
		// thread gone (measured: 1 ms on MariaDB, a KILL's victim).
		out.Message = fmt.Sprintf("step %s was over at %s, before %s was (%s)", c.Step, o.offset(xo.at), name, o.offset(yo.at))
	case lag > within:
		out.Message = fmt.Sprintf("step %s was over %.3fs after %s was, expected within %.3fs", c.Step, lag.Seconds(), name, within.Seconds())
	default:
		out.Passed = true
	}
}
