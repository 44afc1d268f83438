package runner

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/labrun/labrun/actions"
	"github.com/labrun/labrun/checks"
	"github.com/labrun/labrun/scenarios"
)

// errLimit marks a timeline that did not finish within the scenario's limit.
var errLimit = errors.New("timeline limit reached")

// timeline starts every step at its time or after its predecessor, runs
// them concurrently, and waits for all of them, at most the scenario's limit.
func (r *run) timeline(ctx context.Context) error {
	tctx, cancel := context.WithTimeout(ctx, r.sc.Limit.D())
	defer cancel()
	done := map[string]chan struct{}{}
	for _, s := range r.sc.Timeline {
		done[s.Name] = make(chan struct{})
	}
	r.t0 = time.Now()
	var wg sync.WaitGroup
	errc := make(chan error, len(r.sc.Timeline))
	for _, s := range r.sc.Timeline {
		wg.Add(1)
		go func(s *scenarios.Step) {
			defer wg.Done()
			defer close(done[s.Name])
			if !r.wait(tctx, s, done) {
				return
			}
			res := r.do(tctx, s)
			r.mu.Lock()
			r.steps[s.Name] = res
			r.mu.Unlock()
			if res.Error != "" {
				errc <- fmt.Errorf("step %s: %s", s.Name, res.Error)
			}
		}(s)
	}
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ErrInterrupted, ctx.Err())
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInfra, errors.Join(errs...))
	}
	if tctx.Err() != nil {
		var pending []string
		for _, s := range r.sc.Timeline {
			res := r.steps[s.Name]
			if res == nil || res.End.IsZero() || res.End.Sub(r.t0) >= r.sc.Limit.D() {
				pending = append(pending, s.Name)
			}
		}
		sort.Strings(pending)
		return fmt.Errorf("%w after %s: unfinished steps: %s", errLimit, r.sc.Limit, strings.Join(pending, ", "))
	}
	return nil
}

// wait blocks until the step may start; false means the timeline ended
// first.
func (r *run) wait(ctx context.Context, s *scenarios.Step, done map[string]chan struct{}) bool {
	var at time.Time
	if s.At != nil {
		at = r.t0.Add(s.At.D())
	} else {
		select {
		case <-done[s.After]:
		case <-ctx.Done():
			return false
		}
		at = time.Now().Add(s.Delay.D())
	}
	t := time.NewTimer(time.Until(at))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// do performs one step's action.
func (r *run) do(ctx context.Context, s *scenarios.Step) *checks.Step {
	res := &checks.Step{Name: s.Name, Host: s.Host, Kind: s.Kind, Start: time.Now()}
	if s.Skip {
		// A skipped step runs nothing and is over as soon as it is due:
		// the steps after it start now, plus their delay.
		res.End = res.Start
		r.log.Info("step skipped", "step", s.Name, "at", res.Start.Sub(r.t0))
		return res
	}
	out, err := actions.Apply(ctx, r, s)
	if err != nil {
		res.Error = err.Error()
	}
	res.Client, res.Counter, res.Fault, res.Burst = out.Client, out.Counter, out.Fault, out.Burst
	if res.Client != nil {
		res.Start = res.Client.Start
	}
	res.End = time.Now()
	r.log.Info("step done", "step", s.Name, "at", res.Start.Sub(r.t0), "took", res.End.Sub(res.Start))
	return res
}
