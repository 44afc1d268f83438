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
			},
		},
		Eval: checkIOStat,
		Plan: func(p *PlanEnv, c *scenarios.Check) (map[string]any, string) {
			st := stepOf(p.Scenario, c.Step)
			if st == nil {
				return nil, ""
			}
			return ioExpectation(st, p.Scenario)
		},
	})
}

// loadBusy is the least utilisation of the device during a load: an
// fsync-heavy writer keeps an IO in flight most of the time.
const loadBusy = 0.5

// ioExpectation is what the model says of the device during a fault.
func ioExpectation(st *scenarios.Step, sc *scenarios.Scenario) (map[string]any, string) {
	switch st.Kind {
	case "freeze":
		return map[string]any{"bytes_written_while_frozen": 0}, "A frozen filesystem blocks writers before their IO is issued: the device sees none until the thaw, however long the server waits (iostat shows an idle disk)."
	case "throttle":
		return map[string]any{"util_below": loadBusy}, "blkio throttling holds the server's IO in its group, above the device: the device carries only what the limits let through and ext4's own journal, so iostat shows a nearly idle disk (utilisation under half the time) while the server waits."
	case "load":
		if a, ok := st.Action.(interface {
			SharedLimit(*scenarios.Scenario) uint64
		}); ok && sc != nil {
			if bps := a.SharedLimit(sc); bps > 0 {
				return map[string]any{"shared_disk_write_bytes_per_s": bps}, "A writer sharing a slow disk with more to write than the limit lets through keeps the limit saturated while it runs: the group (server and writer) moves write_bps, and the server's IO waits in the group's queue behind the writer's batch. The device itself is nearly idle: iostat does not see this saturation."
			}
		}
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
	exp, explain := ioExpectation(st, o.Scenario)
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
		if gw, ok := asNumber(f.Detail["group_write_bytes"]); ok {
			// Shown, not judged: blkio.throttle.io_service_bytes counts a
			// write when it is submitted, before the throttle holds it.
			obs["group_submitted_write_bytes"] = int64(gw)
		}
		obs["device_write_bytes_per_s"] = round3(float64(written) / span.Seconds())
		if u := util / float64(len(in)); u >= loadBusy {
			bad = append(bad, fmt.Sprintf("the device was busy %.0f%% of the throttle's time: the wait should be in the group, above it", 100*u))
		}
	case "load":
		if gw, ok := asNumber(f.Detail["group_write_bytes"]); ok {
			// A writer sharing a slow disk saturates the limit, not the
			// device: the queue is in the group, and the device is
			// nearly idle.
			bps, _ := asNumber(f.Detail["group_write_bps"])
			dur := end.Sub(f.Applied).Seconds()
			rate := gw / dur
			obs["group_write_bytes"] = int64(gw)
			obs["group_write_bytes_per_s"] = round3(rate)
			if bps <= 0 {
				bad = append(bad, "the shared throttle sets no write_bps to be saturated")
				break
			}
			// The group's count (io_service_bytes) is taken when a write
			// is submitted: the writer's fsync keeps it at most one batch
			// ahead of what the limit let through.
			batch := 0.0
			if b, ok := asNumber(f.Detail["block"]); ok {
				n, _ := asNumber(f.Detail["sync_every"])
				batch = b * max(n, 1)
			}
			obs["group_submitted_write_bytes"] = obs["group_write_bytes"]
			delete(obs, "group_write_bytes")
			lo, hi := bps*dur/1.125, bps*dur*1.125+batch
			if gw < lo || gw > hi {
				bad = append(bad, fmt.Sprintf("the shared disk took %.0f bytes of writes in %.3fs, not its limit's %.0f to %.0f (%.0f bytes/s ± 12.5%%, plus one batch submitted ahead)", gw, dur, lo, hi, bps))
			}
			break
		}
		if u := util / float64(len(in)); u < loadBusy {
			bad = append(bad, fmt.Sprintf("the device was busy %.0f%% of the load's time, less than %.0f%%", 100*u, 100*loadBusy))
		}
	}
	out.Passed = len(bad) == 0
	out.Message = strings.Join(bad, "; ")
}
