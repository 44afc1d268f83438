package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/labrun/labrun/checks"
	"github.com/labrun/labrun/reports"
	"github.com/labrun/labrun/runner"
	"github.com/labrun/labrun/scenarios"
	"github.com/labrun/labrun/server"
	"github.com/spf13/cobra"
)

type runFlags struct {
	reportDir string
	junit     string
	html      string
	jobs      int
	slow      float64
	flavors   []string
	engines   []string
	tags      []string
	skipTags  []string
	sets      []string
	verbose   bool
}

func newRunCmd() *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:   "run PATH...",
		Short: "Run scenarios (files, or folders searched for *.yaml)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runScenarios(cmd, f, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.reportDir, "report-dir", "labrun-report", "directory for report.json, pcaps and logs")
	fl.StringVar(&f.junit, "junit", "", "also write JUnit XML to this file")
	fl.StringVar(&f.html, "html", "", "also write an HTML report to this file")
	fl.IntVarP(&f.jobs, "jobs", "j", 1, "scenarios run at once; timings are most faithful at 1")
	fl.Float64Var(&f.slow, "slow", 1, "scale every timing tolerance by this factor")
	fl.StringSliceVar(&f.flavors, "flavor", nil, "run each scenario on these server flavors (mysql, mariadb; comma-separated or repeated)")
	fl.StringSliceVar(&f.engines, "engine", nil, "run each scenario on these server engines (process, container; comma-separated or repeated)")
	fl.StringSliceVar(&f.tags, "tag", nil, "run only scenarios with all of these tags")
	fl.StringSliceVar(&f.skipTags, "skip-tag", nil, "skip scenarios with any of these tags")
	fl.StringArrayVar(&f.sets, "set", nil, "sweep a value: PATH=V1,V2,... (HOST.net.ipv4.KEY, server.VARIABLE, STEP.OPTION, flavor, engine); adds an axis to the scenario's matrix or replaces one; repeatable")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "log each step")
	return cmd
}

// collect expands folders into their *.yaml files (schema.json and other
// files are ignored), sorted.
func collect(args []string) ([]string, error) {
	var files []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, a)
			continue
		}
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			// testdata holds the format's own fixtures, invalid on purpose,
			// as in Go's tree: a folder of scenarios is the library.
			if d.IsDir() && d.Name() == "testdata" && p != a {
				return filepath.SkipDir
			}
			if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(files)
	return files, nil
}

func hasAll(tags, want []string) bool {
	for _, w := range want {
		found := false
		for _, t := range tags {
			found = found || t == w
		}
		if !found {
			return false
		}
	}
	return true
}

// dedupe drops repeated values, keeping the first of each.
func dedupe(vs []string) []string {
	var out []string
	for _, v := range vs {
		if !hasAll(out, []string{v}) {
			out = append(out, v)
		}
	}
	return out
}

func hasAny(tags, skip []string) bool {
	for _, s := range skip {
		for _, t := range tags {
			if t == s {
				return true
			}
		}
	}
	return false
}

func runScenarios(cmd *cobra.Command, f *runFlags, args []string) error {
	for _, fl := range f.flavors {
		if !hasAll(server.Flavors(), []string{fl}) {
			return exitWith(exitUsage, fmt.Errorf("--flavor %q: want one of %s", fl, strings.Join(server.Flavors(), ", ")))
		}
	}
	for _, e := range f.engines {
		if !hasAll(server.Engines(), []string{e}) {
			return exitWith(exitUsage, fmt.Errorf("--engine %q: want one of %s", e, strings.Join(server.Engines(), ", ")))
		}
	}
	files, err := collect(args)
	if err != nil {
		return exitWith(exitUsage, err)
	}
	sets, err := parseSets(f.sets)
	if err != nil {
		return exitWith(exitUsage, err)
	}
	// Every file, and every cell of its matrix, is validated before
	// anything is touched.
	var scs []*scenarios.Scenario
	var bad []string
	for _, p := range files {
		sc, err := scenarios.Load(p)
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		// One instance per matrix cell and server; tags are the
		// instance's, since a long cell is not quick.
		insts, err := expand(sc, sets, dedupe(f.flavors), dedupe(f.engines))
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		for _, in := range insts {
			if hasAll(in.Tags, f.tags) && !hasAny(in.Tags, f.skipTags) {
				scs = append(scs, in)
			}
		}
	}
	if len(bad) > 0 {
		return exitWith(exitUsage, errors.New(strings.Join(bad, "\n")))
	}
	if len(scs) == 0 {
		return exitWith(exitNoMatch, fmt.Errorf("no scenario matched %s", strings.Join(args, " ")))
	}
	if os.Geteuid() != 0 {
		return exitWith(exitInfra, errors.New("labrun run needs root: it creates network namespaces"))
	}
	for _, sc := range scs {
		if sc.Server.Engine == server.EngineContainer {
			// Said once, before any namespace exists, rather than by
			// every scenario after its network is up.
			if _, err := server.DockerStatus(cmd.Context()); err != nil {
				return exitWith(exitInfra, fmt.Errorf("%s: engine container: %w", sc.Name, err))
			}
			break
		}
	}
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
	if err := os.MkdirAll(f.reportDir, 0o755); err != nil {
		return exitWith(exitInfra, err)
	}
	rep := &reports.Report{Labrun: reports.Version, Started: time.Now().UTC().Truncate(time.Second), Scenarios: make([]*reports.Scenario, len(scs))}
	opt := runner.Options{ReportDir: f.reportDir, Slow: f.slow, Log: log}
	ctx := cmd.Context()
	errs := make([]error, len(scs))
	jobs := f.jobs
	if jobs < 1 {
		jobs = 1
	}
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	// The longest scenarios start first, so that with -j the batch takes
	// about as long as its longest scenario instead of that plus whatever
	// was left to run beside it; the report keeps the files' order.
	order := make([]int, len(scs))
	length := make([]time.Duration, len(scs))
	for i, sc := range scs {
		order[i], length[i] = i, checks.PredictedLength(sc)
	}
	sort.SliceStable(order, func(a, b int) bool { return length[order[a]] > length[order[b]] })
	for _, i := range order {
		sc := scs[i]
		if ctx.Err() != nil {
			rep.Scenarios[i] = &reports.Scenario{Name: sc.Name, File: sc.File, Skipped: true, SkipReason: "interrupted before it started", Checks: []*reports.Check{}}
			errs[i] = runner.ErrInterrupted
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(i int, sc *scenarios.Scenario) {
			defer wg.Done()
			defer func() { <-sem }()
			fmt.Fprintf(cmd.ErrOrStderr(), "labrun: running %s (%s)\n", sc.Name, sc.File)
			rep.Scenarios[i], errs[i] = runner.Run(ctx, sc, opt)
		}(i, sc)
	}
	wg.Wait()
	rep.BuildMatrices()
	for _, m := range rep.Matrices {
		// One CSV per matrix beside report.json, with the same numbers.
		p := filepath.Join(f.reportDir, "matrix-"+strings.NewReplacer("/", "_", " ", "_").Replace(m.Name)+".csv")
		if err := writeFile(p, func(w *os.File) error { return reports.WriteMatrixCSV(w, m) }); err != nil {
			return exitWith(exitInfra, err)
		}
	}
	if err := reports.WriteJSONFile(f.reportDir, rep); err != nil {
		return exitWith(exitInfra, err)
	}
	if f.junit != "" {
		if err := writeFile(f.junit, func(w *os.File) error { return reports.WriteJUnit(w, rep) }); err != nil {
			return exitWith(exitInfra, err)
		}
	}
	if f.html != "" {
		// Artifact paths are relative to the report directory; an HTML
		// file elsewhere needs them relative to itself.
		page := rebase(rep, f.reportDir, filepath.Dir(f.html))
		if err := writeFile(f.html, func(w *os.File) error { return reports.WriteHTML(w, page) }); err != nil {
			return exitWith(exitInfra, err)
		}
	}
	reports.WriteSummary(cmd.OutOrStdout(), rep, isTerminal(os.Stdout))
	return exitFor(rep, errs)
}

// exitFor picks the exit code: an interruption first, then an incomplete
// cleanup, an infrastructure error, and last a failed check.
func exitFor(rep *reports.Report, errs []error) error {
	code := exitOK
	rank := map[int]int{exitOK: 0, exitFailed: 1, exitInfra: 2, exitCleanup: 3, exitInterrupted: 4}
	set := func(c int) {
		if rank[c] > rank[code] {
			code = c
		}
	}
	var msgs []string
	for i, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, runner.ErrInterrupted):
			set(exitInterrupted)
		case errors.Is(err, runner.ErrCleanup):
			set(exitCleanup)
			msgs = append(msgs, err.Error())
		default:
			set(exitInfra)
			msgs = append(msgs, fmt.Sprintf("%s: %v", rep.Scenarios[i].Name, err))
		}
		if s := rep.Scenarios[i]; s != nil && !s.Passed && !s.Skipped {
			set(exitFailed)
		}
	}
	if code == exitOK {
		return nil
	}
	var err error
	if len(msgs) > 0 {
		err = errors.New(strings.Join(msgs, "\n"))
	}
	return exitWith(code, err)
}

func writeFile(path string, fn func(*os.File) error) error {
	w, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := fn(w); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0 && os.Getenv("NO_COLOR") == ""
}

// rebase returns a copy of the report whose artifact paths, relative to
// the report directory from, are relative to the directory to instead.
func rebase(rep *reports.Report, from, to string) *reports.Report {
	af, err1 := filepath.Abs(from)
	at, err2 := filepath.Abs(to)
	if err1 != nil || err2 != nil || af == at {
		return rep
	}
	move := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		r, err := filepath.Rel(at, filepath.Join(af, p))
		if err != nil {
			return p
		}
		return filepath.ToSlash(r)
	}
	out := *rep
	out.Scenarios = make([]*reports.Scenario, len(rep.Scenarios))
	for i, sc := range rep.Scenarios {
		if sc == nil {
			continue
		}
		c := *sc
		a := sc.Artifacts
		a.Pcap = nil
		for _, p := range sc.Artifacts.Pcap {
			a.Pcap = append(a.Pcap, move(p))
		}
		a.Logs = nil
		for _, p := range sc.Artifacts.Logs {
			a.Logs = append(a.Logs, move(p))
		}
		a.Samples, a.Observations, a.Scenario = move(a.Samples), move(a.Observations), move(a.Scenario)
		c.Artifacts = a
		out.Scenarios[i] = &c
	}
	return &out
}
