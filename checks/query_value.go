package checks

import (
	"fmt"
	"strings"

	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
)

func init() {
	register(Kind{
		CheckKind: scenarios.CheckKind{
			Name:     "query_value",
			Doc:      "The first column of the first row the step's last statement returned, compared as text with expect.value.",
			Required: []string{"value"},
			Step:     scenarios.StepConnection,
		},
		Eval: checkQueryValue,
	})
}

// checkQueryValue compares the first column of the first row of the step's
// last statement with expect.value.
func checkQueryValue(o *Observations, c *scenarios.Check, out *reports.Check) {
	res, ok := o.clientStep(c, out)
	if !ok {
		return
	}
	want := *c.Expect.Value
	out.Expected = map[string]any{"value": want}
	out.Tolerance = "exact"
	st := res.Client.Statements
	if len(st) == 0 {
		out.Observed = map[string]any{"error": res.Client.Error}
		out.Message = fmt.Sprintf("step %s ran no statement (%s)", c.Step, res.Client.Error)
		return
	}
	last := st[len(st)-1]
	got := ""
	if len(last.First) > 0 {
		got = last.First[0]
	}
	out.Observed = map[string]any{"value": got, "rows": last.Rows}
	out.Evidence = []string{fmt.Sprintf("step %s at %s: %s -> %s", c.Step, o.offset(last.End), last.SQL, strings.Join(last.First, " | "))}
	out.Passed = last.Error == "" && got == want
	if !out.Passed {
		out.Message = fmt.Sprintf("%q returned %q, expected %q %s", last.SQL, got, want, last.Error)
	}
}
