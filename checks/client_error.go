package checks

import (
	"fmt"
	"strings"
	"time"

	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
	"github.com/labrun/labrun/tcpmodel"
)

func init() {
	register(Kind{
		CheckKind: scenarios.CheckKind{
			Name:   "client_error",
			Doc:    "The client's error (code, sqlstate, errno, a substring) or none, and how long the step took: expect.elapsed, or the time a model gives: syn, data or keepalive (the client host's schedule); read_timeout (a request stalled by a disk freeze: when the client's read_timeout is the shorter, go-sql-driver's \"invalid connection\" with \"i/o timeout\" in its log at the request plus read_timeout, else no error and the step ends at the thaw); innodb_lock_wait_timeout (a row lock wait's ERROR 1205) or lock_wait_timeout (a metadata lock wait's, FTWRL's), each the step's own SET SESSION value, else the server's variable, else the default; or session_end (the end of the idle session of the step named by after, for a waiter on its lock).",
			Expect: []string{"code", "sqlstate", "errno", "contains", "elapsed", "model", "after", "tolerance"},
			Models: []string{"data", "innodb_lock_wait_timeout", "keepalive", "lock_wait_timeout", "read_timeout", "session_end", "syn"},
			Step:   scenarios.StepConnection,
			Validate: func(v *scenarios.Validator, path string, c *scenarios.Check) {
				e := c.Expect
				if e == nil {
					return
				}
				if e.Elapsed != nil && e.Model != "" {
					v.Add(path+".expect", "elapsed and model are exclusive: the model gives the elapsed time")
				}
				if e.Model == "session_end" && e.After == "" {
					v.Add(path+".expect.after", "required with model session_end: the step whose idle session this one waits on")
				}
				if e.After != "" && e.Model != "session_end" && e.Model != "read_timeout" {
					v.Add(path+".expect.after", "only with model session_end or read_timeout")
				}
				if e.Model == "read_timeout" {
					if e.Code != 0 || e.SQLState != "" || e.Errno != 0 || e.Contains != "" {
						v.Add(path+".expect", "model read_timeout gives the error itself: no code, sqlstate, errno or contains")
					}
					validateStallExpect(v, path, c)
				}
			},
		},
		Eval: checkClientError,
		Plan: func(p *PlanEnv, c *scenarios.Check) (map[string]any, string) {
			if c.Expect == nil {
				return nil, ""
			}
			sys := p.Sysctls(p.StepHost(c.Step))
			var m tcpmodel.Schedule
			switch c.Expect.Model {
			case "syn":
				m = tcpmodel.SYN(sys)
			case "keepalive":
				m = tcpmodel.Keepalive(sys)
			case "data":
				m = tcpmodel.Data(sys, 0)
				return map[string]any{"elapsed_after_first_transmission_s": round3(m.GiveUp.Seconds())}, m.Explain
			case "innodb_lock_wait_timeout", "lock_wait_timeout":
				d, explain := lockWait(c.Expect.Model, p.Scenario, stepSQL(p.Scenario, c.Step))
				return map[string]any{"elapsed_s": round3(d.Seconds())}, explain
			case "read_timeout":
				return planStall(p, c)
			case "session_end":
				exp, explain := planSessionEnd(p, c.Expect.After)
				if exp != nil {
					exp = map[string]any{"proceeds_after_step_" + c.Expect.After + "_s": exp["gone_after_step_s"], "by": exp["by"]}
				}
				return exp, explain
			default:
				if c.Expect.Elapsed != nil {
					return map[string]any{"elapsed_s": round3(c.Expect.Elapsed.D().Seconds())}, "from the scenario"
				}
				return nil, ""
			}
			return map[string]any{"elapsed_s": round3(m.GiveUp.Seconds())}, m.Explain
		},
	})
}

func checkClientError(o *Observations, c *scenarios.Check, out *reports.Check) {
	res, ok := o.clientStep(c, out)
	if !ok {
		return
	}
	cr := res.Client
	exp := c.Expect
	if exp == nil {
		exp = &scenarios.Expect{}
	}
	if exp.Model == "read_timeout" {
		checkReadTimeout(o, c, res, out)
		return
	}
	want := map[string]any{}
	obs := map[string]any{"elapsed_s": round3(cr.Elapsed().Seconds()), "client": cr.Kind}
	// A session that succeeded has no error to show; zero codes would read
	// as values.
	if cr.Error != "" {
		obs["error"], obs["code"], obs["sqlstate"], obs["errno"] = cr.Error, cr.Code, cr.SQLState, cr.Errno
	}
	out.Observed = obs
	out.Evidence = []string{fmt.Sprintf("step %s (%s client) ended at %s: %q", c.Step, cr.Kind, o.offset(cr.End), cr.Error)}
	var bad []string
	if exp.Code != 0 {
		want["code"] = exp.Code
		if cr.Code != exp.Code {
			bad = append(bad, fmt.Sprintf("code %d, expected %d", cr.Code, exp.Code))
		}
	}
	if exp.SQLState != "" {
		want["sqlstate"] = exp.SQLState
		if cr.SQLState != exp.SQLState {
			bad = append(bad, fmt.Sprintf("sqlstate %q, expected %q", cr.SQLState, exp.SQLState))
		}
	}
	if exp.Errno != 0 {
		want["errno"] = exp.Errno
		if cr.Errno != exp.Errno {
			bad = append(bad, fmt.Sprintf("errno %d, expected %d", cr.Errno, exp.Errno))
		}
	}
	if exp.Contains != "" {
		want["contains"] = exp.Contains
		if !strings.Contains(cr.Error+"\n"+eventsText(cr), exp.Contains) {
			bad = append(bad, fmt.Sprintf("error %q does not contain %q", cr.Error, exp.Contains))
		}
	}
	if exp.Code == 0 && exp.Errno == 0 && exp.Contains == "" && exp.SQLState == "" {
		want["error"] = "none"
		if cr.Failed() {
			bad = append(bad, "unexpected error "+cr.Error)
		}
	}
	var tol time.Duration
	el, model, ok, why := o.expectedElapsed(c, res)
	if why != "" {
		bad = append(bad, why)
	}
	if ok {
		floor := 500 * time.Millisecond
		if exp.Tolerance > 0 {
			floor = exp.Tolerance.D()
		}
		tol = tcpmodel.Tolerance(el, floor, o.Slow)
		want["elapsed_s"] = round3(el.Seconds())
		out.Tolerance = map[string]any{"elapsed_s": round3(tol.Seconds())}
		out.Explain = model
		if d := cr.Elapsed() - el; d > tol || -d > tol {
			bad = append(bad, fmt.Sprintf("took %.3fs, expected %.3fs ± %.3fs", cr.Elapsed().Seconds(), el.Seconds(), tol.Seconds()))
		}
	}
	out.Expected = want
	out.Passed = len(bad) == 0
	out.Message = strings.Join(bad, "; ")
	if c.Documented != nil && out.Passed {
		// Only an error line the article printed can differ from the
		// client's; prose about the error is context, not a figure.
		if s, ok := c.Documented.Value.(string); ok && strings.HasPrefix(s, "ERROR ") && cr.Error != "" && !strings.Contains(s, fmt.Sprintf("%d", cr.Code)) {
			out.Finding = fmt.Sprintf("the article's client said %q; this %s client said %q", s, cr.Kind, cr.Error)
		}
	}
}

// expectedElapsed is how long the client step should take: explicit, or
// from the model the check names. ok is false when the check sets no
// time; why says what was missing when the model could not give one,
// which fails the check rather than dropping its time.
func (o *Observations) expectedElapsed(c *scenarios.Check, res *Step) (d time.Duration, explain string, ok bool, why string) {
	if c.Expect == nil {
		return 0, "", false, ""
	}
	if c.Expect.Elapsed != nil {
		return c.Expect.Elapsed.D(), "from the scenario", true, ""
	}
	sys := o.Sysctls[res.Host]
	switch c.Expect.Model {
	case "":
		return 0, "", false, ""
	case "syn":
		m := tcpmodel.SYN(sys)
		return m.GiveUp, m.Explain, true, ""
	case "keepalive":
		m := tcpmodel.Keepalive(sys)
		return m.GiveUp, m.Explain, true, ""
	case "data":
		// The ladder starts when the segment that is never acknowledged is
		// first sent; the capture says when that was.
		scratch := &reports.Check{}
		f, _, found := o.flow(c, res, res.Host, scratch)
		if !found {
			return 0, "", false, "model data: " + scratch.Message
		}
		rtx := f.DataRetransmits(f.Client)
		m := o.dataModel(f, f.Client, res.Host, rtx)
		if len(rtx) == 0 {
			return 0, "", false, "model data: no retransmitted data segment of the client in the capture to start the ladder from"
		}
		first := rtx[0].Time
		for _, p := range f.Packets {
			if p.Src == f.Client && p.Seq == rtx[0].Seq && p.Payload > 0 {
				first = p.Time
				break
			}
		}
		return first.Sub(res.Client.Start) + m.GiveUp, m.Explain, true, ""
	case "innodb_lock_wait_timeout", "lock_wait_timeout":
		d, explain := lockWait(c.Expect.Model, o.Scenario, stepSQL(o.Scenario, c.Step))
		return d, explain, true, ""
	case "session_end":
		// A waiter blocked on the lock of an idle session whose client
		// vanished proceeds when that session ends.
		other := o.Steps[c.Expect.After]
		if other == nil {
			return 0, "", false, fmt.Sprintf("model session_end: step %s did not run", c.Expect.After)
		}
		u := o.sessionEnd(other, 0)
		if u.at.IsZero() {
			return 0, "", false, "model session_end: " + u.explain
		}
		d := max(u.at.Sub(res.Client.Start), 0)
		return d, u.explain, true, ""
	}
	return 0, "", false, fmt.Sprintf("model %q is not one client_error evaluates", c.Expect.Model)
}

// The go client's error when its read timeout expires: the driver logs
// the cause and returns ErrInvalidConn.
const (
	readTimeoutError = "invalid connection"
	readTimeoutLog   = "i/o timeout"
)

// checkReadTimeout is client_error with model read_timeout: the step's
// request waits on a disk freeze; the model says whether the client's read
// timeout or the thaw comes first, and so which error and when.
func checkReadTimeout(o *Observations, c *scenarios.Check, res *Step, out *reports.Check) {
	cr := res.Client
	obs := map[string]any{"elapsed_s": round3(cr.Elapsed().Seconds()), "client": cr.Kind}
	if cr.Error != "" {
		obs["error"] = cr.Error
	}
	var logged []string
	for _, e := range cr.Events {
		if strings.HasPrefix(e.What, "driver: ") {
			logged = append(logged, strings.TrimPrefix(e.What, "driver: "))
		}
	}
	if len(logged) > 0 {
		obs["driver_log"] = logged
	}
	out.Observed = obs
	out.Evidence = []string{fmt.Sprintf("step %s (%s client) ended at %s: %q", c.Step, cr.Kind, o.offset(cr.End), cr.Error)}
	for _, l := range logged {
		out.Evidence = append(out.Evidence, "driver log: "+l)
	}
	sr, ok := o.request(c, out)
	if !ok {
		out.Message = "model read_timeout: " + out.Message
		return
	}
	m, why := o.stall(c, sr)
	if m == nil {
		out.Message = "model read_timeout: " + why
		return
	}
	if m.readTimeout == 0 {
		out.Message = "model read_timeout: the step sets no read_timeout"
		return
	}
	m.settle(strings.Contains(cr.Error, readTimeoutError))
	out.Explain = m.explain
	var el time.Duration
	want := map[string]any{}
	if m.giveUp {
		el = sr.msg.Time.Sub(cr.Start) + m.readTimeout
		want["error"], want["driver_log"] = readTimeoutError, readTimeoutLog
	} else {
		el = m.until.Sub(cr.Start)
		if reply := sr.conn.ReplyTo(sr.req); m.bound && reply != nil {
			// A throttle or a load bounds the reply; the capture says
			// when it came.
			el = reply.Time.Sub(cr.Start)
		}
		want["error"] = "none"
	}
	tol := stallTolerance(c, m.readTimeout, o.Slow)
	want["elapsed_s"] = round3(el.Seconds())
	out.Expected = want
	out.Tolerance = map[string]any{"elapsed_s": round3(tol.Seconds())}
	var bad []string
	switch {
	case m.giveUp && !strings.Contains(cr.Error, readTimeoutError):
		bad = append(bad, fmt.Sprintf("error %q, expected %q", cr.Error, readTimeoutError))
	case m.giveUp && !strings.Contains(strings.Join(logged, "\n"), readTimeoutLog):
		bad = append(bad, fmt.Sprintf("the driver's log has no %q", readTimeoutLog))
	case !m.giveUp && cr.Failed():
		bad = append(bad, "unexpected error "+cr.Error)
	}
	if d := cr.Elapsed() - el; d > tol || -d > tol {
		bad = append(bad, fmt.Sprintf("took %.3fs, expected %.3fs ± %.3fs", cr.Elapsed().Seconds(), el.Seconds(), tol.Seconds()))
	}
	out.Passed = len(bad) == 0
	out.Message = strings.Join(bad, "; ")
}
