package actions

import (
	"context"
	"time"

	"github.com/labrun/labrun/scenarios"
	"go.yaml.in/yaml/v3"
)

// Sleep waits while captures and samplers keep running, so that a later
// step, or the end of the timeline, can wait for something the kernel does
// on its own (a request socket timing out).
type Sleep scenarios.Duration

func init() {
	register(scenarios.ActionKind{
		Name: "sleep",
		Doc:  "Waits this long while captures and samplers keep running, so that the timeline can wait for something the kernel does on its own (a request socket timing out).",
		New:  func() any { return new(Sleep) },
		Host: scenarios.HostOptional,
	})
}

// UnmarshalYAML reads a duration with a unit.
func (a *Sleep) UnmarshalYAML(n *yaml.Node) error {
	var d scenarios.Duration
	if err := d.UnmarshalYAML(n); err != nil {
		return err
	}
	*a = Sleep(d)
	return nil
}

// Duration makes the schema describe the value as a duration.
func (a Sleep) Duration() scenarios.Duration { return scenarios.Duration(a) }

// MarshalJSON writes the duration as it is written.
func (a Sleep) MarshalJSON() ([]byte, error) { return scenarios.Duration(a).MarshalJSON() }

// Apply waits, or returns early when the timeline is cut short.
func (a *Sleep) Apply(ctx context.Context, _ Env, _ *scenarios.Step) (Result, error) {
	t := time.NewTimer(time.Duration(*a))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return Result{}, nil
}
