package actions

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"slices"

	"github.com/labrun/labrun/client"
	"github.com/labrun/labrun/scenarios"
)

// Burst is a short-connection load, as PHP applications make: connections
// opened at a rate, each running one query and closing, bounded in count,
// time and concurrency. Its result is aggregates (rate achieved, connect
// latency percentiles, errors by kind), and one JSON line per connection in
// the artifact STEP-connections.jsonl.
type Burst struct {
	// Rate is new connections per second, open-loop.
	Rate float64 `yaml:"rate" json:"rate"`
	// For is how long connections are started.
	For scenarios.Duration `yaml:"for" json:"for"`
	// Max bounds the connections; default rate × for.
	Max int `yaml:"max,omitempty" json:"max,omitempty"`
	// Concurrency bounds the connections in flight; a connection due
	// while that many are open is skipped and counted, never queued.
	// Default: one second's worth (rate).
	Concurrency int `yaml:"concurrency,omitempty" json:"concurrency,omitempty"`
	// Query runs once on each connection; default SELECT 1.
	Query    string `yaml:"query,omitempty" json:"query,omitempty"`
	Database string `yaml:"database,omitempty" json:"database,omitempty"`
	// Close is how each connection ends (client.CloseModes); default quit.
	Close string `yaml:"close,omitempty" json:"close,omitempty"`
	// Sources is how many of the host's addresses the connections bind in
	// turn; default 1, the kernel's choice.
	Sources int `yaml:"sources,omitempty" json:"sources,omitempty"`
	// ConnectTimeout bounds each TCP connect; Timeout a whole connection.
	ConnectTimeout scenarios.Duration `yaml:"connect_timeout,omitempty" json:"connect_timeout,omitempty"`
	Timeout        scenarios.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

func init() {
	register(scenarios.ActionKind{
		Name:     "burst",
		Settable: []string{"rate", "for", "max", "concurrency", "close", "sources", "connect_timeout"},
		Doc:      "Short connections at a rate (connect, one query, close), bounded in count, time and concurrency, from the step's host; aggregates in the report, one line per connection in STEP-connections.jsonl.",
		New:      func() any { return new(Burst) },
		Host:     "client",
		Connects: true,
		TypeDocs: map[string]string{"Burst": "A short-connection load generator: open-loop at rate, never faster."},
		FieldDocs: map[string]string{
			"Burst.rate":            "New connections per second (at most 100000).",
			"Burst.for":             "How long connections are started.",
			"Burst.max":             "At most this many connections; default rate × for.",
			"Burst.concurrency":     "At most this many connections in flight; one due beyond it is skipped and counted. Default: rate.",
			"Burst.query":           "The query each connection runs once. Default SELECT 1.",
			"Burst.database":        "The connections' default database.",
			"Burst.close":           "quit: COM_QUIT, then wait for the server's FIN (the server closes first, as after PHP's mysqli close); quit-now: COM_QUIT and close at once (a race for the first FIN); fin: close without COM_QUIT; rst: SO_LINGER 0, a reset; long: long connections reused for every query (the first remedy).",
			"Burst.sources":         "How many of the host's addresses (eth0's, then its extra ones) the connections bind in turn. Default 1.",
			"Burst.connect_timeout": "Bounds each TCP connect; default none but timeout.",
			"Burst.timeout":         "Bounds one connection from its start to its close. Default 10s.",
		},
		FieldSchema: map[string]map[string]any{
			"Burst.rate":        {"exclusiveMinimum": 0, "maximum": client.BurstMaxRate},
			"Burst.max":         {"minimum": 0},
			"Burst.concurrency": {"minimum": 0},
			"Burst.sources":     {"minimum": 0},
			"Burst.close":       {"enum": client.CloseModes()},
		},
		Validate: func(v *scenarios.Validator, path string, st *scenarios.Step) {
			b := st.Action.(*Burst)
			if !(b.Rate > 0 && b.Rate <= client.BurstMaxRate) {
				v.Add(path+".rate", "want a rate in (0, %d] connections per second", client.BurstMaxRate)
			}
			if b.For <= 0 {
				v.Add(path+".for", "want a positive duration: a burst is bounded in time")
			}
			if b.Max < 0 || b.Concurrency < 0 || b.Sources < 0 {
				v.Add(path, "max, concurrency and sources are 0 or more")
			}
			if b.Close != "" && !slices.Contains(client.CloseModes(), b.Close) {
				v.Add(path+".close", "unknown close %q (want one of %v)", b.Close, client.CloseModes())
			}
			if h := v.Scenario().Hosts[st.Host]; h != nil && b.Sources > 1+len(h.Extra) {
				v.Add(path+".sources", "host %s has %d addresses (address and extra), not %d", st.Host, 1+len(h.Extra), b.Sources)
			}
		},
	})
}

// MaxConnections is the burst's bound on connections.
func (b *Burst) MaxConnections() int {
	if b.Max > 0 {
		return b.Max
	}
	return int(math.Ceil(b.Rate * b.For.D().Seconds()))
}

// CloseMode is the burst's close, its default filled in.
func (b *Burst) CloseMode() string {
	if b.Close == "" {
		return client.CloseQuit
	}
	return b.Close
}

// Apply runs the burst to its end.
func (b *Burst) Apply(ctx context.Context, env Env, st *scenarios.Step) (Result, error) {
	h := env.Host(st.Host)
	if h == nil {
		return Result{}, fmt.Errorf("burst: no host %s", st.Host)
	}
	spec := client.BurstSpec{Rate: b.Rate, For: b.For.D(), Max: b.MaxConnections(), Concurrency: b.Concurrency,
		Query: b.Query, Database: b.Database, Close: b.CloseMode(), ConnectTimeout: b.ConnectTimeout.D(),
		Timeout: b.Timeout.D(), RecordsPath: env.Artifact(st.Name + "-connections.jsonl")}
	if b.Sources > 1 {
		var addrs []netip.Addr
		for _, l := range h.Links {
			addrs = append(addrs, l.Prefix.Addr())
			for _, x := range l.Extra {
				addrs = append(addrs, x.Addr())
			}
			break // eth0's
		}
		if len(addrs) < b.Sources {
			return Result{}, fmt.Errorf("burst: host %s has %d addresses, sources wants %d", st.Host, len(addrs), b.Sources)
		}
		spec.Sources = addrs[:b.Sources]
	}
	res, err := client.Burst(ctx, h.NS, env.Target(), spec)
	if err != nil {
		return Result{}, fmt.Errorf("burst: %w", err)
	}
	return Result{Burst: res}, nil
}
