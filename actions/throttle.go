package actions

import (
	"context"

	"github.com/labrun/labrun/iofault"
	"github.com/labrun/labrun/scenarios"
)

// Throttle limits the server's IO on its disk (cgroup v1 blkio): a slow
// disk, for the server's processes only.
type Throttle struct {
	ReadBPS   scenarios.Bytes `yaml:"read_bps,omitempty" json:"read_bps,omitempty"`
	WriteBPS  scenarios.Bytes `yaml:"write_bps,omitempty" json:"write_bps,omitempty"`
	ReadIOPS  uint64          `yaml:"read_iops,omitempty" json:"read_iops,omitempty"`
	WriteIOPS uint64          `yaml:"write_iops,omitempty" json:"write_iops,omitempty"`
	// For is how long the limits hold; 0 means until an end step or the
	// end of the timeline.
	For scenarios.Duration `yaml:"for,omitempty" json:"for,omitempty"`
}

func init() {
	register(scenarios.ActionKind{
		Name:     "throttle",
		Settable: []string{"for", "read_bps", "write_bps", "read_iops", "write_iops"},
		Doc:      "Limits the server's reads and writes on its disk (server.disk) with cgroup v1 blkio throttling, in bytes and operations per second: a slow disk, for the server's processes only. Removed after for, or by an end step.",
		New:      func() any { return new(Throttle) },
		Host:     scenarios.HostOptional,
		TypeDocs: map[string]string{"Throttle": "Limits on the server's IO; 0 or absent means no limit."},
		FieldDocs: map[string]string{
			"Throttle.read_bps":   "Bytes read per second (blkio.throttle.read_bps_device).",
			"Throttle.write_bps":  "Bytes written per second (blkio.throttle.write_bps_device).",
			"Throttle.read_iops":  "Read operations per second.",
			"Throttle.write_iops": "Write operations per second.",
			"Throttle.for":        "How long the limits hold; the step lasts that long. Without it, until an end step names this step, or the end of the timeline.",
		},
		Validate: func(v *scenarios.Validator, path string, st *scenarios.Step) {
			needsDisk(v, path)
			// Behind the FUSE layer the server's reads and writes reach the
			// device from labrun's FUSE server, not from the server's
			// processes, and the group would limit nothing of theirs
			// (measured: 8 MiB of O_DIRECT writes at a 2 MiB/s limit took
			// 0.2 s through it, 4.2 s without).
			if d := v.Scenario().Server.Disk; d != nil && d.FUSE {
				v.Add(path, "cannot limit a server behind the FUSE layer (server.disk.fuse): its IO reaches the disk from labrun's FUSE server, not from its own processes")
			}
			a := st.Action.(*Throttle)
			if a.ReadBPS == 0 && a.WriteBPS == 0 && a.ReadIOPS == 0 && a.WriteIOPS == 0 {
				v.Add(path, "want at least one limit: read_bps, write_bps, read_iops or write_iops")
			}
		},
		Needs: []scenarios.Requirement{needLoop, needBlkio},
	})
}

// Apply moves the server's processes into a throttled group.
func (a *Throttle) Apply(ctx context.Context, env Env, st *scenarios.Step) (Result, error) {
	l := iofault.Limits{ReadBPS: uint64(a.ReadBPS), WriteBPS: uint64(a.WriteBPS), ReadIOPS: a.ReadIOPS, WriteIOPS: a.WriteIOPS}
	detail := map[string]any{"read_bps": l.ReadBPS, "write_bps": l.WriteBPS, "read_iops": l.ReadIOPS, "write_iops": l.WriteIOPS}
	return applyFault(ctx, env, st, "throttle", a.For.D(), detail, func() (func() error, error) {
		pids := env.ServerPIDs()
		detail["pids"] = pids
		t, err := env.Disk().Throttle(pids, l)
		if err != nil {
			return nil, err
		}
		return func() error {
			// What the group's processes moved through the limits, as the
			// kernel counted it: the device also sees IO that is not
			// theirs (ext4's journal, the flusher).
			if r, w, err := t.ThrottledIO(); err == nil {
				detail["group_read_bytes"], detail["group_write_bytes"] = r, w
			}
			if r, w, err := t.ThrottledOps(); err == nil {
				detail["group_read_ios"], detail["group_write_ios"] = r, w
			}
			return t.Remove()
		}, nil
	})
}

// Limits are the throttle's limits, for the checks' model.
func (a *Throttle) Limits() iofault.Limits {
	return iofault.Limits{ReadBPS: uint64(a.ReadBPS), WriteBPS: uint64(a.WriteBPS), ReadIOPS: a.ReadIOPS, WriteIOPS: a.WriteIOPS}
}
