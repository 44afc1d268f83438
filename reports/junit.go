package reports

import (
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// The JUnit structures follow the schema CI servers (Jenkins, GitLab,
// GitHub actions) agree on: testsuites > testsuite > testcase, with at most
// one of failure, error or skipped per test case.

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string           `xml:"name,attr"`
	Tests      int              `xml:"tests,attr"`
	Failures   int              `xml:"failures,attr"`
	Errors     int              `xml:"errors,attr"`
	Skipped    int              `xml:"skipped,attr"`
	Time       string           `xml:"time,attr"`
	Timestamp  string           `xml:"timestamp,attr,omitempty"`
	File       string           `xml:"file,attr,omitempty"`
	Properties *junitProperties `xml:"properties,omitempty"`
	Cases      []junitCase      `xml:"testcase"`
	SystemOut  *junitText       `xml:"system-out,omitempty"`
}

// junitText is element text written as CDATA, so multi-line bodies keep
// their line breaks instead of turning into &#xA; entities.
type junitText struct {
	Text string `xml:",cdata"`
}

// junitProperties is a pointer in the suite so that a scenario without
// any is written without an empty <properties> element.
type junitProperties struct {
	Property []junitProperty `xml:"property"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Classname string        `xml:"classname,attr"`
	Name      string        `xml:"name,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	Skipped   *junitSkipped `xml:"skipped,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Body    string `xml:",cdata"`
}

type junitSkipped struct {
	Message string `xml:"message,attr,omitempty"`
}

// WriteJUnit writes the report as JUnit XML: one testsuite per scenario and
// one testcase per check. A scenario with an infrastructure error gets an
// extra "setup" test case carrying it, so CI shows it as an error rather than
// as a check that failed.
func WriteJUnit(w io.Writer, r *Report) error {
	doc := junitSuites{Name: "labrun"}
	total := 0.0
	for _, s := range r.Scenarios {
		suite := junitScenario(r, s)
		doc.Tests += suite.Tests
		doc.Failures += suite.Failures
		doc.Errors += suite.Errors
		doc.Skipped += suite.Skipped
		total += s.DurationS
		doc.Suites = append(doc.Suites, suite)
	}
	doc.Time = seconds(total)

	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("encode junit: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	return nil
}

func junitScenario(r *Report, s *Scenario) junitSuite {
	suite := junitSuite{
		Name:       s.Name,
		Time:       seconds(s.DurationS),
		File:       s.File,
		Properties: scenarioProperties(s),
	}
	if out := junitArtifacts(s.Artifacts); out != "" {
		suite.SystemOut = &junitText{Text: xmlSafe(out)}
	}
	started := s.Started
	if started.IsZero() {
		started = r.Started
	}
	if !started.IsZero() {
		// JUnit's schema wants an ISO 8601 time without a zone; UTC keeps
		// it unambiguous.
		suite.Timestamp = started.UTC().Format("2006-01-02T15:04:05")
	}

	if s.Error != "" {
		suite.Cases = append(suite.Cases, junitCase{
			Classname: s.Name,
			Name:      "setup",
			Error:     &junitProblem{Message: oneLine(s.Error), Type: "infrastructure", Body: xmlSafe(s.Error)},
		})
	}
	for _, c := range s.Checks {
		tc := junitCase{Classname: s.Name, Name: c.Name}
		switch {
		case s.Skipped:
			tc.Skipped = &junitSkipped{Message: firstNonEmpty(s.SkipReason, c.Message, "scenario skipped")}
		case c.Skipped:
			tc.Skipped = &junitSkipped{Message: firstNonEmpty(c.Message, "skipped")}
		case !c.Passed:
			tc.Failure = &junitProblem{Message: failureMessage(c), Type: c.Type, Body: xmlSafe(failureBody(c))}
		}
		suite.Cases = append(suite.Cases, tc)
	}
	// A scenario with no check left to carry its outcome still needs a test
	// case, or CI would count a failed or skipped run as nothing at all.
	switch {
	case s.Skipped && len(s.Checks) == 0:
		suite.Cases = append(suite.Cases, junitCase{
			Classname: s.Name,
			Name:      "scenario",
			Skipped:   &junitSkipped{Message: firstNonEmpty(s.SkipReason, "scenario skipped")},
		})
	case !s.Skipped && !s.Passed && s.Error == "" && !slices.ContainsFunc(s.Checks, (*Check).Failed):
		suite.Cases = append(suite.Cases, junitCase{
			Classname: s.Name,
			Name:      "scenario",
			Failure:   &junitProblem{Message: "scenario failed without a failing check"},
		})
	}

	for _, tc := range suite.Cases {
		suite.Tests++
		switch {
		case tc.Failure != nil:
			suite.Failures++
		case tc.Error != nil:
			suite.Errors++
		case tc.Skipped != nil:
			suite.Skipped++
		}
	}
	return suite
}

// junitProperties records what the scenario ran on, so a CI page alone says
// which kernel, server and sysctls a failure belongs to.
func scenarioProperties(s *Scenario) *junitProperties {
	var props []junitProperty
	add := func(name, value string) {
		if value != "" {
			props = append(props, junitProperty{Name: name, Value: value})
		}
	}
	add("kernel", s.Environment.Kernel)
	add("server.flavor", s.Environment.Server.Flavor)
	add("server.version", s.Environment.Server.Version)
	add("server.engine", s.Environment.Server.Engine)
	add("server.image", s.Environment.Server.Image)
	add("tags", strings.Join(s.Tags, ","))
	for _, k := range sortedKeys(s.Source) {
		add("source."+k, s.Source[k])
	}
	for _, host := range sortedKeys(s.Environment.Sysctls) {
		sysctls := s.Environment.Sysctls[host]
		for _, k := range sortedKeys(sysctls) {
			add("sysctl."+host+"."+k, sysctls[k])
		}
	}
	if len(props) == 0 {
		return nil
	}
	return &junitProperties{Property: props}
}

func junitArtifacts(a Artifacts) string {
	var b strings.Builder
	for _, p := range a.Pcap {
		fmt.Fprintf(&b, "pcap: %s\n", p)
	}
	for _, p := range a.Logs {
		fmt.Fprintf(&b, "log: %s\n", p)
	}
	if a.Samples != "" {
		fmt.Fprintf(&b, "samples: %s\n", a.Samples)
	}
	return b.String()
}

// failureMessage puts expected and observed in the one line CI servers show
// for a failure, after the check's own explanation.
func failureMessage(c *Check) string {
	vs := "expected " + Render(c.Expected) + ", observed " + Render(c.Observed)
	if c.Message == "" {
		return vs
	}
	return oneLine(c.Message) + ": " + vs
}

func failureBody(c *Check) string {
	var b strings.Builder
	fmt.Fprintf(&b, "documented: %s\n", Render(c.Documented))
	fmt.Fprintf(&b, "expected: %s\n", Render(c.Expected))
	fmt.Fprintf(&b, "observed: %s\n", Render(c.Observed))
	fmt.Fprintf(&b, "tolerance: %s\n", Render(c.Tolerance))
	if c.Explain != "" {
		fmt.Fprintf(&b, "explain: %s\n", c.Explain)
	}
	if c.Finding != "" {
		fmt.Fprintf(&b, "finding: %s\n", c.Finding)
	}
	if len(c.Evidence) > 0 {
		b.WriteString("evidence:\n")
		for _, e := range c.Evidence {
			fmt.Fprintf(&b, "  %s\n", e)
		}
	}
	return b.String()
}

// xmlSafe replaces what XML 1.0 cannot carry (control characters, invalid
// UTF-8) with U+FFFD. Attributes get this from encoding/xml already, CDATA
// does not, and evidence may quote raw packet bytes.
func xmlSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r',
			r >= 0x20 && r <= 0xD7FF,
			r >= 0xE000 && r <= 0xFFFD,
			r >= 0x10000 && r <= 0x10FFFF:
			return r
		}
		return '\uFFFD'
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

// seconds formats a duration in seconds with millisecond precision, as JUnit
// expects.
func seconds(s float64) string {
	return strconv.FormatFloat(s, 'f', 3, 64)
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
