package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/labrun/labrun/iofault"
)

const labAQuick = "../../scenarios/lab-a/freeze.yaml"

// needDiskFaults skips, naming what is missing, where the machine cannot
// give a server a disk of its own and freeze it.
func needDiskFaults(t *testing.T) {
	t.Helper()
	needRoot(t)
	if err := iofault.LoopAvailable(); err != nil {
		t.Skipf("needs loop devices: %v", err)
	}
	if err := iofault.FreezeAvailable(); err != nil {
		t.Skipf("needs fsfreeze: %v", err)
	}
}

// diskState is what a Lab A run must leave as it found it: labrun's loop
// devices, mounts of them, blkio groups and backing files.
func diskState() string {
	var out []string
	loops, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, p := range loops {
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), "labrun") {
			out = append(out, "loop "+strings.TrimSpace(string(b)))
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.Contains(f[4], "labrun-runs") {
			out = append(out, "mount "+f[4])
		}
	}
	groups, _ := filepath.Glob("/sys/fs/cgroup/blkio/labrun-*")
	for _, g := range groups {
		out = append(out, "cgroup "+g)
	}
	files, _ := filepath.Glob("/var/lib/labrun/disks/*")
	for _, f := range files {
		out = append(out, "file "+f)
	}
	return strings.Join(out, "\n")
}

func assertNoDiskLeft(t *testing.T) {
	t.Helper()
	if s := diskState(); s != "" {
		t.Errorf("disk resources left:\n%s", s)
	}
}

// The quick Lab A scenarios on Oracle MySQL: the capture, the driver and
// the disk tell one story, and the MySQL commands labrun decoded from the
// capture are tshark's, frame by frame.
func TestLabAFreezeAgreesWithTshark(t *testing.T) {
	needDiskFaults(t)
	needFlavor(t, "mysql")
	before := snapshot(t)
	r := labrun(t, "run", labAQuick)
	if r.code != 0 {
		t.Fatalf("want exit 0: %s", r)
	}
	late := check(t, r, "late_reply")
	if late["after_client_fin"] != true || late["reply"] != "OK" {
		t.Errorf("late_reply observed %v: want an OK after the client's FIN", late)
	}
	pcap := filepath.Join(r.dir, "lab-a_freeze", "server.pcap")
	if n := tsharkCount(t, pcap, "mysql.command == 23"); n != 1 {
		t.Errorf("tshark sees %d COM_STMT_EXECUTE, want 1", n)
	}
	if n := tsharkCount(t, pcap, "tcp.flags.reset == 1 && tcp.srcport != 3306"); n < 1 {
		t.Errorf("tshark sees no RST from the client")
	}
	assertUnchanged(t, before)
	assertNoDiskLeft(t)
}

// SIGINT while the server's disk is frozen and the server blocked on it:
// the run thaws, stops the server, and leaves nothing.
func TestLabAInterruptDuringFreeze(t *testing.T) {
	needDiskFaults(t)
	needFlavor(t, "mysql")
	before := snapshot(t)
	cmd, out := startRun(t, labAQuick)
	// The client gives up 1.5 s after its request at 1 s; the freeze
	// holds until 3.5 s.
	waitFor(t, cmd, out, "step=app", 30*time.Second)
	if !strings.Contains(diskState(), "mount ") {
		t.Fatalf("no disk mounted while the freeze should hold:\n%s", out)
	}
	interrupt(t, cmd, out)
	assertUnchanged(t, before)
	assertNoDiskLeft(t)
}

// SIGKILL while the disk is frozen: the run cannot thaw it. `labrun
// cleanup` must thaw it first (a frozen filesystem hangs every writer on
// it, the killed server included), then remove everything.
func TestLabAKillDuringFreezeThenCleanup(t *testing.T) {
	needDiskFaults(t)
	needFlavor(t, "mysql")
	before := snapshot(t)
	cmd, out := startRun(t, labAQuick)
	waitFor(t, cmd, out, "step=app", 30*time.Second)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if !strings.Contains(diskState(), "loop ") {
		t.Fatalf("SIGKILL left no loop device: the test proves nothing\n%s", out)
	}
	c := labrun(t, "cleanup")
	if c.code != 0 {
		t.Fatalf("cleanup: %s", c)
	}
	assertUnchanged(t, before)
	assertNoDiskLeft(t)
}

// The quick Lab A scenarios with the server in a container, on both
// flavors: the container bind-mounts the run directory, and the disk
// mounted in it with it.
func TestLabAContainer(t *testing.T) {
	needDiskFaults(t)
	needContainerEngine(t, "mysql", "mariadb")
	before := snapshot(t)
	r := labrun(t, "run", "../../scenarios/lab-a", "--tag", "quick", "--flavor", "mysql,mariadb", "--engine", "container", "-j", "2")
	if r.code != 0 {
		t.Fatalf("want exit 0: %s", r)
	}
	if len(r.report.Scenarios) < 4 {
		t.Errorf("%d instances, want the quick Lab A scenarios on both flavors", len(r.report.Scenarios))
	}
	assertUnchanged(t, before)
	assertNoDiskLeft(t)
	assertNoDockerLeft(t)
}

// Changing the client's read timeout or the stall's length moves the model
// and the observation together, with no other edit: with a read timeout
// longer than the stall the client gets its OK at the thaw and nothing is
// reset; with a longer stall the reply comes later, still at the thaw.
func TestLabAParametersMoveModelAndObservation(t *testing.T) {
	needDiskFaults(t)
	needFlavor(t, "mysql")
	for _, tt := range []struct {
		set      string
		giveUp   bool
		replyMin float64 // seconds after the request
	}{
		{"app.read_timeout=5s", false, 2},
		{"stall.for=5s", true, 4},
	} {
		t.Run(tt.set, func(t *testing.T) {
			r := labrun(t, "run", labAQuick, "--set", tt.set)
			if r.code != 0 {
				t.Fatalf("want exit 0: %s", r)
			}
			late := check(t, r, "late_reply")
			if late["after_client_fin"] != tt.giveUp {
				t.Errorf("after_client_fin %v, want %v (%v)", late["after_client_fin"], tt.giveUp, late)
			}
			if d, _ := late["reply_after_request_s"].(float64); d < tt.replyMin {
				t.Errorf("reply %.3fs after the request, want at least %.1fs", d, tt.replyMin)
			}
			ce := check(t, r, "client_error")
			if _, failed := ce["error"]; failed != tt.giveUp {
				t.Errorf("client error %v, want an error: %v", ce["error"], tt.giveUp)
			}
		})
	}
	assertNoDiskLeft(t)
}
