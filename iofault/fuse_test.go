package iofault_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labrun/labrun/iofault"
	"github.com/labrun/labrun/journal"
	"golang.org/x/sys/unix"
)

// fuseSuperMagic is statfs's f_type of a FUSE filesystem.
const fuseSuperMagic = 0x65735546

// needFUSE skips a test that mounts FUSE where the machine cannot, naming
// what is missing, and in -short mode.
func needFUSE(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: disk tier skipped")
	}
	if err := iofault.FUSEAvailable(); err != nil {
		t.Skipf("needs FUSE: %v", err)
	}
}

// mountFUSE mounts a passthrough of a fresh directory, unmounted when the
// test ends.
func mountFUSE(t *testing.T) (*iofault.FUSE, string) {
	t.Helper()
	needFUSE(t)
	mnt := t.TempDir()
	f, err := iofault.MountFUSE(t.TempDir(), mnt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Unmount(); err != nil {
			t.Error(err)
		}
		if mountedAt(t, mnt) {
			t.Errorf("%s still mounted", mnt)
		}
	})
	return f, mnt
}

func TestFUSEDelay(t *testing.T) {
	f, mnt := mountFUSE(t)
	fh, err := os.Create(filepath.Join(mnt, "x"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if err := f.SetDelay("fsync", 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := fh.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := fh.Sync(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("fsync took %s, want >= 100ms", d)
	}
	st := f.Stats()["fsync"]
	if st.Calls < 1 || st.Waited < 100*time.Millisecond || st.Delay != 100*time.Millisecond {
		t.Errorf("fsync stats %+v, want a call delayed 100ms", st)
	}
	f.ClearDelays()
	start = time.Now()
	if err := fh.Sync(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d >= 100*time.Millisecond {
		t.Errorf("fsync took %s after ClearDelays", d)
	}
	if err := f.SetDelay("nope", time.Second); err == nil {
		t.Error("unknown operation accepted")
	}
	if err := f.SetDelay("write", -time.Second); err == nil {
		t.Error("negative delay accepted")
	}
	// What was written through the layer is in the backing directory.
	b, err := os.ReadFile(filepath.Join(f.Backing, "x"))
	if err != nil || string(b) != "hello" {
		t.Errorf("backing file holds %q (%v), want hello", b, err)
	}
}

// A change of the delay applies to the calls already waiting: clearing it
// lets them go at once.
func TestFUSEDelayChange(t *testing.T) {
	f, mnt := mountFUSE(t)
	fh, err := os.Create(filepath.Join(mnt, "x"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if err := f.SetDelay("write", time.Hour); err != nil {
		t.Fatal(err)
	}
	done := make(chan time.Time, 1)
	start := time.Now()
	go func() {
		fh.Write([]byte("hello"))
		done <- time.Now()
	}()
	time.Sleep(200 * time.Millisecond)
	if err := f.SetDelay("write", 400*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	select {
	case end := <-done:
		if d := end.Sub(start); d < 400*time.Millisecond || d > 2*time.Second {
			t.Errorf("write took %s, want the new delay, 400ms", d)
		}
	case <-time.After(5 * time.Second):
		f.ClearDelays()
		t.Fatal("write still delayed 5s after its delay was cut to 400ms")
	}
}

func TestFUSEStall(t *testing.T) {
	f, mnt := mountFUSE(t)
	fh, err := os.Create(filepath.Join(mnt, "x"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	f.Stall()
	done := make(chan time.Time, 1)
	start := time.Now()
	go func() {
		fh.Write([]byte("hello"))
		done <- time.Now()
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("write finished during the stall")
	default:
	}
	f.Release()
	if d := (<-done).Sub(start); d < 300*time.Millisecond {
		t.Errorf("write took %s, want the stall's 300ms at least", d)
	}
}

// The descriptors on /dev/fuse are close-on-exec: a child that inherited
// one would keep the connection alive after this process dies.
func TestFUSECloseOnExec(t *testing.T) {
	mountFUSE(t)
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, e := range ents {
		if l, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); l != "/dev/fuse" {
			continue
		}
		seen++
		fd, _ := strconv.Atoi(e.Name())
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil {
			t.Fatal(err)
		}
		if flags&unix.FD_CLOEXEC == 0 {
			t.Errorf("fd %d on /dev/fuse is not close-on-exec", fd)
		}
	}
	if seen == 0 {
		t.Error("no descriptor on /dev/fuse while mounted")
	}
}

// newFUSEDisk makes a disk with the FUSE layer in a fresh journal, and
// closes it when the test ends, checking that nothing of it is left.
func newFUSEDisk(t *testing.T) (*iofault.Disk, *journal.Journal) {
	t.Helper()
	needLoop(t)
	needFUSE(t)
	j := newJournal(t)
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	d, err := iofault.NewDisk(j, j.RunID, "data", dir, iofault.DiskSpec{Size: testSize, FUSE: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		assertFUSEDiskGone(t, d)
	})
	return d, j
}

// assertFUSEDiskGone checks that neither mount, the hidden mount point,
// the loop device nor the backing file of a FUSE disk is left.
func assertFUSEDiskGone(t *testing.T, d *iofault.Disk) {
	t.Helper()
	if mountedAt(t, d.FSMount) {
		t.Errorf("%s still mounted", d.FSMount)
	}
	if _, err := os.Lstat(d.FSMount); !os.IsNotExist(err) {
		t.Errorf("hidden mount point %s still there: %v", d.FSMount, err)
	}
	assertGone(t, d.Mount, d.Backing)
}

func TestFUSEDisk(t *testing.T) {
	d, j := newFUSEDisk(t)
	if want := filepath.Join(filepath.Dir(d.Mount), ".data-ext4"); d.FSMount != want {
		t.Errorf("FSMount = %s, want %s", d.FSMount, want)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(d.Mount, &fs); err != nil || fs.Type != fuseSuperMagic {
		t.Errorf("%s: filesystem type %#x (%v), want FUSE", d.Mount, fs.Type, err)
	}
	if err := unix.Statfs(d.FSMount, &fs); err != nil || fs.Type != unix.EXT4_SUPER_MAGIC {
		t.Errorf("%s: filesystem type %#x (%v), want ext4", d.FSMount, fs.Type, err)
	}
	if ents, err := os.ReadDir(d.Mount); err != nil || len(ents) != 0 {
		t.Errorf("mount point holds %v (%v), want nothing: no lost+found", ents, err)
	}
	// Newest first: the passthrough, the ext4, the loop device, the
	// hidden mount point.
	var kinds []string
	for _, e := range pending(t, j) {
		kinds = append(kinds, e.Kind+" "+e.Path)
	}
	want := []string{"mount " + d.Mount, "mount " + d.FSMount, "loop " + d.Dev, "dir " + d.FSMount}
	if strings.Join(kinds, "|") != strings.Join(want, "|") {
		t.Errorf("journal pending %v, want %v", kinds, want)
	}

	fh, err := os.Create(filepath.Join(d.Mount, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if err := d.SetLatency("fsync", 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := fh.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := fh.Sync(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 200*time.Millisecond || took > 2*time.Second {
		t.Errorf("fsync took %s with a 200ms latency", took)
	}
	if err := d.SetLatency("fsink", time.Second); err == nil {
		t.Error("SetLatency of an unknown operation = nil error")
	}
	if err := d.ClearLatency(); err != nil {
		t.Fatal(err)
	}
	st, err := d.LatencyStats()
	if err != nil || st["fsync"].Delay != 0 || st["fsync"].Waited < 200*time.Millisecond {
		t.Errorf("LatencyStats = %+v, %v; want fsync waited 200ms, no delay now", st["fsync"], err)
	}
	// The file went through to the ext4.
	if _, err := os.Stat(filepath.Join(d.FSMount, "f")); err != nil {
		t.Errorf("file not on the ext4: %v", err)
	}
	fh.Close()

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	assertFUSEDiskGone(t, d)
	if es := pending(t, j); len(es) != 0 {
		t.Errorf("journal pending after Close: %+v", es)
	}
	if err := d.SetLatency("fsync", time.Second); err == nil {
		t.Error("SetLatency after Close = nil error")
	}
}

func TestLatencyNeedsFUSE(t *testing.T) {
	d, _ := newDisk(t)
	if err := d.SetLatency("fsync", time.Second); !errors.Is(err, iofault.ErrNoFUSE) {
		t.Errorf("SetLatency on a disk without FUSE = %v, want ErrNoFUSE", err)
	}
	if err := d.ClearLatency(); !errors.Is(err, iofault.ErrNoFUSE) {
		t.Errorf("ClearLatency on a disk without FUSE = %v, want ErrNoFUSE", err)
	}
	if d.FSMount != d.Mount {
		t.Errorf("FSMount %s, want Mount %s", d.FSMount, d.Mount)
	}
}

// A freeze acts on the ext4 below the FUSE layer: a writer through the
// FUSE mount blocks until the thaw.
func TestFUSEFreeze(t *testing.T) {
	needFreeze(t)
	d, _ := newFUSEDisk(t)
	f, err := d.Freeze()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Thaw() })
	w := startDD(t, d, "f")
	select {
	case <-w.done:
		t.Fatalf("dd through the FUSE mount ended during the freeze: %v", w.err)
	case <-time.After(time.Second):
	}
	if err := f.Thaw(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.done:
		if w.err != nil {
			t.Errorf("dd after the thaw: %v", w.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("dd still blocked 10s after the thaw")
	}
	if fi, err := os.Stat(filepath.Join(d.FSMount, "f")); err != nil || fi.Size() != 4096 {
		t.Errorf("written file on the ext4: %v, %v", fi, err)
	}
}

// Close while a process still holds a file open on the FUSE mount: the
// mount is detached, the connection outlives it (the open file holds it),
// and Close aborts it; nothing is left.
func TestFUSECloseBusy(t *testing.T) {
	defer iofault.SetServeWait(time.Second)()
	d, _ := newFUSEDisk(t)
	// A shell that keeps the file open, and waits.
	sh := exec.Command("sh", "-c", "exec 3>"+filepath.Join(d.Mount, "held")+"; echo ready; exec sleep 60")
	out, err := sh.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sh.Process.Kill()
		sh.Wait()
	})
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		t.Fatalf("shell said %q", line)
	}
	start := time.Now()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Close took %s", time.Since(start).Round(time.Millisecond))
	assertFUSEDiskGone(t, d)
}

// The crash helper is this test binary run again: it makes a FUSE disk,
// delays every write by an hour, starts a dd that writes through it
// (blocked at once by the delay, and journaled, as the server would be),
// says READY and waits to be killed.
const fuseCrashEnv = "IOFAULT_TEST_FUSE_CRASH"

func TestFUSECrashHelper(t *testing.T) {
	j, d := crashChildDisk(t, fuseCrashEnv, "TestFUSECrashCleanup", iofault.DiskSpec{Size: testSize, FUSE: true})
	if err := d.SetLatency("write", time.Hour); err != nil {
		t.Fatal(err)
	}
	dd := exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(d.Mount, "f"), "bs=4k", "count=1", "oflag=sync")
	if err := dd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := j.AddProcess(dd.Process.Pid, "dd"); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("READY %d %s %s\n", dd.Process.Pid, d.Backing, d.FSMount)
	select {}
}

// A run killed with SIGKILL while a write through its FUSE layer is
// delayed: the kernel aborts the connection with its server, and
// journal.Clean kills the writer, unmounts the passthrough and the ext4
// lazily, unbinds and deletes, and removes the hidden mount point.
func TestFUSECrashCleanup(t *testing.T) {
	needLoop(t)
	needFUSE(t)
	tempRoot(t)
	cmd, jdir, dir, f := startCrashChild(t, "TestFUSECrashHelper", fuseCrashEnv)
	ddPID, _ := strconv.Atoi(f[0])
	backing, fsMount := f[1], f[2]
	t.Cleanup(func() {
		if p, err := os.FindProcess(ddPID); err == nil {
			p.Kill()
		}
	})
	// dd waits in the FUSE write, its delay an hour long.
	time.Sleep(300 * time.Millisecond)
	if s := procState(ddPID); s == 0 || s == 'Z' {
		t.Fatalf("dd ended before the kill (state %q)", s)
	}

	self, _ := os.Readlink("/proc/self/ns/mnt")
	child, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", cmd.Process.Pid))
	before := mountedAt(t, dir) && mountedAt(t, fsMount)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if !mountedAt(t, dir) || !mountedAt(t, fsMount) {
		t.Logf("mount namespaces: this test %s, the child %s; mounted before the kill: %v", self, child, before)
		t.Fatalf("mounts gone before Clean: FUSE %v, ext4 %v", mountedAt(t, dir), mountedAt(t, fsMount))
	}
	// The server's death aborted the connection: the mount answers
	// ENOTCONN, and the writer's delayed write failed with it.
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); !errors.Is(err, unix.ENOTCONN) {
		t.Errorf("stat of the dead FUSE mount = %v, want ENOTCONN", err)
	}

	// What `labrun doctor` lists: the dead FUSE mount is still there.
	pend, err := journal.Pending(jdir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range pend {
		if e.Kind == journal.KindMount && !journal.Exists(e) {
			t.Errorf("Exists(%s %s) = false before Clean", e.Kind, e.Path)
		}
	}

	left, err := journal.Clean(jdir)
	if err != nil || len(left) != 0 {
		t.Fatalf("Clean = %+v, %v; want nothing left", left, err)
	}
	if mountedAt(t, fsMount) {
		t.Errorf("%s still mounted", fsMount)
	}
	if _, err := os.Lstat(fsMount); !os.IsNotExist(err) {
		t.Errorf("hidden mount point %s still there: %v", fsMount, err)
	}
	assertGone(t, dir, backing)
	if s := procState(ddPID); s != 0 && s != 'Z' {
		t.Errorf("dd %d still running after Clean (state %q)", ddPID, s)
	}
	if _, err := os.Stat(jdir); !os.IsNotExist(err) {
		t.Errorf("journal %s still there: %v", jdir, err)
	}
}
