package reports

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// sampleReport is the fixed report every golden file is made from: one
// scenario that passes with a finding and a skipped check, and one that
// fails with evidence. Times are fixed so the output is byte-stable.
func sampleReport() *Report {
	started := time.Date(2026, 11, 21, 9, 30, 0, 0, time.UTC)
	return &Report{
		Labrun:  "0.1.0-test",
		Started: started,
		Scenarios: []*Scenario{
			{
				Name:      "syn-drop",
				File:      "scenarios/syn-drop.yaml",
				Tags:      []string{"quick", "handshake"},
				Source:    map[string]string{"article": "004_fcb60aabe6710e45.txt", "kernel": "4.15.0-36-generic", "server": "MySQL 5.7"},
				Started:   started,
				Passed:    true,
				DurationS: 21.734,
				Environment: Environment{
					Kernel: "6.18.0-labrun",
					Server: ServerInfo{Flavor: "mysql", Version: "9.7.0", Engine: "process"},
					Sysctls: map[string]map[string]string{
						"client": {"net.ipv4.tcp_syn_retries": "3", "net.ipv4.tcp_syn_linear_timeouts": "4"},
						"server": {"net.ipv4.tcp_synack_retries": "5"},
					},
					Hosts: map[string]string{"client": "10.89.0.10", "server": "10.89.0.11"},
				},
				Phases: Phases{SetupS: 1.2, TimelineS: 19.6, AnalysisS: 0.4, TeardownS: 0.534},
				Checks: []*Check{
					{
						Name:       "syn-retransmits",
						Type:       "syn_retransmits",
						Passed:     true,
						Documented: Documented{Value: 6, Note: "tcp_syn_retries 6, no linear timeouts", Flavor: "mysql", Version: "5.7"},
						Expected:   7,
						Observed:   7,
						Tolerance:  "exact",
						Evidence: []string{
							"client.pcap frames 1,2,3,4,5,6,7,8 SYN 10.89.0.10:41234 -> 10.89.0.11:3306",
							"client /proc/net/netstat TCPSynRetrans 0 -> 7",
						},
						Finding: "the article's kernel predates tcp_syn_linear_timeouts (Linux 6.5), which adds 4 linear retransmissions",
						Explain: "tcpmodel: 4 linear + 3 exponential (tcp_syn_retries=3, tcp_syn_linear_timeouts=4)",
					},
					{
						Name:       "syn-intervals",
						Type:       "syn_intervals",
						Passed:     true,
						Documented: Documented{Value: []float64{1, 2, 4, 8, 16, 32}},
						Expected:   []time.Duration{time.Second, time.Second, time.Second, time.Second, time.Second, 2 * time.Second, 4 * time.Second},
						Observed:   []float64{1.004, 1.016, 1.008, 1.012, 1.02, 2.047, 4.09},
						Tolerance:  map[string]any{"floor": "50ms", "fraction": 0.125},
						Evidence:   []string{"client.pcap frames 1-8"},
						Explain:    "max(50ms, 12.5 % of the interval) plus the late-timer allowance",
					},
					{
						Name:       "connect-error",
						Type:       "client_error",
						Passed:     true,
						Documented: "ERROR 2003 (HY000): Can't connect to MySQL server on '10.0.0.2' (110)",
						Expected:   ClientError{Code: 2003, Errno: 110},
						Observed:   ClientError{Code: 2003, SQLState: "HY000", Errno: 110, Message: "Can't connect to MySQL server on '10.89.0.11:3306' (110)"},
						Evidence:   []string{"client step connect: exit 1 at +19.513s"},
					},
					{
						Name:     "mariadb-connect-error",
						Type:     "client_error",
						Skipped:  true,
						Expected: ClientError{Code: 2002, Errno: 115},
						Message:  "limited to flavor mariadb",
					},
				},
				Steps: []*Step{
					{Name: "drop-syn", Host: "server", StartS: 0, EndS: 0.002, Detail: map[string]any{"rule": "-A INPUT -p tcp --dport 3306 -j DROP"}},
					{Name: "connect", Host: "client", StartS: 0.5, EndS: 20.013, Detail: map[string]any{"exit": 1}},
				},
				Artifacts: Artifacts{Pcap: []string{"syn-drop/client.pcap", "syn-drop/server.pcap"}, Logs: []string{"syn-drop/mysqld.log"}},
			},
			{
				Name:      "retries2-tlp",
				File:      "scenarios/retries2-tlp.yaml",
				Started:   started.Add(22 * time.Second),
				DurationS: 58.25,
				Environment: Environment{
					Kernel:  "6.18.0-labrun",
					Server:  ServerInfo{Flavor: "mariadb", Version: "10.11.6", Engine: "container", Image: "mariadb:10.11"},
					Sysctls: map[string]map[string]string{"client": {"net.ipv4.tcp_retries2": "5", "net.ipv4.tcp_early_retrans": "3"}},
				},
				Phases: Phases{SetupS: 4.5, TimelineS: 52.1, AnalysisS: 0.9, TeardownS: 0.75},
				Checks: []*Check{
					{
						Name:       "data-retransmits",
						Type:       "retransmits",
						Documented: Documented{Value: 11, Note: "tcp_retries2 = 10"},
						Expected:   6,
						Observed:   5,
						Tolerance:  0,
						Evidence: []string{
							"client.pcap frame 41 10.89.0.10:50122 -> 10.89.0.11:3306 seq 1:37 at +0.000s",
							"client.pcap frame 42 retransmission at +0.214s",
							"client.pcap frame 43 retransmission at +0.642s",
							"client.pcap frame 44 retransmission at +1.498s",
							"client /proc/net/netstat TCPLossProbes 0 -> 0",
						},
						Explain: "tcpmodel: tcp_retries2=5 plus one tail loss probe (tcp_early_retrans=3)",
						Message: "5 retransmissions, no tail loss probe",
					},
					{
						Name:      "elapsed",
						Type:      "elapsed",
						Passed:    true,
						Expected:  12600 * time.Millisecond,
						Observed:  12683412 * time.Microsecond,
						Tolerance: 1575 * time.Millisecond,
					},
				},
				Steps: []*Step{
					{Name: "query", Host: "client", StartS: 1, EndS: 13.683, Error: "ERROR 2013 (HY000): Lost connection to server during query"},
				},
				Artifacts: Artifacts{Pcap: []string{"retries2-tlp/client.pcap"}},
			},
		},
	}
}

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; run go test ./reports/ -update and review the diff\n--- got ---\n%s", name, got)
	}
}

func TestGolden(t *testing.T) {
	tests := []struct {
		file  string
		write func(*bytes.Buffer, *Report) error
	}{
		{"report.golden.json", func(b *bytes.Buffer, r *Report) error { return WriteJSON(b, r) }},
		{"junit.golden", func(b *bytes.Buffer, r *Report) error { return WriteJUnit(b, r) }},
		{"summary.golden", func(b *bytes.Buffer, r *Report) error { return WriteSummary(b, r, false) }},
		{"report.golden.html", func(b *bytes.Buffer, r *Report) error { return WriteHTML(b, r) }},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			var b bytes.Buffer
			if err := tt.write(&b, sampleReport()); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.file, b.Bytes())
		})
	}
}

var countLine = regexp.MustCompile(`^\d+ passed, \d+ failed(, \d+ skipped)?$`)

func TestSummaryLastLine(t *testing.T) {
	withSkip := sampleReport()
	withSkip.Scenarios = append(withSkip.Scenarios, &Scenario{Name: "netem-delay", Skipped: true, SkipReason: "kernel has no sch_netem"})
	tests := []struct {
		name  string
		r     *Report
		color bool
		want  string
	}{
		{"sample", sampleReport(), false, "1 passed, 1 failed"},
		{"sample in color", sampleReport(), true, "1 passed, 1 failed"},
		{"with a skipped scenario", withSkip, true, "1 passed, 1 failed, 1 skipped"},
		{"empty", &Report{}, false, "0 passed, 0 failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteSummary(&b, tt.r, tt.color); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			if !strings.HasSuffix(out, "\n") {
				t.Errorf("summary does not end with a newline")
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			last := lines[len(lines)-1]
			if !countLine.MatchString(last) {
				t.Errorf("last line %q does not match %s", last, countLine)
			}
			if last != tt.want {
				t.Errorf("last line = %q, want %q", last, tt.want)
			}
			if hasEscape := strings.Contains(out, "\x1b["); hasEscape != tt.color {
				t.Errorf("color = %v but escape codes present = %v", tt.color, hasEscape)
			}
		})
	}
}

// The structures below read JUnit independently of the writer's own types,
// the way a CI server would.
type parsedSuites struct {
	Failures int           `xml:"failures,attr"`
	Errors   int           `xml:"errors,attr"`
	Tests    int           `xml:"tests,attr"`
	Suites   []parsedSuite `xml:"testsuite"`
}

type parsedSuite struct {
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Cases    []parsedCase `xml:"testcase"`
}

type parsedCase struct {
	Classname string `xml:"classname,attr"`
	Name      string `xml:"name,attr"`
	Failure   *struct {
		Message string `xml:"message,attr"`
		Body    string `xml:",chardata"`
	} `xml:"failure"`
	Error *struct {
		Message string `xml:"message,attr"`
	} `xml:"error"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
}

func TestJUnitParses(t *testing.T) {
	r := sampleReport()
	r.Scenarios = append(r.Scenarios,
		&Scenario{Name: "broken-setup", Error: "netem: create namespace: operation not permitted"},
		&Scenario{Name: "netem-delay", Skipped: true, SkipReason: "kernel has no sch_netem"},
	)
	// Raw packet bytes in evidence must not make the XML unreadable.
	r.Scenarios[1].Checks[0].Evidence = append(r.Scenarios[1].Checks[0].Evidence, "payload \x00\x1b\xff ]]> end")
	var b bytes.Buffer
	if err := WriteJUnit(&b, r); err != nil {
		t.Fatal(err)
	}
	var doc parsedSuites
	if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("junit does not parse: %v\n%s", err, b.String())
	}
	if len(doc.Suites) != len(r.Scenarios) {
		t.Fatalf("got %d testsuites, want %d", len(doc.Suites), len(r.Scenarios))
	}

	wantFailed := 0
	for _, s := range r.Scenarios {
		for _, c := range s.Checks {
			if c.Failed() {
				wantFailed++
			}
		}
	}
	gotFailed, gotErrors, total := 0, 0, 0
	for i, s := range doc.Suites {
		failures, errors, skipped := 0, 0, 0
		for _, c := range s.Cases {
			if c.Classname != s.Name {
				t.Errorf("testcase %q: classname %q, want %q", c.Name, c.Classname, s.Name)
			}
			switch {
			case c.Failure != nil:
				failures++
			case c.Error != nil:
				errors++
			case c.Skipped != nil:
				skipped++
			}
		}
		if s.Failures != failures || s.Errors != errors || s.Skipped != skipped || s.Tests != len(s.Cases) {
			t.Errorf("suite %s: attributes tests=%d failures=%d errors=%d skipped=%d, elements %d/%d/%d/%d",
				s.Name, s.Tests, s.Failures, s.Errors, s.Skipped, len(s.Cases), failures, errors, skipped)
		}
		if s.Name != r.Scenarios[i].Name {
			t.Errorf("suite %d is %q, want %q", i, s.Name, r.Scenarios[i].Name)
		}
		gotFailed += failures
		gotErrors += errors
		total += len(s.Cases)
	}
	if gotFailed != wantFailed || doc.Failures != wantFailed {
		t.Errorf("failures: %d elements, %d in testsuites, want %d", gotFailed, doc.Failures, wantFailed)
	}
	if gotErrors != 1 || doc.Errors != 1 {
		t.Errorf("errors: %d elements, %d in testsuites, want 1 (the setup error)", gotErrors, doc.Errors)
	}
	if doc.Tests != total {
		t.Errorf("testsuites tests=%d, want %d", doc.Tests, total)
	}

	setup := doc.Suites[2].Cases
	if len(setup) != 1 || setup[0].Name != "setup" || setup[0].Error == nil {
		t.Errorf("broken-setup: want one testcase \"setup\" with an error, got %+v", setup)
	}
	fail := doc.Suites[1].Cases[0]
	if fail.Failure == nil || !strings.Contains(fail.Failure.Message, "expected 6, observed 5") ||
		!strings.Contains(fail.Failure.Body, "client.pcap frame 44") {
		t.Errorf("data-retransmits failure lacks expected vs observed or evidence: %+v", fail.Failure)
	}
}

func TestJSONContract(t *testing.T) {
	r := sampleReport()
	// A scenario that never reached its checks must still carry the arrays
	// and objects consumers iterate over.
	r.Scenarios = append(r.Scenarios, &Scenario{Name: "broken-setup", Error: "setup failed"})
	var b bytes.Buffer
	if err := WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["labrun"] != "0.1.0-test" {
		t.Errorf("labrun = %v", doc["labrun"])
	}
	for _, sv := range doc["scenarios"].([]any) {
		s := sv.(map[string]any)
		for _, k := range []string{"name", "passed", "duration_s", "environment", "checks", "artifacts"} {
			if _, ok := s[k]; !ok {
				t.Errorf("scenario %v lacks %q", s["name"], k)
			}
		}
		env := s["environment"].(map[string]any)
		for _, k := range []string{"kernel", "server", "sysctls"} {
			if _, ok := env[k]; !ok {
				t.Errorf("scenario %v: environment lacks %q", s["name"], k)
			}
		}
		if _, ok := env["sysctls"].(map[string]any); !ok {
			t.Errorf("scenario %v: sysctls is %T, want an object", s["name"], env["sysctls"])
		}
		if _, ok := s["checks"].([]any); !ok {
			t.Errorf("scenario %v: checks is %T, want an array", s["name"], s["checks"])
		}
		if _, ok := s["artifacts"].(map[string]any)["pcap"].([]any); !ok {
			t.Errorf("scenario %v: artifacts.pcap is not an array", s["name"])
		}
		for _, cv := range s["checks"].([]any) {
			c := cv.(map[string]any)
			for _, k := range []string{"name", "passed", "documented", "expected", "observed", "tolerance", "evidence"} {
				if _, ok := c[k]; !ok {
					t.Errorf("check %v lacks %q", c["name"], k)
				}
			}
			if _, ok := c["evidence"].([]any); !ok {
				t.Errorf("check %v: evidence is %T, want an array", c["name"], c["evidence"])
			}
		}
	}
	if strings.Contains(b.String(), `\u003e`) {
		t.Errorf("evidence arrows were HTML-escaped")
	}

	// Reading the report back and rendering it gives the same summary,
	// apart from lists of seconds, which lose their type in JSON.
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if got := Render(back.Scenarios[0].Checks[2].Observed); got != "ERROR 2003 (110)" {
		t.Errorf("client error read back renders %q", got)
	}
	if got := Render(back.Scenarios[0].Checks[1].Expected); got != "1s 1s 1s 1s 1s 2s 4s" {
		t.Errorf("durations read back render %q", got)
	}
	if got := Render(back.Scenarios[0].Checks[0].Documented); got != "6 (mysql 5.7)" {
		t.Errorf("documented read back renders %q", got)
	}
}

func TestWriteFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	r := sampleReport()
	if err := WriteJSONFile(dir, r); err != nil {
		t.Fatal(err)
	}
	if err := WriteHTMLFile(dir, r); err != nil {
		t.Fatal(err)
	}
	if err := WriteJUnitFile(filepath.Join(dir, "junit.xml"), r); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "junit.xml report.html report.json" {
		t.Errorf("files = %s; temporary files must not remain", got)
	}
	var want bytes.Buffer
	if err := WriteJSON(&want, r); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("report.json differs from WriteJSON")
	}
}

func TestRedact(t *testing.T) {
	const secret = "s3cr3t-Pa55"
	r := sampleReport()
	c := r.Scenarios[1].Checks[0]
	c.Message = "dsn root:" + secret + "@tcp(10.89.0.11:3306)/"
	c.Evidence = append(c.Evidence, "mysqld.log: Access denied (password "+secret+")")
	c.Observed = ClientError{Code: 1045, Message: "Access denied for " + secret}
	r.Scenarios[1].Error = "connect with " + secret
	r.Scenarios[1].Steps[0].Detail = map[string]any{"argv": []string{"mysql", "-p" + secret}}
	r.Redact(secret, "")

	var b bytes.Buffer
	if err := WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), secret) {
		t.Errorf("secret left in report:\n%s", b.String())
	}
	if !strings.Contains(b.String(), Redacted) {
		t.Errorf("no %s marker in the report", Redacted)
	}
	if got := Render(c.Observed); got != "ERROR 1045" {
		t.Errorf("redacted client error renders %q", got)
	}
}
