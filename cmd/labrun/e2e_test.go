package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/labrun/labrun/server"
)

// The end-to-end tier runs the labrun binary on the lab library, as root,
// with real servers. LABRUN_BIN names a built binary; otherwise TestMain
// builds one.
var labrunBin string

func TestMain(m *testing.M) {
	flag.Parse()
	labrunBin = os.Getenv("LABRUN_BIN")
	if labrunBin == "" && !testing.Short() {
		dir, err := os.MkdirTemp("", "labrun-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		labrunBin = filepath.Join(dir, "labrun")
		out, err := exec.Command("go", "build", "-o", labrunBin, ".").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build labrun: %v\n%s", err, out)
			os.Exit(1)
		}
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// needRoot skips a test on a machine that cannot run scenarios, naming what
// is missing.
func needRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: end-to-end tier skipped")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: scenarios create network namespaces")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("needs iptables: scenarios apply iptables rules (apt-get install iptables)")
	}
}

func needFlavor(t *testing.T, flavor string) {
	t.Helper()
	if _, err := server.Find(flavor); err != nil {
		t.Skipf("flavor %s not built: run 'labrun images build %s' (%v)", flavor, flavor, err)
	}
}

type result struct {
	code   int
	stdout string
	stderr string
	report *reportFile
	dir    string
}

// reportFile is the part of report.json the tests read, decoded as another
// tool would decode it.
type reportFile struct {
	Labrun    string           `json:"labrun"`
	Scenarios []reportScenario `json:"scenarios"`
}

// reportScenario is one scenario instance of report.json.
type reportScenario struct {
	Name        string  `json:"name"`
	Passed      bool    `json:"passed"`
	DurationS   float64 `json:"duration_s"`
	Environment struct {
		Kernel string `json:"kernel"`
		Server struct {
			Flavor  string `json:"flavor"`
			Version string `json:"version"`
		} `json:"server"`
		Sysctls map[string]map[string]string `json:"sysctls"`
	} `json:"environment"`
	Phases struct {
		SetupS    float64 `json:"setup_s"`
		TimelineS float64 `json:"timeline_s"`
		AnalysisS float64 `json:"analysis_s"`
		TeardownS float64 `json:"teardown_s"`
	} `json:"phases"`
	Checks []struct {
		Name     string         `json:"name"`
		Type     string         `json:"type"`
		Passed   bool           `json:"passed"`
		Skipped  bool           `json:"skipped"`
		Expected map[string]any `json:"expected"`
		Observed map[string]any `json:"observed"`
		Evidence []string       `json:"evidence"`
	} `json:"checks"`
	Artifacts struct {
		Pcap []string `json:"pcap"`
	} `json:"artifacts"`
}

func labrun(t *testing.T, args ...string) result {
	t.Helper()
	dir := t.TempDir()
	full := append([]string{args[0], "--report-dir", dir}, args[1:]...)
	if args[0] != "run" {
		full = args
	}
	cmd := exec.Command(labrunBin, full...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := result{stdout: so.String(), stderr: se.String(), dir: dir}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("labrun %v: %v", args, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "report.json")); err == nil {
		r.report = &reportFile{}
		if err := json.Unmarshal(b, r.report); err != nil {
			t.Fatalf("report.json: %v", err)
		}
		// Artifact paths are relative to the report directory (the
		// contract that lets a CI job upload the folder); the tests open
		// them from here.
		for i := range r.report.Scenarios {
			pcaps := r.report.Scenarios[i].Artifacts.Pcap
			for j, p := range pcaps {
				if filepath.IsAbs(p) {
					t.Errorf("artifact %s is absolute: want it relative to the report directory", p)
				}
				pcaps[j] = filepath.Join(dir, p)
			}
		}
	}
	return r
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s\n--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// hostState is what a run must leave as it found it.
type hostState struct {
	netns, iptables, sysctls, links, procs string
}

func snapshot(t *testing.T) hostState {
	t.Helper()
	run := func(name string, args ...string) string {
		out, _ := exec.Command(name, args...).CombinedOutput()
		return string(out)
	}
	var sys []string
	for _, k := range []string{"tcp_syn_retries", "tcp_synack_retries", "tcp_retries2", "tcp_keepalive_time", "tcp_keepalive_intvl", "tcp_keepalive_probes", "tcp_syn_linear_timeouts"} {
		b, _ := os.ReadFile("/proc/sys/net/ipv4/" + k)
		sys = append(sys, k+"="+strings.TrimSpace(string(b)))
	}
	return hostState{
		netns:    run("ip", "netns", "list"),
		iptables: run("iptables", "-S") + run("iptables", "-t", "mangle", "-S") + run("iptables", "-t", "nat", "-S"),
		sysctls:  strings.Join(sys, "\n"),
		links:    linkNames(run("ip", "-o", "link", "show")),
		procs:    serverProcs(),
	}
}

// serverProcs lists the live server and client processes. A zombie has
// already exited: after SIGKILL its parent is gone and pid 1 reaps it when it
// gets round to it, so it does not count.
func serverProcs() string {
	var out []string
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open || end+2 >= len(s) {
			continue
		}
		name, state := s[open+1:end], s[end+2]
		switch name {
		case "mysqld", "mariadbd", "mysql", "mariadb":
			if state != 'Z' {
				out = append(out, filepath.Base(filepath.Dir(p))+" "+name)
			}
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// linkNames keeps the interface names only: counters and states change.
func linkNames(s string) string {
	var names []string
	for _, l := range strings.Split(s, "\n") {
		f := strings.Fields(l)
		if len(f) > 1 {
			names = append(names, f[1])
		}
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

func assertUnchanged(t *testing.T, before hostState) {
	t.Helper()
	after := snapshot(t)
	if before != after {
		t.Errorf("host state changed:\nbefore %+v\nafter  %+v", before, after)
	}
	runs, _ := filepath.Glob("/run/labrun/runs/*")
	if len(runs) > 0 {
		t.Errorf("journals left: %v", runs)
	}
	dirs, _ := filepath.Glob(filepath.Join(server.CacheDir(), "*", "*", "var/lib/labrun-runs/*"))
	if len(dirs) > 0 {
		t.Errorf("run directories left: %v", dirs)
	}
}

// tsharkCount counts packets matching a display filter, the test oracle for
// the analyzer.
func tsharkCount(t *testing.T, pcap, filter string) int {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("needs tshark as the test oracle (apt-get install tshark)")
	}
	out, err := exec.Command("tshark", "-n", "-r", pcap, "-Y", filter, "-T", "fields", "-e", "frame.number").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	return len(strings.Fields(string(out)))
}

func check(t *testing.T, r result, name string) map[string]any {
	t.Helper()
	for _, c := range r.report.Scenarios[0].Checks {
		if c.Type == name || c.Name == name {
			return c.Observed
		}
	}
	t.Fatalf("no check %s in report", name)
	return nil
}

func TestSYNDroppedAgreesWithModelAndTshark(t *testing.T) {
	needRoot(t)
	needFlavor(t, "mysql")
	before := snapshot(t)
	r := labrun(t, "run", "../../scenarios/lab-e/syn-dropped.yaml")
	if r.code != 0 {
		t.Fatalf("want exit 0: %s", r)
	}
	sc := r.report.Scenarios[0]
	_, clientPcap := synCountAgrees(t, sc)
	if st, err := os.Stat(clientPcap); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("pcap mode: %v %v", st.Mode(), err)
	}
	assertUnchanged(t, before)
}

// checksPassAndSYNAgrees requires every check of the scenario to pass (or
// be skipped for its flavor) and, where it counts SYN retransmissions,
// that count to agree with the model and tshark.
func checksPassAndSYNAgrees(t *testing.T, sc reportScenario) {
	t.Helper()
	hasSYN := false
	for _, c := range sc.Checks {
		if !c.Passed && !c.Skipped {
			t.Errorf("%s: %s failed", sc.Name, c.Name)
		}
		hasSYN = hasSYN || c.Type == "syn_retransmits"
	}
	if hasSYN {
		synCountAgrees(t, sc)
	}
}

// synCountAgrees requires the scenario's observed SYN retransmission count
// to equal the model's and tshark's count in the client's pcap; it returns
// the count and that pcap.
func synCountAgrees(t *testing.T, sc reportScenario) (float64, string) {
	t.Helper()
	var got, want float64
	found := false
	for _, c := range sc.Checks {
		if c.Type == "syn_retransmits" {
			got, want, found = c.Observed["count"].(float64), c.Expected["count"].(float64), true
		}
	}
	if !found {
		t.Fatalf("%s: no syn_retransmits check", sc.Name)
	}
	if got != want {
		t.Errorf("%s: observed %v SYN retransmissions, model %v", sc.Name, got, want)
	}
	// The client's capture, or the server's where only it is kept (the
	// SYNs arrive there all the same).
	var clientPcap string
	for _, want := range []string{"client.pcap", "server.pcap"} {
		for _, p := range sc.Artifacts.Pcap {
			if clientPcap == "" && strings.HasSuffix(p, want) {
				clientPcap = p
			}
		}
	}
	if clientPcap == "" {
		t.Fatalf("%s: no client or server pcap among %v", sc.Name, sc.Artifacts.Pcap)
	}
	oracle := tsharkCount(t, clientPcap, "tcp.flags.syn==1 && tcp.flags.ack==0 && tcp.analysis.retransmission")
	if float64(oracle) != got {
		t.Errorf("%s: tshark counts %d SYN retransmissions in %s, report says %v", sc.Name, oracle, clientPcap, got)
	}
	return got, clientPcap
}

// One sysctl edit moves the model and the kernel together: the expected
// count changes with tcp_syn_retries, and the observed count follows it.
func TestSysctlChangeMovesModelAndObservation(t *testing.T) {
	needRoot(t)
	needFlavor(t, "mysql")
	src, err := os.ReadFile("../../scenarios/lab-e/syn-dropped.yaml")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[float64]string{}
	for _, retries := range []string{"1", "2"} {
		t.Run("tcp_syn_retries="+retries, func(t *testing.T) {
			edited := strings.Replace(string(src), `net.ipv4.tcp_syn_retries: "3"`, `net.ipv4.tcp_syn_retries: "`+retries+`"`, 1)
			if edited == string(src) {
				t.Fatal("the scenario no longer sets tcp_syn_retries 3")
			}
			p := filepath.Join(t.TempDir(), "syn-dropped.yaml")
			os.WriteFile(p, []byte(edited), 0o644)
			r := labrun(t, "run", p)
			if r.code != 0 {
				t.Fatalf("want exit 0: %s", r)
			}
			if got := r.report.Scenarios[0].Environment.Sysctls["client"]["net.ipv4.tcp_syn_retries"]; got != retries {
				t.Errorf("report records tcp_syn_retries %q, want %q", got, retries)
			}
			for _, c := range r.report.Scenarios[0].Checks {
				if c.Type != "syn_retransmits" {
					continue
				}
				want, got := c.Expected["count"].(float64), c.Observed["count"].(float64)
				if want != got {
					t.Errorf("expected %v, observed %v", want, got)
				}
				if prev, ok := seen[want]; ok {
					t.Errorf("tcp_syn_retries %s and %s give the same expected count %v", prev, retries, want)
				}
				seen[want] = retries
			}
		})
	}
}

func TestWrongExpectationExits1WithEvidence(t *testing.T) {
	needRoot(t)
	needFlavor(t, "mysql")
	r := labrun(t, "run", "testdata/wrong-expectation.yaml")
	if r.code != 1 {
		t.Fatalf("want exit 1: %s", r)
	}
	for _, want := range []string{"expected", "observed", "frame"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, r.stdout)
		}
	}
	if !regexp.MustCompile(`(?m)^0 passed, 1 failed$`).MatchString(r.stdout) {
		t.Errorf("summary's last line:\n%s", r.stdout)
	}
}

func TestInvalidScenarioExits4AndTouchesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	files, _ := filepath.Glob("../../scenarios/testdata/invalid-*.yaml")
	if len(files) == 0 {
		t.Fatal("no invalid fixtures")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			before := snapshot(t)
			r := labrun(t, "run", f)
			if r.code != 4 {
				t.Fatalf("want exit 4: %s", r)
			}
			if !strings.Contains(r.stderr, filepath.Base(f)+":") {
				t.Errorf("error does not name the file: %s", r.stderr)
			}
			if after := snapshot(t); after.netns != before.netns {
				t.Errorf("a namespace was created: %s", after.netns)
			}
		})
	}
}

func TestNothingMatchedExits5(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	r := labrun(t, "run", "../../scenarios/lab-e", "--tag", "no-such-tag")
	if r.code != 5 {
		t.Fatalf("want exit 5: %s", r)
	}
}

// startRun starts labrun run on a scenario (and more arguments) and waits
// until its timeline has started.
func startRun(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(labrunBin, append([]string{"run", "--report-dir", t.TempDir(), "-v"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(out.String(), "step done") {
			return cmd, &out
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	t.Fatalf("the run never reached its timeline:\n%s", out.String())
	return nil, nil
}

// interrupt sends SIGINT to a run and requires exit code 2, which labrun
// gives only after its teardown.
func interrupt(t *testing.T, cmd *exec.Cmd, out *bytes.Buffer) {
	t.Helper()
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("want exit 2 after SIGINT, got %v:\n%s", err, out)
	}
}

func TestInterruptCleansUp(t *testing.T) {
	needRoot(t)
	needFlavor(t, "mysql")
	before := snapshot(t)
	cmd, out := startRun(t, "../../scenarios/lab-e/syn-dropped.yaml")
	interrupt(t, cmd, out)
	assertUnchanged(t, before)
}

func TestKillThenCleanup(t *testing.T) {
	needRoot(t)
	needFlavor(t, "mysql")
	before := snapshot(t)
	cmd, out := startRun(t, "../../scenarios/lab-e/syn-dropped.yaml")
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if after := snapshot(t); after.netns == before.netns {
		t.Fatalf("SIGKILL left nothing to clean: the test proves nothing\n%s", out)
	}
	d := labrun(t, "doctor")
	if !strings.Contains(d.stdout, "leftover") {
		t.Errorf("doctor does not list the leftovers:\n%s", d)
	}
	c := labrun(t, "cleanup")
	if c.code != 0 {
		t.Fatalf("cleanup: %s", c)
	}
	assertUnchanged(t, before)
}

// Every quick scenario of the library passes, on each flavor: checks that
// hold for one flavor only say so and are skipped on the other.
func TestQuickLibrary(t *testing.T) {
	needRoot(t)
	for _, flavor := range []string{"mysql", "mariadb"} {
		t.Run(flavor, func(t *testing.T) {
			needFlavor(t, flavor)
			before := snapshot(t)
			r := labrun(t, "run", "../../scenarios/", "--tag", "quick", "--flavor", flavor, "-j", "3")
			if r.code != 0 {
				t.Fatalf("want exit 0: %s", r)
			}
			for _, sc := range r.report.Scenarios {
				if sc.Environment.Server.Flavor != flavor || sc.Environment.Server.Version == "" {
					t.Errorf("%s: server %+v, want flavor %s with a version", sc.Name, sc.Environment.Server, flavor)
				}
				// Every cell of the SYN sweeps too: model = observed =
				// tshark's count in the saved pcap.
				checksPassAndSYNAgrees(t, sc)
			}
			assertUnchanged(t, before)
		})
	}
}

// BenchmarkScenarioOverhead measures what labrun adds to a scenario's
// timeline with a cached flavor, per flavor and engine: namespaces, server
// start from the template, captures (setup), analysis, and teardown (the
// server's stop included). The budget is 1 s for Oracle MySQL on
// the process engine.
func BenchmarkScenarioOverhead(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: scenarios create network namespaces")
	}
	for _, engine := range []string{"process", "container"} {
		for _, flavor := range []string{"mysql", "mariadb"} {
			b.Run(flavor+"/"+engine, func(b *testing.B) {
				if _, err := server.Find(flavor); err != nil {
					b.Skipf("flavor %s not built", flavor)
				}
				if engine == "container" {
					if _, err := server.DockerStatus(context.Background()); err != nil {
						b.Skipf("no Docker engine: %v", err)
					}
				}
				var overhead, setup, analysis, teardown float64
				for i := 0; i < b.N; i++ {
					dir := b.TempDir()
					out, err := exec.Command(labrunBin, "run", "testdata/overhead.yaml", "--flavor", flavor, "--engine", engine, "--report-dir", dir).CombinedOutput()
					if err != nil {
						b.Fatalf("%v\n%s", err, out)
					}
					var rep reportFile
					data, _ := os.ReadFile(filepath.Join(dir, "report.json"))
					json.Unmarshal(data, &rep)
					sc := rep.Scenarios[0]
					overhead += sc.DurationS - sc.Phases.TimelineS
					setup += sc.Phases.SetupS
					analysis += sc.Phases.AnalysisS
					teardown += sc.Phases.TeardownS
				}
				n := float64(b.N)
				b.ReportMetric(overhead/n, "overhead-s/op")
				b.ReportMetric(setup/n, "setup-s/op")
				b.ReportMetric(analysis/n, "analysis-s/op")
				b.ReportMetric(teardown/n, "teardown-s/op")
			})
		}
	}
}

// A netem scenario runs where the kernel has sch_netem and is skipped, with
// the reason, where it does not (this workplace's kernel).
func TestNetemScenarioRunsOrSaysWhy(t *testing.T) {
	needRoot(t)
	needFlavor(t, "mysql")
	before := snapshot(t)
	r := labrun(t, "run", "testdata/netem-delay.yaml")
	if r.code != 0 {
		t.Fatalf("want exit 0: %s", r)
	}
	d := labrun(t, "doctor")
	if strings.Contains(d.stdout, "no  netem qdisc") {
		if !strings.Contains(r.stdout, "needs sch_netem") || !strings.Contains(r.stdout, "0 passed, 0 failed, 1 skipped") {
			t.Errorf("no sch_netem here: the run must be skipped with that reason:\n%s", r)
		}
	} else if !regexp.MustCompile(`(?m)^1 passed, 0 failed$`).MatchString(r.stdout) {
		t.Errorf("sch_netem present: the scenario must pass:\n%s", r)
	}
	assertUnchanged(t, before)
}
