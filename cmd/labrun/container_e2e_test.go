package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/labrun/labrun/journal"
	"github.com/labrun/labrun/server"
)

// The container engine's end-to-end tier: the same scenarios, with the
// server in a Docker container whose network namespace is the lab host's.

// needContainerEngine skips unless Docker's engine answers and the local
// images of the flavors exist, naming what is missing.
func needContainerEngine(t *testing.T, flavors ...string) {
	t.Helper()
	needRoot(t)
	ctx := context.Background()
	if _, err := server.DockerStatus(ctx); err != nil {
		t.Skipf("needs Docker's engine: %s not reachable (%v)", journal.DockerSocket(), err)
	}
	for _, f := range flavors {
		needFlavor(t, f)
		if _, err := server.FindDockerImage(ctx, f); err != nil {
			t.Skipf("needs the local image of %s: run 'labrun images build %s --docker' (%v)", f, f, err)
		}
	}
}

// labelled lists the Docker objects that carry labrun's run label.
func labelled(t *testing.T) []journal.DockerObject {
	t.Helper()
	objs, err := journal.LabelledObjects(context.Background())
	if err != nil {
		t.Fatalf("list Docker objects: %v", err)
	}
	return objs
}

// assertNoDockerLeft fails if any container, volume or network of a labrun
// run exists, besides what assertUnchanged checks (namespaces, links,
// iptables, sysctls, server processes, journals, run directories).
func assertNoDockerLeft(t *testing.T) {
	t.Helper()
	for _, o := range labelled(t) {
		t.Errorf("%s %s of run %s left (%s)", o.Kind, o.Name, o.RunID, o.State)
	}
}

// serverInfo is environment.server of each scenario of a report.
func serverInfo(t *testing.T, dir string) map[string]reportServer {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Scenarios []struct {
			Name        string `json:"name"`
			Environment struct {
				Server reportServer `json:"server"`
			} `json:"environment"`
		} `json:"scenarios"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	out := map[string]reportServer{}
	for _, s := range rep.Scenarios {
		out[s.Name] = s.Environment.Server
	}
	return out
}

type reportServer struct {
	Flavor  string `json:"flavor"`
	Version string `json:"version"`
	Engine  string `json:"engine"`
	Image   string `json:"image"`
}

// Every quick scenario of Lab E passes with the server in a container, on
// both flavors, in one run (-j 3), and nothing of the runs remains. (Lab E
// is the one about the network stack alone; the process engine's
// TestQuickLibrary runs the whole library.)
func TestQuickLibraryContainer(t *testing.T) {
	needContainerEngine(t, "mysql", "mariadb")
	before := snapshot(t)
	r := labrun(t, "run", "../../scenarios/lab-e", "--tag", "quick", "--flavor", "mysql,mariadb", "--engine", "container", "-j", "3")
	if r.code != 0 {
		t.Fatalf("want exit 0: %s", r)
	}
	infos := serverInfo(t, r.dir)
	flavorsSeen := map[string]int{}
	for _, sc := range r.report.Scenarios {
		info := infos[sc.Name]
		flavorsSeen[info.Flavor]++
		want := "[" + info.Flavor + "/container]"
		if !strings.HasSuffix(sc.Name, want) {
			t.Errorf("%s: name does not end with %s", sc.Name, want)
		}
		if info.Engine != "container" || info.Version == "" || info.Image != server.LocalImage(info.Flavor, info.Version) {
			t.Errorf("%s: server %+v, want engine container and image labrun/FLAVOR:VERSION", sc.Name, info)
		}
		for _, c := range sc.Checks {
			if !c.Passed {
				t.Errorf("%s: %s failed", sc.Name, c.Name)
			}
		}
	}
	if flavorsSeen["mysql"] == 0 || flavorsSeen["mysql"] != flavorsSeen["mariadb"] {
		t.Errorf("instances per flavor %v, want the same number of mysql and mariadb", flavorsSeen)
	}
	assertUnchanged(t, before)
	assertNoDockerLeft(t)
}

// The same scenario on both engines, in one run: the kernel does the same
// thing whichever way the server is isolated, so the SYN retransmission
// count is the same, and equal to the model's and to tshark's.
func TestSYNDroppedSameOnBothEngines(t *testing.T) {
	needContainerEngine(t, "mysql")
	before := snapshot(t)
	r := labrun(t, "run", "../../scenarios/lab-e/syn-dropped.yaml", "--engine", "process,container", "-j", "2")
	if r.code != 0 {
		t.Fatalf("want exit 0: %s", r)
	}
	if len(r.report.Scenarios) != 2 {
		t.Fatalf("want 2 instances, got %d: %s", len(r.report.Scenarios), r)
	}
	infos := serverInfo(t, r.dir)
	counts := map[string]float64{}
	for _, sc := range r.report.Scenarios {
		counts[infos[sc.Name].Engine], _ = synCountAgrees(t, sc)
	}
	if len(counts) != 2 || counts["process"] != counts["container"] {
		t.Errorf("SYN retransmissions per engine %v, want the same count on process and container", counts)
	}
	assertUnchanged(t, before)
	assertNoDockerLeft(t)
}

func TestContainerInterruptCleansUp(t *testing.T) {
	needContainerEngine(t, "mysql")
	before := snapshot(t)
	cmd, out := startRun(t, "../../scenarios/lab-e/syn-dropped.yaml", "--engine", "container")
	if len(labelled(t)) == 0 {
		t.Fatalf("no container while the run is in its timeline: the test proves nothing\n%s", out)
	}
	interrupt(t, cmd, out)
	assertUnchanged(t, before)
	assertNoDockerLeft(t)
}

func TestContainerKillThenCleanup(t *testing.T) {
	needContainerEngine(t, "mysql")
	before := snapshot(t)
	cmd, out := startRun(t, "../../scenarios/lab-e/syn-dropped.yaml", "--engine", "container")
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	left := labelled(t)
	if len(left) == 0 {
		t.Fatalf("SIGKILL left no container: the test proves nothing\n%s", out)
	}
	d := labrun(t, "doctor")
	for _, o := range left {
		if !strings.Contains(d.stdout, o.Kind+" "+o.Name) {
			t.Errorf("doctor does not list %s %s:\n%s", o.Kind, o.Name, d)
		}
	}
	if !strings.Contains(d.stdout, "ok  docker engine") {
		t.Errorf("doctor does not say Docker's engine is reachable:\n%s", d)
	}
	c := labrun(t, "cleanup")
	if c.code != 0 {
		t.Fatalf("cleanup: %s", c)
	}
	assertUnchanged(t, before)
	assertNoDockerLeft(t)
}

// A run on the container engine without Docker's engine stops before it
// touches anything, and says what is missing.
func TestContainerWithoutEngineExits3(t *testing.T) {
	needRoot(t)
	before := snapshot(t)
	cmd := exec.Command(labrunBin, "run", "../../scenarios/lab-e/syn-dropped.yaml", "--engine", "container", "--report-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+filepath.Join(t.TempDir(), "no-docker.sock"))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("want exit 3, got %v:\n%s", err, out)
	}
	if !strings.Contains(string(out), "needs Docker's engine") {
		t.Errorf("the error does not say Docker's engine is missing:\n%s", out)
	}
	if after := snapshot(t); after.netns != before.netns {
		t.Errorf("a namespace was created: %s", after.netns)
	}
}

// BenchmarkServerStartToReady runs the overhead scenario on each engine and
// flavor with cached images and root filesystems, and reports the server's
// start-to-ready time as labrun logs it (exec, or the container's creation,
// to the first login over the lab network) and the whole setup phase.
func BenchmarkServerStartToReady(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: scenarios create network namespaces")
	}
	for _, engine := range []string{"process", "container"} {
		for _, flavor := range []string{"mysql", "mariadb"} {
			b.Run(engine+"/"+flavor, func(b *testing.B) {
				if _, err := server.Find(flavor); err != nil {
					b.Skipf("flavor %s not built", flavor)
				}
				if engine == "container" {
					if _, err := server.FindDockerImage(context.Background(), flavor); err != nil {
						b.Skipf("needs Docker's engine and the local image of %s: %v", flavor, err)
					}
				}
				var ready, setup, teardown float64
				for i := 0; i < b.N; i++ {
					dir := b.TempDir()
					out, err := exec.Command(labrunBin, "run", "testdata/overhead.yaml", "--flavor", flavor,
						"--engine", engine, "--report-dir", dir, "-v").CombinedOutput()
					if err != nil {
						b.Fatalf("%v\n%s", err, out)
					}
					ready += startToReady(b, string(out))
					var rep reportFile
					data, _ := os.ReadFile(filepath.Join(dir, "report.json"))
					json.Unmarshal(data, &rep)
					setup += rep.Scenarios[0].Phases.SetupS
					teardown += rep.Scenarios[0].Phases.TeardownS
				}
				n := float64(b.N)
				b.ReportMetric(ready/n*1000, "ms-ready/op")
				b.ReportMetric(setup/n, "setup-s/op")
				b.ReportMetric(teardown/n, "teardown-s/op")
			})
		}
	}
}

// startToReady reads the "server ready" log line's start_to_ready, in
// seconds.
func startToReady(b *testing.B, log string) float64 {
	b.Helper()
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, `msg="server ready"`) {
			continue
		}
		_, v, ok := strings.Cut(line, "start_to_ready=")
		if !ok {
			break
		}
		v, _, _ = strings.Cut(v, " ")
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("start_to_ready %q: %v", v, err)
		}
		return d.Seconds()
	}
	b.Fatalf("no server ready line in the log:\n%s", log)
	return 0
}

// A scenario's servers list runs one instance per server, each named by
// it, with the entry's variables over the server's.
func TestServersMatrix(t *testing.T) {
	needContainerEngine(t, "mariadb")
	needFlavor(t, "mysql")
	before := snapshot(t)
	r := labrun(t, "run", "testdata/matrix.yaml", "-j", "2")
	if r.code != 0 {
		t.Fatalf("want exit 0: %s", r)
	}
	infos := serverInfo(t, r.dir)
	want := map[string]reportServer{
		"matrix [mysql/process]":     {Flavor: "mysql", Engine: "process"},
		"matrix [mariadb/container]": {Flavor: "mariadb", Engine: "container"},
	}
	if len(infos) != len(want) {
		t.Errorf("instances %v, want %v", infos, want)
	}
	for name, w := range want {
		got, ok := infos[name]
		if !ok || got.Flavor != w.Flavor || got.Engine != w.Engine || got.Version == "" {
			t.Errorf("%s: server %+v, want %+v with a version", name, got, w)
		}
	}
	for _, sc := range r.report.Scenarios {
		ran := 0
		for _, c := range sc.Checks {
			if !c.Passed {
				t.Errorf("%s: %s failed", sc.Name, c.Name)
			}
			if !c.Skipped {
				ran++
			}
		}
		if ran != 2 {
			t.Errorf("%s: %d checks ran, want 2 (one is for the other flavor)", sc.Name, ran)
		}
	}
	assertUnchanged(t, before)
	assertNoDockerLeft(t)
}
