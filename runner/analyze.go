package runner

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/checks"
	"github.com/labrun/labrun/client"
	"github.com/labrun/labrun/reports"
)

// maxFullAnalysis is the largest capture the per-packet analysis reads:
// about 300,000 segments, 60 MB of memory.
const maxFullAnalysis = 32 << 20

// analyze reads the captures, hands everything observed to the checks,
// and saves the observations beside the pcaps: observations.json and the
// scenario as it ran are what an offline replay of the checks needs.
func (r *run) analyze(rep *reports.Scenario) {
	o := &checks.Observations{Scenario: r.sc, T0: r.t0, Kernel: r.kernelRel, Flavor: r.flavor,
		Version: rep.Environment.Server.Version, Addresses: map[string]netip.Addr{}, Sysctls: r.sysctls,
		Steps: r.steps, Pcaps: map[string]string{}, Analyses: map[string]*capture.Analysis{},
		Sockets: r.samples, Threads: r.threads, Counters: r.counts, IO: r.io, Slow: r.opt.Slow,
		Census: r.censusRes, Conntrack: r.conntrack}
	for name, h := range r.topo.Hosts {
		o.Addresses[name] = h.Address
	}
	if err := o.AnalyzeTimeWaits(r.pcaps); err != nil {
		r.log.Warn("analyze", "err", err)
	}
	for host, p := range r.pcaps {
		o.Pcaps[host] = filepath.Base(p)
		if fi, err := os.Stat(p); err == nil && fi.Size() > maxFullAnalysis {
			// The per-packet analysis keeps every segment; a capture of
			// a long burst is read by the streaming analysis only.
			r.log.Info("analyze: capture too large for the per-packet analysis", "pcap", p, "bytes", fi.Size())
			continue
		}
		a, err := capture.Analyze(p)
		if err != nil {
			r.log.Warn("analyze", "pcap", p, "err", err)
			continue
		}
		o.Analyses[host] = a
	}
	for _, st := range r.sc.Timeline {
		if res := r.steps[st.Name]; res != nil {
			rep.Steps = append(rep.Steps, r.stepReport(res))
		}
	}
	sort.Slice(rep.Steps, func(i, j int) bool { return rep.Steps[i].StartS < rep.Steps[j].StartS })
	rep.Checks = append(rep.Checks, checks.Evaluate(o)...)
	rep.Metrics = r.metrics(o)
	if len(r.counts) > 0 {
		rep.Iptables = r.counts
	}
	if len(r.threads) > 0 {
		if p, ok := r.saveJSON("server-threads.json", r.threads); ok {
			rep.Artifacts.Logs = append(rep.Artifacts.Logs, p)
		}
	}
	if len(r.censusRes) > 0 {
		if p, ok := r.saveJSON("census.json", r.censusRes); ok {
			rep.Artifacts.Logs = append(rep.Artifacts.Logs, p)
		}
	}
	if len(r.conntrack) > 0 {
		if p, ok := r.saveJSON("conntrack.json", r.conntrack); ok {
			rep.Artifacts.Logs = append(rep.Artifacts.Logs, p)
		}
	}
	if len(r.samples) > 0 {
		if p, ok := r.saveJSON("sockets.json", r.samples); ok {
			rep.Artifacts.Samples = p
		}
	}
	if len(r.io) > 0 {
		if p, ok := r.saveJSON("io.json", r.io); ok {
			rep.Artifacts.IO = p
		}
		rep.IO = reports.SummarizeIO(r.ioPoints())
		for _, st := range r.sc.Timeline {
			if res := r.steps[st.Name]; res != nil && res.Fault != nil {
				end := res.Fault.Ended
				if end.IsZero() {
					end = time.Now()
				}
				rep.IO.Faults = append(rep.IO.Faults, reports.IOFault{Step: st.Name, Kind: res.Fault.Kind,
					StartS: round3(res.Fault.Applied.Sub(r.t0).Seconds()), EndS: round3(end.Sub(r.t0).Seconds())})
			}
		}
	}
	if p, ok := r.saveJSON("observations.json", o); ok {
		rep.Artifacts.Observations = p
	}
	if b, err := r.sc.Document(); err == nil {
		p := filepath.Join(r.art, "scenario.yaml")
		if os.WriteFile(p, b, 0o644) == nil {
			rep.Artifacts.Scenario = r.rel(p)
		}
	}
}

// saveJSON writes v into the run's artifact directory and returns its
// path relative to the report directory.
func (r *run) saveJSON(name string, v any) (string, bool) {
	p := filepath.Join(r.art, name)
	b, err := json.MarshalIndent(v, "", " ")
	if err == nil {
		err = os.WriteFile(p, b, 0o644)
	}
	if err != nil {
		r.log.Warn("save", "file", p, "err", err)
		return "", false
	}
	return r.rel(p), true
}

func (r *run) stepReport(res *checks.Step) *reports.Step {
	s := &reports.Step{Name: res.Name, Host: res.Host, StartS: round3(res.Start.Sub(r.t0).Seconds()),
		EndS: round3(res.End.Sub(r.t0).Seconds()), Detail: map[string]any{}, Error: res.Error}
	for _, st := range r.sc.Timeline {
		if st.Name == res.Name && st.Kind == "iptables" {
			s.Detail["iptables"] = st.Action
			if res.Counter != nil {
				s.Detail["removed_rule_packets"] = res.Counter.Packets
			}
		}
	}
	if f := res.Fault; f != nil {
		s.Detail["fault"] = f.Kind
		s.Detail["applied_s"] = round3(f.Applied.Sub(r.t0).Seconds())
		if !f.Ended.IsZero() {
			s.Detail["ended_s"] = round3(f.Ended.Sub(r.t0).Seconds())
			s.Detail["ended_by"] = f.EndedBy
		}
		for k, v := range f.Detail {
			s.Detail[k] = v
		}
		if f.Error != "" && s.Error == "" {
			s.Error = f.Error
		}
	}
	if b := res.Burst; b != nil {
		s.Detail["burst"] = burstDetail(b)
		if b.Records != "" {
			s.Detail["records"] = r.rel(b.Records)
		}
	}
	if c := res.Client; c != nil {
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

// ioPoints are the disk's samples as the report shows them: offsets from
// the start of the timeline.
func (r *run) ioPoints() []reports.IOPoint {
	out := make([]reports.IOPoint, 0, len(r.io))
	for _, s := range r.io {
		out = append(out, reports.IOPoint{AtS: round3(s.Time.Sub(r.t0).Seconds()), Util: s.Util, AwaitMs: s.AwaitMs,
			QueueDepth: s.QueueDepth, ReadBytes: s.ReadBytes, WriteBytes: s.WriteBytes, Err: s.Err})
	}
	return out
}

// burstDetail is a burst's aggregates as the report shows them.
func burstDetail(b *client.BurstResult) map[string]any {
	ms := func(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }
	lat := func(l client.Latencies) map[string]any {
		return map[string]any{"n": l.N, "p50_ms": ms(l.P50), "p99_ms": ms(l.P99), "max_ms": ms(l.Max)}
	}
	return map[string]any{"close": b.Spec.Close, "rate_asked": b.Spec.Rate, "rate": round3(b.Rate), "slots": b.Slots,
		"attempted": b.Attempted, "dropped": b.Dropped, "late": b.Late, "connected": b.Connected, "completed": b.Completed,
		"syn_retransmitted": b.SYNRetransmitted, "errors": b.Errors, "connect": lat(b.Connect), "handshake": lat(b.Handshake),
		"query": lat(b.Query), "elapsed_s": round3(b.Elapsed.Seconds())}
}
