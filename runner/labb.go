package runner

import (
	"path/filepath"
	"sync"
	"time"

	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/checks"
	"github.com/labrun/labrun/netem"
	"github.com/labrun/labrun/reports"
)

// Lab B's observers: a socket census per host (counts by state, each
// TIME_WAIT followed with its timer) and a conntrack table sampler (a NAT
// router's), both bounded in memory whatever the connection rate.

// Artifact is the path of a file in the run's artifacts directory.
func (r *run) Artifact(name string) string { return filepath.Join(r.art, sanitize(name)) }

// conntrackSampler samples a namespace's conntrack table until stop.
type conntrackSampler struct {
	host    string
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	mu      sync.Mutex
	samples []netem.ConntrackSample
}

// maxConntrackSamples bounds a sampler's memory: ten minutes at 100 ms.
const maxConntrackSamples = 6000

func startConntrack(h *netem.Host, every time.Duration) *conntrackSampler {
	s := &conntrackSampler{host: h.Name, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			now := time.Now()
			es, err := h.Conntrack()
			cs := netem.ConntrackSample{Time: now, Host: h.Name, Total: len(es), Counts: netem.CountByState(es)}
			if err != nil {
				cs.Error = err.Error()
			}
			s.mu.Lock()
			if len(s.samples) < maxConntrackSamples {
				s.samples = append(s.samples, cs)
			}
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *conntrackSampler) Stop() []netem.ConntrackSample {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netem.ConntrackSample(nil), s.samples...)
}

// startLabB starts the census and conntrack observers the scenario asks for.
func (r *run) startLabB() {
	for _, o := range r.sc.Observe.Census {
		if h := r.topo.Hosts[o.Host]; h != nil {
			r.census = append(r.census, capture.StartCensus(h.NS, o.Host, o.Port, o.Every.D()))
			r.censusEvery = append(r.censusEvery, o.Every.D())
		}
	}
	for _, o := range r.sc.Observe.Conntrack {
		if h := r.topo.Hosts[o.Host]; h != nil {
			r.ctSamp = append(r.ctSamp, startConntrack(h, o.Every.D()))
		}
	}
}

// stopLabB stops them and keeps what they saw.
func (r *run) stopLabB() {
	for i, c := range r.census {
		samples, tws := c.Stop()
		res := &capture.CensusResult{Host: r.sc.Observe.Census[i].Host, Every: r.censusEvery[i], Samples: samples,
			TimeWaits: capture.SummarizeTimeWaits(samples, tws), Dropped: c.Dropped()}
		r.censusRes = append(r.censusRes, res)
	}
	r.census = nil
	for _, s := range r.ctSamp {
		r.conntrack = append(r.conntrack, s.Stop()...)
	}
	r.ctSamp = nil
}

// metrics are a run's headline figures for the matrix's comparison table:
// per burst, the rate achieved, connect latency, SYN retransmissions and
// errors; SYNs answered by a bare ACK in the server's capture; TIME_WAIT
// peaks from the censuses.
func (r *run) metrics(o *checks.Observations) []reports.Metric {
	var out []reports.Metric
	add := func(name string, v float64) { out = append(out, reports.Metric{Name: name, Value: round3(v)}) }
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	var bursts []*checks.Step
	for _, st := range r.sc.Timeline {
		if res := r.steps[st.Name]; res != nil && res.Burst != nil {
			bursts = append(bursts, res)
		}
	}
	for _, res := range bursts {
		prefix := ""
		if len(bursts) > 1 {
			prefix = res.Name + " "
		}
		b := res.Burst
		errs := 0
		for _, n := range b.Errors {
			errs += n
		}
		add(prefix+"connections/s", b.Rate)
		add(prefix+"connect p50 ms", ms(b.Connect.P50))
		add(prefix+"connect p99 ms", ms(b.Connect.P99))
		add(prefix+"SYN retransmitted", float64(b.SYNRetransmitted))
		add(prefix+"errors", float64(errs))
	}
	if len(bursts) > 0 {
		if a := o.TimeWait[r.sc.Server.Host]; a != nil {
			add("SYN→bare ACK", float64(a.BareACKs))
		}
	}
	for _, c := range r.censusRes {
		if peak, _ := c.TimeWaitPeak(); peak >= 0 {
			add(c.Host+" TIME_WAIT peak", float64(peak))
		}
	}
	return out
}
