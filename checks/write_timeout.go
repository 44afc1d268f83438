package checks

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
	"github.com/labrun/labrun/tcpmodel"
)

func init() {
	register(Kind{
		CheckKind: scenarios.CheckKind{
			Name:   "write_timeout",
			Doc:    "The server gives up on a client whose window stays closed: the time from the window closing to the abort (the server's RST, its socket leaving ESTABLISHED, or the step's thread leaving the processlist); the model is the server's net_write_timeout (server.variables, default 60 s).",
			Expect: []string{"elapsed", "tolerance"},
			Step:   scenarios.StepConnection,
		},
		Eval: checkWriteTimeout,
		Plan: func(p *PlanEnv, c *scenarios.Check) (map[string]any, string) {
			d, explain := netWriteTimeout(p.Scenario.Server.Variables)
			if c.Expect != nil && c.Expect.Elapsed != nil {
				d, explain = c.Expect.Elapsed.D(), "from the scenario"
			}
			return map[string]any{"elapsed_s": round3(d.Seconds())}, explain + ": from the window closing to the server's abort"
		},
	})
}

// DefaultNetWriteTimeout is net_write_timeout's default in MySQL and
// MariaDB, in seconds.
const DefaultNetWriteTimeout = 60

// netWriteTimeout is the server's net_write_timeout: the scenario's
// variable, else the default of both flavors.
func netWriteTimeout(vars map[string]string) (time.Duration, string) {
	return serverSeconds(vars, "net_write_timeout", DefaultNetWriteTimeout)
}

// serverSeconds reads a server variable in seconds, written with '_' or
// '-', else its default.
func serverSeconds(vars map[string]string, name string, def int) (time.Duration, string) {
	for _, k := range []string{name, strings.ReplaceAll(name, "_", "-")} {
		if v, ok := vars[k]; ok {
			if n, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && n >= 0 {
				return time.Duration(n * float64(time.Second)), name + "=" + strings.TrimSpace(v) + " (server.variables)"
			}
		}
	}
	return time.Duration(def) * time.Second, fmt.Sprintf("%s=%d (the default)", name, def)
}

// abort is when the server gave up on the step's connection, and how that
// was seen.
type abort struct {
	at time.Time
	// after is the sample before at, when the connection was still
	// there; zero for a packet, which is exact.
	after    time.Time
	how      string
	evidence string
}

// checkWriteTimeout: the server's write to a client whose window is closed
// waits net_write_timeout, then the server gives up on the connection
// (ER_NET_WRITE_INTERRUPTED). Observed: the stall (the zero window after
// which the server probed) and the abort, from the most precise source:
// the server's RST in the capture (MariaDB), the server's socket leaving
// ESTABLISHED in sock_diag (Oracle MySQL closes it, and its FIN waits
// behind the queued data), or the step's thread leaving the processlist.
// Model: the stall plus net_write_timeout, the server's poll() for room in
// its send buffer, which starts when the buffer fills, as the window
// closes; expect.elapsed overrides.
func checkWriteTimeout(o *Observations, c *scenarios.Check, out *reports.Check) {
	res, f, host, z, ok := o.zeroWindows(c, out)
	if !ok {
		return
	}
	stall := z.Stall()
	if stall == nil {
		out.Message = fmt.Sprintf("no stall: the client's window never stayed closed long enough for a zero-window probe (%s.pcap)", host)
		return
	}
	want, explain := netWriteTimeout(o.Scenario.Server.Variables)
	if c.Expect != nil && c.Expect.Elapsed != nil {
		want, explain = c.Expect.Elapsed.D(), "from the scenario"
	}
	var candidates []abort
	if stall.Reset != nil && stall.Reset.Src == f.Server {
		candidates = append(candidates, abort{at: stall.Reset.Time, how: "server RST",
			evidence: o.evidence(host, []capture.Packet{*stall.Reset}, "RST")[0]})
	}
	if a, ok := o.socketLeft(f, stall); ok {
		candidates = append(candidates, a)
	}
	if a, ok := o.threadGone(res, stall); ok {
		candidates = append(candidates, a)
	}
	floor := 500 * time.Millisecond
	if c.Expect != nil && c.Expect.Tolerance > 0 {
		floor = c.Expect.Tolerance.D()
	}
	out.Expected = map[string]any{"elapsed_s": round3(want.Seconds())}
	out.Explain = fmt.Sprintf("%s: the server's write waits that long for room in its send buffer, which filled as the client's window closed at %s", explain, o.offset(stall.Start.Time))
	obs := map[string]any{"zero_window_s": o.sec(stall.Start.Time)}
	out.Observed = obs
	out.Evidence = o.evidence(host, []capture.Packet{stall.Start}, "zero window")
	if len(candidates) == 0 {
		out.Message = "the server never gave up: no RST, the socket stayed ESTABLISHED and the thread stayed (add observe.processlist or observe.sockets on the server)"
		// Samples that errored show neither the connection nor its end:
		// say so rather than that it stayed.
		if n := o.erroredSince(stall.Start.Time); n > 0 {
			out.Message = fmt.Sprintf("no sign that the server gave up: no RST, and %d samples of the server's socket and thread after the window closed errored", n)
		}
		return
	}
	a := candidates[0]
	// A sample brackets the abort between the previous sample and this
	// one: the tolerance grows by that period.
	tol := tcpmodel.Tolerance(want, floor, o.Slow)
	if !a.after.IsZero() {
		tol += a.at.Sub(a.after)
	}
	got := a.at.Sub(stall.Start.Time)
	obs["abort_s"] = o.sec(a.at)
	obs["elapsed_s"] = round3(got.Seconds())
	obs["seen_by"] = a.how
	out.Tolerance = map[string]any{"elapsed_s": round3(tol.Seconds())}
	for _, x := range candidates {
		out.Evidence = append(out.Evidence, x.evidence)
	}
	if d := got - want; d > tol || -d > tol {
		out.Message = fmt.Sprintf("the server gave up %.3fs after the window closed, expected %.3fs ± %.3fs", got.Seconds(), want.Seconds(), tol.Seconds())
		return
	}
	out.Passed = true
	if n, ok := asNumber(docValue(c)); ok && math.Abs(n-want.Seconds()) > 0.001 {
		out.Finding = fmt.Sprintf("the article's server waited %g s (its net_write_timeout); this scenario sets %s", n, explain)
	}
}

// socketLeft finds the first sock_diag sample, after the stall began, in
// which the server's socket of the flow had left ESTABLISHED or was gone.
func (o *Observations) socketLeft(f *capture.Flow, stall *capture.ZeroWindowPeriod) (abort, bool) {
	var prev time.Time
	seen := false
	for _, s := range o.Sockets {
		if s.Host != o.Scenario.Server.Host || s.Error != "" || s.Time.Before(stall.Start.Time) {
			continue
		}
		state := ""
		for _, sk := range s.Sockets {
			if sk.Local == f.Server && sk.Remote == f.Client {
				state = sk.State
			}
		}
		switch {
		case state == "ESTABLISHED":
			seen, prev = true, s.Time
		case seen:
			what := "socket gone"
			if state != "" {
				what = "socket " + state
			}
			return abort{at: s.Time, after: prev, how: "sock_diag: " + what,
				evidence: fmt.Sprintf("sock_diag on %s: %s -> %s ESTABLISHED at %s, %s at %s", o.Scenario.Server.Host, f.Server, f.Client, o.offset(prev), what, o.offset(s.Time))}, true
		}
	}
	return abort{}, false
}

// threadGone finds the first processlist sample, after the stall began, in
// which the step's thread no longer ran its statement.
func (o *Observations) threadGone(res *Step, stall *capture.ZeroWindowPeriod) (abort, bool) {
	last, idle, state, ok := o.threadBusy(res, stall.Start.Time)
	if !ok || idle.IsZero() {
		return abort{}, false
	}
	return abort{at: idle, after: last, how: "processlist: thread gone",
		evidence: fmt.Sprintf("server-threads.json: thread %d %q last seen at %s, gone at %s", res.Client.ConnID, state, o.offset(last), o.offset(idle))}, true
}

// erroredSince counts the sock_diag samples of the server's host and the
// processlist samples, taken from t on, that errored.
func (o *Observations) erroredSince(t time.Time) int {
	n := 0
	for _, s := range o.Sockets {
		if s.Host == o.Scenario.Server.Host && s.Error != "" && !s.Time.Before(t) {
			n++
		}
	}
	for _, s := range o.Threads {
		if s.Error != "" && !s.Time.Before(t) {
			n++
		}
	}
	return n
}
