package journal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The undo side of a run's own disk (package iofault): a loop device and
// its backing file, a frozen filesystem, a blkio cgroup. It lives here, not
// in iofault, so that `labrun cleanup` undoes them from the journal alone,
// and iofault's own Close, Thaw and Remove call Undo: one way to remove
// each, whoever removes it.

// DiskRoot holds the backing files of run disks. It is on the machine's
// disk (a loop device over a tmpfs file would measure memory, not a disk).
// Undo removes no backing file outside it. A variable for tests.
var DiskRoot = "/var/lib/labrun/disks"

// BlkioRoot is the cgroup v1 blkio hierarchy. Throttle groups are made
// directly under it, named with CgroupPrefix; Undo removes no other group.
// A variable for tests.
var BlkioRoot = "/sys/fs/cgroup/blkio"

// CgroupPrefix begins the name of every cgroup labrun makes.
const CgroupPrefix = "labrun-"

// fiThaw is FITHAW, _IOWR('X', 120, int), which x/sys/unix does not define.
const fiThaw = 0xc0045878

var loopPath = regexp.MustCompile(`^/dev/(loop[0-9]+)$`)

// loopName returns "loopN" for "/dev/loopN".
func loopName(dev string) (string, bool) {
	m := loopPath.FindStringSubmatch(dev)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// LoopBackingFile returns the file a loop device ("/dev/loopN") is bound
// to, without the " (deleted)" the kernel appends once it is unlinked, or
// "" when the device is unbound or absent.
func LoopBackingFile(dev string) string {
	n, ok := loopName(dev)
	if !ok {
		return ""
	}
	b, err := os.ReadFile(filepath.Join("/sys/block", n, "loop", "backing_file"))
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), " (deleted)")
}

// ourBackingFile refuses a backing file path that is not directly in
// DiskRoot: the path comes from a file on disk, and Undo removes it.
func ourBackingFile(p string) error {
	if p == "" || !filepath.IsAbs(p) || filepath.Clean(p) != p || filepath.Dir(p) != filepath.Clean(DiskRoot) {
		return fmt.Errorf("refusing backing file %q: not in %s", p, DiskRoot)
	}
	return nil
}

// undoLoop detaches the loop device if it is still bound to the recorded
// backing file (the number may have been reused by someone else since, and
// the host's own loop devices are never touched), then removes the file.
// The device may be recorded without being bound: it is journaled before
// LOOP_CONFIGURE.
func undoLoop(e Entry) error {
	if err := ourBackingFile(e.Name); err != nil {
		return err
	}
	if e.Path != "" {
		if _, ok := loopName(e.Path); !ok {
			return fmt.Errorf("refusing loop device %q", e.Path)
		}
		if LoopBackingFile(e.Path) == e.Name {
			if err := clearLoop(e.Path); err != nil {
				return err
			}
			// A device still open (a lazily unmounted filesystem whose
			// last user, a killed server, is still exiting: SIGKILL of
			// mysqld took 1.7 s here) unbinds itself at its last close.
			// Wait for that, bounded, so that a cleanup that returns has
			// normally removed the device. A holder that outlives the wait
			// (a process of someone else's with a file open on the disk)
			// does not make this fail: the device is marked to unbind, the
			// file below is removed next, and doctor lists the device for
			// as long as it stays bound (Exists).
			deadline := time.Now().Add(loopRelease)
			for LoopBackingFile(e.Path) == e.Name && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	if err := os.Remove(e.Name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", e.Name, err)
	}
	return nil
}

// loopRelease bounds the wait for a busy loop device to unbind itself.
const loopRelease = 10 * time.Second

// clearLoop unbinds a loop device. A device still open (mounted, or a lazy
// unmount still busy) is not refused: the kernel marks it to unbind itself
// at its last close. ENXIO: already unbound.
func clearLoop(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("detach %s: %w", dev, err)
	}
	defer f.Close()
	err = unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0)
	if err != nil && !errors.Is(err, unix.ENXIO) {
		return fmt.Errorf("detach %s: %w", dev, err)
	}
	return nil
}

// loopExists: the device is still bound to the file, or the file is still
// there.
func loopExists(e Entry) bool {
	if e.Path != "" && e.Name != "" && LoopBackingFile(e.Path) == e.Name {
		return true
	}
	if e.Name == "" {
		return false
	}
	_, err := os.Lstat(e.Name)
	return err == nil
}

// devNumber reads "MAJ:MIN" of a block device from sysfs; "" when it has
// none.
func devNumber(name string) string {
	b, err := os.ReadFile(filepath.Join("/sys/block", name, "dev"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// mountsOf returns the mount points in this mount namespace of the
// filesystem on device majMin ("7:3").
func mountsOf(majMin string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
		fields := strings.Fields(sc.Text())
		if len(fields) >= 5 && fields[2] == majMin {
			out = append(out, unescapeMount(fields[4]))
		}
	}
	return out, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// thawAt thaws the filesystem mounted at dir. EINVAL: it was not frozen.
func thawAt(dir string) error {
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("thaw %s: %w", dir, err)
	}
	defer f.Close()
	err = unix.IoctlSetInt(int(f.Fd()), fiThaw, 0)
	if err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("thaw %s: %w", dir, err)
	}
	return nil
}

// undoFreeze thaws the filesystem on the recorded loop device. It finds
// the filesystem by device, not by path: the recorded mount point may hold
// another filesystem by now (the parent's, after an unmount), and thawing
// that is not ours to do.
//
// A frozen filesystem whose last mount was removed (a lazy unmount, or an
// unmount that ran before the thaw) does not go away: its superblock stays,
// frozen, with no path to reach it, and its loop device stays bound until
// reboot. Mounting the device again attaches to that same superblock
// (measured on 6.18), through which it can be thawed; that is done only
// for a loop device whose backing file is in DiskRoot.
func undoFreeze(e Entry) error {
	if e.Path == "" || !filepath.IsAbs(e.Path) {
		return fmt.Errorf("refusing to thaw %q", e.Path)
	}
	n, ok := loopName(e.Name)
	if !ok {
		return fmt.Errorf("refusing to thaw a filesystem on %q: not a loop device", e.Name)
	}
	majMin := devNumber(n)
	if majMin == "" {
		return nil
	}
	mounts, err := mountsOf(majMin)
	if err != nil {
		return fmt.Errorf("thaw %s: %w", e.Path, err)
	}
	if len(mounts) > 0 {
		dir := mounts[0]
		for _, m := range mounts {
			if m == e.Path {
				dir = m
			}
		}
		return thawAt(dir)
	}
	if !superblockAlive(n) || ourBackingFile(LoopBackingFile(e.Name)) != nil {
		return nil
	}
	tmp, err := os.MkdirTemp("", "labrun-thaw-")
	if err != nil {
		return fmt.Errorf("thaw %s: %w", e.Name, err)
	}
	defer os.Remove(tmp)
	if err := unix.Mount(e.Name, tmp, "ext4", 0, ""); err != nil {
		return fmt.Errorf("thaw %s: mount it again: %w", e.Name, err)
	}
	terr := thawAt(tmp)
	if err := unix.Unmount(tmp, unix.MNT_DETACH); err != nil {
		return errors.Join(terr, fmt.Errorf("thaw %s: %w", e.Name, err))
	}
	return terr
}

// superblockAlive reports whether an ext4 filesystem on device n ("loop3")
// is still alive in the kernel, mounted or not.
func superblockAlive(n string) bool {
	_, err := os.Stat(filepath.Join("/sys/fs/ext4", n))
	return err == nil
}

// freezeExists reports whether the filesystem on the recorded device is
// still frozen. The kernel shows no freeze state anywhere, but ext4 does on
// disk: it clears the journal's needs_recovery flag in its superblock when
// it freezes and sets it again when it thaws (a mounted, writable ext4 with
// a journal always has it). The superblock is read through the device's
// page cache, which is the one ext4 writes it through.
func freezeExists(e Entry) bool {
	n, ok := loopName(e.Name)
	if !ok || !superblockAlive(n) {
		return false
	}
	f, err := os.Open(e.Name)
	if err != nil {
		return false
	}
	defer f.Close()
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, 1024); err != nil {
		return false
	}
	const (
		magic      = 0xEF53
		hasJournal = 0x4 // s_feature_compat
		recover    = 0x4 // s_feature_incompat
	)
	if binary.LittleEndian.Uint16(sb[0x38:]) != magic || binary.LittleEndian.Uint32(sb[0x5C:])&hasJournal == 0 {
		// Not a filesystem that shows it: alive is all we know.
		return true
	}
	return binary.LittleEndian.Uint32(sb[0x60:])&recover == 0
}

// ourCgroup refuses a cgroup path that is not a labrun group directly
// under BlkioRoot.
func ourCgroup(p string) error {
	if p == "" || !filepath.IsAbs(p) || filepath.Clean(p) != p || filepath.Dir(p) != filepath.Clean(BlkioRoot) ||
		!strings.HasPrefix(filepath.Base(p), CgroupPrefix) {
		return fmt.Errorf("refusing cgroup %q: not a %s* group in %s", p, CgroupPrefix, BlkioRoot)
	}
	return nil
}

// cgroupRetry bounds how long undoCgroup retries a group that is not yet
// empty: a process forking as it is moved, or exiting.
const cgroupRetry = 5 * time.Second

// undoCgroup moves every process still in the group to the hierarchy's
// root (a group cannot be removed while it holds one; the journal does not
// know where each came from, Throttle.Remove does), then removes it.
func undoCgroup(e Entry) error {
	if err := ourCgroup(e.Path); err != nil {
		return err
	}
	// Lift the limits first: IO already queued in the group stays there
	// at the limit's pace after its processes leave (measured: a commit
	// held 0.5 s and more after they had moved), and rmdir waits for it.
	LiftLimits(e.Path)
	deadline := time.Now().Add(cgroupRetry)
	for {
		pids, err := CgroupProcs(e.Path)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("remove cgroup %s: %w", e.Path, err)
		}
		var errs []error
		for _, pid := range pids {
			if err := MoveToCgroup(BlkioRoot, pid); err != nil {
				errs = append(errs, err)
			}
		}
		err = unix.Rmdir(e.Path)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return errors.Join(append(errs, fmt.Errorf("remove cgroup %s: %w", e.Path, err))...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CgroupProcs lists the processes in a cgroup v1 group.
func CgroupProcs(dir string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, s := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(s); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// MoveToCgroup moves a whole process (all its threads) into a cgroup v1
// group. A process that is gone (ESRCH) is not an error.
func MoveToCgroup(dir string, pid int) error {
	f, err := os.OpenFile(filepath.Join(dir, "cgroup.procs"), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("move %d to %s: %w", pid, dir, err)
	}
	defer f.Close()
	// One write per pid: the kernel takes one per write.
	if _, err := f.WriteString(strconv.Itoa(pid)); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("move %d to %s: %w", pid, dir, err)
	}
	return nil
}

// throttleFiles are cgroup v1's blkio limit files.
var throttleFiles = []string{"blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device",
	"blkio.throttle.read_iops_device", "blkio.throttle.write_iops_device"}

// LiftLimits removes every device limit of a blkio group (a limit of 0
// means none), so that IO the group has queued is dispatched at once.
// Errors are ignored: a group that is gone has no limits.
func LiftLimits(dir string) {
	for _, f := range throttleFiles {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if fs := strings.Fields(line); len(fs) == 2 {
				os.WriteFile(filepath.Join(dir, f), []byte(fs[0]+" 0"), 0)
			}
		}
	}
}
