// Package reports writes the outcome of a run: report.json (the contract
// other tools read), JUnit XML for CI, a terminal summary and a
// self-contained HTML page. Every writer reads the same Report, so the four
// views never disagree.
package reports

import (
	"bytes"
	"encoding/json"
	"time"
)

// Version is written into every report. It is a variable, not a constant,
// because the linker's -X flag can only set string variables:
//
//	go build -ldflags "-X github.com/labrun/labrun/reports.Version=1.2.3"
var Version = "0.1.0"

// Report is one invocation of labrun: every scenario it ran, in the order
// they were given.
type Report struct {
	Labrun    string      `json:"labrun"`
	Started   time.Time   `json:"started"`
	Scenarios []*Scenario `json:"scenarios"`
	// Matrices gathers the instances of each scenario that ran as a
	// matrix: a row per cell, per check documented, model and observed.
	Matrices []*Matrix `json:"matrices,omitempty"`
}

// New returns an empty report stamped with this build's version.
func New(started time.Time) *Report {
	return &Report{Labrun: Version, Started: started}
}

// Scenario is the outcome of one scenario file (or one variant of it).
type Scenario struct {
	Name string   `json:"name"`
	File string   `json:"file"`
	Tags []string `json:"tags,omitempty"`
	// Source names the article the documented values come from: article,
	// title, kernel and server of the article.
	Source map[string]string `json:"source,omitempty"`
	// Started is when this scenario began; with -j N scenarios overlap, so
	// the report's own start time does not say it.
	Started    time.Time `json:"started,omitzero"`
	Passed     bool      `json:"passed"`
	Skipped    bool      `json:"skipped,omitempty"`
	SkipReason string    `json:"skip_reason,omitempty"`
	// Error is an infrastructure error (setup, capture, teardown), as opposed
	// to a check that did not hold.
	Error       string      `json:"error,omitempty"`
	DurationS   float64     `json:"duration_s"`
	Environment Environment `json:"environment"`
	Phases      Phases      `json:"phases"`
	Checks      []*Check    `json:"checks"`
	Steps       []*Step     `json:"steps,omitempty"`
	Artifacts   Artifacts   `json:"artifacts"`
	// Iptables holds the packet counters of the scenario's rules at the end of
	// the timeline, and of removed rules just before their removal.
	Iptables any `json:"iptables,omitempty"`
	// Cell is set for an instance of a matrix: which cell it ran.
	Cell *CellInfo `json:"cell,omitempty"`
	// IO is the server disk's IO over the run (observe.io).
	IO *IOSummary `json:"io,omitempty"`
	// Metrics are the instance's headline figures (a burst's connect
	// latency, SYNs answered by a bare ACK, TIME_WAIT peaks), which a
	// matrix compares side by side in one table.
	Metrics []Metric `json:"metrics,omitempty"`
}

// Metric is one headline figure of an instance.
type Metric struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
}

// Status is "pass", "fail" or "skip"; a skipped scenario is neither passed
// nor failed, whatever its Passed field says.
func (s *Scenario) Status() string {
	switch {
	case s.Skipped:
		return "skip"
	case s.Passed:
		return "pass"
	default:
		return "fail"
	}
}

// Environment is what the scenario actually ran on, read back rather than
// taken from the scenario, so a report says what was true.
type Environment struct {
	Kernel string     `json:"kernel"`
	Server ServerInfo `json:"server"`
	// Sysctls maps host -> key -> value as read back after they were set.
	Sysctls map[string]map[string]string `json:"sysctls"`
	// Hosts maps host -> address on the lab network.
	Hosts map[string]string `json:"hosts,omitempty"`
	// Disk is the server's own disk, when server.disk made one.
	Disk *DiskInfo `json:"disk,omitempty"`
}

// ServerInfo identifies the MySQL server under test; flavors behave
// differently, so a result means little without it.
type ServerInfo struct {
	Flavor  string `json:"flavor"`
	Version string `json:"version"`
	Engine  string `json:"engine"`
	Image   string `json:"image,omitempty"`
}

// Phases splits a scenario's duration, in seconds, so a slow run shows
// where the time went.
type Phases struct {
	SetupS    float64 `json:"setup_s"`
	TimelineS float64 `json:"timeline_s"`
	AnalysisS float64 `json:"analysis_s"`
	TeardownS float64 `json:"teardown_s"`
}

// Check is one comparison of an observed quantity with the model and the
// article. Documented, Expected, Observed and Tolerance are free-form values;
// Render shows them compactly, and ClientError and Documented are shapes it
// knows.
type Check struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Passed bool   `json:"passed"`
	// Skipped is set when the check does not apply here, e.g. it is limited
	// to another flavor; Message then says why.
	Skipped bool `json:"skipped,omitempty"`
	// Documented is the article's value, with its note and flavor.
	Documented any `json:"documented"`
	// Expected is what the model (or the scenario) predicts.
	Expected  any      `json:"expected"`
	Observed  any      `json:"observed"`
	Tolerance any      `json:"tolerance"`
	Evidence  []string `json:"evidence"`
	// Finding is set when the documented value differs from the observed one
	// and the model explains why.
	Finding string `json:"finding,omitempty"`
	// Explain says how the expectation was computed.
	Explain string `json:"explain,omitempty"`
	// Message says why the check failed or was skipped.
	Message string `json:"message,omitempty"`
}

// Failed reports whether the check ran and did not hold.
func (c *Check) Failed() bool { return !c.Passed && !c.Skipped }

// Step is one timeline entry as it ran. Times are seconds from the start of
// the timeline.
type Step struct {
	Name   string         `json:"name"`
	Host   string         `json:"host,omitempty"`
	StartS float64        `json:"start_s"`
	EndS   float64        `json:"end_s"`
	Error  string         `json:"error,omitempty"`
	Detail map[string]any `json:"detail,omitempty"`
	// Skipped is true for a step the scenario skips (skip: true): it ran
	// nothing, and ended when it was due.
	Skipped bool `json:"skipped,omitempty"`
}

// Artifacts are files the run kept. Paths are as the runner recorded them;
// relative paths resolve against the report directory.
type Artifacts struct {
	Pcap    []string `json:"pcap"`
	Logs    []string `json:"logs,omitempty"`
	Samples string   `json:"samples,omitempty"`
	// Observations is everything the checks read, for replaying them
	// offline; Scenario is the scenario file as it ran.
	Observations string `json:"observations,omitempty"`
	Scenario     string `json:"scenario,omitempty"`
	// IO is the server disk's samples (io.json).
	IO string `json:"io,omitempty"`
}

// Documented is the article's value for a check. Its JSON names match
// runner.Documented, so either renders the same way.
type Documented struct {
	// Value is the article's figure as it gave it: a number, a list, or text.
	Value any    `json:"value"`
	Note  string `json:"note,omitempty"`
	// Flavor and Version say which server the article ran, when the value
	// only holds for it.
	Flavor  string `json:"flavor,omitempty"`
	Version string `json:"version,omitempty"`
}

// ClientError is a MySQL client's error as checks compare it: the MySQL
// error code, the SQLSTATE and the system errno the client appends in
// parentheses, e.g. ERROR 2003 (HY000): Can't connect ... (110).
type ClientError struct {
	Code     int    `json:"code,omitempty"`
	SQLState string `json:"sqlstate,omitempty"`
	Errno    int    `json:"errno,omitempty"`
	Message  string `json:"message,omitempty"`
}

// Counts returns how many scenarios passed, failed and were skipped; the
// summary's last line and the exit code both come from it.
func (r *Report) Counts() (passed, failed, skipped int) {
	for _, s := range r.Scenarios {
		switch s.Status() {
		case "skip":
			skipped++
		case "pass":
			passed++
		default:
			failed++
		}
	}
	return passed, failed, skipped
}

// The MarshalJSON methods below write empty arrays and objects instead of
// null for the fields other tools rely on, so a scenario that failed during
// setup still has "checks": [] and a consumer can iterate without a nil check.

// MarshalJSON writes scenarios as an array even when there are none.
func (r Report) MarshalJSON() ([]byte, error) {
	type plain Report
	p := plain(r)
	if p.Scenarios == nil {
		p.Scenarios = []*Scenario{}
	}
	return marshal(p)
}

// MarshalJSON writes checks as an array even when there are none.
func (s Scenario) MarshalJSON() ([]byte, error) {
	type plain Scenario
	p := plain(s)
	if p.Checks == nil {
		p.Checks = []*Check{}
	}
	return marshal(p)
}

// MarshalJSON writes sysctls as an object even when none were read.
func (e Environment) MarshalJSON() ([]byte, error) {
	type plain Environment
	p := plain(e)
	if p.Sysctls == nil {
		p.Sysctls = map[string]map[string]string{}
	}
	return marshal(p)
}

// MarshalJSON writes evidence as an array even when there is none.
func (c Check) MarshalJSON() ([]byte, error) {
	type plain Check
	p := plain(c)
	if p.Evidence == nil {
		p.Evidence = []string{}
	}
	p.Documented = jsonValue(p.Documented)
	p.Expected = jsonValue(p.Expected)
	p.Observed = jsonValue(p.Observed)
	p.Tolerance = jsonValue(p.Tolerance)
	return marshal(p)
}

// jsonValue writes durations the way scenarios spell them ("1.5s", as
// runner.Duration does) instead of encoding/json's integer nanoseconds,
// which no reader of report.json would guess. Render shows the string form
// exactly as it showed the duration.
func jsonValue(v any) any {
	switch x := v.(type) {
	case time.Duration:
		return x.String()
	case []time.Duration:
		out := make([]string, len(x))
		for i, d := range x {
			out[i] = d.String()
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonValue(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = jsonValue(e)
		}
		return out
	case Documented:
		x.Value = jsonValue(x.Value)
		return x
	case *Documented:
		if x == nil {
			return x
		}
		d := *x
		d.Value = jsonValue(d.Value)
		return d
	}
	return v
}

// MarshalJSON writes pcap paths as an array even when none were kept.
func (a Artifacts) MarshalJSON() ([]byte, error) {
	type plain Artifacts
	p := plain(a)
	if p.Pcap == nil {
		p.Pcap = []string{}
	}
	return marshal(p)
}

// marshal encodes v without HTML escaping. The outer encoder cannot undo
// the escaping json.Marshal applies inside a MarshalJSON method, and
// evidence such as "10.89.0.10:41234 -> 10.89.0.11:3306" must stay readable.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
