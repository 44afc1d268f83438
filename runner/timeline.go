package runner

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/labrun/labrun/client"
	"github.com/labrun/labrun/netem"
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
		go func(s *Step) {
			defer wg.Done()
			defer close(done[s.Name])
			if !r.wait(tctx, s, done) {
				return
			}
			res := r.do(tctx, s)
			r.mu.Lock()
			r.steps[s.Name] = res
			r.mu.Unlock()
			if res.err != nil {
				errc <- fmt.Errorf("step %s: %w", s.Name, res.err)
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
			if res == nil || res.end.IsZero() || res.end.Sub(r.t0) >= r.sc.Limit.D() {
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
func (r *run) wait(ctx context.Context, s *Step, done map[string]chan struct{}) bool {
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
func (r *run) do(ctx context.Context, s *Step) *stepResult {
	res := &stepResult{step: s, start: time.Now()}
	h := r.topo.Hosts[s.Host]
	switch {
	case s.Iptables != "":
		rule, err := netem.ParseRule(s.Iptables)
		if err == nil {
			res.counter, err = r.rules[s.Host].Apply(rule, s.Name)
		}
		res.err = err
	case len(s.Sysctl) > 0:
		got, err := h.SetSysctls(s.Sysctl)
		res.err = err
		r.mu.Lock()
		for k, v := range got {
			r.sysctls[s.Host][k] = v
		}
		r.mu.Unlock()
	case s.Netem != nil:
		var imp netem.Impairment
		if !s.Netem.Remove {
			imp.Delay, imp.Jitter = s.Netem.Delay.D(), s.Netem.Jitter.D()
			if s.Netem.Loss != "" {
				imp.Loss, _ = netem.ParsePercent(s.Netem.Loss)
			}
		}
		res.err = h.Impair(imp)
	case s.Sleep != nil:
		t := time.NewTimer(s.Sleep.D())
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	case s.Client != nil:
		c := s.Client
		res.client = client.Run(ctx, h.NS, r.srv, client.Spec{Kind: c.Kind, Host: s.Host, SQL: c.SQL, Database: c.Database,
			ConnectTimeout: c.ConnectTimeout.D(), ReadTimeout: c.ReadTimeout.D(), WriteTimeout: c.WriteTimeout.D()}, r.j)
		res.start = res.client.Start
	}
	res.end = time.Now()
	r.log.Info("step done", "step", s.Name, "at", res.start.Sub(r.t0), "took", res.end.Sub(res.start))
	return res
}
