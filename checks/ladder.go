package checks

import (
	"fmt"
	"time"

	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
	"github.com/labrun/labrun/tcpmodel"
)

// ladder compares an observed retransmission ladder with the expected one:
// the count exactly, then every interval within its tolerance. count is the
// number of retransmissions (or probes) seen; obs the intervals between
// the ladder's packets, starting from the one it counts from. An interval
// list of another length than the expected one fails: comparing only the
// common part would pass a ladder whose start is missing. f is the flow,
// for a ladder of zero: nothing seen is a pass only if the capture of the
// flow lasted as long as the model's ladder would have.
func (o *Observations) ladder(c *scenarios.Check, model tcpmodel.Schedule, count int, obs []time.Duration, f *capture.Flow, host string, out *reports.Check) {
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
		tols[i] = round3(tcpmodel.Tolerance(iv, floor, o.Slow).Seconds())
	}
	out.Expected = map[string]any{"count": want, "intervals_s": seconds(wantIv)}
	out.Observed = map[string]any{"count": count, "intervals_s": seconds(obs)}
	out.Tolerance = map[string]any{"count": "exact", "intervals_s": tols}
	out.Explain = model.Explain
	if count != want {
		out.Message = fmt.Sprintf("%d retransmissions, expected %d", count, want)
		return
	}
	if want == 0 {
		// Nothing expected and nothing seen: only a capture that covered
		// the time the ladder would have taken shows that.
		if f == nil || len(f.Packets) == 0 {
			out.Message = "no packets of the flow in the capture: nothing shows that no retransmission happened"
			return
		}
		first, last := f.Packets[0], f.Packets[len(f.Packets)-1]
		if span := last.Time.Sub(first.Time); span < model.GiveUp {
			out.Message = fmt.Sprintf("none seen, but the capture of the flow covers %.3fs, less than the %.3fs the model's ladder takes", span.Seconds(), model.GiveUp.Seconds())
			return
		}
		out.Evidence = append(out.Evidence, o.evidence(host, []capture.Packet{first, last}, "flow packet (first, last)")...)
		out.Passed = true
		return
	}
	if len(obs) != len(wantIv) {
		// Only a ladder whose intervals agree with its count can lack its
		// start; otherwise the expectation's intervals are for another
		// count than the one expected.
		out.Message = fmt.Sprintf("%d intervals observed, expected %d", len(obs), len(wantIv))
		switch {
		case len(wantIv) != want && c.Expect != nil && len(c.Expect.Intervals) > 0:
			out.Message += fmt.Sprintf(": expect.intervals lists %d intervals for %d retransmissions", len(wantIv), want)
		case len(wantIv) != want:
			out.Message += fmt.Sprintf(": expect.count %d is not the model's %d, whose intervals cannot be compared (set expect.intervals too)", want, model.Count)
		case len(obs) < len(wantIv):
			out.Message += ": the packet the ladder starts from is missing from the capture"
		}
		return
	}
	for i := range obs {
		if d := obs[i] - wantIv[i]; d > time.Duration(tols[i]*float64(time.Second)) || -d > time.Duration(tols[i]*float64(time.Second)) {
			out.Message = fmt.Sprintf("interval %d is %.3fs, expected %.3fs ± %.3fs", i+1, obs[i].Seconds(), wantIv[i].Seconds(), tols[i])
			return
		}
	}
	out.Passed = true
}

// finding notes where the article's number differs from what was observed
// while the model explains it.
func (o *Observations) finding(c *scenarios.Check, out *reports.Check, observed int) {
	if c.Documented == nil || !out.Passed {
		return
	}
	if n, ok := asInt(c.Documented.Value); ok && n != observed {
		out.Finding = fmt.Sprintf("the article reported %d, this kernel (%s) did %d: %s", n, o.Kernel, observed, out.Explain)
	}
}
