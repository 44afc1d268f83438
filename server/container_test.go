package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/labrun/labrun/journal"
	"github.com/labrun/labrun/netem"
)

func TestFlavorOfImage(t *testing.T) {
	tests := []struct{ ref, want string }{
		{"mysql:8.4", "mysql"},
		{"mysql", "mysql"},
		{"docker.io/library/mariadb:11.4", "mariadb"},
		{"labrun/mariadb:10.11.18", "mariadb"},
		{"labrun/mysql:9.7.4", "mysql"},
		{"registry.example:5000/team/mysql-server:8.0", "mysql"},
		{"mariadb@sha256:0123", "mariadb"},
		{"postgres:16", ""},
		// The registry's port is not a tag.
		{"localhost:5000/percona:8", ""},
	}
	for _, tt := range tests {
		if got := FlavorOfImage(tt.ref); got != tt.want {
			t.Errorf("FlavorOfImage(%q) = %q, want %q", tt.ref, got, tt.want)
		}
	}
}

func TestValidateEngine(t *testing.T) {
	j := &journal.Journal{}
	attach := func(string) (netns.NsHandle, error) { return netns.None(), nil }
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"process", Config{Engine: EngineProcess}, ""},
		{"default", Config{}, ""},
		{"container", Config{Engine: EngineContainer, Attach: attach}, ""},
		{"container without attach", Config{Engine: EngineContainer}, "attach: required"},
		{"unknown", Config{Engine: "vm"}, `engine "vm": unknown engine (want container, process)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg
			c.RunID, c.Flavor, c.Address, c.Port, c.Journal = "r1", "mysql", testAddr, 3306, j
			err := c.validate()
			if tt.want == "" && err != nil {
				t.Fatalf("validate() = %v", err)
			}
			if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

// needDockerImage skips unless Docker's engine answers and the flavor's
// local image exists (imported on demand with LABRUN_BUILD_IMAGES=1).
func needDockerImage(tb testing.TB, flavor string) *DockerImage {
	tb.Helper()
	if testing.Short() {
		tb.Skip("-short: the container engine needs Docker's engine and root")
	}
	needImage(tb, flavor)
	ctx := context.Background()
	if _, err := DockerStatus(ctx); err != nil {
		tb.Skipf("needs Docker's engine: %s not reachable (%v)", journal.DockerSocket(), err)
	}
	img, err := FindDockerImage(ctx, flavor)
	if errors.Is(err, ErrNoImage) && os.Getenv("LABRUN_BUILD_IMAGES") == "1" {
		img, err = BuildDocker(ctx, flavor, nil)
	}
	if errors.Is(err, ErrNoImage) {
		tb.Skipf("image of %s not imported: run 'labrun images build %s --docker' (%v)", flavor, flavor, err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return img
}

// containerLab is a topology with one host, client, up for the test; the
// server's host is plugged in by the container engine through attach.
type containerLab struct {
	topo   *netem.Topology
	j      *journal.Journal
	runID  string
	client *netem.Host
	addr   netip.Addr
}

var containerSubnet = netip.MustParsePrefix("10.89.249.0/24")

func newContainerLab(tb testing.TB) *containerLab {
	tb.Helper()
	l := &containerLab{runID: randomName("t")}
	l.j = newJournal(tb, l.runID)
	topo, err := netem.Up(netem.Spec{RunID: l.runID, Subnet: containerSubnet,
		Hosts: []netem.HostSpec{{Name: "client", Address: netip.MustParseAddr("10.89.249.10")}}}, l.j)
	tb.Cleanup(func() {
		if err := topo.Down(); err != nil {
			tb.Errorf("Down: %v", err)
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
	l.topo, l.client = topo, topo.Hosts["client"]
	l.addr = netip.MustParseAddr("10.89.249.11")
	return l
}

func (l *containerLab) config(flavor string) Config {
	return Config{RunID: l.runID, Flavor: flavor, Engine: EngineContainer, Host: "server",
		Address: l.addr, Port: 3306, Journal: l.j,
		Attach: func(nsPath string) (netns.NsHandle, error) {
			h, err := l.topo.Plug(netem.HostSpec{Name: "server", Address: l.addr, NSPath: nsPath})
			if err != nil {
				return netns.None(), err
			}
			return h.NS, nil
		}}
}

func TestContainerStartStop(t *testing.T) {
	for _, flavor := range Flavors() {
		t.Run(flavor, func(t *testing.T) {
			dimg := needDockerImage(t, flavor)
			l := newContainerLab(t)
			logDir := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cfg := l.config(flavor)
			cfg.LogDir = logDir
			cfg.Variables = map[string]string{"max_connections": "42"}
			s, err := Start(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Stop() })
			t.Logf("%s in container %s (%s): ready %s after create", s, s.Container, s.ImageRef, s.StartToReady.Round(time.Millisecond))
			if s.Engine != EngineContainer || s.ImageRef != dimg.Ref || s.Version != dimg.Version {
				t.Errorf("engine %q image %q version %q; want container, %s, %s", s.Engine, s.ImageRef, s.Version, dimg.Ref, dimg.Version)
			}

			// Journal: the run directory, then the container, then the
			// server host's namespace name (newest first).
			pending, err := journal.Pending(l.j.Dir)
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, e := range pending {
				what := e.Name
				if e.Path != "" {
					what = e.Path
				}
				kinds = append(kinds, e.Kind+" "+what)
			}
			want := []string{"netns " + netem.NSName(l.runID, "server"), "container " + s.Container, "dir " + s.RunDir}
			if got := strings.Join(kinds[:min(3, len(kinds))], "\n"); got != strings.Join(want, "\n") {
				t.Errorf("journal, newest first:\n%s\nwant first:\n%s", strings.Join(kinds, "\n"), strings.Join(want, "\n"))
			}
			if !journal.Exists(journal.Entry{Kind: journal.KindContainer, Name: s.Container}) {
				t.Errorf("container %s does not exist for the journal", s.Container)
			}

			// The server's socket lives in the container's namespace, which
			// is the lab host's: mysqld is PID 1 there and listens on the
			// lab address only.
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", s.PID))
			if c := strings.TrimSpace(string(comm)); c != "mysqld" && c != "mariadbd" {
				t.Errorf("container's first process is %q, want the server", c)
			}

			db, err := s.OpenDB(l.client.NS)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var version, maxConn, host string
			if err := db.QueryRowContext(ctx, "SELECT VERSION(), @@max_connections, SUBSTRING_INDEX(USER(), '@', -1)").Scan(&version, &maxConn, &host); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(version, dimg.Version) || maxConn != "42" || host != "10.89.249.10" {
				t.Errorf("VERSION() %q, max_connections %q, client host %q; want %s…, 42, the client's lab address", version, maxConn, host, dimg.Version)
			}
			db.Close()

			// The CLI client is the root filesystem's, from the client's
			// namespace, as with the process engine.
			checkCLI(t, s, l.client.NS)

			stopCleanly(t, s, l.j.Dir)
			if journal.Exists(journal.Entry{Kind: journal.KindContainer, Name: s.Container}) {
				t.Errorf("container %s still there after Stop", s.Container)
			}
		})
	}
}

// A server that dies at once in its container is reported with its log,
// and neither the container nor the run directory stays.
func TestContainerStartExits(t *testing.T) {
	flavor := "mysql"
	needDockerImage(t, flavor)
	l := newContainerLab(t)
	cfg := l.config(flavor)
	cfg.Variables = map[string]string{"no_such_option_xyz": "1"}
	_, err := Start(context.Background(), cfg)
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "no_such_option_xyz") {
		t.Fatalf("Start() error = %v, want ErrExited naming the bad option", err)
	}
	name := ContainerName(l.runID, "server")
	if journal.Exists(journal.Entry{Kind: journal.KindContainer, Name: name}) {
		t.Errorf("container %s left", name)
	}
	pending, _ := journal.Pending(l.j.Dir)
	for _, e := range pending {
		if e.Kind != journal.KindNetns {
			t.Errorf("journal still lists %+v", e)
		}
	}
}

// BenchmarkContainerStartToReady reports, per flavor, the time from the
// container's creation to the first successful login over the lab link,
// with the local image cached, and the time Stop takes after
// holdBeforeStop; BenchmarkStartToReady is the same for the process engine.
func BenchmarkContainerStartToReady(b *testing.B) {
	for _, flavor := range Flavors() {
		b.Run(flavor, func(b *testing.B) {
			needDockerImage(b, flavor)
			var ready, stop time.Duration
			n := 0
			for b.Loop() {
				b.StopTimer()
				l := newContainerLab(b)
				b.StartTimer()
				s, err := Start(context.Background(), l.config(flavor))
				if err != nil {
					b.Fatal(err)
				}
				ready += s.StartToReady
				b.StopTimer()
				holdBeforeStop()
				b.StartTimer()
				t0 := time.Now()
				if err := s.Stop(); err != nil {
					b.Fatal(err)
				}
				stop += time.Since(t0)
				n++
				b.StopTimer()
				l.topo.Down()
				b.StartTimer()
			}
			b.ReportMetric(float64(ready.Milliseconds())/float64(n), "ms-ready/op")
			b.ReportMetric(float64(stop.Milliseconds())/float64(n), "ms-stop/op")
		})
	}
}
