package checks_test

import (
	"testing"

	_ "github.com/labrun/labrun/actions"

	"github.com/labrun/labrun/checks"
	"github.com/labrun/labrun/scenarios"
)

// The plan of the library's long and documented scenarios: the model's
// numbers for the articles' own parameters, with nothing run.
func TestPlan(t *testing.T) {
	tests := []struct {
		file, check, key string
		want             any
	}{
		{"../scenarios/lab-e/syn-dropped-documented.yaml", "client SYN retransmissions and backoff", "count", 6},
		{"../scenarios/lab-e/syn-dropped-documented.yaml", "client SYN retransmissions and backoff", "gives_up_s", 127.0},
		{"../scenarios/lab-e/syn-dropped-documented.yaml", "connect error and time to give up", "elapsed_s", 127.0},
		{"../scenarios/lab-e/syn-dropped-documented.yaml", "the server's rule dropped every SYN", "packets", 7},
		{"../scenarios/lab-e/syn-dropped-kernel-defaults.yaml", "client SYN retransmissions and backoff", "count", 10},
		{"../scenarios/lab-e/third-ack-dropped-documented.yaml", "server holds the request in SYN_RECV until it gives up", "for_s", 63.0},
		{"../scenarios/lab-e/data-retransmit-documented.yaml", "client data retransmissions, tail loss probe included", "count", 11},
		{"../scenarios/lab-c/idle-trx-documented.yaml", "the server's keepalive ends the session", "reset_s", 7875.0},
		{"../scenarios/lab-c/idle-trx-documented.yaml", "the server's keepalive ends the session", "count", 9},
	}
	for _, tc := range tests {
		t.Run(tc.check+"/"+tc.key, func(t *testing.T) {
			sc, err := scenarios.Load(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			var found *checks.PlannedCheck
			for _, p := range checks.Plan(sc) {
				if p.Name == tc.check {
					found = &p
				}
			}
			if found == nil {
				t.Fatalf("no check %q in the plan", tc.check)
			}
			if got := found.Expected[tc.key]; got != tc.want {
				t.Errorf("%s = %v (%T), want %v (%T)", tc.key, got, got, tc.want, tc.want)
			}
		})
	}
}
