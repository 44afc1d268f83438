package iofault_test

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labrun/labrun/iofault"
	"github.com/labrun/labrun/journal"
)

// testSize is the disks' size in tests: the smallest a scenario allows.
const testSize = 256 << 20

// needLoop skips a test that makes disks where the machine cannot, naming
// what is missing, and in -short mode (the unit tier).
func needLoop(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: disk tier skipped")
	}
	if err := iofault.LoopAvailable(); err != nil {
		t.Skipf("needs loop devices: %v", err)
	}
}

func needFreeze(t *testing.T) {
	t.Helper()
	needLoop(t)
	if err := iofault.FreezeAvailable(); err != nil {
		t.Skipf("needs fsfreeze: %v", err)
	}
}

func needBlkio(t *testing.T) {
	t.Helper()
	needLoop(t)
	if err := iofault.BlkioAvailable(); err != nil {
		t.Skipf("needs cgroup v1 blkio: %v", err)
	}
}

// tempRoot points journal.Root at a directory of the test's own, as the
// journal's tests do. Not parallel: Root is a package variable.
func tempRoot(t *testing.T) {
	t.Helper()
	old := journal.Root
	journal.Root = filepath.Join(t.TempDir(), "runs")
	t.Cleanup(func() { journal.Root = old })
}

func runID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "t" + hex.EncodeToString(b)
}

func newJournal(t *testing.T) *journal.Journal {
	t.Helper()
	tempRoot(t)
	j, err := journal.Create(runID(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Remove() })
	return j
}

// newDisk makes a disk in a fresh journal and closes it when the test
// ends, checking that nothing of it is left.
func newDisk(t *testing.T) (*iofault.Disk, *journal.Journal) {
	t.Helper()
	j := newJournal(t)
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	d, err := iofault.NewDisk(j, j.RunID, "data", dir, iofault.DiskSpec{Size: testSize})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		assertGone(t, d.Mount, d.Backing)
	})
	return d, j
}

// mountedAt reports whether something is mounted at dir, from
// /proc/self/mountinfo.
func mountedAt(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && fields[4] == dir {
			return true
		}
	}
	return false
}

// loopsBackedBy lists the loop devices bound to file.
func loopsBackedBy(t *testing.T, file string) []string {
	t.Helper()
	paths, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
		if s == file {
			out = append(out, filepath.Base(filepath.Dir(filepath.Dir(p))))
		}
	}
	return out
}

// assertGone checks that no mount, loop device or backing file of a disk is
// left. A loop device unbinds at its last close, which may trail the
// unmount a little: it is given a few seconds.
func assertGone(t *testing.T, mount, backing string) {
	t.Helper()
	if mountedAt(t, mount) {
		t.Errorf("%s still mounted", mount)
	}
	if _, err := os.Lstat(backing); !os.IsNotExist(err) {
		t.Errorf("backing file %s still there: %v", backing, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		loops := loopsBackedBy(t, backing)
		if len(loops) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("loop devices %v still bound to %s", loops, backing)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// procState returns a process's state letter from /proc/PID/stat (R, S,
// D, Z...), or 0 when it is gone.
func procState(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

// waitState waits up to 10 s for a process to be in state want.
func waitState(t *testing.T, pid int, want byte) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for procState(pid) != want {
		if time.Now().After(deadline) {
			t.Fatalf("process %d in state %q after 10s, want %q", pid, procState(pid), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// blkioGroupOf returns a process's blkio group ("/", "/labrun-...").
func blkioGroupOf(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && strings.Contains(","+parts[1]+",", ",blkio,") {
			return parts[2]
		}
	}
	t.Fatalf("process %d has no blkio group", pid)
	return ""
}

// pending returns the journal's entries not yet undone.
func pending(t *testing.T, j *journal.Journal) []journal.Entry {
	t.Helper()
	es, err := journal.Pending(j.Dir)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// startCrashChild re-executes the test binary to run helper, a test that
// sets up faults from the spec in env ("ROOT|RUNID|DIR") and prints
// "READY a b c" before it waits to be killed. It returns the child, its
// journal directory (cleaned in any case when the test ends), the data
// directory it was given and the three fields after READY.
func startCrashChild(t *testing.T, helper, env string) (cmd *exec.Cmd, jdir, dir string, ready []string) {
	t.Helper()
	id := runID(t)
	dir = filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	jdir = filepath.Join(journal.Root, id)
	// Whatever happens, nothing stays on the machine.
	t.Cleanup(func() {
		if _, err := os.Stat(jdir); err == nil {
			if left, err := journal.Clean(jdir); err != nil {
				t.Errorf("final Clean: %+v, %v", left, err)
			}
		}
	})
	cmd = exec.Command(os.Args[0], "-test.run=^"+helper+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"="+journal.Root+"|"+id+"|"+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	lines := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "READY" {
				lines <- f[1:]
				return
			}
			t.Logf("child: %s", sc.Text())
		}
		close(lines)
	}()
	select {
	case ready = <-lines:
	case <-time.After(2 * time.Minute):
	}
	if ready == nil {
		t.Fatalf("the child never got ready: %s", stderr.String())
	}
	return cmd, jdir, dir, ready
}

// crashChildDisk is the start of a crash child (a test run again by
// startCrashChild from parent): it skips unless env carries the spec
// "ROOT|RUNID|DIR", then makes the run's journal and a disk at DIR.
func crashChildDisk(t *testing.T, env, parent string, spec iofault.DiskSpec) (*journal.Journal, *iofault.Disk) {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		t.Skipf("a crash test's child, run by %s", parent)
	}
	parts := strings.Split(v, "|")
	journal.Root = parts[0]
	j, err := journal.Create(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	d, err := iofault.NewDisk(j, j.RunID, "data", parts[2], spec)
	if err != nil {
		t.Fatal(err)
	}
	return j, d
}
