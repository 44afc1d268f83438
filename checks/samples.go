package checks

import (
	"fmt"
	"sort"
	"time"

	"github.com/labrun/labrun/client"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
)

// span is how long something was seen in samples taken on the timeline.
// A sample that errored says nothing: it neither shows the state nor its
// absence, so it never counts as "gone".
type span struct {
	n           int
	first, last time.Time
	goneAfter   bool
	// goneAt is the first good sample after the last one that showed the
	// state and did not.
	goneAt time.Time
	errors int
	err    string
	total  int
}

func (s *span) see(t time.Time, has bool, sampleErr string) {
	s.total++
	if sampleErr != "" {
		s.errors++
		if s.err == "" {
			s.err = sampleErr
		}
		return
	}
	switch {
	case has:
		if s.n == 0 {
			s.first = t
		}
		s.last = t
		s.n++
		s.goneAfter, s.goneAt = false, time.Time{}
	case s.n > 0 && !s.goneAfter:
		s.goneAfter, s.goneAt = true, t
	}
}

// until is when the model says a state ends, with its tolerance and why.
type until struct {
	at      time.Time
	tol     time.Duration
	explain string
}

// judge fills expected, observed and the verdict of a state check from a
// span: the state must have been seen, for at least exp.For, and be gone
// afterwards when exp.Gone; with a model (u non-nil) it must end when the
// model says, the end being bracketed by the last sample that showed it
// and the next good one. source names the samples for the evidence.
func (o *Observations) judge(what, source string, exp *scenarios.Expect, sp span, u *until, extra map[string]any, out *reports.Check) {
	want := map[string]any{"state": exp.State}
	if exp.For > 0 {
		want["for_s"] = round3(exp.For.D().Seconds())
	}
	if exp.Gone || u != nil {
		want["gone"] = true
	}
	tol := map[string]any{"for_s": "at least"}
	if u != nil {
		want["gone_s"] = o.sec(u.at)
		tol["gone_s"] = round3(u.tol.Seconds())
		out.Explain = u.explain
	}
	out.Expected = want
	out.Tolerance = tol
	obs := map[string]any{"samples": sp.n}
	for k, v := range extra {
		obs[k] = v
	}
	if sp.errors > 0 {
		obs["errored_samples"] = sp.errors
	}
	dur := sp.last.Sub(sp.first)
	if sp.n > 0 {
		obs["first_s"] = o.sec(sp.first)
		obs["last_s"] = o.sec(sp.last)
		obs["for_s"] = round3(dur.Seconds())
		obs["gone"] = sp.goneAfter
		out.Evidence = append(out.Evidence, fmt.Sprintf("%s: %s %q from %s to %s", source, what, exp.State, o.offset(sp.first), o.offset(sp.last)))
		if sp.goneAfter {
			obs["gone_s"] = o.sec(sp.goneAt)
			out.Evidence = append(out.Evidence, fmt.Sprintf("%s: %s no longer %q at %s", source, what, exp.State, o.offset(sp.goneAt)))
		}
	}
	out.Observed = obs
	switch {
	case sp.total == 0:
		out.Message = fmt.Sprintf("no samples in %s", source)
	case sp.errors == sp.total:
		out.Message = fmt.Sprintf("all %d samples in %s errored (first: %s)", sp.total, source, sp.err)
	case sp.n == 0:
		out.Message = fmt.Sprintf("%s never seen in %q", what, exp.State)
	case exp.For > 0 && dur < exp.For.D():
		out.Message = fmt.Sprintf("%s in %q for %.3fs, expected at least %s", what, exp.State, dur.Seconds(), exp.For)
	case (exp.Gone || u != nil) && !sp.goneAfter:
		out.Message = fmt.Sprintf("%s still in %q at the last good sample", what, exp.State)
	case u != nil && (sp.goneAt.Before(u.at.Add(-u.tol)) || sp.last.After(u.at.Add(u.tol))):
		out.Message = fmt.Sprintf("%s left %q between %s and %s, expected at %s ± %.3fs", what, exp.State, o.offset(sp.last), o.offset(sp.goneAt), o.offset(u.at), u.tol.Seconds())
	default:
		out.Passed = true
	}
}

// threadOf finds the server thread of a client step: by the connection id
// the go client learnt, else by the client's address, which the server
// shows as the thread's Host.
func threadOf(res *Step, th client.Thread) bool {
	if res.Client.ConnID != 0 {
		return th.ID == res.Client.ConnID
	}
	return res.Client.Local != "" && th.Host == res.Client.Local
}

// sampledStep is the client step of a check that reads processlist
// samples.
func (o *Observations) sampledStep(c *scenarios.Check, out *reports.Check) (*Step, bool) {
	res, ok := o.clientStep(c, out)
	if ok && len(o.Threads) == 0 {
		out.Message = "no processlist samples: add observe.processlist"
		return nil, false
	}
	return res, ok
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

// busy reports whether a processlist row shows a thread running a
// statement; an idle connection shows Sleep.
func busy(th client.Thread) bool { return th.Command != "Sleep" }

// threadBusy follows the step's server thread in the processlist samples
// from since on: the last sample in which it ran a statement, the first
// later sample in which it did not (zero while it still did at the end),
// and its state then. ok is false when it was never seen running.
func (o *Observations) threadBusy(res *Step, since time.Time) (last, idle time.Time, state string, ok bool) {
	if res.Client == nil {
		return
	}
	for _, s := range o.Threads {
		if s.Error != "" || s.Time.Before(since) {
			continue
		}
		running := false
		for _, th := range s.Threads {
			if threadOf(res, th) && busy(th) {
				running, state = true, th.State
			}
		}
		switch {
		case running:
			last, idle, ok = s.Time, time.Time{}, true
		case ok && idle.IsZero():
			idle = s.Time
		}
	}
	return
}

// over is when a step was over, as far as the samples tell: between low
// and at (the same instant for a step that simply finished).
type over struct {
	low, at time.Time
	thread  bool
	how     string
}

// overOf is when a step was over: when it finished, or, for a client step
// whose server thread the processlist shows running its statement and
// which stopped running it before the step finished (a reader the server
// gave up on, or killed, still reading what was buffered), when the thread
// stopped: after the last sample that showed it running, by the next one.
func (o *Observations) overOf(name string, res *Step) over {
	v := over{low: res.End, at: res.End, how: fmt.Sprintf("step %s ran from %s to %s", name, o.offset(res.Start), o.offset(res.End))}
	if last, idle, state, ok := o.threadBusy(res, time.Time{}); ok && !idle.IsZero() && idle.Before(res.End) {
		v = over{low: last, at: idle, thread: true,
			how: fmt.Sprintf("the server thread %d of step %s ran its statement (%q) until %s and was done at %s; the step itself ended at %s", res.Client.ConnID, name, state, o.offset(last), o.offset(idle), o.offset(res.End))}
	}
	return v
}
