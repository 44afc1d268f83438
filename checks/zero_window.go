package checks

import (
	"fmt"
	"math"
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
			Name:   "zero_window",
			Doc:    "The client's receive window closes while the server has data to send, and the server's persist timer probes it: the probes' count and intervals, the bytes sent before the window closed and queued after; the model is tcpmodel.ZeroWindowProbes from the server's RTO, which the capture's RTT samples give.",
			Expect: []string{"count", "intervals", "tolerance"},
			Step:   scenarios.StepConnection,
		},
		Eval: checkZeroWindow,
	})
}

// zeroWindows analyses the client's receive window on the step's flow.
func (o *Observations) zeroWindows(c *scenarios.Check, out *reports.Check) (*Step, *capture.Flow, string, *capture.ZeroWindows, bool) {
	res, f, host, ok := o.stepFlow(c, out, false)
	if !ok {
		return nil, nil, "", nil, false
	}
	return res, f, host, f.ZeroWindows(f.Client), true
}

// checkZeroWindow: the client's window closes while the server has data to
// send, and the server's persist timer probes it. Observed: when the window
// closed for good (the first period with probes: the stall), the probes and
// their intervals, the server's payload bytes before the window closed and
// after it opened again, and the server's send queue (sock_diag), how the
// stall ended. Model: tcpmodel.ZeroWindowProbes for the server's sysctls
// and the time the window stayed closed.
func checkZeroWindow(o *Observations, c *scenarios.Check, out *reports.Check) {
	_, f, host, z, ok := o.zeroWindows(c, out)
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
		obs["first_zero_window_s"] = o.sec(first.Start.Time)
		return
	}
	// The persist timer starts from the server's RTO, which the RTT
	// samples before the stall give: a client that delays its ACKs makes
	// it longer than tcp_rto_min.
	sys := o.Sysctls[o.Scenario.Server.Host]
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
	o.ladder(c, model, len(probes), probes, f, host, out)
	out.Message = strings.Replace(out.Message, "retransmissions", "zero-window probes", 1)
	obs = out.Observed.(map[string]any)
	obs["zero_window_periods"] = len(z.Periods)
	obs["zero_window_s"] = o.sec(stall.Start.Time)
	obs["closed_s"] = round3(stall.Duration().Seconds())
	obs["bytes_before_zero_window"] = stall.SentBefore
	obs["server_sent_bytes"] = z.Sent
	if first != stall {
		obs["first_zero_window_s"] = o.sec(first.Start.Time)
		obs["bytes_before_first_zero_window"] = first.SentBefore
	}
	out.Evidence = append(out.Evidence, o.evidence(host, []capture.Packet{stall.Start}, fmt.Sprintf("zero window after %d server bytes", stall.SentBefore))...)
	out.Evidence = append(out.Evidence, o.evidence(host, stall.Probes, "zero-window probe")...)
	switch {
	case stall.End != nil:
		obs["ended"] = "window opened"
		obs["bytes_after_zero_window"] = z.SentAfter(stall)
		out.Evidence = append(out.Evidence, o.evidence(host, []capture.Packet{*stall.End}, fmt.Sprintf("window update (%d bytes)", stall.End.WindowScaled))...)
	case stall.Reset != nil:
		who := "client"
		if stall.Reset.Src == f.Server {
			who = "server"
		}
		obs["ended"] = "reset by the " + who
		out.Evidence = append(out.Evidence, o.evidence(host, []capture.Packet{*stall.Reset}, "RST")...)
	default:
		obs["ended"] = "capture ended"
	}
	if z.FIN != nil {
		obs["server_fin_s"] = o.sec(z.FIN.Time)
	}
	if q, at, ok := o.sendQueue(f, stall); ok {
		obs["server_send_queue_bytes"] = q
		out.Evidence = append(out.Evidence, fmt.Sprintf("sock_diag on %s at %s: %s -> %s send queue %d bytes", o.Scenario.Server.Host, o.offset(at), f.Server, f.Client, q))
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
				n, stall.SentBefore, queued, src, o.Sysctls[o.Scenario.Server.Host]["net.ipv4.tcp_wmem"])
		}
	}
}

// sendQueue is the largest send queue sock_diag saw on the server's socket
// of the flow while its window was closed.
func (o *Observations) sendQueue(f *capture.Flow, p *capture.ZeroWindowPeriod) (int, time.Time, bool) {
	best, at, found := 0, time.Time{}, false
	for _, s := range o.Sockets {
		if s.Host != o.Scenario.Server.Host || s.Time.Before(p.Start.Time) || s.Time.After(p.Last) {
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
