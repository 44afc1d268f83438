package iofault_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/labrun/labrun/iofault"
	"github.com/labrun/labrun/journal"
	"golang.org/x/sys/unix"
)

func TestNewDiskClose(t *testing.T) {
	needLoop(t)
	d, j := newDisk(t)
	if loops := loopsBackedBy(t, d.Backing); len(loops) != 1 || "/dev/"+loops[0] != d.Dev {
		t.Errorf("loop devices bound to %s = %v, want %s", d.Backing, loops, d.Dev)
	}
	if !mountedAt(t, d.Mount) {
		t.Errorf("%s not mounted", d.Mount)
	}
	var st unix.Stat_t
	if err := unix.Stat(d.Mount, &st); err != nil {
		t.Fatal(err)
	}
	if unix.Major(st.Dev) != d.Major || unix.Minor(st.Dev) != d.Minor {
		t.Errorf("%s is on %d:%d, want the disk's %d:%d", d.Mount, unix.Major(st.Dev), unix.Minor(st.Dev), d.Major, d.Minor)
	}
	if !d.DirectIO {
		t.Errorf("DirectIO = false: the loop device caches in the host's page cache")
	}
	ents, err := os.ReadDir(d.Mount)
	if err != nil || len(ents) != 0 {
		t.Errorf("mount point holds %v (%v), want nothing: no lost+found", ents, err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(d.Mount, &fs); err != nil || fs.Type != unix.EXT4_SUPER_MAGIC || fs.Bsize != 4096 {
		t.Errorf("filesystem type %#x block %d (%v), want ext4 with 4 KiB blocks", fs.Type, fs.Bsize, err)
	}
	fi, err := os.Stat(d.Backing)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != testSize {
		t.Errorf("backing file size %d, want %d", fi.Size(), testSize)
	}
	if used := fi.Sys().(*syscall.Stat_t).Blocks * 512; used >= testSize/2 {
		t.Errorf("backing file uses %d bytes of %d: not sparse", used, testSize)
	}
	out, err := exec.Command("dumpe2fs", "-h", d.Dev).Output()
	if err == nil && !strings.Contains(string(out), "has_journal") {
		t.Errorf("filesystem without a journal: %s", out)
	}
	kinds := map[string]bool{}
	for _, e := range pending(t, j) {
		kinds[e.Kind] = true
	}
	if !kinds[journal.KindLoop] || !kinds[journal.KindMount] {
		t.Errorf("journal pending %v, want the loop device and the mount", pending(t, j))
	}

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, d.Mount, d.Backing)
	if es := pending(t, j); len(es) != 0 {
		t.Errorf("journal pending after Close: %+v", es)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestNewDiskRefuses(t *testing.T) {
	needLoop(t)
	j := newJournal(t)
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, runID, disk, dir string
		size                   int64
		nilJournal             bool
	}{
		{name: "relative dir", runID: j.RunID, disk: "a", dir: "data"},
		{name: "missing dir", runID: j.RunID, disk: "b", dir: filepath.Join(t.TempDir(), "absent")},
		{name: "non-empty dir", runID: j.RunID, disk: "c", dir: full},
		{name: "name with a slash", runID: j.RunID, disk: "../d", dir: t.TempDir()},
		{name: "empty run ID", runID: "", disk: "e", dir: t.TempDir()},
		{name: "too small", runID: j.RunID, disk: "f", dir: t.TempDir(), size: 1 << 20},
		{name: "no journal", runID: j.RunID, disk: "g", dir: t.TempDir(), nilJournal: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jj := j
			if tt.nilJournal {
				jj = nil
			}
			d, err := iofault.NewDisk(jj, tt.runID, tt.disk, tt.dir, iofault.DiskSpec{Size: tt.size})
			if err == nil {
				d.Close()
				t.Fatalf("NewDisk = nil error, want one")
			}
			if _, err := os.Lstat(filepath.Join(journal.DiskRoot, tt.runID+"-"+tt.disk+".img")); err == nil {
				t.Errorf("backing file made")
			}
		})
	}
	if es := pending(t, j); len(es) != 0 {
		t.Errorf("journal pending after refusals: %+v", es)
	}
}

// A backing file of the same run and name is someone else's: NewDisk
// refuses, and neither it nor cleanup removes it.
func TestNewDiskBackingExists(t *testing.T) {
	needLoop(t)
	j := newJournal(t)
	if err := os.MkdirAll(journal.DiskRoot, 0o700); err != nil {
		t.Fatal(err)
	}
	backing := filepath.Join(journal.DiskRoot, j.RunID+"-data.img")
	if err := os.WriteFile(backing, []byte("theirs"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(backing) })
	_, err := iofault.NewDisk(j, j.RunID, "data", t.TempDir(), iofault.DiskSpec{Size: testSize})
	if !errors.Is(err, iofault.ErrBackingExists) {
		t.Fatalf("NewDisk = %v, want ErrBackingExists", err)
	}
	if left, err := journal.Clean(j.Dir); err != nil || len(left) != 0 {
		t.Fatalf("Clean = %v, %v", left, err)
	}
	if b, err := os.ReadFile(backing); err != nil || string(b) != "theirs" {
		t.Errorf("their file: %q, %v", b, err)
	}
}

func TestProbes(t *testing.T) {
	// Each probe answers without changing anything; on this machine the
	// answers are logged, as doctor shows them.
	for name, probe := range map[string]func() error{
		"LoopAvailable":   iofault.LoopAvailable,
		"FreezeAvailable": iofault.FreezeAvailable,
		"BlkioAvailable":  iofault.BlkioAvailable,
	} {
		err := probe()
		t.Logf("%s() = %v", name, err)
		if os.Geteuid() != 0 && err == nil {
			t.Errorf("%s() = nil without root", name)
		}
	}
}

// Close with every fault in force: frozen, a load blocked on the freeze,
// a throttled process. It thaws first, and leaves nothing.
func TestCloseUndoesFaults(t *testing.T) {
	needFreeze(t)
	needBlkio(t)
	j := newJournal(t)
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	d, err := iofault.NewDisk(j, j.RunID, "data", dir, iofault.DiskSpec{Size: testSize})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if _, err := d.Freeze(); err != nil {
		t.Fatal(err)
	}
	l, err := d.StartLoad(iofault.LoadSpec{Bytes: 1 << 30, For: 10 * time.Minute, Block: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sleep.Process.Kill()
		sleep.Wait()
	})
	th, err := d.Throttle([]int{sleep.Process.Pid}, iofault.Limits{WriteBPS: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, l.PID(), 'D')

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, d.Mount, d.Backing)
	if _, err := os.Stat(th.Dir); !os.IsNotExist(err) {
		t.Errorf("group %s still there: %v", th.Dir, err)
	}
	if got := blkioGroupOf(t, sleep.Process.Pid); got != "/" {
		t.Errorf("throttled process in %s after Close, want back in /", got)
	}
	if s := procState(l.PID()); s != 0 && s != 'Z' {
		t.Errorf("load writer still running (state %q)", s)
	}
	if es := pending(t, j); len(es) != 0 {
		t.Errorf("journal pending after Close: %+v", es)
	}
	if _, err := d.Freeze(); err == nil {
		t.Errorf("Freeze after Close = nil error")
	}
}
