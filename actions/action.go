// Package actions holds the timeline's step actions, one file per kind,
// each registered by name with the scenario format: its YAML value, its
// validation, what it needs from the machine, its docs, and how it applies
// itself to a run in progress.
package actions

import (
	"context"
	"fmt"

	"github.com/labrun/labrun/client"
	"github.com/labrun/labrun/iofault"
	"github.com/labrun/labrun/journal"
	"github.com/labrun/labrun/netem"
	"github.com/labrun/labrun/scenarios"
)

// Env is what an action reaches of the run in progress; the runner
// implements it.
type Env interface {
	// Host is a host of the lab network, nil for an unknown name.
	Host(name string) *netem.Host
	// Rules are labrun's iptables rules in a host's namespace; what an
	// action adds there goes with the namespace at teardown.
	Rules(host string) *netem.Rules
	// SetSysctls writes sysctls in a host's namespace and records the
	// values read back, for the model and the report.
	SetSysctls(host string, kv map[string]string) error
	// Target is the server under test, for clients.
	Target() client.Target
	Journal() *journal.Journal
	// Session returns a named client session that is open, or nil;
	// SetSession records one (nil forgets it).
	Session(name string) *client.Session
	SetSession(name string, s *client.Session)
	// Disk is the server's own disk (server.disk), nil without one.
	Disk() *iofault.Disk
	// ServerPIDs are the server's processes on this machine: mysqld, or
	// the container's.
	ServerPIDs() []int
	// Faults are the disk faults in force.
	Faults() *Faults
	// Artifact is the path of a file named name in the run's artifacts
	// directory, for what a step records beside the report.
	Artifact(name string) string
}

// Result is what an action did, beyond its error: a client's session, or
// the counter of the rule an iptables -D removed.
type Result struct {
	Client  *client.Result
	Counter *netem.Counter
	Fault   *FaultRecord
	// Burst is a short-connection load's aggregates.
	Burst *client.BurstResult
}

// Applier is implemented by every registered action's value.
type Applier interface {
	// Apply performs the step in env. A client's own failure is in
	// Result.Client; the error is for the machine's (a rule that could not
	// be written).
	Apply(ctx context.Context, env Env, st *scenarios.Step) (Result, error)
}

// register adds an action kind to the scenario format, after checking that
// its value can apply itself.
func register(k scenarios.ActionKind) {
	if _, ok := k.New().(Applier); !ok {
		panic(fmt.Sprintf("actions: %s's value %T does not implement Applier", k.Name, k.New()))
	}
	scenarios.RegisterAction(k)
}

// Apply performs a step with its registered action.
func Apply(ctx context.Context, env Env, st *scenarios.Step) (Result, error) {
	a, ok := st.Action.(Applier)
	if !ok {
		return Result{}, fmt.Errorf("step %s: action %q cannot apply itself", st.Name, st.Kind)
	}
	return a.Apply(ctx, env, st)
}
