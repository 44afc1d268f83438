package runner

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/client"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/tcpmodel"
)

// checkFunc evaluates one check against a finished run.
type checkFunc func(e *evalEnv, c *Check, out *reports.Check)

// checks is the registry of check types, by the name scenarios use.
var checks = map[string]checkFunc{
	"syn_retransmits":    checkSYN,
	"synack_retransmits": checkSYNACK,
	"data_retransmits":   checkData,
	"keepalive_probes":   checkKeepalive,
	"client_error":       checkClientError,
	"socket_state":       checkSocketState,
	"iptables_counter":   checkIptables,
}

// evalEnv is what checks read: the run's results, captures and samples.
type evalEnv struct {
	r        *run
	analyses map[string]*capture.Analysis
	slow     float64
}

// analyze reads the captures and evaluates every check.
func (r *run) analyze(rep *reports.Scenario) {
	e := &evalEnv{r: r, analyses: map[string]*capture.Analysis{}, slow: r.opt.Slow}
	for host, p := range r.pcaps {
		a, err := capture.Analyze(p)
		if err != nil {
			r.log.Warn("analyze", "pcap", p, "err", err)
			continue
		}
		e.analyses[host] = a
	}
	for _, name := range r.sc.hostNames() {
		for _, st := range r.sc.Timeline {
			if res := r.steps[st.Name]; res != nil && st.Host == name {
				rep.Steps = append(rep.Steps, r.stepReport(res))
			}
		}
	}
	sort.Slice(rep.Steps, func(i, j int) bool { return rep.Steps[i].StartS < rep.Steps[j].StartS })
	for _, c := range r.sc.Checks {
		out := &reports.Check{Name: c.Name, Type: c.Type, Evidence: []string{}}
		if c.Documented != nil {
			out.Documented = c.Documented
		}
		if len(c.Flavors) > 0 && !contains(c.Flavors, r.flavor) {
			out.Skipped, out.Passed = true, true
			out.Message = fmt.Sprintf("applies to %s only; this run's server is %s", strings.Join(c.Flavors, ", "), r.flavor)
			rep.Checks = append(rep.Checks, out)
			continue
		}
		checks[c.Type](e, c, out)
		flavorFinding(c, out, r.flavor, rep.Environment.Server.Version)
		rep.Checks = append(rep.Checks, out)
	}
	if len(r.counts) > 0 {
		rep.Iptables = r.counts
	}
	if len(r.threads) > 0 {
		p := filepath.Join(r.art, "server-threads.json")
		if b, err := json.MarshalIndent(r.threads, "", " "); err == nil && os.WriteFile(p, b, 0o644) == nil {
			rep.Artifacts.Logs = append(rep.Artifacts.Logs, p)
		}
	}
	if len(r.samples) > 0 {
		p := filepath.Join(r.art, "sockets.json")
		if b, err := json.MarshalIndent(r.samples, "", " "); err == nil && os.WriteFile(p, b, 0o644) == nil {
			rep.Artifacts.Samples = p
		}
	}
}

// flavorFinding notes a check that passed on another server than the one
// the article used: the documented value is for that flavor, so what this
// run observed is a divergence to show, not an error.
func flavorFinding(c *Check, out *reports.Check, flavor, version string) {
	d := c.Documented
	if !out.Passed || out.Skipped || out.Finding != "" || d == nil || d.Flavor == "" || d.Flavor == flavor {
		return
	}
	art := d.Flavor
	if d.Version != "" {
		art += " " + d.Version
	}
	out.Finding = fmt.Sprintf("the article's %v is for %s; this %s %s showed %s", reports.Render(d.Value), art, flavor, version, reports.Render(out.Observed))
}

func (r *run) stepReport(res *stepResult) *reports.Step {
	s := &reports.Step{Name: res.step.Name, Host: res.step.Host, StartS: round3(res.start.Sub(r.t0).Seconds()),
		EndS: round3(res.end.Sub(r.t0).Seconds()), Detail: map[string]any{}}
	if res.err != nil {
		s.Error = res.err.Error()
	}
	if res.step.Iptables != "" {
		s.Detail["iptables"] = res.step.Iptables
		if res.counter != nil {
			s.Detail["removed_rule_packets"] = res.counter.Packets
		}
	}
	if c := res.client; c != nil {
		s.Error = c.Error
		s.Detail["client"] = c.Kind
		if c.Local != "" {
			s.Detail["local"] = c.Local
		}
		if len(c.Statements) > 0 {
			s.Detail["statements"] = c.Statements
		}
		var ev []string
		for _, x := range c.Events {
			ev = append(ev, fmt.Sprintf("+%.3fs %s", x.Time.Sub(r.t0).Seconds(), x.What))
		}
		s.Detail["events"] = ev
		if c.Output != "" {
			s.Detail["output"] = c.Output
		}
	}
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// clientStep returns the result of the client step a check names.
func (e *evalEnv) clientStep(c *Check, out *reports.Check) (*stepResult, bool) {
	res := e.r.steps[c.Step]
	if res == nil || res.client == nil {
		out.Message = fmt.Sprintf("step %s did not run", c.Step)
		return nil, false
	}
	return res, true
}

// flow finds the TCP flow a client step opened, in the capture of host
// (default: the client's host if captured, else the server's).
func (e *evalEnv) flow(c *Check, res *stepResult, prefer string, out *reports.Check) (*capture.Flow, string, bool) {
	host := c.Host
	if host == "" {
		host = prefer
		if _, ok := e.analyses[host]; !ok {
			for _, h := range []string{res.step.Host, e.r.sc.Server.Host} {
				if _, ok := e.analyses[h]; ok {
					host = h
					break
				}
			}
		}
	}
	a := e.analyses[host]
	if a == nil {
		out.Message = fmt.Sprintf("no capture on host %s: add it to captures", host)
		return nil, host, false
	}
	cl := e.r.topo.Hosts[res.step.Host].Address
	sh := e.r.topo.Hosts[e.r.sc.Server.Host].Address
	srv := netip.AddrPortFrom(sh, uint16(e.r.sc.Server.Port))
	from, to := res.start.Add(-100*time.Millisecond), res.end.Add(500*time.Millisecond)
	flows := a.Flows(cl, srv)
	// A connection whose address is known (a go client, a session opened
	// by an earlier step, a client whose thread id is in the processlist
	// samples) is found by it; otherwise by when it started, which must
	// then be unambiguous.
	local := res.client.Local
	if local == "" && res.client.ConnID != 0 {
		local = e.threadHost(res.client.ConnID)
	}
	if local != "" {
		for _, f := range flows {
			if f.Client.String() == local && len(f.Packets) > 0 {
				return f, host, true
			}
		}
	}
	var during []*capture.Flow
	for _, f := range flows {
		if len(f.Packets) == 0 {
			continue
		}
		t := f.Packets[0].Time
		if !t.Before(from) && !t.After(to) {
			during = append(during, f)
		}
	}
	switch len(during) {
	case 1:
		return during[0], host, true
	case 0:
	default:
		var ports []string
		for _, f := range during {
			ports = append(ports, f.Client.String())
		}
		out.Message = fmt.Sprintf("%d TCP flows from %s start during step %s (%s): cannot tell which is the step's; use the go client or observe.processlist", len(during), cl, res.step.Name, strings.Join(ports, ", "))
		return nil, host, false
	}
	out.Message = fmt.Sprintf("no TCP flow from %s to %s during step %s in %s.pcap", cl, srv, res.step.Name, host)
	return nil, host, false
}

// stepFlow finds the client step a check names and the flow it opened, in
// the capture of the check's host, else of the client's host, or of the
// server's host when serverSide says the server's view is the natural one.
func (e *evalEnv) stepFlow(c *Check, out *reports.Check, serverSide bool) (*stepResult, *capture.Flow, string, bool) {
	res, ok := e.clientStep(c, out)
	if !ok {
		return nil, nil, "", false
	}
	prefer := res.step.Host
	if serverSide {
		prefer = e.r.sc.Server.Host
	}
	f, host, ok := e.flow(c, res, prefer, out)
	return res, f, host, ok
}

// offset renders a packet time relative to the start of the timeline.
func (e *evalEnv) offset(t time.Time) string {
	return fmt.Sprintf("+%.3fs", t.Sub(e.r.t0).Seconds())
}

func (e *evalEnv) evidence(host string, pkts []capture.Packet, what string) []string {
	var out []string
	for _, p := range pkts {
		out = append(out, fmt.Sprintf("%s.pcap frame %d %s %s -> %s at %s", host, p.Frame, what, p.Src, p.Dst, e.offset(p.Time)))
	}
	return out
}

func intervals(pkts []capture.Packet) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(pkts); i++ {
		out = append(out, pkts[i].Time.Sub(pkts[i-1].Time))
	}
	return out
}

func seconds(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = round3(d.Seconds())
	}
	return out
}

// ladder compares an observed retransmission ladder with the expected one:
// counts exactly, each interval within its tolerance.
func (e *evalEnv) ladder(c *Check, model tcpmodel.Schedule, obs []time.Duration, out *reports.Check) {
	want := model.Count
	wantIv := model.Intervals
	if c.Expect != nil && c.Expect.Count != nil {
		want = *c.Expect.Count
	}
	if c.Expect != nil && len(c.Expect.Intervals) > 0 {
		wantIv = nil
		for _, d := range c.Expect.Intervals {
			wantIv = append(wantIv, d.D())
		}
	}
	floor := 100 * time.Millisecond
	if c.Expect != nil && c.Expect.Tolerance > 0 {
		floor = c.Expect.Tolerance.D()
	}
	tols := make([]float64, len(wantIv))
	for i, iv := range wantIv {
		tols[i] = round3(tcpmodel.Tolerance(iv, floor, e.slow).Seconds())
	}
	out.Expected = map[string]any{"count": want, "intervals_s": seconds(wantIv)}
	out.Observed = map[string]any{"count": len(obs), "intervals_s": seconds(obs)}
	out.Tolerance = map[string]any{"count": "exact", "intervals_s": tols}
	out.Explain = model.Explain
	out.Passed = len(obs) == want
	if !out.Passed {
		out.Message = fmt.Sprintf("%d retransmissions, expected %d", len(obs), want)
		return
	}
	for i := range obs {
		if i >= len(wantIv) {
			break
		}
		if d := obs[i] - wantIv[i]; d > time.Duration(tols[i]*float64(time.Second)) || -d > time.Duration(tols[i]*float64(time.Second)) {
			out.Passed = false
			out.Message = fmt.Sprintf("interval %d is %.3fs, expected %.3fs ± %.3fs", i+1, obs[i].Seconds(), wantIv[i].Seconds(), tols[i])
			return
		}
	}
}

func checkSYN(e *evalEnv, c *Check, out *reports.Check) {
	res, f, host, ok := e.stepFlow(c, out, false)
	if !ok {
		return
	}
	syns := f.SYNs()
	model := tcpmodel.SYN(e.r.sysctls[res.step.Host])
	e.ladder(c, model, intervals(syns), out)
	out.Evidence = e.evidence(host, syns, "SYN")
	e.finding(c, out, len(syns)-1)
}

// checkData follows the data segment that is never acknowledged: the
// client's, or the server's when the check's host is the server's (a result
// sent to a client that has vanished). The model takes the sender's
// sysctls.
func checkData(e *evalEnv, c *Check, out *reports.Check) {
	res, f, host, ok := e.stepFlow(c, out, false)
	if !ok {
		return
	}
	from, fromHost := e.sender(c, res, f)
	model := tcpmodel.Data(e.r.sysctls[fromHost], 0)
	rtx := f.DataRetransmits(from)
	if len(rtx) == 0 {
		e.ladder(c, model, nil, out)
		return
	}
	// The ladder starts at the segment's first transmission.
	pkts := rtx
	for i := range f.Packets {
		p := f.Packets[i]
		if p.Src == from && p.Seq == rtx[0].Seq && p.Payload > 0 && !p.Retransmission {
			pkts = append([]capture.Packet{p}, rtx...)
			break
		}
	}
	e.ladder(c, model, intervals(pkts), out)
	out.Evidence = e.evidence(host, pkts, "data")
	e.finding(c, out, len(rtx))
}

// sender is the side whose retransmissions or probes a check counts: the
// server when the check names the server's host, else the client.
func (e *evalEnv) sender(c *Check, res *stepResult, f *capture.Flow) (netip.AddrPort, string) {
	if c.Host != "" && c.Host == e.r.sc.Server.Host {
		return f.Server, e.r.sc.Server.Host
	}
	return f.Client, res.step.Host
}

func checkKeepalive(e *evalEnv, c *Check, out *reports.Check) {
	res, f, host, ok := e.stepFlow(c, out, false)
	if !ok {
		return
	}
	from, fromHost := e.sender(c, res, f)
	probes := f.KeepAlives(from)
	model := tcpmodel.Keepalive(e.r.sysctls[fromHost])
	// keepalive_time counts from the last segment the prober received and
	// processed: retransmitted segments (a SYN-ACK again, data again) are
	// answered with a duplicate ACK and do not count as activity.
	var pkts []capture.Packet
	if len(probes) > 0 {
		for _, p := range f.Packets {
			if p.Time.Before(probes[0].Time) && p.Dst == from && !p.Retransmission && !p.KeepAlive {
				pkts = []capture.Packet{p}
			}
		}
	}
	e.ladder(c, model, intervals(append(pkts, probes...)), out)
	if len(pkts) > 0 {
		out.Evidence = e.evidence(host, pkts, "last segment received by the prober")
	}
	out.Evidence = append(out.Evidence, e.evidence(host, probes, "keepalive probe")...)
	e.finding(c, out, len(probes))
}

// finding notes where the article's number differs from what was observed
// while the model explains it.
func (e *evalEnv) finding(c *Check, out *reports.Check, observed int) {
	if c.Documented == nil || !out.Passed {
		return
	}
	if n, ok := asInt(c.Documented.Value); ok && n != observed {
		out.Finding = fmt.Sprintf("the article reported %d, this kernel (%s) did %d: %s", n, e.r.kernelRel, observed, out.Explain)
	}
}

func asInt(v any) (int, bool) {
	switch x := v.(type) {
	case int:
		return x, true
	case int64:
		return int(x), true
	case float64:
		return int(x), x == float64(int(x))
	case uint64:
		return int(x), true
	}
	return 0, false
}

func checkClientError(e *evalEnv, c *Check, out *reports.Check) {
	res, ok := e.clientStep(c, out)
	if !ok {
		return
	}
	cr := res.client
	exp := c.Expect
	if exp == nil {
		exp = &Expect{}
	}
	want := map[string]any{}
	obs := map[string]any{"elapsed_s": round3(cr.Elapsed().Seconds()), "client": cr.Kind}
	// A session that succeeded has no error to show; zero codes would read
	// as values.
	if cr.Error != "" {
		obs["error"], obs["code"], obs["sqlstate"], obs["errno"] = cr.Error, cr.Code, cr.SQLState, cr.Errno
	}
	out.Observed = obs
	out.Evidence = []string{fmt.Sprintf("step %s (%s client) ended at %s: %q", c.Step, cr.Kind, e.offset(cr.End), cr.Error)}
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
	if el, model, ok := e.expectedElapsed(c, res); ok {
		floor := 500 * time.Millisecond
		if exp.Tolerance > 0 {
			floor = exp.Tolerance.D()
		}
		tol = tcpmodel.Tolerance(el, floor, e.slow)
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

func eventsText(cr *client.Result) string {
	var b strings.Builder
	for _, ev := range cr.Events {
		b.WriteString(ev.What)
		b.WriteByte('\n')
	}
	return b.String()
}

// expectedElapsed is how long the client step should take: explicit, or the
// give-up time of the kernel schedule the check names.
func (e *evalEnv) expectedElapsed(c *Check, res *stepResult) (time.Duration, string, bool) {
	if c.Expect == nil {
		return 0, "", false
	}
	if c.Expect.Elapsed != nil {
		return c.Expect.Elapsed.D(), "from the scenario", true
	}
	sys := e.r.sysctls[res.step.Host]
	switch c.Expect.Model {
	case "syn":
		m := tcpmodel.SYN(sys)
		return m.GiveUp, m.Explain, true
	case "keepalive":
		m := tcpmodel.Keepalive(sys)
		return m.GiveUp, m.Explain, true
	case "data":
		// The ladder starts when the segment that is never acknowledged is
		// first sent; the capture says when that was.
		m := tcpmodel.Data(sys, 0)
		scratch := &reports.Check{}
		f, _, ok := e.flow(c, res, res.step.Host, scratch)
		if !ok {
			return 0, "", false
		}
		rtx := f.DataRetransmits(f.Client)
		if len(rtx) == 0 {
			return 0, "", false
		}
		first := rtx[0].Time
		for _, p := range f.Packets {
			if p.Src == f.Client && p.Seq == rtx[0].Seq && p.Payload > 0 {
				first = p.Time
				break
			}
		}
		return first.Sub(res.client.Start) + m.GiveUp, m.Explain, true
	}
	return 0, "", false
}

func checkSocketState(e *evalEnv, c *Check, out *reports.Check) {
	res, ok := e.clientStep(c, out)
	if !ok {
		return
	}
	host := c.Host
	if host == "" {
		host = res.step.Host
	}
	exp := c.Expect
	cl := e.r.topo.Hosts[res.step.Host].Address
	var first, last time.Time
	var seenAfter bool
	var ev []string
	n := 0
	for _, s := range e.r.samples {
		if s.Host != host {
			continue
		}
		has := false
		for _, sk := range s.Sockets {
			if (sk.Local.Addr() == cl || sk.Remote.Addr() == cl) && sk.State == exp.State {
				has = true
				if n < 3 {
					ev = append(ev, fmt.Sprintf("sock_diag on %s at %s: %s %s -> %s", host, e.offset(s.Time), sk.State, sk.Local, sk.Remote))
				}
			}
		}
		if has {
			if first.IsZero() {
				first = s.Time
			}
			last = s.Time
			n++
		} else if !first.IsZero() {
			seenAfter = true
		}
	}
	want := map[string]any{"state": exp.State}
	if exp.For > 0 {
		want["for_s"] = round3(exp.For.D().Seconds())
	}
	if exp.Gone {
		want["gone"] = true
	}
	out.Expected = want
	dur := last.Sub(first)
	obs := map[string]any{"samples": n}
	if n > 0 {
		obs["first_s"] = round3(first.Sub(e.r.t0).Seconds())
		obs["last_s"] = round3(last.Sub(e.r.t0).Seconds())
		obs["for_s"] = round3(dur.Seconds())
		obs["gone"] = seenAfter
		ev = append(ev, fmt.Sprintf("sock_diag on %s: last %s at %s", host, exp.State, e.offset(last)))
	}
	out.Observed = obs
	out.Evidence = ev
	out.Tolerance = map[string]any{"for_s": "at least"}
	// With "model: synack" the state must last as long as the server keeps
	// the request: the SYN-ACK schedule's give-up time, within the timing
	// tolerance plus one sampling period.
	var life, tol time.Duration
	if exp.Model == "synack" {
		m := tcpmodel.SYNACK(e.r.sysctls[e.r.sc.Server.Host])
		life = m.GiveUp
		tol = tcpmodel.Tolerance(life, 200*time.Millisecond, e.slow) + e.every(host)
		want["for_s"] = round3(life.Seconds())
		out.Tolerance = map[string]any{"for_s": round3(tol.Seconds())}
		out.Explain = m.Explain
	}
	switch {
	case n == 0:
		out.Message = fmt.Sprintf("no %s socket of %s seen on %s", exp.State, cl, host)
	case life > 0 && (dur-life > tol || life-dur > tol):
		out.Message = fmt.Sprintf("%s seen for %.3fs, expected %.3fs ± %.3fs", exp.State, dur.Seconds(), life.Seconds(), tol.Seconds())
	case exp.For > 0 && dur < exp.For.D():
		out.Message = fmt.Sprintf("%s seen for %.3fs, expected at least %s", exp.State, dur.Seconds(), exp.For)
	case exp.Gone && !seenAfter:
		out.Message = fmt.Sprintf("%s still present at the last sample", exp.State)
	default:
		out.Passed = true
	}
}

// checkIptables reads the packet counters of labrun's rules on a host. With
// an iptables step it is that step's rule; with a client step it is every
// rule on the host, and "model: syn" expects the original SYN plus the
// retransmissions the kernel model predicts for the client's host: a second
// source, beside the capture, for the SYN count.
func checkIptables(e *evalEnv, c *Check, out *reports.Check) {
	res := e.r.steps[c.Step]
	var got uint64
	var rules []string
	found := false
	for _, ct := range e.r.counts {
		if !strings.HasPrefix(ct.Rule, c.Host+": ") {
			continue
		}
		if res != nil && res.client == nil && ct.Step != c.Step {
			continue
		}
		got += ct.Packets
		rules = append(rules, ct.Rule)
		found = true
	}
	if !found && res != nil && res.counter != nil {
		got, rules, found = res.counter.Packets, []string{res.counter.Rule}, true
	}
	if !found {
		out.Message = fmt.Sprintf("no labrun rule counters on %s for step %s", c.Host, c.Step)
		return
	}
	out.Observed = map[string]any{"packets": got}
	for _, r := range rules {
		out.Evidence = append(out.Evidence, "iptables -S -v on "+r)
	}
	out.Tolerance = "exact"
	var want int
	switch {
	case c.Expect != nil && c.Expect.Count != nil:
		want = *c.Expect.Count
	case c.Expect != nil && c.Expect.Model == "syn" && res != nil:
		m := tcpmodel.SYN(e.r.sysctls[res.step.Host])
		want = m.Count + 1
		out.Explain = "the first SYN plus " + m.Explain
	default:
		out.Expected = map[string]any{"packets": "> 0"}
		out.Passed = got > 0
		return
	}
	out.Expected = map[string]any{"packets": want}
	out.Passed = uint64(want) == got
	if !out.Passed {
		out.Message = fmt.Sprintf("%d packets matched, expected %d", got, want)
	}
}

// every is the socket sampling period on a host.
func (e *evalEnv) every(host string) time.Duration {
	for _, o := range e.r.sc.Observe.Sockets {
		if o.Host == host {
			return o.Every.D()
		}
	}
	return 100 * time.Millisecond
}
