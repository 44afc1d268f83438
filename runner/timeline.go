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

// vanishRules drop every IPv4 packet in and out of a host's namespace. ARP
// is not IP, so the host still answers it and its peers keep sending: the
// host is gone without a FIN, a RST or an unreachable neighbour.
var vanishRules = []string{"-A INPUT -j DROP", "-A OUTPUT -j DROP"}

func (r *run) vanish(s *Step, gone bool) error {
	for _, txt := range vanishRules {
		if !gone {
			txt = "-D" + strings.TrimPrefix(txt, "-A")
		}
		rule, err := netem.ParseRule(txt)
		if err != nil {
			return err
		}
		if _, err := r.rules[s.Host].Apply(rule, s.Name); err != nil {
			return err
		}
	}
	return nil
}

// runClient runs a client step: alone, or on a named session that stays
// open across steps.
func (r *run) runClient(ctx context.Context, s *Step, h *netem.Host) *client.Result {
	c := s.Client
	spec := client.Spec{Kind: c.Kind, Host: s.Host, Database: c.Database,
		ConnectTimeout: c.ConnectTimeout.D(), ReadTimeout: c.ReadTimeout.D(), WriteTimeout: c.WriteTimeout.D(), RcvBuf: c.RcvBuf}
	if c.Stream != nil {
		spec.Stream = &client.Stream{Pause: c.Stream.Pause.D(), Rows: c.Stream.Rows}
	}
	started := time.Now()
	for _, stmt := range c.SQL {
		x, err := client.Expand(stmt, r.sessionID)
		if err != nil {
			res := &client.Result{Kind: c.Kind, Start: started, End: time.Now()}
			res.Error = err.Error()
			return res
		}
		spec.SQL = append(spec.SQL, x)
	}
	if c.Session == "" {
		return client.Run(ctx, h.NS, r.srv, spec, r.j)
	}
	r.mu.Lock()
	sess := r.sessions[c.Session]
	r.mu.Unlock()
	var opened *client.Result
	if sess == nil {
		sess, opened = client.Open(ctx, h.NS, r.srv, c.Session, spec)
		if sess == nil {
			return opened
		}
		r.mu.Lock()
		r.sessions[c.Session] = sess
		r.mu.Unlock()
	}
	res := sess.Run(ctx, spec)
	if opened != nil {
		res.Start = opened.Start
		res.Events = append(opened.Events, res.Events...)
	}
	if c.Close {
		sess.Close()
		r.mu.Lock()
		delete(r.sessions, c.Session)
		r.mu.Unlock()
	}
	return res
}

// sessionID is the server thread id of an open session.
func (r *run) sessionID(name string) (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.sessions[name]
	if !ok {
		return 0, false
	}
	return s.ID, true
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
	case s.Vanish != nil:
		res.err = r.vanish(s, *s.Vanish)
	case s.Client != nil:
		res.client = r.runClient(ctx, s, h)
		res.start = res.client.Start
	}
	res.end = time.Now()
	r.log.Info("step done", "step", s.Name, "at", res.start.Sub(r.t0), "took", res.end.Sub(res.start))
	return res
}
