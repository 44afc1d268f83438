package checks

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/scenarios"
)

// LoadObservations reads what a run saved in its report directory for one
// scenario (scenario.yaml, the scenario as it ran; observations.json; the
// pcaps that file names) and rebuilds the Observations the checks read, so
// that a run's checks can be evaluated again offline. The caller must have
// imported the packages that register step actions (actions), or the
// scenario's steps are unknown to the loader.
func LoadObservations(dir string) (*Observations, error) {
	sc, err := scenarios.Load(filepath.Join(dir, "scenario.yaml"))
	if err != nil {
		return nil, fmt.Errorf("load observations: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "observations.json"))
	if err != nil {
		return nil, fmt.Errorf("load observations: %w", err)
	}
	o := &Observations{}
	if err := json.Unmarshal(b, o); err != nil {
		return nil, fmt.Errorf("load observations: %s: %w", filepath.Join(dir, "observations.json"), err)
	}
	o.Scenario = sc
	// Slow is not saved: a replay judges with the tolerances of a normal
	// machine, as a run without --slow does.
	o.Slow = 1
	o.Analyses = map[string]*capture.Analysis{}
	for host, name := range o.Pcaps {
		// The runner names each pcap by its file name in the same
		// directory; anything else would read outside the recording.
		if name == "" || filepath.Base(name) != name {
			return nil, fmt.Errorf("load observations: pcap of host %s: %q is not a file name in %s", host, name, dir)
		}
		a, err := capture.Analyze(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("load observations: pcap of host %s: %w", host, err)
		}
		o.Analyses[host] = a
	}
	paths := map[string]string{}
	for host, name := range o.Pcaps {
		paths[host] = filepath.Join(dir, name)
	}
	if err := o.AnalyzeTimeWaits(paths); err != nil {
		return nil, fmt.Errorf("load observations: %w", err)
	}
	return o, nil
}
