package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// netnsDir is where named network namespaces are bind-mounted, as by
// `ip netns add` and netns.NewNamed.
const netnsDir = "/run/netns"

// Undo removes one resource. It is idempotent: a resource that is already
// gone counts as removed.
func Undo(e Entry) error {
	switch e.Kind {
	case KindProcess:
		return killProcess(e.PID, e.StartTime)
	case KindNetns:
		// Not netns.DeleteNamed: it stops at a failed unmount, and a file
		// whose bind mount is already gone (EINVAL: a run killed between
		// creating the file and mounting it) would stay listed by
		// `ip netns list` forever.
		p := filepath.Join(netnsDir, e.Name)
		if e.Name == "" || filepath.Base(p) != e.Name {
			return fmt.Errorf("refusing to delete namespace %q", e.Name)
		}
		err := unix.Unmount(p, unix.MNT_DETACH)
		if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("delete namespace %s: %w", e.Name, err)
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("delete namespace %s: %w", e.Name, err)
		}
		return nil
	case KindMount:
		err := unix.Unmount(e.Path, unix.MNT_DETACH)
		if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount %s: %w", e.Path, err)
		}
		return nil
	case KindDir:
		if e.Path == "" || e.Path == "/" || !filepath.IsAbs(e.Path) {
			return fmt.Errorf("refusing to remove %q", e.Path)
		}
		if err := os.RemoveAll(e.Path); err != nil {
			return fmt.Errorf("remove %s: %w", e.Path, err)
		}
		return nil
	case KindContainer:
		// Through the engine's API, not the container library: cleanup
		// runs long after the run that made it, and force also kills it.
		return removeContainer(e.Name)
	case KindLoop:
		return undoLoop(e)
	case KindFreeze:
		return undoFreeze(e)
	case KindCgroup:
		return undoCgroup(e)
	}
	return fmt.Errorf("unknown resource kind %q", e.Kind)
}

// Exists reports whether a resource is still present.
func Exists(e Entry) bool {
	switch e.Kind {
	case KindProcess:
		return e.PID > 0 && ProcessStartTime(e.PID) == e.StartTime && e.StartTime != 0
	case KindNetns:
		_, err := os.Stat(filepath.Join(netnsDir, e.Name))
		return err == nil
	case KindDir, KindMount:
		// ENOTCONN: a FUSE mount whose server died, which is there until
		// it is unmounted.
		_, err := os.Stat(e.Path)
		return err == nil || errors.Is(err, syscall.ENOTCONN)
	case KindContainer:
		return containerExists(e.Name)
	case KindLoop:
		return loopExists(e)
	case KindFreeze:
		return freezeExists(e)
	case KindCgroup:
		_, err := os.Stat(e.Path)
		return err == nil
	}
	return false
}

// killProcess sends SIGKILL to the process if it is still the one recorded,
// then waits up to 5 s for it to disappear.
func killProcess(pid int, start uint64) error {
	if pid <= 0 || start == 0 || ProcessStartTime(pid) != start {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %d: %w", pid, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if ProcessStartTime(pid) != start {
			return nil
		}
		// A child of ours stays a zombie until reaped; a zombie is gone for
		// our purposes.
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && isZombie(b) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("process %d still running after SIGKILL", pid)
}

func isZombie(stat []byte) bool {
	for i := len(stat) - 1; i >= 0; i-- {
		if stat[i] == ')' {
			return i+2 < len(stat) && stat[i+2] == 'Z'
		}
	}
	return false
}

// Clean undoes every pending resource of the run in dir, newest first, and
// removes the journal when all are gone. It returns what could not be
// removed.
//
// Freezes are thawed first, wherever they are in the journal: a process
// blocked on a frozen filesystem cannot be killed until it is thawed (a
// process started after the freeze is newer and would come first), and a
// frozen filesystem unmounted before its thaw stays frozen in the kernel.
func Clean(dir string) ([]Entry, error) {
	pending, err := Pending(dir)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(pending, func(i, j int) bool {
		return pending[i].Kind == KindFreeze && pending[j].Kind != KindFreeze
	})
	var left []Entry
	var errs []error
	for _, e := range pending {
		if err := Undo(e); err != nil {
			left = append(left, e)
			errs = append(errs, err)
		}
	}
	if len(left) == 0 {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return left, errors.Join(errs...)
}
