package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/labrun/labrun/actions"
	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/checks"
	"github.com/labrun/labrun/client"
	"github.com/labrun/labrun/iofault"
	"github.com/labrun/labrun/journal"
	"github.com/labrun/labrun/netem"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/scenarios"
	"github.com/labrun/labrun/server"
	"github.com/labrun/labrun/tcpmodel"
	"github.com/vishvananda/netns"
)

// Sentinel errors that decide the exit code.
var (
	ErrInfra       = errors.New("setup error")
	ErrInterrupted = errors.New("interrupted")
	ErrCleanup     = errors.New("cleanup incomplete")
)

// Options tune a run.
type Options struct {
	// ReportDir receives the artifacts: <dir>/<scenario>/<host>.pcap, logs.
	ReportDir string
	// Slow scales every timing tolerance; 1 on a normal machine.
	Slow float64
	// Flavor and Engine override the scenario's server.
	Flavor, Engine string
	Log            *slog.Logger
}

// run is one scenario in progress.
type run struct {
	sc     *scenarios.Scenario
	opt    Options
	id     string
	log    *slog.Logger
	j      *journal.Journal
	topo   *netem.Topology
	srv    *server.Server
	rules  map[string]*netem.Rules
	caps   map[string]*capture.Capture
	pcaps  map[string]string
	samp   []*capture.Sampler
	art    string
	flavor string
	// engine and image are the server's: image is the container engine's
	// image when the scenario names one.
	engine, image string

	sysctls map[string]map[string]string
	t0      time.Time
	mu      sync.Mutex
	steps   map[string]*checks.Step
	samples []capture.Sample
	counts  []*netem.Counter

	// sessions are the named client connections open across steps.
	kernelRel string // read once, for the report and the findings

	sessions map[string]*client.Session
	plist    *client.ProcesslistSampler
	threads  []client.ServerSample

	// disk is the server's own disk (server.disk), faults the disk faults
	// in force, iosamp and io the disk's IO sampler and its samples.
	disk   *iofault.Disk
	faults *actions.Faults
	iosamp *iofault.Sampler
	io     []iofault.IOSample

	// Lab B's observers (labb.go): socket censuses and conntrack samplers,
	// and what they saw.
	census      []*capture.Census
	censusEvery []time.Duration
	censusRes   []*capture.CensusResult
	ctSamp      []*conntrackSampler
	conntrack   []netem.ConntrackSample
}

// NewRunID returns a short random run identifier: namespace names carry it
// and must stay short.
func NewRunID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Run executes one scenario and returns its report. The error is non-nil
// for an infrastructure problem (ErrInfra), an interruption
// (ErrInterrupted) or an incomplete teardown (ErrCleanup); failed checks are
// in the report, not in the error.
func Run(ctx context.Context, sc *scenarios.Scenario, opt Options) (*reports.Scenario, error) {
	if opt.Slow <= 0 {
		opt.Slow = 1
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	r := &run{sc: sc, opt: opt, id: NewRunID(), rules: map[string]*netem.Rules{}, caps: map[string]*capture.Capture{},
		pcaps: map[string]string{}, steps: map[string]*checks.Step{}, sysctls: map[string]map[string]string{},
		sessions: map[string]*client.Session{}, faults: actions.NewFaults()}
	r.kernelRel = kernelRelease()
	r.log = opt.Log.With("scenario", sc.Name, "run", r.id)
	r.flavor, r.engine, r.image = sc.Server.Flavor, sc.Server.Engine, sc.Server.Image
	if opt.Flavor != "" && opt.Flavor != r.flavor {
		// The scenario's image is of its own flavor.
		r.flavor, r.image = opt.Flavor, ""
	}
	if opt.Engine != "" && opt.Engine != r.engine {
		r.engine, r.image = opt.Engine, ""
	}
	if r.engine == "" {
		r.engine = server.EngineProcess
	}
	rep := &reports.Scenario{Name: sc.Name, File: sc.File, Tags: sc.Tags, Source: sourceMap(sc.Source),
		Environment: reports.Environment{Kernel: r.kernelRel, Sysctls: r.sysctls, Hosts: map[string]string{}},
		Checks:      []*reports.Check{}, Artifacts: reports.Artifacts{Pcap: []string{}}}
	rep.Environment.Server = reports.ServerInfo{Flavor: r.flavor, Engine: r.engine, Image: r.image}
	if sc.Cell != nil {
		// The cell as its name shows it: an axis's labels stand for their
		// values (a whole iptables rule); scenario.yaml has the values.
		rep.Cell = &reports.CellInfo{Matrix: sc.Parent, Axes: sc.Cell.Axes, Values: sc.Cell.Names()}
	}
	started := time.Now()
	// A machine without what a step or check needs (sch_netem for the
	// netem action) cannot run the scenario at all: it is skipped before
	// anything is created, and the reason says why.
	if why := sc.Missing(); why != "" {
		rep.Skipped, rep.Passed = true, true
		rep.SkipReason = why
		return rep, nil
	}

	var runErr error
	err := r.setup(ctx, rep)
	rep.Phases.SetupS = since(started)
	if err != nil {
		runErr = err
	} else {
		tl := time.Now()
		runErr = r.timeline(ctx)
		// A fault without a duration or an end step lasts as long as the
		// timeline.
		if err := r.faults.EndAll("end of timeline"); err != nil && runErr == nil {
			runErr = infra("end disk faults: %w", err)
		}
		if runErr == nil {
			// Still the experiment: the kernel goes on after the clients.
			r.watchModel(ctx)
		}
		rep.Phases.TimelineS = since(tl)
		an := time.Now()
		r.stopObservers()
		if runErr == nil || !errors.Is(runErr, ErrInterrupted) {
			r.analyze(rep)
			markSkipped(rep, sc)
		}
		rep.Phases.AnalysisS = since(an)
	}
	td := time.Now()
	cerr := r.teardown()
	if r.srv != nil && r.srv.LogCopy != "" {
		// The server's error log, copied (redacted) when it stopped.
		rep.Artifacts.Logs = append(rep.Artifacts.Logs, r.rel(r.srv.LogCopy))
	}
	rep.Phases.TeardownS = since(td)
	rep.DurationS = since(started)

	// A timeline that overran its limit is a failed scenario, not a broken
	// machine: it is reported as a failed check, with the unfinished steps.
	if errors.Is(runErr, errLimit) {
		rep.Checks = append(rep.Checks, &reports.Check{Name: "timeline finishes within the limit", Type: "timeline",
			Expected: map[string]any{"limit_s": sc.Limit.D().Seconds()}, Observed: map[string]any{"error": runErr.Error()},
			Tolerance: "exact", Evidence: []string{}, Message: runErr.Error()})
		runErr = nil
	}
	if runErr != nil {
		rep.Error = runErr.Error()
	}
	passed, why := checks.Verdict(rep.Checks, r.flavor)
	rep.Passed = runErr == nil && passed
	if runErr == nil && why != "" && len(rep.Checks) > 0 {
		rep.Error = why
	}
	if cerr != nil {
		if runErr == nil {
			runErr = cerr
		} else {
			runErr = errors.Join(runErr, cerr)
		}
		rep.Error = runErr.Error()
	}
	if r.srv != nil {
		// The password lives in a 0600 defaults file, never on a command
		// line; this catches an error message or log line that echoes it.
		(&reports.Report{Scenarios: []*reports.Scenario{rep}}).Redact(r.srv.Password)
	}
	return rep, runErr
}

// markSkipped marks the report's steps that the scenario skips.
func markSkipped(rep *reports.Scenario, sc *scenarios.Scenario) {
	for _, st := range rep.Steps {
		for _, s := range sc.Timeline {
			if s.Name == st.Name && s.Skip {
				st.Skipped = true
			}
		}
	}
}

// observerGrace is the wait before the observers stop.
const observerGrace = 50 * time.Millisecond

func since(t time.Time) float64 { return round3(time.Since(t).Seconds()) }

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

// sourceMap returns the source as a report map.
func sourceMap(s scenarios.Source) map[string]string {
	m := map[string]string{}
	for k, v := range map[string]string{"article": s.Article, "title": s.Title, "kernel": s.Kernel, "server": s.Server} {
		if v != "" {
			m[k] = v
		}
	}
	return m
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func infra(format string, args ...any) error {
	return fmt.Errorf("%w: %w", ErrInfra, fmt.Errorf(format, args...))
}

// hostNames returns the scenario's host names, sorted.
func hostNames(s *scenarios.Scenario) []string {
	names := make([]string, 0, len(s.Hosts))
	for n := range s.Hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// netSpec is the scenario's lab network as netem builds it: the single
// network, or a routed one with its networks (bridges in sorted name
// order) and its routers (sorted by name: the first with a link on a
// network is its gateway). hosts receives each host's address, a router's
// as its links' addresses joined by ", ".
func netSpec(runID string, sc *scenarios.Scenario, hosts map[string]string) (netem.Spec, error) {
	spec := netem.Spec{RunID: runID}
	if !sc.Routed() {
		subnet, err := netip.ParsePrefix(sc.Network.Subnet)
		if err != nil {
			return spec, fmt.Errorf("subnet: %w", err)
		}
		spec.Subnet = subnet
	}
	for _, n := range sc.NetworkNames() {
		p, err := sc.Subnet(n)
		if err != nil {
			return spec, fmt.Errorf("network %s: %w", n, err)
		}
		spec.Networks = append(spec.Networks, netem.NetworkSpec{Name: n, Subnet: p})
	}
	for _, n := range hostNames(sc) {
		h := sc.Hosts[n]
		if !h.Router() {
			hs, err := hostSpec(sc, n)
			if err != nil {
				return spec, err
			}
			hosts[n] = hs.Address.String()
			spec.Hosts = append(spec.Hosts, hs)
			continue
		}
		rs := netem.RouterSpec{Name: n}
		var addrs []string
		for i, l := range h.Links {
			a, err := netip.ParseAddr(l.Address)
			if err != nil {
				return spec, fmt.Errorf("router %s eth%d address: %w", n, i, err)
			}
			extra, err := parseAddrs(l.Extra)
			if err != nil {
				return spec, fmt.Errorf("router %s eth%d extra: %w", n, i, err)
			}
			rs.Links = append(rs.Links, netem.LinkSpec{Network: l.Network, Address: a, Extra: extra})
			addrs = append(addrs, a.String())
		}
		hosts[n] = strings.Join(addrs, ", ")
		spec.Routers = append(spec.Routers, rs)
	}
	return spec, nil
}

// hostSpec is a host (not a router) as netem plugs it.
func hostSpec(sc *scenarios.Scenario, name string) (netem.HostSpec, error) {
	h := sc.Hosts[name]
	a, err := netip.ParseAddr(h.Address)
	if err != nil {
		return netem.HostSpec{}, fmt.Errorf("host %s address: %w", name, err)
	}
	extra, err := parseAddrs(h.Extra)
	if err != nil {
		return netem.HostSpec{}, fmt.Errorf("host %s extra: %w", name, err)
	}
	return netem.HostSpec{Name: name, Address: a, Network: h.Network, Extra: extra}, nil
}

func parseAddrs(ss []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range ss {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func (r *run) setup(ctx context.Context, rep *reports.Scenario) error {
	sc := r.sc
	// The local image and the CLI client come from the flavor's root
	// filesystem; an image from a registry needs it only for the cli client.
	if img, err := server.Find(r.flavor); err == nil {
		rep.Environment.Server.Version = img.Version
	} else if r.engine == server.EngineProcess || r.image == "" {
		return infra("server %s: %w", r.flavor, err)
	}
	container := r.engine == server.EngineContainer
	j, err := journal.Create(r.id)
	if err != nil {
		return infra("%w", err)
	}
	r.j = j
	spec, err := netSpec(r.id, sc, rep.Environment.Hosts)
	if err != nil {
		return infra("%w", err)
	}
	if container {
		// The container's namespace is the host; it is plugged in once
		// the container runs (attach below).
		spec.Hosts = slices.DeleteFunc(spec.Hosts, func(hs netem.HostSpec) bool { return hs.Name == sc.Server.Host })
	}
	topo, err := netem.Up(spec, j)
	r.topo = topo
	if err != nil {
		return infra("network: %w", err)
	}
	for _, n := range hostNames(sc) {
		if h, ok := topo.Hosts[n]; ok {
			if err := r.hostSetup(n, h); err != nil {
				return infra("%w", err)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrInterrupted, err)
	}
	r.art = filepath.Join(r.opt.ReportDir, sanitize(sc.Name))
	if r.opt.ReportDir == "" {
		r.art = filepath.Join(os.TempDir(), "labrun-"+r.id)
	}
	if err := os.MkdirAll(r.art, 0o755); err != nil {
		return infra("artifacts: %w", err)
	}
	cfg := server.Config{RunID: r.id, Flavor: r.flavor, Port: sc.Server.Port, Variables: sc.Server.Variables,
		Journal: j, LogDir: r.art, Engine: r.engine, Image: r.image, Host: sc.Server.Host}
	if d := sc.Server.Disk; d != nil {
		// The data directory gets a filesystem of its own before the
		// template is copied in; the container engine bind-mounts the
		// run directory, and this mount with it.
		cfg.PrepareDataDir = func(dir string) error {
			disk, err := iofault.NewDisk(j, r.id, "data", dir, iofault.DiskSpec{Size: int64(d.Size), FUSE: d.FUSE})
			r.disk = disk
			if err == nil {
				fsName := "ext4"
				if d.FUSE {
					fsName = "ext4 via FUSE passthrough"
				}
				rep.Environment.Disk = &reports.DiskInfo{Device: disk.Dev, Size: int64(d.Size), Filesystem: fsName}
			}
			return err
		}
	}
	if container {
		hs, err := hostSpec(sc, sc.Server.Host)
		if err != nil {
			return infra("%w", err)
		}
		cfg.Address = hs.Address
		cfg.Attach = func(nsPath string) (netns.NsHandle, error) {
			hs.NSPath = nsPath
			h, err := topo.Plug(hs)
			if err != nil {
				return netns.None(), err
			}
			return h.NS, r.hostSetup(sc.Server.Host, h)
		}
	} else {
		sh := topo.Hosts[sc.Server.Host]
		cfg.NS, cfg.Address = sh.NS, sh.Address
	}
	srv, err := server.Start(ctx, cfg)
	r.srv = srv
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", ErrInterrupted, err)
		}
		return infra("server: %w", err)
	}
	r.log.Info("server ready", "server", srv.String(), "engine", srv.Engine, "image", srv.ImageRef,
		"start_to_ready", srv.StartToReady.Round(time.Millisecond))
	rep.Environment.Server.Version = srv.Version
	rep.Environment.Server.Image = srv.ImageRef
	sh := topo.Hosts[sc.Server.Host]
	if len(sc.Server.Setup) > 0 {
		res := client.Run(ctx, sh.NS, r.Target(), client.Spec{Kind: client.KindGo, SQL: sc.Server.Setup}, j)
		if res.Failed() {
			return infra("server setup SQL: %s", res.Error)
		}
	}
	for _, n := range sc.Captures {
		h := topo.Hosts[n]
		// A host's eth0 is <host>.pcap; a router's every link is
		// <host>-<iface>.pcap, under that name in the analyses too.
		links := []struct{ name, iface string }{{n, netem.Iface}}
		if h.Router {
			links = links[:0]
			for _, l := range h.Links {
				links = append(links, struct{ name, iface string }{n + "-" + l.Iface, l.Iface})
			}
		}
		for _, l := range links {
			p := filepath.Join(r.art, l.name+".pcap")
			c, err := capture.Start(h.NS, l.iface, p)
			if err != nil {
				return infra("capture on %s %s: %w", n, l.iface, err)
			}
			r.caps[l.name], r.pcaps[l.name] = c, p
			rep.Artifacts.Pcap = append(rep.Artifacts.Pcap, r.rel(p))
		}
	}
	for _, o := range sc.Observe.Sockets {
		r.samp = append(r.samp, capture.StartSampler(topo.Hosts[o.Host].NS, o.Host, o.Port, o.Every.D()))
	}
	if o := sc.Observe.IO; o != nil && r.disk != nil {
		r.iosamp = r.disk.StartSampler(o.Every.D())
	}
	r.startLabB()
	if pl := sc.Observe.Processlist; pl != nil {
		p, err := client.StartProcesslist(ctx, sh.NS, r.Target(), pl.Every.D())
		if err != nil {
			return infra("%w", err)
		}
		r.plist = p
	}
	return nil
}

// hostSetup writes a host's sysctls in its namespace and reads them back
// for the model and the report, and readies its iptables rules.
func (r *run) hostSetup(name string, h *netem.Host) error {
	if _, err := h.SetSysctls(r.sc.Hosts[name].Sysctls); err != nil {
		return err
	}
	keys := append(append(tcpmodel.Keys(), tcpmodel.TimeWaitKeys()...), mapKeys(r.sc.Hosts[name].Sysctls)...)
	got, err := h.ReadSysctls(keys)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.sysctls[name] = got
	r.mu.Unlock()
	r.rules[name] = h.Rules()
	return nil
}

func mapKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == os.PathSeparator {
			return '_'
		}
		return r
	}, s)
}

// watchModel keeps the observers running after the timeline, when it ended
// before the last event the model predicts for the checks, until that event (a server's last SYN-ACK, a
// request dropped, a session ended), plus that event's timing tolerance:
// a client that gives up first ends the timeline, but what the checks
// follow on the server goes on, and must be seen to pass or fail on
// evidence. Bounded by the scenario's limit and by an interruption.
func (r *run) watchModel(ctx context.Context) {
	want := checks.PredictedLength(r.sc)
	if !time.Now().Before(r.t0.Add(want)) {
		// The steps outlasted the model's last event: the capture has it,
		// late or not, as far as the clients waited for it.
		return
	}
	until := r.t0.Add(want + tcpmodel.Tolerance(want, 200*time.Millisecond, r.opt.Slow))
	if limit := r.t0.Add(r.sc.Limit.D()); until.After(limit) {
		until = limit
	}
	d := time.Until(until)
	if d <= 0 {
		return
	}
	r.log.Info("observing until the model's last event", "for", d.Round(time.Millisecond))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// stopObservers ends captures and samplers; a short grace period lets the
// peer's answers to a client's last packets (the FIN-ACK or RST that
// answer its FIN) cross the bridge into the capture. What a client sent
// itself is already queued on the capture's socket, which Stop drains;
// delivery between namespaces on one machine takes microseconds.
//
// Samplers run one period more: a state that ends with the timeline (a
// waiter released by the very event a check follows) needs a sample after
// its end to be seen gone.
func (r *run) stopObservers() {
	// A sample takes a few milliseconds (a processlist sample is two
	// queries); 100 ms more than the period leaves room for one to finish.
	const sampleSlack = 100 * time.Millisecond
	wait := observerGrace
	for _, o := range r.sc.Observe.Sockets {
		wait = max(wait, o.Every.D()+sampleSlack)
	}
	if pl := r.sc.Observe.Processlist; pl != nil {
		wait = max(wait, pl.Every.D()+sampleSlack)
	}
	if o := r.sc.Observe.IO; o != nil {
		wait = max(wait, o.Every.D()+sampleSlack)
	}
	for _, o := range r.sc.Observe.Census {
		wait = max(wait, o.Every.D()+sampleSlack)
	}
	time.Sleep(wait)
	r.stopLabB()
	if r.iosamp != nil {
		r.io = r.iosamp.Stop()
		r.iosamp = nil
	}
	for _, s := range r.samp {
		r.samples = append(r.samples, s.Stop()...)
	}
	r.samp = nil
	if r.plist != nil {
		r.threads = r.plist.Stop()
		r.plist = nil
	}
	for n, c := range r.caps {
		if _, err := c.Stop(); err != nil {
			r.log.Warn("capture stop", "host", n, "err", err)
		}
	}
	for _, n := range hostNames(r.sc) {
		if rs, ok := r.rules[n]; ok && r.topo != nil {
			cs, err := rs.Counters()
			if err != nil {
				r.log.Warn("iptables counters", "host", n, "err", err)
			}
			for _, c := range cs {
				c.Rule = n + ": " + c.Rule
			}
			r.counts = append(r.counts, cs...)
		}
	}
}

// teardown removes everything the run created, in reverse order, then
// replays the journal so that anything a component missed is removed too.
func (r *run) teardown() error {
	var errs []error
	// A process blocked on a frozen filesystem cannot be stopped, not even
	// by SIGKILL, until the filesystem is thawed: the faults go first.
	if err := r.faults.EndAll("teardown"); err != nil {
		errs = append(errs, err)
	}
	if r.iosamp != nil {
		r.iosamp.Stop()
		r.iosamp = nil
	}
	for _, s := range r.samp {
		s.Stop()
	}
	r.stopLabB()
	for _, c := range r.caps {
		c.Stop()
	}
	if r.plist != nil {
		r.plist.Stop()
	}
	for name, s := range r.sessions {
		s.Close()
		delete(r.sessions, name)
	}
	if r.srv != nil {
		if err := r.srv.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if r.disk != nil {
		// The server is gone and its run directory with the mount point.
		if err := r.disk.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if r.topo != nil {
		if err := r.topo.Down(); err != nil {
			errs = append(errs, err)
		}
	}
	if r.j != nil {
		left, err := journal.Clean(r.j.Dir)
		if err != nil {
			errs = append(errs, err)
		}
		if len(left) > 0 {
			errs = append(errs, fmt.Errorf("%d resources left", len(left)))
		}
		r.j.Close()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrCleanup, err)
	}
	return nil
}

// rel makes an artifact's path relative to the report directory, so that
// the directory can be moved or uploaded and report.json and the HTML
// still point at its files.
func (r *run) rel(p string) string {
	if r.opt.ReportDir == "" {
		return p
	}
	if rp, err := filepath.Rel(r.opt.ReportDir, p); err == nil {
		return filepath.ToSlash(rp)
	}
	return p
}

// Host, Rules, SetSysctls, Target, Journal, Session and SetSession make a
// run the environment step actions apply themselves in (actions.Env).

func (r *run) Host(name string) *netem.Host { return r.topo.Hosts[name] }

func (r *run) Rules(host string) *netem.Rules { return r.rules[host] }

func (r *run) SetSysctls(host string, kv map[string]string) error {
	got, err := r.topo.Hosts[host].SetSysctls(kv)
	r.mu.Lock()
	for k, v := range got {
		r.sysctls[host][k] = v
	}
	r.mu.Unlock()
	return err
}

func (r *run) Target() client.Target {
	return client.Target{Flavor: r.srv.Flavor, Addr: r.srv.Addr, User: r.srv.User, Password: r.srv.Password, Command: r.srv.ClientCommand}
}

func (r *run) Journal() *journal.Journal { return r.j }

func (r *run) Disk() *iofault.Disk { return r.disk }

func (r *run) ServerPIDs() []int {
	if r.srv == nil || r.srv.PID <= 0 {
		return nil
	}
	return []int{r.srv.PID}
}

func (r *run) Faults() *actions.Faults { return r.faults }

func (r *run) Session(name string) *client.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sessions[name]
}

func (r *run) SetSession(name string, s *client.Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s == nil {
		delete(r.sessions, name)
		return
	}
	r.sessions[name] = s
}
