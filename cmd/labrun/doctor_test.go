package main

import (
	"errors"
	"slices"
	"testing"

	"github.com/labrun/labrun/scenarios"
)

// TestDoctorRequirements checks doctor's lines for the kinds'
// requirements: the probe's verdict, its reason, and the kinds it holds
// back. Fake probes keep it offline; the registry's own probes create
// namespaces.
func TestDoctorRequirements(t *testing.T) {
	reqs := []scenarios.Requirement{
		{Name: "fuse", Probe: func() error { return nil }},
		{Name: "sch_netem", Probe: func() error { return errors.New("the kernel has no sch_netem") }},
	}
	users := map[string][]string{"fuse": {"action freeze"}, "sch_netem": {"action netem", "check loss"}}
	got := requirementLines(reqs, users)
	want := []string{
		"ok  needs fuse               for action freeze",
		"no  needs sch_netem          the kernel has no sch_netem; scenarios with action netem, check loss are skipped",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}

// TestDoctorRequirementUsers checks that doctor sees the registries: the
// netem action declares sch_netem.
func TestDoctorRequirementUsers(t *testing.T) {
	users := requirementUsers()
	if !slices.Contains(users["sch_netem"], "action netem") {
		t.Errorf("sch_netem is needed by %v, want action netem among them", users["sch_netem"])
	}
	for _, r := range scenarios.Requirements() {
		if len(users[r.Name]) == 0 {
			t.Errorf("requirement %s: no kind needs it", r.Name)
		}
	}
}
