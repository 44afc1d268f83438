package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/labrun/labrun/journal"
	"github.com/labrun/labrun/netem"
	"github.com/labrun/labrun/scenarios"
	"github.com/labrun/labrun/server"
	"github.com/spf13/cobra"

	// The kinds register their requirements from init functions; runner
	// imports both packages already, and these say that doctor's list
	// depends on it.
	_ "github.com/labrun/labrun/actions"
	_ "github.com/labrun/labrun/checks"
)

func newDoctorCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Say what this machine can and cannot do for labrun (Docker's engine included), and list leftovers of killed runs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			mark := func(ok bool) string {
				if ok {
					return "ok  "
				}
				return "no  "
			}
			kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
			fmt.Fprintf(out, "kernel %s\n", strings.TrimSpace(string(kernel)))
			for _, c := range netem.Probe() {
				fmt.Fprintf(out, "%s%-24s %s\n", mark(c.OK), c.Name, c.Detail)
			}
			for _, l := range requirementLines(scenarios.Requirements(), requirementUsers()) {
				fmt.Fprintln(out, l)
			}
			for _, tool := range []struct{ bin, why string }{
				{"debootstrap", "builds the server root filesystems"},
				{"tshark", "test oracle for the capture analyzer (tests only)"},
			} {
				_, err := exec.LookPath(tool.bin)
				fmt.Fprintf(out, "%s%-24s %s\n", mark(err == nil), tool.bin, tool.why)
			}
			for _, f := range server.Flavors() {
				img, err := server.Find(f)
				switch {
				case err == nil:
					fmt.Fprintf(out, "ok  flavor %-17s %s in %s\n", f, img.Version, img.Root)
				case errors.Is(err, server.ErrNotBuilt):
					fmt.Fprintf(out, "no  flavor %-17s not built: labrun images build %s\n", f, f)
				default:
					fmt.Fprintf(out, "no  flavor %-17s %v\n", f, err)
				}
			}
			// The container engine needs Docker's engine and the imported
			// images; the process engine needs neither.
			if v, err := server.DockerStatus(cmd.Context()); err == nil {
				fmt.Fprintf(out, "ok  %-24s %s at %s\n", "docker engine", v, journal.DockerSocket())
				for _, f := range server.Flavors() {
					img, err := server.FindDockerImage(cmd.Context(), f)
					switch {
					case err == nil:
						fmt.Fprintf(out, "ok  image %-18s %s\n", f, img.Ref)
					case errors.Is(err, server.ErrNoImage), errors.Is(err, server.ErrNotBuilt):
						fmt.Fprintf(out, "no  image %-18s not imported: labrun images build %s --docker\n", f, f)
					default:
						fmt.Fprintf(out, "no  image %-18s %v\n", f, err)
					}
				}
			} else {
				fmt.Fprintf(out, "no  %-24s %v (only --engine container needs it)\n", "docker engine", err)
			}
			left := leftovers(cmd.Context())
			if len(left) == 0 {
				fmt.Fprintln(out, "ok  leftovers                none")
				return nil
			}
			for _, l := range left {
				fmt.Fprintf(out, "no  leftover                 %s\n", l)
			}
			fmt.Fprintln(out, "run 'labrun cleanup' to remove them")
			return nil
		},
	}
}

// requirementLines says, for each requirement of a registered kind,
// whether this machine has it (its probe's verdict) and which kinds need
// it: a scenario with one of those kinds is skipped, with the probe's
// reason, where the machine lacks it.
func requirementLines(reqs []scenarios.Requirement, users map[string][]string) []string {
	var out []string
	for _, r := range reqs {
		by := strings.Join(users[r.Name], ", ")
		var err error
		if r.Probe != nil {
			err = r.Probe()
		}
		if err != nil {
			out = append(out, fmt.Sprintf("no  needs %-18s %v; scenarios with %s are skipped", r.Name, err, by))
			continue
		}
		out = append(out, fmt.Sprintf("ok  needs %-18s for %s", r.Name, by))
	}
	return out
}

// requirementUsers lists, by requirement name, the kinds that declare it:
// "action netem", "check NAME".
func requirementUsers() map[string][]string {
	users := map[string][]string{}
	for _, k := range scenarios.Actions() {
		for _, r := range k.Needs {
			users[r.Name] = append(users[r.Name], "action "+k.Name)
		}
	}
	for _, k := range scenarios.CheckKinds() {
		for _, r := range k.Needs {
			users[r.Name] = append(users[r.Name], "check "+k.Name)
		}
	}
	for _, n := range scenarios.ScenarioNeeds() {
		users[n.Name] = append(users[n.Name], n.Part)
	}
	return users
}

// leftovers lists what killed runs left: journals of dead runs with pending
// resources, labrun namespaces, and server processes running from the cache.
func leftovers(ctx context.Context) []string {
	var out []string
	live := map[string]bool{}
	runs, _ := journal.List()
	for _, r := range runs {
		if r.Alive {
			live[r.ID] = true
			continue
		}
		pending, _ := journal.Pending(r.Dir)
		for _, e := range pending {
			if journal.Exists(e) {
				out = append(out, fmt.Sprintf("run %s: %s %s%s", r.ID, e.Kind, e.Name+e.Path, pidText(e.PID)))
			}
		}
		if len(pending) == 0 {
			out = append(out, fmt.Sprintf("run %s: empty journal %s", r.ID, r.Dir))
		}
	}
	names, _ := netem.Namespaces()
	for _, n := range names {
		if !owned(n, live) {
			out = append(out, "namespace "+n)
		}
	}
	objs, _ := journal.LabelledObjects(ctx)
	for _, o := range objs {
		if !live[o.RunID] {
			state := ""
			if o.State != "" {
				state = ", " + o.State
			}
			out = append(out, fmt.Sprintf("%s %s (run %s%s)", o.Kind, o.Name, o.RunID, state))
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/root")
	cache := server.CacheDir()
	for _, p := range procs {
		root, err := os.Readlink(p)
		if err == nil && strings.HasPrefix(root, cache) {
			// A server or client of a live run names its run directory
			// (.../labrun-runs/<run>/...) on its command line.
			cmdline, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
			if id := runOf(string(cmdline)); id != "" && live[id] {
				continue
			}
			pid := filepath.Base(filepath.Dir(p))
			comm, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "comm"))
			out = append(out, fmt.Sprintf("process %s %s (root %s)", pid, strings.TrimSpace(string(comm)), root))
		}
	}
	return out
}

func pidText(pid int) string {
	if pid == 0 {
		return ""
	}
	return fmt.Sprintf("pid %d", pid)
}

// runOf returns the run ID in a command line that names a run directory.
func runOf(cmdline string) string {
	const marker = "labrun-runs/"
	i := strings.Index(cmdline, marker)
	if i < 0 {
		return ""
	}
	rest := cmdline[i+len(marker):]
	if j := strings.IndexAny(rest, "/\x00 "); j >= 0 {
		rest = rest[:j]
	}
	return rest
}
