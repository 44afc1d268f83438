package iofault

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/labrun/labrun/journal"
	"golang.org/x/sys/unix"
)

// The probes answer `labrun doctor` and the skips of scenarios and tests:
// nil when the machine can, else an error that says what is missing. They
// are cheap and change nothing.

// LoopAvailable reports whether NewDisk can work: root, loop devices, ext4
// in the kernel, mkfs.ext4, and a DiskRoot that is not on a tmpfs.
func LoopAvailable() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: loop devices and mounts")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return fmt.Errorf("no loop devices (modprobe loop): %w", err)
	}
	if ok, err := kernelHasFS("ext4"); err != nil {
		return err
	} else if !ok {
		return errors.New("no ext4 in /proc/filesystems (modprobe ext4)")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		return fmt.Errorf("no mkfs.ext4 (apt-get install e2fsprogs): %w", err)
	}
	// The nearest directory that exists: DiskRoot is made on first use.
	dir := journal.DiskRoot
	for {
		var st unix.Statfs_t
		err := unix.Statfs(dir, &st)
		if err == nil {
			if st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC {
				return fmt.Errorf("%s is on a tmpfs: a disk's backing file must be on a disk", dir)
			}
			return nil
		}
		if !errors.Is(err, unix.ENOENT) || dir == "/" {
			return fmt.Errorf("disk root %s: %w", journal.DiskRoot, err)
		}
		dir = filepath.Dir(dir)
	}
}

func kernelHasFS(name string) (bool, error) {
	f, err := os.Open("/proc/filesystems")
	if err != nil {
		return false, fmt.Errorf("filesystems: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 && fields[len(fields)-1] == name {
			return true, nil
		}
	}
	return false, sc.Err()
}

// FreezeAvailable reports whether Freeze can work. ext4 can always be
// frozen; what may be missing is a way to the ioctl (no CAP_SYS_ADMIN, a
// seccomp filter). So it asks for FITHAW on /proc, which can never be
// frozen: a kernel that lets the call through answers EINVAL ("not
// frozen"), and nothing changes.
func FreezeAvailable() error {
	if err := LoopAvailable(); err != nil {
		return err
	}
	f, err := os.Open("/proc")
	if err != nil {
		return fmt.Errorf("freeze probe: %w", err)
	}
	defer f.Close()
	err = unix.IoctlSetInt(int(f.Fd()), fiThaw, 0)
	switch {
	case err == nil, errors.Is(err, unix.EINVAL):
		return nil
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("FITHAW refused (no CAP_SYS_ADMIN?): %w", err)
	default:
		return fmt.Errorf("FIFREEZE/FITHAW not usable: %w", err)
	}
}

// BlkioAvailable reports whether Throttle can work: root, and cgroup v1
// blkio mounted at journal.BlkioRoot with its throttle files.
func BlkioAvailable() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: cgroups")
	}
	var st unix.Statfs_t
	if err := unix.Statfs(journal.BlkioRoot, &st); err != nil {
		return fmt.Errorf("no cgroup v1 blkio at %s: %w", journal.BlkioRoot, err)
	}
	if st.Type != unix.CGROUP_SUPER_MAGIC {
		return fmt.Errorf("%s is not a cgroup v1 hierarchy (cgroup v2 only?)", journal.BlkioRoot)
	}
	for _, f := range append(limitFiles[:], "cgroup.procs") {
		if _, err := os.Stat(filepath.Join(journal.BlkioRoot, f)); err != nil {
			return fmt.Errorf("no blkio throttling (CONFIG_BLK_DEV_THROTTLING): %w", err)
		}
	}
	return nil
}

// FUSEAvailable reports whether the FUSE layer of a disk (DiskSpec.FUSE)
// can work: root (it is mounted with mount(2), not through fusermount),
// /dev/fuse, and fuse in the kernel.
func FUSEAvailable() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: FUSE mounts without fusermount")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("no /dev/fuse (modprobe fuse): %w", err)
	}
	if ok, err := kernelHasFS("fuse"); err != nil {
		return err
	} else if !ok {
		return errors.New("no fuse in /proc/filesystems (modprobe fuse)")
	}
	return nil
}
