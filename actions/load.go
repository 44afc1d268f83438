package actions

import (
	"context"
	"fmt"
	"time"

	"github.com/labrun/labrun/iofault"
	"github.com/labrun/labrun/scenarios"
)

// Load is a competing writer on the server's disk: another job on the same
// machine (the article's video transcoding), fsync-heavy and bounded in
// bytes and time.
type Load struct {
	// Bytes and For bound the load; it stops at whichever comes first.
	Bytes scenarios.Bytes    `yaml:"bytes" json:"bytes"`
	For   scenarios.Duration `yaml:"for" json:"for"`
	// Block is the size of one write; default 1MiB.
	Block scenarios.Bytes `yaml:"block,omitempty" json:"block,omitempty"`
	// SyncEvery is how many blocks go between fsyncs; default 1.
	SyncEvery int `yaml:"sync_every,omitempty" json:"sync_every,omitempty"`
	// Direct opens the file with O_DIRECT, bypassing the page cache.
	Direct bool `yaml:"direct,omitempty" json:"direct,omitempty"`
	// Shared puts the writer into the throttle in force, so that it and
	// the server share one slow disk.
	Shared bool `yaml:"shared,omitempty" json:"shared,omitempty"`
}

// Default block size of a load.
const defaultLoadBlock = 1 << 20

func init() {
	register(scenarios.ActionKind{
		Name:     "load",
		Settable: []string{"bytes", "for", "block", "sync_every"},
		Doc:      "A competing writer on the server's disk (server.disk), fsync-heavy and bounded in bytes and time, as another job on the same machine; the step lasts until it stops.",
		New:      func() any { return new(Load) },
		Host:     scenarios.HostOptional,
		TypeDocs: map[string]string{"Load": "A competing writer; it stops at bytes or for, whichever comes first, and its file is removed."},
		FieldDocs: map[string]string{
			"Load.bytes":      "At most this many bytes are written.",
			"Load.for":        "At most this long.",
			"Load.block":      "The size of one write. Default 1MiB.",
			"Load.sync_every": "How many blocks between fsyncs. Default 1.",
			"Load.direct":     "Writes with O_DIRECT, bypassing the page cache.",
			"Load.shared":     "Joins the throttle in force (a throttle step without for that starts before this one): the writer and the server share one slow disk, and the server's IO waits in one queue behind the writer's. Without it the writer has the device to itself, which on a fast disk barely slows the server.",
		},
		FieldSchema: map[string]map[string]any{"Load.sync_every": {"minimum": 0}},
		Validate: func(v *scenarios.Validator, path string, st *scenarios.Step) {
			needsDisk(v, path)
			a := st.Action.(*Load)
			if a.Bytes <= 0 {
				v.Add(path+".bytes", "want a positive size: a load is bounded in bytes")
			}
			if a.For <= 0 {
				v.Add(path+".for", "want a positive duration: a load is bounded in time")
			}
			if a.SyncEvery < 0 {
				v.Add(path+".sync_every", "want 1 or more")
			}
			if a.Block < 0 || (a.Block > 0 && a.Bytes > 0 && a.Block > a.Bytes) {
				v.Add(path+".block", "want a positive size no larger than bytes")
			}
			if a.Shared && !throttleBefore(v, st) {
				v.Add(path+".shared", "needs a throttle step without for that certainly starts before this one: the slow disk to share")
			}
			if a.Direct && a.Block%4096 != 0 {
				v.Add(path+".block", "with direct, want a multiple of 4KiB")
			}
			if d := v.Scenario().Server.Disk; d != nil && a.Bytes >= d.Size {
				v.Add(path+".bytes", "want less than the disk's size, %s", d.Size)
			}
		},
		Needs: []scenarios.Requirement{needLoop},
	})
}

// throttleBefore says whether a throttle without for certainly starts
// before step st, and is not ended before it starts.
func throttleBefore(v *scenarios.Validator, st *scenarios.Step) bool {
	_, si := v.Step(st.Name)
	for i, o := range v.Scenario().Timeline {
		if a, ok := o.Action.(*Throttle); ok && a.For == 0 && si >= 0 && v.Before(i, si) {
			return true
		}
	}
	return false
}

// Apply runs the load to its end.
func (a *Load) Apply(ctx context.Context, env Env, st *scenarios.Step) (Result, error) {
	spec := iofault.LoadSpec{Bytes: int64(a.Bytes), For: a.For.D(), Block: int(a.Block), SyncEvery: a.SyncEvery, Direct: a.Direct}
	if spec.Block == 0 {
		spec.Block = defaultLoadBlock
	}
	if spec.SyncEvery == 0 {
		spec.SyncEvery = 1
	}
	detail := map[string]any{"bytes_max": spec.Bytes, "block": spec.Block, "sync_every": spec.SyncEvery, "direct": spec.Direct, "shared": a.Shared}
	var load *iofault.Load
	stop := func() error {
		s := load.Stop()
		detail["bytes"] = s.Bytes
		detail["fsyncs"] = s.Fsyncs
		detail["fsync_p50_ms"] = float64(s.FsyncP50.Microseconds()) / 1000
		detail["fsync_max_ms"] = float64(s.FsyncMax.Microseconds()) / 1000
		detail["took_s"] = s.Duration.Seconds()
		if s.Err != "" {
			detail["error"] = s.Err
		}
		return nil
	}
	out, err := applyFault(ctx, env, st, "load", 0, detail, func() (func() error, error) {
		var err error
		load, err = env.Disk().StartLoad(spec)
		if err != nil {
			return nil, err
		}
		if a.Shared {
			t := env.Disk().Throttled()
			if t == nil {
				load.Stop()
				return nil, fmt.Errorf("shared: no throttle in force on the disk")
			}
			if err := t.Add(load.PID()); err != nil {
				load.Stop()
				return nil, err
			}
			// What the shared group (server and writer) moved while the
			// writer ran: the slow disk's own count.
			_, w0, _ := t.ThrottledIO()
			inner := stop
			stop = func() error {
				err := inner()
				if _, w1, err := t.ThrottledIO(); err == nil && w1 >= w0 {
					detail["group_write_bytes"] = w1 - w0
					detail["group_write_bps"] = t.Limits.WriteBPS
				}
				return err
			}
		}
		return stop, nil
	})
	if err != nil {
		return out, err
	}
	// The writer stops by itself at its bytes or its time; the step lasts
	// as long. The timer is only a backstop for a writer that overruns.
	t := time.NewTimer(a.For.D() + time.Second)
	defer t.Stop()
	by := "its end"
	select {
	case <-load.Done():
	case <-t.C:
		by = "overran its time"
	case <-ctx.Done():
		by = "the timeline's end"
	}
	return out, env.Faults().End(st.Name, by)
}

// SharedLimit is the write_bps of the slow disk a shared load joins: the
// scenario's throttle without for; 0 for a load that does not share.
func (a *Load) SharedLimit(sc *scenarios.Scenario) uint64 {
	if !a.Shared {
		return 0
	}
	for _, st := range sc.Timeline {
		if t, ok := st.Action.(*Throttle); ok && t.For == 0 {
			return uint64(t.WriteBPS)
		}
	}
	return 0
}
