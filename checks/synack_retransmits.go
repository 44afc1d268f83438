package checks

import (
	"fmt"
	"time"

	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
	"github.com/labrun/labrun/tcpmodel"
)

func init() {
	register(Kind{
		CheckKind: scenarios.CheckKind{
			Name:   "synack_retransmits",
			Doc:    "The server's SYN-ACK retransmissions for the step's connection: count and offsets from the first SYN; the model is tcpmodel.SYNACKWithSYNs for the server's tcp_synack_retries, fed with the arrival of the client's duplicate SYNs, each of which the server answers at once.",
			Expect: []string{"count", "tolerance"},
			Step:   scenarios.StepConnection,
		},
		Eval: checkSYNACK,
		Plan: func(p *PlanEnv, c *scenarios.Check) (map[string]any, string) {
			return planSchedule(tcpmodel.SYNACK(p.Sysctls(p.Scenario.Server.Host)), "request_dropped_s")
		},
	})
}

// checkSYNACK follows one request socket on the server: its SYN-ACKs all
// carry the same initial sequence number. The model is fed the arrival times
// of the client's duplicate SYNs, because each one makes the server answer
// at once and re-arm its timer.
func checkSYNACK(o *Observations, c *scenarios.Check, out *reports.Check) {
	_, f, host, ok := o.stepFlow(c, out, true)
	if !ok {
		return
	}
	all := f.SYNACKs()
	syns := f.SYNs()
	if len(all) == 0 || len(syns) == 0 {
		out.Message = fmt.Sprintf("no SYN-ACK from the server in %s.pcap", host)
		return
	}
	isn := all[0].Seq
	var group []capture.Packet
	var next *capture.Packet
	for i, p := range all {
		if p.Seq == isn {
			group = append(group, p)
		} else if next == nil {
			next = &all[i]
		}
	}
	base := syns[0].Time
	var dups []time.Duration
	for _, s := range syns[1:] {
		dups = append(dups, s.Time.Sub(base))
	}
	lad := tcpmodel.SYNACKWithSYNs(o.Sysctls[o.Scenario.Server.Host], dups)
	want := lad.Count
	if c.Expect != nil && c.Expect.Count != nil {
		want = *c.Expect.Count
	}
	floor := 100 * time.Millisecond
	if c.Expect != nil && c.Expect.Tolerance > 0 {
		floor = c.Expect.Tolerance.D()
	}
	// Offsets count from the first SYN; the first SYN-ACK answers it at
	// offset 0.
	wantOff := []float64{0}
	tols := []float64{round3(tcpmodel.Tolerance(0, floor, o.Slow).Seconds())}
	for _, off := range lad.Offsets {
		wantOff = append(wantOff, round3(off.Seconds()))
		tols = append(tols, round3(tcpmodel.Tolerance(off, floor, o.Slow).Seconds()))
	}
	var gotOff []float64
	for _, p := range group {
		gotOff = append(gotOff, round3(p.Time.Sub(base).Seconds()))
	}
	out.Expected = map[string]any{"count": want, "offsets_s": wantOff, "request_dropped_s": round3(lad.GiveUp.Seconds())}
	obs := map[string]any{"count": len(group) - 1, "offsets_s": gotOff, "duplicate_syns": len(dups)}
	if next != nil {
		obs["next_request_s"] = round3(next.Time.Sub(base).Seconds())
	}
	out.Observed = obs
	out.Tolerance = map[string]any{"count": "exact", "offsets_s": tols}
	out.Explain = lad.Explain
	out.Evidence = o.evidence(host, group, "SYN-ACK")
	out.Passed = len(group)-1 == want
	if !out.Passed {
		out.Message = fmt.Sprintf("%d SYN-ACK retransmissions, expected %d", len(group)-1, want)
		return
	}
	if len(group) != len(wantOff) {
		// An expect.count other than the model's leaves no offsets to
		// compare with; passing on the count alone would skip the timing.
		out.Passed = false
		out.Message = fmt.Sprintf("%d SYN-ACKs seen, the model gives offsets for %d: their times cannot be checked", len(group), len(wantOff))
		return
	}
	for i := range group {
		if d := gotOff[i] - wantOff[i]; d > tols[i] || -d > tols[i] {
			out.Passed = false
			out.Message = fmt.Sprintf("SYN-ACK %d at %.3fs, expected %.3fs ± %.3fs", i, gotOff[i], wantOff[i], tols[i])
			return
		}
	}
	o.finding(c, out, len(group)-1)
}
