package actions

import (
	"context"

	"github.com/labrun/labrun/scenarios"
)

// Freeze stops every write to the server's disk (fsfreeze): a write or an
// fsync blocks until the thaw, as when a disk stops answering.
type Freeze struct {
	// For is how long the filesystem stays frozen; 0 means until an end
	// step names this one, or the end of the timeline.
	For scenarios.Duration `yaml:"for,omitempty" json:"for,omitempty"`
}

func init() {
	register(scenarios.ActionKind{
		Name:     "freeze",
		Settable: []string{"for"},
		Doc:      "Freezes the server's disk (server.disk) with fsfreeze: every write and fsync on it blocks until the thaw, as when a disk stops answering. Thawed after for, or by an end step; always thawed at teardown and by labrun cleanup.",
		New:      func() any { return new(Freeze) },
		Host:     scenarios.HostOptional,
		TypeDocs: map[string]string{"Freeze": "A stall of the server's disk."},
		FieldDocs: map[string]string{
			"Freeze.for": "How long the filesystem stays frozen; the step lasts that long. Without it, the freeze lasts until an end step names this step, or the end of the timeline.",
		},
		Validate: func(v *scenarios.Validator, path string, _ *scenarios.Step) { needsDisk(v, path) },
		Needs:    []scenarios.Requirement{needLoop, needFreeze},
	})
}

// Apply freezes the disk.
func (a *Freeze) Apply(ctx context.Context, env Env, st *scenarios.Step) (Result, error) {
	return applyFault(ctx, env, st, "freeze", a.For.D(), map[string]any{}, func() (func() error, error) {
		f, err := env.Disk().Freeze()
		if err != nil {
			return nil, err
		}
		return f.Thaw, nil
	})
}
