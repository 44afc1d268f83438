package runner

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/labrun/labrun/client"
	"github.com/labrun/labrun/reports"
)

func init() {
	checks["thread_state"] = checkThreadState
	checks["trx_state"] = checkTrxState
	checks["query_value"] = checkQueryValue
}

// span is how long something was seen in samples taken on the timeline.
type span struct {
	n           int
	first, last time.Time
	goneAfter   bool
}

func (s *span) see(t time.Time, has bool) {
	switch {
	case has:
		if s.n == 0 {
			s.first = t
		}
		s.last = t
		s.n++
	case s.n > 0:
		s.goneAfter = true
	}
}

// judge fills expected, observed and the verdict of a state check from a
// span: the state must have been seen, for at least exp.For, and be gone
// afterwards when exp.Gone.
func (e *evalEnv) judge(what string, exp *Expect, sp span, extra map[string]any, out *reports.Check) {
	want := map[string]any{"state": exp.State}
	if exp.For > 0 {
		want["for_s"] = round3(exp.For.D().Seconds())
	}
	if exp.Gone {
		want["gone"] = true
	}
	out.Expected = want
	obs := map[string]any{"samples": sp.n}
	for k, v := range extra {
		obs[k] = v
	}
	dur := sp.last.Sub(sp.first)
	if sp.n > 0 {
		obs["first_s"] = round3(sp.first.Sub(e.r.t0).Seconds())
		obs["last_s"] = round3(sp.last.Sub(e.r.t0).Seconds())
		obs["for_s"] = round3(dur.Seconds())
		obs["gone"] = sp.goneAfter
		out.Evidence = append(out.Evidence, fmt.Sprintf("server-threads.json: %s %q from %s to %s", what, exp.State, e.offset(sp.first), e.offset(sp.last)))
	}
	out.Observed = obs
	out.Tolerance = map[string]any{"for_s": "at least"}
	switch {
	case sp.n == 0:
		out.Message = fmt.Sprintf("%s never seen in %q", what, exp.State)
	case exp.For > 0 && dur < exp.For.D():
		out.Message = fmt.Sprintf("%s in %q for %.3fs, expected at least %s", what, exp.State, dur.Seconds(), exp.For)
	case exp.Gone && !sp.goneAfter:
		out.Message = fmt.Sprintf("%s still in %q at the last sample", what, exp.State)
	default:
		out.Passed = true
	}
}

// threadOf finds the server thread of a client step: by the connection id
// the go client learnt, else by the client's address, which the server
// shows as the thread's Host.
func threadOf(res *stepResult, th client.Thread) bool {
	if res.client.ConnID != 0 {
		return th.ID == res.client.ConnID
	}
	return res.client.Local != "" && th.Host == res.client.Local
}

// sampledStep is the client step of a check that reads processlist samples.
func (e *evalEnv) sampledStep(c *Check, out *reports.Check) (*stepResult, bool) {
	res, ok := e.clientStep(c, out)
	if ok && len(e.r.threads) == 0 {
		out.Message = "no processlist samples: add observe.processlist"
		return nil, false
	}
	return res, ok
}

// checkThreadState follows the step's server thread in the processlist:
// expect.state is matched against State ("Sending to client", "Waiting
// for table flush") or, for an idle thread, Command ("Sleep").
func checkThreadState(e *evalEnv, c *Check, out *reports.Check) {
	res, ok := e.sampledStep(c, out)
	if !ok {
		return
	}
	var sp span
	seen := map[string]int{}
	for _, s := range e.r.threads {
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
		sp.see(s.Time, has)
	}
	e.judge("thread of step "+c.Step, c.Expect, sp, map[string]any{"states_seen": sortedCounts(seen)}, out)
}

// checkTrxState follows the transaction of the step's connection in
// INNODB_TRX (RUNNING, LOCK WAIT, ...); gone means it ended: committed,
// rolled back, or its session was closed.
func checkTrxState(e *evalEnv, c *Check, out *reports.Check) {
	res, ok := e.sampledStep(c, out)
	if !ok {
		return
	}
	id := res.client.ConnID
	if id == 0 {
		out.Message = fmt.Sprintf("step %s has no server thread id: use the go client", c.Step)
		return
	}
	var sp span
	seen := map[string]int{}
	for _, s := range e.r.threads {
		has := false
		for _, tx := range s.Trx {
			if tx.ThreadID == id {
				seen[tx.State]++
				has = has || tx.State == c.Expect.State
			}
		}
		sp.see(s.Time, has)
	}
	e.judge(fmt.Sprintf("transaction of thread %d", id), c.Expect, sp, map[string]any{"states_seen": sortedCounts(seen)}, out)
}

// sortedCounts renders {"Sending to client": 12} as a stable list.
func sortedCounts(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s ×%d", k, v))
	}
	sort.Strings(out)
	return out
}

// checkQueryValue compares the first column of the first row of the step's
// last statement with expect.value.
func checkQueryValue(e *evalEnv, c *Check, out *reports.Check) {
	res, ok := e.clientStep(c, out)
	if !ok {
		return
	}
	want := *c.Expect.Value
	out.Expected = map[string]any{"value": want}
	out.Tolerance = "exact"
	st := res.client.Statements
	if len(st) == 0 {
		out.Observed = map[string]any{"error": res.client.Error}
		out.Message = fmt.Sprintf("step %s ran no statement (%s)", c.Step, res.client.Error)
		return
	}
	last := st[len(st)-1]
	got := ""
	if len(last.First) > 0 {
		got = last.First[0]
	}
	out.Observed = map[string]any{"value": got, "rows": last.Rows}
	out.Evidence = []string{fmt.Sprintf("step %s at %s: %s -> %s", c.Step, e.offset(last.End), last.SQL, strings.Join(last.First, " | "))}
	out.Passed = last.Error == "" && got == want
	if !out.Passed {
		out.Message = fmt.Sprintf("%q returned %q, expected %q %s", last.SQL, got, want, last.Error)
	}
}
