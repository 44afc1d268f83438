package runner

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/client"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/tcpmodel"
)

// Lab D's checks: a result streamed to a client that stops reading. The
// client's receive window closes, the server's persist timer probes it, the
// server's write waits net_write_timeout and gives up, and sessions that
// wait on the reader's table are released only once it is gone.

func init() {
	checks["zero_window"] = checkZeroWindow
	checks["write_timeout"] = checkWriteTimeout
	checks["ends_after"] = checkEndsAfter
}

// DefaultNetWriteTimeout is net_write_timeout's default in MySQL and
// MariaDB, in seconds.
const DefaultNetWriteTimeout = 60

// endsAfterGrace allows for a processlist sample that still lists a thread
// for an instant after it released its tables: the sample's time is taken
// before its query runs, and a thread leaves the list a little after it
// finished its statement.
const endsAfterGrace = 50 * time.Millisecond

// defaultEndsAfterWithin is how soon after the other step is over the
// check's step must finish, unless expect.tolerance says otherwise: "at
// once", with room for a loaded machine.
const defaultEndsAfterWithin = time.Second

// zeroWindows analyses the client's receive window on the step's flow.
func (e *evalEnv) zeroWindows(c *Check, out *reports.Check) (*stepResult, *capture.Flow, string, *capture.ZeroWindows, bool) {
	res, f, host, ok := e.stepFlow(c, out, false)
	if !ok {
		return nil, nil, "", nil, false
	}
	return res, f, host, f.ZeroWindows(f.Client), true
}

// threadHost is the Host column (address:port) of server thread id.
func (e *evalEnv) threadHost(id int64) string {
	for _, s := range e.r.threads {
		for _, th := range s.Threads {
			if th.ID == id && strings.Contains(th.Host, ":") {
				return th.Host
			}
		}
	}
	return ""
}

// checkZeroWindow: the client's window closes while the server has data to
// send, and the server's persist timer probes it. Observed: when the window
// closed for good (the first period with probes: the stall), the probes and
// their intervals, the server's payload bytes before the window closed and
// after it opened again, and the server's send queue (sock_diag), how the
// stall ended. Model: tcpmodel.ZeroWindowProbes for the server's sysctls
// and the time the window stayed closed.
func checkZeroWindow(e *evalEnv, c *Check, out *reports.Check) {
	_, f, host, z, ok := e.zeroWindows(c, out)
	if !ok {
		return
	}
	first, stall := z.First(), z.Stall()
	obs := map[string]any{"zero_window_periods": len(z.Periods), "server_sent_bytes": z.Sent}
	out.Observed = obs
	switch {
	case first == nil:
		out.Message = fmt.Sprintf("the client's window never closed (%s.pcap, flow %s)", host, f.Client)
		return
	case stall == nil:
		out.Message = fmt.Sprintf("the client's window closed %d times but the server never probed it: it opened again within %.3fs", len(z.Periods), first.Duration().Seconds())
		obs["first_zero_window_s"] = e.sec(first.Start.Time)
		return
	}
	// The persist timer starts from the server's RTO, which the RTT
	// samples before the stall give: a client that delays its ACKs makes
	// it longer than tcp_rto_min.
	sys := e.r.sysctls[e.r.sc.Server.Host]
	var samples []tcpmodel.RTTSample
	for _, sm := range f.RTTSamples(f.Server) {
		if !sm.At.After(stall.Start.Time) {
			samples = append(samples, tcpmodel.RTTSample{RTT: sm.RTT, Una: sm.Una, Nxt: sm.Nxt})
		}
	}
	rto, srtt := tcpmodel.RTO(sys, samples)
	model := tcpmodel.ZeroWindowProbes(sys, rto, stall.Duration())
	model.Explain = fmt.Sprintf("The server's RTO when the window closed, from %d RTT samples in the capture (srtt %.1f ms): %.0f ms. %s", len(samples), float64(srtt.Microseconds())/1000, float64(rto.Milliseconds()), model.Explain)
	probes := stall.ProbeIntervals()
	if model.Borderline && len(probes) == model.Count-1 {
		// The last expiry was due just before the window opened; a late
		// timer fires after it, and that probe is never sent.
		model.Count--
		model.Intervals = model.Intervals[:model.Count]
		model.Explain += " The last probe was due within the timers' lateness of the window opening, so it may not be sent."
	}
	e.ladder(c, model, probes, out)
	out.Message = strings.Replace(out.Message, "retransmissions", "zero-window probes", 1)
	obs = out.Observed.(map[string]any)
	obs["zero_window_periods"] = len(z.Periods)
	obs["zero_window_s"] = e.sec(stall.Start.Time)
	obs["closed_s"] = round3(stall.Duration().Seconds())
	obs["bytes_before_zero_window"] = stall.SentBefore
	obs["server_sent_bytes"] = z.Sent
	if first != stall {
		obs["first_zero_window_s"] = e.sec(first.Start.Time)
		obs["bytes_before_first_zero_window"] = first.SentBefore
	}
	out.Evidence = append(out.Evidence, e.evidence(host, []capture.Packet{stall.Start}, fmt.Sprintf("zero window after %d server bytes", stall.SentBefore))...)
	out.Evidence = append(out.Evidence, e.evidence(host, stall.Probes, "zero-window probe")...)
	switch {
	case stall.End != nil:
		obs["ended"] = "window opened"
		obs["bytes_after_zero_window"] = z.SentAfter(stall)
		out.Evidence = append(out.Evidence, e.evidence(host, []capture.Packet{*stall.End}, fmt.Sprintf("window update (%d bytes)", stall.End.WindowScaled))...)
	case stall.Reset != nil:
		who := "client"
		if stall.Reset.Src == f.Server {
			who = "server"
		}
		obs["ended"] = "reset by the " + who
		out.Evidence = append(out.Evidence, e.evidence(host, []capture.Packet{*stall.Reset}, "RST")...)
	default:
		obs["ended"] = "capture ended"
	}
	if z.FIN != nil {
		obs["server_fin_s"] = e.sec(z.FIN.Time)
	}
	if q, at, ok := e.sendQueue(f, stall); ok {
		obs["server_send_queue_bytes"] = q
		out.Evidence = append(out.Evidence, fmt.Sprintf("sock_diag on %s at %s: %s -> %s send queue %d bytes", e.r.sc.Server.Host, e.offset(at), f.Server, f.Client, q))
	}
	if !out.Passed {
		return
	}
	if n, ok := asNumber(docValue(c)); ok && n > 0 {
		// The article's figure is what the server had written when it
		// blocked; the closest observation is what it held queued.
		queued, src := int64(-1), ""
		if v, ok := obs["server_send_queue_bytes"].(int); ok {
			queued, src = int64(v), "its socket's send queue in sock_diag"
		} else if v, ok := obs["bytes_after_zero_window"].(int64); ok {
			queued, src = v, "what it sent once the window opened"
		}
		if queued >= 0 && math.Abs(float64(queued)-n) > n/8 {
			out.Finding = fmt.Sprintf("the article's server blocked after about %.0f bytes; here it had sent %d bytes when the client's window closed and held %d more queued (%s): the send buffer is the kernel's autotuning within tcp_wmem (%s on the server)",
				n, stall.SentBefore, queued, src, e.r.sysctls[e.r.sc.Server.Host]["net.ipv4.tcp_wmem"])
		}
	}
}

// sendQueue is the largest send queue sock_diag saw on the server's socket
// of the flow while its window was closed.
func (e *evalEnv) sendQueue(f *capture.Flow, p *capture.ZeroWindowPeriod) (int, time.Time, bool) {
	best, at, found := 0, time.Time{}, false
	for _, s := range e.r.samples {
		if s.Host != e.r.sc.Server.Host || s.Time.Before(p.Start.Time) || s.Time.After(p.Last) {
			continue
		}
		for _, sk := range s.Sockets {
			if sk.Local == f.Server && sk.Remote == f.Client && (!found || sk.SendQ > best) {
				best, at, found = sk.SendQ, s.Time, true
			}
		}
	}
	return best, at, found
}

// docValue is the documented value, or nil.
func docValue(c *Check) any {
	if c.Documented == nil {
		return nil
	}
	return c.Documented.Value
}

func asNumber(v any) (float64, bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// sec renders a time as seconds from the start of the timeline.
func (e *evalEnv) sec(t time.Time) float64 { return round3(t.Sub(e.r.t0).Seconds()) }

// netWriteTimeout is the server's net_write_timeout: the scenario's
// variable, else the default of both flavors.
func (e *evalEnv) netWriteTimeout() (time.Duration, string) {
	for _, k := range []string{"net_write_timeout", "net-write-timeout"} {
		if v, ok := e.r.sc.Server.Variables[k]; ok {
			if n, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && n > 0 {
				return time.Duration(n * float64(time.Second)), "net_write_timeout=" + v + " (server.variables)"
			}
		}
	}
	return DefaultNetWriteTimeout * time.Second, fmt.Sprintf("net_write_timeout=%d (the default)", DefaultNetWriteTimeout)
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
func checkWriteTimeout(e *evalEnv, c *Check, out *reports.Check) {
	res, f, host, z, ok := e.zeroWindows(c, out)
	if !ok {
		return
	}
	stall := z.Stall()
	if stall == nil {
		out.Message = fmt.Sprintf("no stall: the client's window never stayed closed long enough for a zero-window probe (%s.pcap)", host)
		return
	}
	want, explain := e.netWriteTimeout()
	if c.Expect != nil && c.Expect.Elapsed != nil {
		want, explain = c.Expect.Elapsed.D(), "from the scenario"
	}
	var candidates []abort
	if stall.Reset != nil && stall.Reset.Src == f.Server {
		candidates = append(candidates, abort{at: stall.Reset.Time, how: "server RST",
			evidence: e.evidence(host, []capture.Packet{*stall.Reset}, "RST")[0]})
	}
	if a, ok := e.socketLeft(f, stall); ok {
		candidates = append(candidates, a)
	}
	if a, ok := e.threadGone(res, stall); ok {
		candidates = append(candidates, a)
	}
	floor := 500 * time.Millisecond
	if c.Expect != nil && c.Expect.Tolerance > 0 {
		floor = c.Expect.Tolerance.D()
	}
	out.Expected = map[string]any{"elapsed_s": round3(want.Seconds())}
	out.Explain = fmt.Sprintf("%s: the server's write waits that long for room in its send buffer, which filled as the client's window closed at %s", explain, e.offset(stall.Start.Time))
	obs := map[string]any{"zero_window_s": e.sec(stall.Start.Time)}
	out.Observed = obs
	out.Evidence = e.evidence(host, []capture.Packet{stall.Start}, "zero window")
	if len(candidates) == 0 {
		out.Message = "the server never gave up: no RST, the socket stayed ESTABLISHED and the thread stayed (add observe.processlist or observe.sockets on the server)"
		return
	}
	a := candidates[0]
	// A sample brackets the abort between the previous sample and this
	// one: the tolerance grows by that period.
	tol := tcpmodel.Tolerance(want, floor, e.slow)
	if !a.after.IsZero() {
		tol += a.at.Sub(a.after)
	}
	got := a.at.Sub(stall.Start.Time)
	obs["abort_s"] = e.sec(a.at)
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
func (e *evalEnv) socketLeft(f *capture.Flow, stall *capture.ZeroWindowPeriod) (abort, bool) {
	var prev time.Time
	seen := false
	for _, s := range e.r.samples {
		if s.Host != e.r.sc.Server.Host || s.Error != "" || s.Time.Before(stall.Start.Time) {
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
				evidence: fmt.Sprintf("sock_diag on %s: %s -> %s ESTABLISHED at %s, %s at %s", e.r.sc.Server.Host, f.Server, f.Client, e.offset(prev), what, e.offset(s.Time))}, true
		}
	}
	return abort{}, false
}

// threadGone finds the first processlist sample, after the stall began, in
// which the step's thread no longer ran its statement.
func (e *evalEnv) threadGone(res *stepResult, stall *capture.ZeroWindowPeriod) (abort, bool) {
	last, idle, state, ok := e.threadBusy(res, stall.Start.Time)
	if !ok || idle.IsZero() {
		return abort{}, false
	}
	return abort{at: idle, after: last, how: "processlist: thread gone",
		evidence: fmt.Sprintf("server-threads.json: thread %d %q last seen at %s, gone at %s", res.client.ConnID, state, e.offset(last), e.offset(idle))}, true
}

// busy reports whether a processlist row shows a thread running a
// statement; an idle connection shows Sleep.
func busy(th client.Thread) bool { return th.Command != "Sleep" }

// threadBusy follows the step's server thread in the processlist samples
// from since on: the last sample in which it ran a statement, the first
// later sample in which it did not (zero while it still did at the end),
// and its state then. ok is false when it was never seen running.
func (e *evalEnv) threadBusy(res *stepResult, since time.Time) (last, idle time.Time, state string, ok bool) {
	if res.client == nil {
		return
	}
	for _, s := range e.r.threads {
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
func (e *evalEnv) overOf(name string, res *stepResult) over {
	o := over{low: res.end, at: res.end, how: fmt.Sprintf("step %s ran from %s to %s", name, e.offset(res.start), e.offset(res.end))}
	if last, idle, state, ok := e.threadBusy(res, time.Time{}); ok && !idle.IsZero() && idle.Before(res.end) {
		o = over{low: last, at: idle, thread: true,
			how: fmt.Sprintf("the server thread %d of step %s ran its statement (%q) until %s and was done at %s; the step itself ended at %s", res.client.ConnID, name, state, e.offset(last), e.offset(idle), e.offset(res.end))}
	}
	return o
}

// checkEndsAfter: the check's step is over only once the step named by
// expect.after is over, and promptly then (within expect.tolerance,
// default 1 s), and it had started before: a query that waits for a slow
// reader's table completes when the reader is gone; a KILL frees every
// waiter at once and ends the reader's thread. Either step is over as
// overOf says. The check's step may end while the other is still being
// reported over (a KILL takes effect before its client hears back), so the
// other counts as over from its start, or from its thread's last running
// sample less a grace for the sampling.
func checkEndsAfter(e *evalEnv, c *Check, out *reports.Check) {
	x, ok := e.clientStep(c, out)
	if !ok {
		return
	}
	name := c.Expect.After
	y := e.r.steps[name]
	if y == nil {
		out.Message = fmt.Sprintf("step %s did not run", name)
		return
	}
	within := defaultEndsAfterWithin
	if c.Expect.Tolerance > 0 {
		within = c.Expect.Tolerance.D()
	}
	within = time.Duration(float64(within) * max(e.slow, 1))
	xo, yo := e.overOf(c.Step, x), e.overOf(name, y)
	earliest := y.start
	if yo.thread {
		earliest = yo.low.Add(-endsAfterGrace)
	}
	// The lag is measured from what is certain: the last moment the check's
	// step was seen not over.
	lag := xo.low.Sub(yo.at)
	out.Expected = map[string]any{"ends": "after " + name + " is over", "within_s": round3(within.Seconds())}
	out.Observed = map[string]any{"started_s": e.sec(x.start), "over_s": e.sec(xo.at), "other_over_s": e.sec(yo.at), "lag_s": round3(xo.at.Sub(yo.at).Seconds())}
	out.Tolerance = map[string]any{"within_s": round3(within.Seconds()), "sampling_s": round3(max(xo.at.Sub(xo.low), yo.at.Sub(yo.low)).Seconds())}
	out.Evidence = []string{xo.how, yo.how}
	switch {
	case !x.start.Before(yo.at):
		out.Message = fmt.Sprintf("step %s started at %s, after %s was over at %s: it never waited for it", c.Step, e.offset(x.start), name, e.offset(yo.at))
	case xo.at.Before(earliest):
		out.Message = fmt.Sprintf("step %s was over at %s, before %s was (%s)", c.Step, e.offset(xo.at), name, e.offset(yo.at))
	case lag > within:
		out.Message = fmt.Sprintf("step %s was over %.3fs after %s was, expected within %.3fs", c.Step, lag.Seconds(), name, within.Seconds())
	default:
		out.Passed = true
	}
}
