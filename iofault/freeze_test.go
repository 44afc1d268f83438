package iofault_test

import (
	"errors"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/labrun/labrun/iofault"
	"github.com/labrun/labrun/journal"
	"golang.org/x/sys/unix"
)

// dd is a one-block synchronous write into the disk.
type dd struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has ended
	err  error         // its end, once done is closed
}

// startDD starts a dd on the disk. It is killed when the test ends, after
// a thaw: a process blocked on a frozen filesystem cannot die before.
func startDD(t *testing.T, d *iofault.Disk, name string) *dd {
	t.Helper()
	w := &dd{cmd: exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(d.Mount, name), "bs=4k", "count=1", "oflag=sync"),
		done: make(chan struct{})}
	if err := w.cmd.Start(); err != nil {
		t.Fatalf("start dd: %v", err)
	}
	go func() {
		w.err = w.cmd.Wait()
		close(w.done)
	}()
	t.Cleanup(func() {
		journal.Undo(journal.Entry{Kind: journal.KindFreeze, Path: d.Mount, Name: d.Dev})
		w.cmd.Process.Kill()
		<-w.done
	})
	return w
}

func TestFreeze(t *testing.T) {
	needFreeze(t)
	d, j := newDisk(t)
	f, err := d.Freeze()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Thaw() })
	entry := journal.Entry{Kind: journal.KindFreeze, Path: d.Mount, Name: d.Dev}
	if !journal.Exists(entry) {
		t.Errorf("Exists(freeze) = false while frozen")
	}
	if _, err := d.Freeze(); !errors.Is(err, iofault.ErrFrozen) {
		t.Errorf("second Freeze = %v, want ErrFrozen", err)
	}

	w := startDD(t, d, "f")
	// Blocked in the kernel, uninterruptibly: state D.
	waitState(t, w.cmd.Process.Pid, 'D')
	select {
	case <-w.done:
		t.Fatalf("write finished while frozen: %v", w.err)
	case <-time.After(500 * time.Millisecond):
	}
	// Not even SIGKILL ends it before the thaw.
	if err := w.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if s := procState(w.cmd.Process.Pid); s != 'D' {
		t.Errorf("after SIGKILL while frozen: state %q, want still D", s)
	}

	thawed := time.Now()
	if err := f.Thaw(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.done:
		t.Logf("writer ended %v after the thaw", time.Since(thawed))
	case <-time.After(30 * time.Second):
		t.Fatal("writer still blocked 30s after the thaw")
	}
	if journal.Exists(entry) {
		t.Errorf("Exists(freeze) = true after Thaw")
	}
	if err := f.Thaw(); err != nil {
		t.Errorf("second Thaw: %v", err)
	}
	for _, e := range pending(t, j) {
		if e.Kind == journal.KindFreeze {
			t.Errorf("freeze still pending after Thaw: %+v", e)
		}
	}

	// A write after the thaw goes through, and the disk freezes again.
	w = startDD(t, d, "g")
	<-w.done
	if w.err != nil {
		t.Fatalf("write after thaw: %v", w.err)
	}
	f2, err := d.Freeze()
	if err != nil {
		t.Fatalf("Freeze after Thaw: %v", err)
	}
	if err := f2.Thaw(); err != nil {
		t.Fatal(err)
	}
}

// The freeze outlives a write that completes: a write+fsync blocks for the
// frozen time, and goes on after it. Judged by order only.
func TestFreezeWriteCompletesAfterThaw(t *testing.T) {
	needFreeze(t)
	d, _ := newDisk(t)
	f, err := d.Freeze()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Thaw() })
	w := startDD(t, d, "f")
	waitState(t, w.cmd.Process.Pid, 'D')
	thawing := make(chan struct{})
	go func() {
		time.Sleep(time.Second)
		close(thawing)
		f.Thaw()
	}()
	<-w.done
	if w.err != nil {
		t.Fatalf("dd: %v", w.err)
	}
	select {
	case <-thawing:
	default:
		t.Errorf("the write finished before the thaw")
	}
}

// A frozen filesystem whose mount is gone (a lazy unmount before the thaw)
// stays frozen in the kernel; Thaw reaches it by mounting the device again.
func TestThawAfterLazyUnmount(t *testing.T) {
	needFreeze(t)
	d, _ := newDisk(t)
	f, err := d.Freeze()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Thaw() })
	if err := unix.Unmount(d.Mount, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	entry := journal.Entry{Kind: journal.KindFreeze, Path: d.Mount, Name: d.Dev}
	if !journal.Exists(entry) {
		t.Fatalf("Exists(freeze) = false after a lazy unmount of the frozen filesystem")
	}
	if err := f.Thaw(); err != nil {
		t.Fatal(err)
	}
	if journal.Exists(entry) {
		t.Errorf("Exists(freeze) = true after Thaw")
	}
	// Close finds it unmounted; the loop device unbinds as the
	// filesystem goes (assertGone in newDisk's cleanup).
}
