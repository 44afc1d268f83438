package actions

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/labrun/labrun/iofault"
	"github.com/labrun/labrun/scenarios"
)

// The disk faults (freeze, throttle, load, latency) act on the server's own disk,
// server.disk. Each is one file; what they share is here: the machine
// needs, the record a fault leaves for checks, and the registry of faults
// still in force, which an end step or the teardown ends.

// The machine capabilities the disk faults need, for `labrun doctor` and
// skips.
var (
	needLoop   = scenarios.Requirement{Name: "loop devices", Probe: iofault.LoopAvailable}
	needFreeze = scenarios.Requirement{Name: "fsfreeze", Probe: iofault.FreezeAvailable}
	needBlkio  = scenarios.Requirement{Name: "cgroup v1 blkio", Probe: iofault.BlkioAvailable}
	needFUSE   = scenarios.Requirement{Name: "FUSE", Probe: iofault.FUSEAvailable}
)

func init() {
	// A scenario with server.disk needs loop devices whatever its steps.
	scenarios.RegisterNeed(scenarios.ScenarioNeed{Requirement: needLoop, Part: "server.disk",
		Applies: func(s *scenarios.Scenario) bool { return s.Server.Disk != nil }})
	// And FUSE with its latency layer, whether or not a step delays.
	scenarios.RegisterNeed(scenarios.ScenarioNeed{Requirement: needFUSE, Part: "server.disk.fuse",
		Applies: func(s *scenarios.Scenario) bool { return s.Server.Disk != nil && s.Server.Disk.FUSE }})
}

// FaultRecord is what a disk fault step did: when the fault was in force,
// how it ended and its figures (limits, a load's bytes and fsync times).
type FaultRecord struct {
	Kind    string    `json:"kind"`
	Applied time.Time `json:"applied"`
	// Ended is when the fault was undone; EndedBy says by what: "for"
	// (its own duration), an end step's name, or "teardown".
	Ended   time.Time      `json:"ended,omitzero"`
	EndedBy string         `json:"ended_by,omitempty"`
	Detail  map[string]any `json:"detail,omitempty"`
	Error   string         `json:"error,omitempty"`
}

// Faults holds the disk faults still in force, by the step that applied
// them.
type Faults struct {
	mu   sync.Mutex
	live map[string]*liveFault
}

type liveFault struct {
	rec *FaultRecord
	end func() error
}

// NewFaults returns an empty registry.
func NewFaults() *Faults { return &Faults{live: map[string]*liveFault{}} }

// add records a fault in force.
func (f *Faults) add(step string, rec *FaultRecord, end func() error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.live[step] = &liveFault{rec: rec, end: end}
}

// End undoes the fault step applied, if it is still in force, and records
// by what. It is idempotent.
func (f *Faults) End(step, by string) error {
	f.mu.Lock()
	lf, ok := f.live[step]
	delete(f.live, step)
	f.mu.Unlock()
	if !ok {
		return nil
	}
	err := lf.end()
	f.mu.Lock()
	lf.rec.Ended, lf.rec.EndedBy = time.Now(), by
	if err != nil {
		lf.rec.Error = err.Error()
	}
	f.mu.Unlock()
	return err
}

// EndAll undoes every fault still in force, freezes first: a process
// blocked on a frozen filesystem cannot even be killed until it is thawed.
func (f *Faults) EndAll(by string) error {
	f.mu.Lock()
	var steps []string
	for s := range f.live {
		steps = append(steps, s)
	}
	kind := func(s string) string { return f.live[s].rec.Kind }
	sort.Slice(steps, func(i, j int) bool {
		fi, fj := kind(steps[i]) == "freeze", kind(steps[j]) == "freeze"
		if fi != fj {
			return fi
		}
		return steps[i] < steps[j]
	})
	f.mu.Unlock()
	var errs []error
	for _, s := range steps {
		if err := f.End(s, by); err != nil {
			errs = append(errs, fmt.Errorf("end %s: %w", s, err))
		}
	}
	return errors.Join(errs...)
}

// Live reports whether the fault a step applied is still in force.
func (f *Faults) Live(step string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.live[step]
	return ok
}

// applyFault applies a fault and records it: with a duration the step
// lasts that long and undoes it (the timeline's ctx ending cuts it short,
// and the fault is undone then too); without, the fault stays in force
// until an end step or the teardown.
func applyFault(ctx context.Context, env Env, st *scenarios.Step, kind string, d time.Duration, detail map[string]any,
	apply func() (end func() error, err error)) (Result, error) {
	if env.Disk() == nil {
		return Result{}, fmt.Errorf("%s: the server has no disk of its own (server.disk)", kind)
	}
	end, err := apply()
	rec := &FaultRecord{Kind: kind, Applied: time.Now(), Detail: detail}
	if err != nil {
		return Result{Fault: rec}, fmt.Errorf("%s: %w", kind, err)
	}
	env.Faults().add(st.Name, rec, end)
	if d <= 0 {
		return Result{Fault: rec}, nil
	}
	t := time.NewTimer(time.Until(rec.Applied.Add(d)))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return Result{Fault: rec}, env.Faults().End(st.Name, "for")
}

// needsDisk refuses a disk step in a scenario whose server has no disk of
// its own.
func needsDisk(v *scenarios.Validator, path string) {
	if v.Scenario().Server.Disk == nil {
		v.Add(path, "acts on the server's own disk: set server.disk")
	}
}
