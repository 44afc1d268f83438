package checks

import (
	"fmt"
	"strings"

	"github.com/labrun/labrun/iofault"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
)

func init() {
	register(Kind{
		CheckKind: scenarios.CheckKind{
			Name:   "io_stat",
			Doc:    "The server disk's IO (observe.io, as iostat -x shows it) while the step's disk fault was in force: a freeze lets no write reach the device, however long the server waits; a throttle keeps the server's writes under its limit; a load keeps the device busy (utilisation at least half the time).",
			Expect: []string{"tolerance"},
			Step:   scenarios.StepAny,
			Validate: func(v *scenarios.Validator, path string, c *scenarios.Check) {
				if v.Scenario().Observe.IO == nil {
					v.Add(path, "io_stat reads the disk's samples: set observe.io")
				}
				if st, _ := v.Step(c.Step); st != nil && st.Kind != "freeze" && st.Kind != "throttle" && st.Kind != "load" {
					v.Add(path+".step", "step %q is a %s step; io_stat follows a disk fault (freeze, throttle, load)", c.Step, st.Kind)
				}
			},
		},
		Eval: checkIOStat,
		Plan: func(p *PlanEnv, c *scenarios.Check) (map[string]any, string) {
			st := stepOf(p.Scenario, c.Step)
			if st == nil {
				return nil, ""
			}
			return ioExpectation(st, nil)
		},
	})
}

// loadBusy is the least utilisation of the device during a load: an
// fsync-heavy writer keeps an IO in flight most of the time.
const loadBusy = 0.5

// ioExpectation is what the model says of the device during a fault.
func ioExpectation(st *scenarios.Step, _ *Observations) (map[string]any, string) {
	switch st.Kind {
	case "freeze":
		return map[string]any{"bytes_written_while_frozen": 0}, "A frozen filesystem blocks writers before their IO is issued: the device sees none until the thaw, however long the server waits (iostat shows an idle disk)."
	case "throttle":
		exp := map[string]any{}
		if a, ok := st.Action.(interface{ Limits() iofault.Limits }); ok {
			l := a.Limits()
			if l.WriteBPS > 0 {
				exp["write_bytes_per_s_at_most"] = l.WriteBPS
			}
			if l.WriteIOPS > 0 {
				exp["write_iops_at_most"] = l.WriteIOPS
			}
		}
		return exp, "blkio throttling holds the server's IO to the device under its limits; the queued IO waits in the cgroup, not on the device."
	case "load":
		return map[string]any{"util_at_least": loadBusy}, "An fsync-heavy writer keeps an IO in flight most of the time: the device is busy."
	}
	return nil, ""
}

func checkIOStat(o *Observations, c *scenarios.Check, out *reports.Check) {
	st := stepOf(o.Scenario, c.Step)
	res := o.Steps[c.Step]
	if st == nil || res == nil || res.Fault == nil {
		out.Message = fmt.Sprintf("step %s applied no disk fault", c.Step)
		return
	}
	f := res.Fault
	end := f.Ended
	if end.IsZero() {
		out.Message = fmt.Sprintf("the %s of step %s has no recorded end", f.Kind, c.Step)
		return
	}
	if len(o.IO) == 0 {
		out.Message = "no IO samples: observe.io took none"
		return
	}
	exp, explain := ioExpectation(st, o)
	out.Expected, out.Explain = exp, explain
	// Samples wholly inside the fault: a sample's counters cover the
	// period before it, so the first one counted is a period after the
	// fault began.
	every := o.Scenario.Observe.IO.Every.D()
	var in []iofault.IOSample
	errs := 0
	for _, s := range o.IO {
		if s.Time.Sub(f.Applied) >= every && !s.Time.After(end) {
			if s.Err != "" {
				errs++
				continue
			}
			in = append(in, s)
		}
	}
	obs := map[string]any{"samples": len(in), "fault_s": []float64{o.sec(f.Applied), o.sec(end)}}
	out.Observed = obs
	if errs > 0 {
		out.Message = fmt.Sprintf("%d IO samples during the %s failed", errs, f.Kind)
		return
	}
	if len(in) == 0 {
		out.Message = fmt.Sprintf("no IO sample fell inside the %s (%s to %s, sampled every %s)", f.Kind, o.offset(f.Applied), o.offset(end), every)
		return
	}
	var written, ios uint64
	util, maxUtil, await := 0.0, 0.0, 0.0
	for _, s := range in {
		written += s.WriteBytes
		ios += s.WriteIOs
		util += s.Util
		maxUtil = max(maxUtil, s.Util)
		await = max(await, s.AwaitMs)
	}
	span := in[len(in)-1].Time.Sub(in[0].Time) + every
	obs["bytes_written"] = written
	obs["util_avg"] = round3(util / float64(len(in)))
	obs["util_max"] = round3(maxUtil)
	obs["await_max_ms"] = round3(await)
	out.Evidence = []string{fmt.Sprintf("io.json: %d samples from %s to %s: %d bytes written, utilisation %.0f%% on average, %.0f%% at most", len(in), o.offset(in[0].Time), o.offset(in[len(in)-1].Time), written, 100*util/float64(len(in)), 100*maxUtil)}
	var bad []string
	switch f.Kind {
	case "freeze":
		if written > 0 {
			bad = append(bad, fmt.Sprintf("%d bytes reached the device while the filesystem was frozen", written))
		}
	case "throttle":
		rate := float64(written) / span.Seconds()
		iops := float64(ios) / span.Seconds()
		obs["write_bytes_per_s"] = round3(rate)
		obs["write_iops"] = round3(iops)
		slack := 1.125
		if c.Expect != nil && c.Expect.Tolerance > 0 {
			slack = 1 + c.Expect.Tolerance.D().Seconds()
		}
		out.Tolerance = map[string]any{"factor": slack}
		if v, ok := exp["write_bytes_per_s_at_most"].(uint64); ok && rate > float64(v)*slack {
			bad = append(bad, fmt.Sprintf("%.0f bytes/s written, over the limit %d", rate, v))
		}
		if v, ok := exp["write_iops_at_most"].(uint64); ok && iops > float64(v)*slack {
			bad = append(bad, fmt.Sprintf("%.1f writes/s, over the limit %d", iops, v))
		}
	case "load":
		if u := util / float64(len(in)); u < loadBusy {
			bad = append(bad, fmt.Sprintf("the device was busy %.0f%% of the load's time, less than %.0f%%", 100*u, 100*loadBusy))
		}
	}
	out.Passed = len(bad) == 0
	out.Message = strings.Join(bad, "; ")
}
