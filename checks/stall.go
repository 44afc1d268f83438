package checks

import (
	"fmt"
	"time"

	"github.com/labrun/labrun/actions"
	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
	"github.com/labrun/labrun/tcpmodel"
)

// A stalled request (Lab A): a client sends a statement, the server's disk
// stalls, and the statement's result waits for the disk. What the client
// does then depends on its read timeout: the model here says, from the
// scenario's own parameters (the fault step's duration, the client's
// read_timeout) and the request's time in the capture, whether the client
// gives up before the result comes, and when each thing happens.

// stalledRequest is one client step's request on the wire, decoded.
type stalledRequest struct {
	res  *Step
	f    *capture.Flow
	host string
	conn *capture.MySQLConn
	// req is the index of the request in conn.Messages; msg the message.
	req int
	msg capture.MySQLMessage
	// seg is the request's last segment.
	seg capture.Packet
}

// request finds the step's connection, its MySQL exchange and the step's
// last request: the last client command other than COM_QUIT and
// COM_STMT_CLOSE.
func (o *Observations) request(c *scenarios.Check, out *reports.Check) (*stalledRequest, bool) {
	res, f, host, ok := o.stepFlow(c, out, true)
	if !ok {
		return nil, false
	}
	a := o.Analyses[host]
	var conn *capture.MySQLConn
	for _, mc := range a.MySQL {
		if mc.Client == f.Client && mc.Server == f.Server {
			conn = mc
		}
	}
	if conn == nil {
		out.Message = fmt.Sprintf("%s.pcap has no MySQL exchange on flow %s -> %s", host, f.Client, f.Server)
		return nil, false
	}
	sr := &stalledRequest{res: res, f: f, host: host, conn: conn, req: -1}
	for i, m := range conn.Messages {
		if m.FromClient && m.Kind == "command" && m.Command != "COM_QUIT" && m.Command != "COM_STMT_CLOSE" {
			sr.req, sr.msg = i, m
		}
	}
	if sr.req < 0 {
		out.Message = fmt.Sprintf("no MySQL command from the client on flow %s -> %s in %s.pcap%s", f.Client, f.Server, host, lostNote(conn))
		return nil, false
	}
	for _, p := range f.Packets {
		if p.Frame == sr.msg.Frame {
			sr.seg = p
		}
	}
	if sr.seg.Frame == 0 {
		out.Message = fmt.Sprintf("the request's frame %d is not on the flow", sr.msg.Frame)
		return nil, false
	}
	return sr, true
}

func lostNote(c *capture.MySQLConn) string {
	if c.Lost != "" {
		return " (decoding stopped: " + c.Lost + ")"
	}
	return ""
}

// stallModel is what the model predicts for a stalled request.
type stallModel struct {
	// fault is the disk fault step in force when the request was sent,
	// and rec its record; until is when it ended.
	fault string
	rec   *actions.FaultRecord
	until time.Time
	// readTimeout is the client step's read_timeout (0: none).
	readTimeout time.Duration
	// remaining is how long the stall still had to run when the request
	// went out; giveUp says the client's read timeout comes first.
	remaining time.Duration
	giveUp    bool
	// borderline says the read timeout and the thaw fall within the
	// timing tolerance of each other: either may come first, and the
	// observation decides (settle).
	borderline bool
	// bound says that until is only the latest the reply may come (a
	// throttle, a load, a latency): whether the client gives up first is
	// observed, unless the model is certain either way.
	bound bool
	// earliest is the soonest the reply may come (a latency: one delayed
	// call after the request); zero when there is no lower bound.
	earliest time.Time
	explain  string
}

// settle decides a borderline model by what was observed: whether the
// client gave up before the result came.
func (m *stallModel) settle(gaveUp bool) {
	if !m.borderline {
		return
	}
	m.giveUp = gaveUp
	if m.bound {
		m.explain += fmt.Sprintf(" This run's client %s.", map[bool]string{true: "gave up first", false: "got its result first"}[gaveUp])
		return
	}
	m.explain += fmt.Sprintf(" The read timeout and the thaw are within the timers' tolerance of each other (%.3fs apart): either may come first; this run's client %s.", (m.remaining - m.readTimeout).Abs().Seconds(), map[bool]string{true: "gave up first", false: "got its result first"}[gaveUp])
}

// stall models the step's request against the disk fault in force when it
// was sent: the named one (expect.after) or the only one whose time holds
// the request. A freeze's thaw is when the reply comes; a throttle's or a
// load's end is only the latest it may come, and the model says so rather
// than guess.
func (o *Observations) stall(c *scenarios.Check, sr *stalledRequest) (*stallModel, string) {
	m := &stallModel{}
	if st := stepOf(o.Scenario, c.Step); st != nil {
		if cl, ok := actions.ClientOf(st); ok {
			m.readTimeout = cl.ReadTimeout.D()
		}
	}
	at := sr.msg.Time
	var names []string
	for _, st := range o.Scenario.Timeline {
		r := o.Steps[st.Name]
		if r == nil || r.Fault == nil {
			continue
		}
		if c.Expect != nil && c.Expect.After != "" {
			if st.Name == c.Expect.After {
				names = []string{st.Name}
				m.fault, m.rec = st.Name, r.Fault
			}
			continue
		}
		end := r.Fault.Ended
		if !r.Fault.Applied.After(at) && (end.IsZero() || end.After(at)) {
			names = append(names, st.Name)
			m.fault, m.rec = st.Name, r.Fault
		}
	}
	switch {
	case len(names) == 0 && c.Expect != nil && c.Expect.After != "":
		return nil, fmt.Sprintf("step %s applied no disk fault", c.Expect.After)
	case len(names) == 0:
		return nil, fmt.Sprintf("no disk fault was in force when the request went out at %s", o.offset(at))
	case len(names) > 1:
		return nil, fmt.Sprintf("%d disk faults were in force when the request went out (%v): name one with expect.after", len(names), names)
	}
	if m.rec.Ended.IsZero() {
		return nil, fmt.Sprintf("the %s of step %s has no recorded end", m.rec.Kind, m.fault)
	}
	m.until = m.rec.Ended
	switch m.rec.Kind {
	case "freeze":
		m.explain = fmt.Sprintf("The freeze of step %s held every write on the server's disk from %s to %s; the request went out at %s, so its commit waited %.3fs for the thaw. ",
			m.fault, o.offset(m.rec.Applied), o.offset(m.until), o.offset(at), max(m.until.Sub(at), 0).Seconds())
	case "throttle":
		// How long a commit takes under a limit depends on what else the
		// server's threads have queued (the page cleaner's writes wait in
		// the same group); what is certain is that it is done once the
		// limits are lifted.
		m.bound = true
		m.explain = fmt.Sprintf("The throttle of step %s limited the server's IO from %s to %s; a commit under it takes as long as the IO queued ahead of it, which the model does not know, but it is done soon after the limits are lifted: the reply comes by %s. ",
			m.fault, o.offset(m.rec.Applied), o.offset(m.until), o.offset(m.until))
	case "latency":
		// A commit makes one or more calls of the delayed operation (a
		// write, an fsync: MySQL's commits took 1 to 4 fsyncs under a
		// delay), each waiting the delay, and ending the fault releases
		// the ones still waiting: the reply comes no sooner than one
		// delay after the request, and no later than the fault's end.
		lt, _ := stepOf(o.Scenario, m.fault).Action.(*actions.Latency)
		if lt == nil {
			return nil, fmt.Sprintf("step %s is not a latency step", m.fault)
		}
		m.bound = true
		if lt.Op == "write" || lt.Op == "fsync" {
			m.earliest = at.Add(lt.Delay.D())
		}
		m.explain = fmt.Sprintf("The latency of step %s added %s to every %s on the server's disk from %s to %s; a commit makes one or more of them, so the reply comes no sooner than %s and no later than the fault's end, %s, when the calls still waiting go on. ",
			m.fault, lt.Delay, lt.Op, o.offset(m.rec.Applied), o.offset(m.until), o.offset(m.earliest), o.offset(m.until))
		if m.earliest.IsZero() {
			m.explain = fmt.Sprintf("The latency of step %s added %s to every %s on the server's disk from %s to %s; a commit may not wait for that operation at all, so the reply comes no later than the fault's end. ", m.fault, lt.Delay, lt.Op, o.offset(m.rec.Applied), o.offset(m.until))
		}
	case "load":
		// The writer's last batch (sync_every blocks, one fsync) may still
		// be queued when it stops; on a shared slow disk it drains at the
		// throttle's rate first.
		var drain time.Duration
		if st := stepOf(o.Scenario, m.fault); st != nil {
			if ld, ok := st.Action.(*actions.Load); ok && ld.Shared {
				block := int64(ld.Block)
				if block == 0 {
					block = 1 << 20
				}
				batch := block * int64(max(ld.SyncEvery, 1))
				if bps := o.sharedWriteBPS(); bps > 0 {
					drain = time.Duration(float64(batch) / float64(bps) * float64(time.Second))
				}
			}
		}
		m.until = m.until.Add(drain)
		m.bound = true
		m.explain = fmt.Sprintf("The load of step %s wrote from %s to %s; the server's commit waits for the IO queued ahead of it, which the model does not know, but it is done once the writer has stopped and its last batch has drained (%.3fs): the reply comes by %s. ",
			m.fault, o.offset(m.rec.Applied), o.offset(m.rec.Ended), drain.Seconds(), o.offset(m.until))
	}
	m.remaining = max(m.until.Sub(at), 0)
	m.giveUp = m.readTimeout > 0 && m.readTimeout < m.remaining
	m.borderline = m.bound || (m.readTimeout > 0 && (m.remaining-m.readTimeout).Abs() <= tcpmodel.Tolerance(m.readTimeout, 100*time.Millisecond, o.Slow))
	if m.rec.Kind == "latency" && m.readTimeout > 0 {
		// Certain either way when the read timeout is shorter than one
		// delayed call, or outlasts the fault.
		tol := tcpmodel.Tolerance(m.readTimeout, 100*time.Millisecond, o.Slow)
		switch {
		case !m.earliest.IsZero() && m.readTimeout+tol < m.earliest.Sub(at):
			m.giveUp, m.borderline = true, false
			m.explain += fmt.Sprintf(" One delayed call alone outlasts the client's read timeout, %s: it gives up first.", m.readTimeout)
		case m.readTimeout > m.remaining+tol:
			m.giveUp, m.borderline = false, false
			m.explain += fmt.Sprintf(" The client's read timeout, %s, outlasts the fault: the result arrives in time.", m.readTimeout)
		}
	}
	switch {
	case m.readTimeout == 0:
		m.explain += "The client has no read timeout: it waits for the result."
	case m.bound && m.rec.Kind != "latency":
		m.explain += fmt.Sprintf("The client gives up at its read timeout, %s after the request, if the reply has not come by then.", m.readTimeout)
	case m.bound:
		if m.borderline {
			m.explain += fmt.Sprintf("Whether the client's read timeout, %s, comes first depends on how many delayed calls the commit makes.", m.readTimeout)
		}
	case m.giveUp:
		m.explain += fmt.Sprintf("The client's read timeout, %s, is shorter: it gives up first, at %s, and the result arrives after it closed.", m.readTimeout, o.offset(at.Add(m.readTimeout)))
	default:
		m.explain += fmt.Sprintf("The client's read timeout, %s, is longer: the result arrives in time.", m.readTimeout)
	}
	return m, ""
}

// sharedWriteBPS is the write limit of the throttle steps of the scenario
// (the slow disk a shared load joins), 0 if none sets one.
func (o *Observations) sharedWriteBPS() uint64 {
	for _, st := range o.Scenario.Timeline {
		if t, ok := st.Action.(*actions.Throttle); ok && t.WriteBPS > 0 {
			return uint64(t.WriteBPS)
		}
	}
	return 0
}

func stepOf(sc *scenarios.Scenario, name string) *scenarios.Step {
	for _, st := range sc.Timeline {
		if st != nil && st.Name == name {
			return st
		}
	}
	return nil
}

// stalled starts a check of a stalled request: the request, its model
// settled by what the capture shows when borderline (nil with why when
// there is none), and the observed map the check fills, already holding
// the request, which is the first evidence.
func (o *Observations) stalled(c *scenarios.Check, out *reports.Check) (*stalledRequest, *stallModel, string, map[string]any, bool) {
	sr, ok := o.request(c, out)
	if !ok {
		return nil, nil, "", nil, false
	}
	m, why := o.stall(c, sr)
	if m != nil {
		m.settle(sr.gaveUp())
	}
	obs := map[string]any{"request": sr.msg.Command, "request_s": o.sec(sr.msg.Time)}
	out.Observed = obs
	out.Evidence = o.evidence(sr.host, []capture.Packet{sr.seg}, "request "+sr.msg.Command)
	return sr, m, why, obs, true
}

// gaveUp says whether the client closed before the server's reply came.
func (sr *stalledRequest) gaveUp() bool {
	fin := clientFIN(sr)
	reply := sr.conn.ReplyTo(sr.req)
	return fin != nil && (reply == nil || fin.Time.Before(reply.Time))
}

// clientFIN is the client's first FIN on the flow after the request, or
// nil.
func clientFIN(sr *stalledRequest) *capture.Packet {
	for _, p := range sr.f.FINs(sr.f.Client) {
		if p.Time.After(sr.seg.Time) {
			return &p
		}
	}
	return nil
}

// stallTolerance is the timing tolerance of a stall's events: timers fire
// late by the kernel's usual amounts, and a commit released by a thaw
// finishes its log write and fsync first.
func stallTolerance(c *scenarios.Check, d time.Duration, slow float64) time.Duration {
	floor := 250 * time.Millisecond
	if c.Expect != nil && c.Expect.Tolerance > 0 {
		floor = c.Expect.Tolerance.D()
	}
	return tcpmodel.Tolerance(d, floor, slow)
}

func validateStallExpect(v *scenarios.Validator, path string, c *scenarios.Check) {
	if c.Expect == nil || c.Expect.After == "" {
		return
	}
	st, _ := v.Step(c.Expect.After)
	if st == nil {
		v.Add(path+".expect.after", "no step named %q", c.Expect.After)
		return
	}
	if st.Kind != "freeze" && st.Kind != "throttle" && st.Kind != "load" && st.Kind != "latency" {
		v.Add(path+".expect.after", "step %q is a %s step; the stall model follows a disk fault (freeze, throttle, load, latency)", c.Expect.After, st.Kind)
	}
}

// planStall predicts a stalled request from the scenario alone: the
// request goes out at the client step's start (a fixed at), the freeze
// in force then holds it until its at + for. A throttle or a load only
// bounds the reply, and a step that starts after another has no fixed
// time: the plan says so.
func planStall(p *PlanEnv, c *scenarios.Check) (map[string]any, string) {
	st := stepOf(p.Scenario, c.Step)
	if st == nil || st.At == nil {
		return nil, "the request's time is known only once the step runs (it starts after another step)"
	}
	cl, ok := actions.ClientOf(st)
	if !ok {
		return nil, ""
	}
	req := st.At.D()
	var fault *scenarios.Step
	for _, f := range p.Scenario.Timeline {
		if c.Expect != nil && c.Expect.After != "" {
			if f.Name == c.Expect.After {
				fault = f
			}
			continue
		}
		if fz, ok := f.Action.(*actions.Freeze); ok && f.At != nil && f.At.D() <= req && (fz.For == 0 || f.At.D()+fz.For.D() > req) {
			fault = f
		}
	}
	var fz *actions.Freeze
	if fault != nil {
		fz, _ = fault.Action.(*actions.Freeze)
	}
	if fz == nil || fault.At == nil || fz.For == 0 {
		return nil, "no freeze with a fixed at and for holds the request: a throttle or a load only bounds the reply, which the run measures"
	}
	thaw := fault.At.D() + fz.For.D()
	rt := cl.ReadTimeout.D()
	giveUp := rt > 0 && rt < thaw-req
	// Times from the request, which is the step's start: the plan's
	// times are offsets from the check's step.
	exp := map[string]any{"reply_after_request_s": round3((thaw - req).Seconds()), "client_gives_up": giveUp}
	explain := fmt.Sprintf("The freeze of step %s holds the server's writes from %s to %s; the request at about %s waits %.3fs for the thaw.", fault.Name, fault.At, thaw, req, (thaw - req).Seconds())
	if giveUp {
		exp["fin_after_request_s"] = round3(rt.Seconds())
		exp["error"] = readTimeoutError
		explain += fmt.Sprintf(" The client's read_timeout, %s, is shorter: it gives up at %s with %q and closes without COM_QUIT; the result reaches a closed socket and meets an RST.", rt, req+rt, readTimeoutError)
	} else {
		explain += " The client waits for the result."
	}
	return exp, explain
}
