package journal_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/labrun/labrun/journal"
)

// tempDiskRoots points DiskRoot and BlkioRoot at directories of the test's
// own, for the cases that need no real loop device or cgroup.
func tempDiskRoots(t *testing.T) (disks, blkio string) {
	t.Helper()
	oldD, oldB := journal.DiskRoot, journal.BlkioRoot
	journal.DiskRoot = filepath.Join(t.TempDir(), "disks")
	journal.BlkioRoot = filepath.Join(t.TempDir(), "blkio")
	t.Cleanup(func() { journal.DiskRoot, journal.BlkioRoot = oldD, oldB })
	for _, d := range []string{journal.DiskRoot, journal.BlkioRoot} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return journal.DiskRoot, journal.BlkioRoot
}

// needRootDisk skips tests that bind loop devices or make cgroups.
func needRootDisk(t *testing.T, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: " + what)
	}
	if testing.Short() {
		t.Skip("-short: root tier skipped")
	}
}

func TestUndoDiskKindsIdempotent(t *testing.T) {
	disks, blkio := tempDiskRoots(t)
	// A backing file whose device was journaled but never bound: the run
	// was killed between the journal and LOOP_CONFIGURE.
	img := filepath.Join(disks, "r1-data.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// No loop device has this number.
	const absentLoop = "/dev/loop999999"
	tests := []struct {
		name  string
		entry journal.Entry
	}{
		{"loop never bound", journal.Entry{Kind: journal.KindLoop, Path: absentLoop, Name: img}},
		{"loop and file gone", journal.Entry{Kind: journal.KindLoop, Path: absentLoop, Name: filepath.Join(disks, "r2-data.img")}},
		{"loop without device", journal.Entry{Kind: journal.KindLoop, Name: filepath.Join(disks, "r3-data.img")}},
		{"freeze of a device gone", journal.Entry{Kind: journal.KindFreeze, Path: filepath.Join(t.TempDir(), "m"), Name: absentLoop}},
		{"cgroup gone", journal.Entry{Kind: journal.KindCgroup, Path: filepath.Join(blkio, "labrun-r1-data")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range 2 {
				if err := journal.Undo(tt.entry); err != nil {
					t.Fatalf("Undo #%d: %v", i+1, err)
				}
				if journal.Exists(tt.entry) {
					t.Fatalf("Exists after Undo #%d = true", i+1)
				}
			}
		})
	}
	if _, err := os.Stat(img); !os.IsNotExist(err) {
		t.Errorf("backing file %s not removed: %v", img, err)
	}
}

func TestUndoDiskKindsRefuse(t *testing.T) {
	disks, blkio := tempDiskRoots(t)
	img := filepath.Join(disks, "r1-data.img")
	tests := []struct {
		name  string
		entry journal.Entry
	}{
		// The paths come from a file on disk: Undo must not remove a file
		// outside DiskRoot, unbind a device that is not a loop device, or
		// remove a group labrun did not make.
		{"backing file outside DiskRoot", journal.Entry{Kind: journal.KindLoop, Path: "/dev/loop0", Name: "/etc/passwd"}},
		{"backing file climbing out", journal.Entry{Kind: journal.KindLoop, Path: "/dev/loop0", Name: disks + "/../x.img"}},
		{"backing file in a subdirectory", journal.Entry{Kind: journal.KindLoop, Path: "/dev/loop0", Name: filepath.Join(disks, "sub", "x.img")}},
		{"relative backing file", journal.Entry{Kind: journal.KindLoop, Path: "/dev/loop0", Name: "x.img"}},
		{"no backing file", journal.Entry{Kind: journal.KindLoop, Path: "/dev/loop0"}},
		{"not a loop device", journal.Entry{Kind: journal.KindLoop, Path: "/dev/vda", Name: img}},
		{"loop device path climbing out", journal.Entry{Kind: journal.KindLoop, Path: "/dev/loop0/../vda", Name: img}},
		{"freeze of a device that is not a loop", journal.Entry{Kind: journal.KindFreeze, Path: "/", Name: "/dev/vda"}},
		{"freeze at a relative path", journal.Entry{Kind: journal.KindFreeze, Path: "data", Name: "/dev/loop0"}},
		{"freeze without a path", journal.Entry{Kind: journal.KindFreeze, Name: "/dev/loop0"}},
		{"cgroup outside BlkioRoot", journal.Entry{Kind: journal.KindCgroup, Path: "/sys/fs/cgroup/memory/labrun-x"}},
		{"cgroup BlkioRoot itself", journal.Entry{Kind: journal.KindCgroup, Path: blkio}},
		{"cgroup not labrun's", journal.Entry{Kind: journal.KindCgroup, Path: filepath.Join(blkio, "docker")}},
		{"cgroup nested", journal.Entry{Kind: journal.KindCgroup, Path: filepath.Join(blkio, "labrun-x", "labrun-y")}},
		{"cgroup climbing out", journal.Entry{Kind: journal.KindCgroup, Path: blkio + "/labrun-x/.."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := journal.Undo(tt.entry); err == nil {
				t.Errorf("Undo(%+v) = nil, want a refusal", tt.entry)
			}
		})
	}
}

func TestLoopBackingFileNames(t *testing.T) {
	for _, dev := range []string{"", "/dev/vda", "loop0", "/dev/loop", "/dev/loop0/../vda", "/dev/loop999999"} {
		if got := journal.LoopBackingFile(dev); got != "" {
			t.Errorf("LoopBackingFile(%q) = %q, want \"\"", dev, got)
		}
	}
}

// A loop device whose number was reused for another file (here, one made
// with losetup, as the host's own would be) is left bound; only the
// journaled backing file is removed.
func TestUndoLoopLeavesAnotherFilesDevice(t *testing.T) {
	needRootDisk(t, "loop devices")
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("needs losetup")
	}
	disks, _ := tempDiskRoots(t)
	other := filepath.Join(t.TempDir(), "other.img")
	if err := os.WriteFile(other, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", other).Output()
	if err != nil {
		t.Skipf("needs a loop device: losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	img := filepath.Join(disks, "r1-data.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e := journal.Entry{Kind: journal.KindLoop, Path: dev, Name: img}
	if err := journal.Undo(e); err != nil {
		t.Fatal(err)
	}
	if got := journal.LoopBackingFile(dev); got != other {
		t.Errorf("%s bound to %q after Undo, want still %q", dev, got, other)
	}
	if _, err := os.Stat(img); !os.IsNotExist(err) {
		t.Errorf("journaled backing file not removed: %v", err)
	}
	if journal.Exists(e) {
		t.Errorf("Exists = true: the device is another file's, and ours is gone")
	}
}

// A group that still holds a process is emptied into the root and
// removed: here the real blkio hierarchy.
func TestUndoCgroupMovesProcessesOut(t *testing.T) {
	needRootDisk(t, "cgroups")
	if _, err := os.Stat(filepath.Join(journal.BlkioRoot, "cgroup.procs")); err != nil {
		t.Skipf("needs cgroup v1 blkio at %s: %v", journal.BlkioRoot, err)
	}
	dir := filepath.Join(journal.BlkioRoot, journal.CgroupPrefix+runID(t)+"-undo")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e := journal.Entry{Kind: journal.KindCgroup, Path: dir}
	t.Cleanup(func() { journal.Undo(e) })
	cmd := startSleep(t)
	if err := journal.MoveToCgroup(dir, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if pids, err := journal.CgroupProcs(dir); err != nil || len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Fatalf("CgroupProcs = %v, %v; want the sleep", pids, err)
	}
	if !journal.Exists(e) {
		t.Errorf("Exists = false for a group that is there")
	}
	if err := journal.Undo(e); err != nil {
		t.Fatal(err)
	}
	if journal.Exists(e) {
		t.Errorf("group still there after Undo")
	}
	if !running(cmd.Process.Pid) {
		t.Errorf("the process in the group was killed; want it moved")
	}
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cgroup")
	if !strings.Contains(string(b), ":blkio:/\n") {
		t.Errorf("process not in the blkio root after Undo: %s", b)
	}
}
