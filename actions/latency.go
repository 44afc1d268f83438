package actions

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/labrun/labrun/iofault"
	"github.com/labrun/labrun/scenarios"
)

// Latency delays one kind of file operation on the server's disk, through
// its FUSE layer: a slow fsync, a slow write, as a disk that answers late
// rather than not at all.
type Latency struct {
	// Op is the operation delayed: one of iofault.LatencyOps.
	Op string `yaml:"op" json:"op"`
	// Delay is added to every call of Op.
	Delay scenarios.Duration `yaml:"delay" json:"delay"`
	// For is how long the delay holds; 0 means until an end step or the
	// end of the timeline.
	For scenarios.Duration `yaml:"for,omitempty" json:"for,omitempty"`
}

func init() {
	register(scenarios.ActionKind{
		Name:     "latency",
		Settable: []string{"for", "delay"},
		Doc:      "Delays one kind of file operation (fsync, write, read...) on the server's disk by a fixed time, through the disk's FUSE passthrough layer (server.disk.fuse): a disk that answers late. Removed after for, or by an end step; the calls waiting then go on at once.",
		New:      func() any { return new(Latency) },
		Host:     scenarios.HostOptional,
		TypeDocs: map[string]string{"Latency": "A delay on one operation of the server's disk."},
		FieldDocs: map[string]string{
			"Latency.op":    "The operation delayed: fsync (fsync and fdatasync of a file), write, read, open (open and create), flush (close), allocate (fallocate) or setattr (truncate).",
			"Latency.delay": "Added to every call of op, on top of what the disk takes. A later latency step on the same op replaces it.",
			"Latency.for":   "How long the delay holds; the step lasts that long. Without it, until an end step names this step, or the end of the timeline.",
		},
		FieldSchema: map[string]map[string]any{"Latency.op": {"enum": iofault.LatencyOps}},
		Validate: func(v *scenarios.Validator, path string, st *scenarios.Step) {
			needsDisk(v, path)
			if d := v.Scenario().Server.Disk; d != nil && !d.FUSE {
				v.Add(path, "acts on the disk's FUSE layer: set server.disk.fuse: true")
			}
			a := st.Action.(*Latency)
			if !slices.Contains(iofault.LatencyOps, a.Op) {
				v.Add(path+".op", "want one of %s", strings.Join(iofault.LatencyOps, ", "))
			}
			if a.Delay <= 0 {
				v.Add(path+".delay", "want a positive duration")
			}
		},
		Needs: []scenarios.Requirement{needLoop, needFUSE},
	})
}

// Apply sets the delay.
func (a *Latency) Apply(ctx context.Context, env Env, st *scenarios.Step) (Result, error) {
	detail := map[string]any{"op": a.Op, "delay_ms": float64(a.Delay.D().Microseconds()) / 1000}
	return applyFault(ctx, env, st, "latency", a.For.D(), detail, func() (func() error, error) {
		d := env.Disk()
		before, err := d.LatencyStats()
		if err != nil {
			return nil, err
		}
		if err := d.SetLatency(a.Op, a.Delay.D()); err != nil {
			return nil, err
		}
		return func() error {
			err := d.SetLatency(a.Op, 0)
			// The calls of op while the delay held, and the time they
			// spent in it: what the server felt of the fault. The calls
			// still waiting go on at once now; their time counts when
			// they have.
			after, serr := d.LatencyStats()
			for deadline := time.Now().Add(time.Second); serr == nil && after[a.Op].Waiting > 0 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
				after, serr = d.LatencyStats()
			}
			if serr == nil {
				detail["calls"] = after[a.Op].Calls - before[a.Op].Calls
				detail["waited_ms"] = float64((after[a.Op].Waited - before[a.Op].Waited).Microseconds()) / 1000
			}
			return err
		}, nil
	})
}
