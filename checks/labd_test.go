package checks_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/checks"
	"github.com/labrun/labrun/client"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
)

// The Lab D checks are evaluated on what labrun recorded in two runs of
// scenarios/lab-d/slow-reader-ftwrl.yaml (Linux 6.18; Oracle MySQL 9.7.4
// and MariaDB 10.11.18): the client's capture, cut after the TCP headers
// (capture/testdata/runs), the processlist and sock_diag samples, and the
// steps as the report gave them (testdata/labd/RUN/run.json, with the
// timeline's start recovered from the capture). The scenario is the one
// recorded, kept beside them.

// recordedRun is testdata/labd/RUN/run.json.
type recordedRun struct {
	T0      int64                        `json:"t0_unix_ns"`
	Flavor  string                       `json:"flavor"`
	Sysctls map[string]map[string]string `json:"sysctls"`
	Steps   []struct {
		Name   string  `json:"name"`
		StartS float64 `json:"start_s"`
		EndS   float64 `json:"end_s"`
		Kind   string  `json:"kind"`
		ConnID int64   `json:"conn_id"`
		Local  string  `json:"local"`
		Error  string  `json:"error"`
	} `json:"steps"`
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// replay rebuilds the observations of a recorded run.
func replay(t *testing.T, name, pcap string) *checks.Observations {
	t.Helper()
	dir := filepath.Join("testdata", "labd", name)
	sc, err := scenarios.Load(filepath.Join(dir, "scenario.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rr recordedRun
	readJSON(t, filepath.Join(dir, "run.json"), &rr)
	o := &checks.Observations{Scenario: sc, Flavor: rr.Flavor, T0: time.Unix(0, rr.T0), Sysctls: rr.Sysctls, Steps: map[string]*checks.Step{},
		Addresses: map[string]netip.Addr{"client": netip.MustParseAddr("10.89.0.10"), "server": netip.MustParseAddr("10.89.0.11")}, Slow: 1}
	at := func(s float64) time.Time { return o.T0.Add(time.Duration(s * float64(time.Second))) }
	for _, st := range rr.Steps {
		var step *scenarios.Step
		for _, s := range sc.Timeline {
			if s.Name == st.Name {
				step = s
			}
		}
		if step == nil {
			t.Fatalf("run.json names step %s, the scenario has none", st.Name)
		}
		res := &checks.Step{Name: step.Name, Host: step.Host, Kind: step.Kind, Start: at(st.StartS), End: at(st.EndS)}
		if st.Kind != "" {
			res.Client = &client.Result{Kind: st.Kind, Start: res.Start, End: res.End, Local: st.Local, ConnID: st.ConnID, Error: st.Error}
		}
		o.Steps[st.Name] = res
	}
	readJSON(t, filepath.Join(dir, "server-threads.json"), &o.Threads)
	readJSON(t, filepath.Join(dir, "sockets.json"), &o.Sockets)
	a, err := capture.Analyze(filepath.Join("..", "capture", "testdata", "runs", pcap))
	if err != nil {
		t.Fatal(err)
	}
	o.Analyses = map[string]*capture.Analysis{"client": a}
	return o
}

// labdTypes are the check types this file tests.
var labdTypes = map[string]bool{"zero_window": true, "write_timeout": true, "ends_after": true}

// evaluate runs the scenario's Lab D checks that apply to the run's flavor.
func evaluate(o *checks.Observations, keep func(*scenarios.Check) bool) []*reports.Check {
	var out []*reports.Check
	for _, c := range o.Scenario.Checks {
		if !keep(c) || (len(c.Flavors) > 0 && !slices.Contains(c.Flavors, o.Flavor)) {
			continue
		}
		out = append(out, o.Check(c))
	}
	return out
}

func TestLabDChecksOnRecordedRuns(t *testing.T) {
	tests := []struct {
		run, pcap string
		// Observations the article's story depends on, beside the golden
		// file that pins every field.
		want map[string]map[string]any
	}{
		{"slow-reader-ftwrl-mysql", "slow-reader-ftwrl.client.pcap", map[string]map[string]any{
			"the reader's window closes and the server probes it":           {"count": 5, "ended": "window opened"},
			"the server gives up on the reader after net_write_timeout":     {"seen_by": "sock_diag: socket FIN_WAIT1"},
			"the server gives up on the cli reader after net_write_timeout": {"seen_by": "sock_diag: socket FIN_WAIT1"},
		}},
		{"slow-reader-ftwrl-mariadb", "slow-reader-ftwrl-mariadb.client.pcap", map[string]map[string]any{
			"the reader's window closes and the server probes it":       {"count": 4, "ended": "reset by the server"},
			"the server gives up on the reader after net_write_timeout": {"seen_by": "server RST"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.run, func(t *testing.T) {
			o := replay(t, tt.run, tt.pcap)
			got := evaluate(o, func(c *scenarios.Check) bool { return labdTypes[c.Type] })
			if len(got) == 0 {
				t.Fatal("no Lab D checks evaluated")
			}
			byName := map[string]*reports.Check{}
			for _, c := range got {
				byName[c.Name] = c
				if !c.Passed {
					t.Errorf("%s failed: %s", c.Name, c.Message)
				}
			}
			for name, fields := range tt.want {
				c := byName[name]
				if c == nil {
					t.Errorf("no check %q", name)
					continue
				}
				obs, _ := c.Observed.(map[string]any)
				for k, v := range fields {
					if g := obs[k]; g != v {
						t.Errorf("%s: %s = %v, want %v", name, k, g, v)
					}
				}
			}
			b, err := json.MarshalIndent(got, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "labd", tt.run+".golden.json")
			if *update {
				if err := os.WriteFile(golden, append(b, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./checks -run TestLabDChecksOnRecordedRuns -update)", err)
			}
			if string(want) != string(b)+"\n" {
				t.Errorf("%s differs from the checks' output (go test ./checks -run TestLabDChecksOnRecordedRuns -update, then review the diff):\n%s", golden, b)
			}
		})
	}
}

// Wrong expectations fail, with a message that says why.
func TestLabDChecksFail(t *testing.T) {
	o := replay(t, "slow-reader-ftwrl-mysql", "slow-reader-ftwrl.client.pcap")
	three, ms := 3, func(d time.Duration) *scenarios.Duration { x := scenarios.Duration(d); return &x }
	tests := []struct {
		check scenarios.Check
		msg   string
	}{
		{scenarios.Check{Type: "zero_window", Step: "reader", Expect: &scenarios.Expect{Count: &three}}, "5 zero-window probes, expected 3"},
		{scenarios.Check{Type: "zero_window", Step: "ftwrl"}, "the client's window never closed"},
		{scenarios.Check{Type: "write_timeout", Step: "reader", Expect: &scenarios.Expect{Elapsed: ms(3 * time.Second)}}, "the server gave up 6.036s after the window closed, expected 3.000s"},
		{scenarios.Check{Type: "write_timeout", Step: "waiter"}, "no stall"},
		// The waiter started once FTWRL had failed: it did not wait for it.
		{scenarios.Check{Type: "ends_after", Step: "waiter", Expect: &scenarios.Expect{After: "ftwrl"}}, "it never waited for it"},
		// The reader was given up by net_write_timeout, not when FTWRL
		// failed.
		{scenarios.Check{Type: "ends_after", Step: "reader", Expect: &scenarios.Expect{After: "ftwrl"}}, "was over 2.997s after ftwrl was, expected within 1.000s"},
		// The readers started before FTWRL: they never waited for it.
		{scenarios.Check{Type: "ends_after", Step: "ftwrl", Expect: &scenarios.Expect{After: "waiter"}}, "before waiter was"},
		{scenarios.Check{Type: "ends_after", Step: "waiter", Expect: &scenarios.Expect{After: "reader", Tolerance: scenarios.Duration(time.Millisecond)}}, ""},
		{scenarios.Check{Type: "ends_after", Step: "writer", Expect: &scenarios.Expect{After: "nothing"}}, "step nothing did not run"},
	}
	for _, tt := range tests {
		t.Run(tt.check.Type+" "+tt.check.Step, func(t *testing.T) {
			c := tt.check
			out := o.Check(&c)
			if tt.msg == "" {
				if !out.Passed {
					t.Errorf("failed: %s", out.Message)
				}
				return
			}
			if out.Passed || !strings.Contains(out.Message, tt.msg) {
				t.Errorf("passed %v, message %q; want a failure saying %q", out.Passed, out.Message, tt.msg)
			}
		})
	}
}

// The loader takes the Lab D fields and refuses their misuse.
func TestLabDValidation(t *testing.T) {
	base := `
hosts: {client: {}, server: {}}
server: {host: server}
timeline:
  - name: reader
    at: 0s
    client: %s
  - name: waiter
    at: 1s
    client: {kind: go, sql: ["SELECT 1"]}
checks:
  - {name: c, type: %s, step: waiter%s}
`
	tests := []struct {
		name, client, typ, extra string
		want                     string
	}{
		{"a cli client streams", `{kind: cli, sql: ["SELECT 1"], stream: {pause: 1s, rows: 10}}`, "ends_after", ", expect: {after: reader}", ""},
		{"rcvbuf stays go-only", `{kind: cli, rcvbuf: 4096}`, "zero_window", "", "timeline[0].client.rcvbuf: only for kind go"},
		{"ends_after needs after", `{kind: go}`, "ends_after", "", "checks[0].expect.after: required for ends_after"},
		{"ends_after names a step", `{kind: go}`, "ends_after", ", expect: {after: kill}", `checks[0].expect.after: no step named "kill"`},
		{"write_timeout", `{kind: go}`, "write_timeout", ", expect: {elapsed: 6s}", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := fmt.Sprintf(base, tt.client, tt.typ, tt.extra)
			_, err := scenarios.LoadBytes("x.yaml", []byte(src))
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// update rewrites the golden files under testdata/ instead of comparing.
var update = flag.Bool("update", false, "rewrite the golden files under testdata/")
