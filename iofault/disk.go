// Package iofault gives a MySQL server's data directory a filesystem of its
// own, ext4 with its journal on a loop device, and puts IO faults on it:
// a freeze (every write and fsync blocks until the thaw), blkio throttling
// of chosen processes, a competing fsync-heavy writer, and, through an
// optional FUSE passthrough layer above the ext4, a delay on one kind of
// file operation. It also samples the device's counters as iostat -x does.
//
// Every resource is journaled before it is made (package journal), and its
// undo is journal.Undo, so that `labrun cleanup` after a SIGKILL removes
// what a run left, in the order that works: freezes first.
package iofault

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labrun/labrun/journal"
	"golang.org/x/sys/unix"
)

// DefaultSize is a disk's size when DiskSpec.Size is 0. The backing file is
// sparse: it takes what is written.
const DefaultSize = 1 << 30

// MinSize is the smallest disk NewDisk makes: ext4's journal alone takes
// 4 MiB of it.
const MinSize = 16 << 20

// DiskSpec describes a disk.
type DiskSpec struct {
	// Size in bytes; 0 means DefaultSize.
	Size int64
	// FUSE puts a FUSE passthrough between the mount point and the ext4,
	// for SetLatency: the ext4 is then mounted at a hidden sibling of the
	// mount point, and the passthrough at the mount point.
	FUSE bool
}

// Disk is a filesystem of its own: an ext4 with its journal, on a loop
// device over a sparse file on the machine's disk, mounted at Mount, or
// under a FUSE passthrough mounted there.
type Disk struct {
	Name         string
	Dev          string // /dev/loopN
	Major, Minor uint32
	// Mount is where the data is seen: the ext4's mount point, or with
	// DiskSpec.FUSE the passthrough's.
	Mount string
	// FSMount is the ext4's own mount point: Mount, or with DiskSpec.FUSE
	// a hidden directory beside it, ".NAME-ext4". Freezes and loads act
	// here, below the latency layer, as a disk or another job would.
	FSMount string
	Backing string
	Size    int64
	// DirectIO is whether the loop device reads and writes its backing
	// file with O_DIRECT (/sys/block/loopN/loop/dio): what the filesystem
	// writes then reaches the machine's disk, not its page cache.
	DirectIO bool

	runID      string
	j          *journal.Journal
	loopEntry  journal.Entry
	mountEntry journal.Entry
	// With DiskSpec.FUSE: FSMount, made by NewDisk, and the passthrough.
	dirEntry  journal.Entry
	fuseEntry journal.Entry
	fuse      *FUSE

	mu       sync.Mutex
	loopOn   bool // loopEntry is journaled and not undone
	mountOn  bool
	dirOn    bool
	fuseOn   bool
	freeze   *Freeze
	throttle *Throttle
	loads    map[*Load]struct{}
	nextLoad int
	// blocked counts loads that Stop left blocked in the kernel; each
	// finishes after the thaw.
	blocked sync.WaitGroup
}

// ErrBackingExists means a backing file of that run and name is already
// there: not ours to use or remove.
var ErrBackingExists = errors.New("backing file already exists")

var safeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// NewDisk makes a disk of spec.Size for the run and mounts it at dir, which
// must exist and be empty. Its owner and mode are left to the caller (the
// filesystem's root is root's, 0755).
//
// Each step is journaled before it is made, so that journal.Clean after a
// SIGKILL at any point unmounts, unbinds and deletes what was made: the
// backing file and loop device as one KindLoop entry, the mount as a
// KindMount entry. With spec.FUSE, the ext4's hidden mount point is a
// KindDir entry before them all, and the passthrough a KindMount entry
// after the ext4's, so that the undo, newest first, unmounts the
// passthrough, then the ext4, and removes the directory last, empty. A
// FUSE mount whose server (this process) was killed undoes the same way:
// the kernel aborted its connection when the server's descriptor closed,
// and the lazy unmount detaches it.
func NewDisk(j *journal.Journal, runID, name, dir string, spec DiskSpec) (*Disk, error) {
	if j == nil {
		return nil, errors.New("new disk: no journal")
	}
	if !safeName.MatchString(runID) || !safeName.MatchString(name) {
		return nil, fmt.Errorf("new disk: run ID %q and name %q must be letters, digits, '.', '_' or '-'", runID, name)
	}
	size := spec.Size
	if size == 0 {
		size = DefaultSize
	}
	if size < MinSize {
		return nil, fmt.Errorf("new disk %s: size %d is below the minimum %d", name, size, MinSize)
	}
	if err := emptyDir(dir); err != nil {
		return nil, fmt.Errorf("new disk %s: %w", name, err)
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		return nil, fmt.Errorf("new disk %s: %w", name, err)
	}
	if err := os.MkdirAll(journal.DiskRoot, 0o700); err != nil {
		return nil, fmt.Errorf("new disk %s: %w", name, err)
	}
	d := &Disk{
		Name:    name,
		Mount:   dir,
		FSMount: dir,
		Backing: filepath.Join(journal.DiskRoot, runID+"-"+name+".img"),
		Size:    size,
		runID:   runID,
		j:       j,
		loads:   map[*Load]struct{}{},
	}
	if _, err := os.Lstat(d.Backing); err == nil {
		return nil, fmt.Errorf("new disk %s: %w: %s", name, ErrBackingExists, d.Backing)
	}
	if spec.FUSE {
		d.FSMount = filepath.Join(filepath.Dir(dir), "."+name+"-ext4")
		if _, err := os.Lstat(d.FSMount); err == nil {
			return nil, fmt.Errorf("new disk %s: %s already exists", name, d.FSMount)
		}
		// Journal first: a run killed before the Mkdir leaves an entry for
		// a missing directory, which cleanup tolerates.
		d.dirEntry = journal.Entry{Kind: journal.KindDir, Path: d.FSMount, Name: "iofault disk " + name + " ext4 mount point"}
		if err := j.Add(d.dirEntry); err != nil {
			return nil, fmt.Errorf("new disk %s: %w", name, err)
		}
		if err := os.Mkdir(d.FSMount, 0o700); err != nil {
			// Not ours to remove (it may have appeared since the check).
			return nil, errors.Join(fmt.Errorf("new disk %s: %w", name, err), j.Undone(d.dirEntry))
		}
		d.dirOn = true
	}
	loopFd, err := d.attach()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("new disk %s: %w", name, err), d.Close())
	}
	// Held until the mount holds the device: the loop device unbinds itself
	// at its last close (LO_FLAGS_AUTOCLEAR), which mkfs's close must not
	// be.
	defer unix.Close(loopFd)
	fail := func(err error) (*Disk, error) {
		return nil, errors.Join(fmt.Errorf("new disk %s: %w", name, err), d.Close())
	}
	// lazy_itable_init=0 and lazy_journal_init=0: mkfs writes the inode
	// tables and journal now, else the kernel's ext4lazyinit thread writes
	// them after the mount, IO that the lab would see as the server's.
	// -b 4096: mke2fs picks 1 KiB blocks below 512 MiB, unlike any real
	// data disk. nodiscard: discarding a sparse file is wasted time.
	out, err := exec.Command(mkfs, "-q", "-F", "-b", "4096",
		"-E", "lazy_itable_init=0,lazy_journal_init=0,nodiscard", d.Dev).CombinedOutput()
	if err != nil {
		return fail(fmt.Errorf("mkfs.ext4 %s: %w: %s", d.Dev, err, strings.TrimSpace(string(out))))
	}
	d.mountEntry = journal.Entry{Kind: journal.KindMount, Path: d.FSMount, Name: "iofault disk " + name}
	if err := j.Add(d.mountEntry); err != nil {
		return fail(err)
	}
	d.mu.Lock()
	d.mountOn = true
	d.mu.Unlock()
	if err := unix.Mount(d.Dev, d.FSMount, "ext4", 0, ""); err != nil {
		return fail(fmt.Errorf("mount %s on %s: %w", d.Dev, d.FSMount, err))
	}
	// MariaDB and MySQL would show lost+found as a database. fsck makes it
	// again if it needs it.
	if err := os.Remove(filepath.Join(d.FSMount, "lost+found")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fail(err)
	}
	if spec.FUSE {
		d.fuseEntry = journal.Entry{Kind: journal.KindMount, Path: dir, Name: "iofault disk " + name + " FUSE passthrough"}
		if err := j.Add(d.fuseEntry); err != nil {
			return fail(err)
		}
		d.mu.Lock()
		d.fuseOn = true
		d.mu.Unlock()
		f, err := MountFUSE(d.FSMount, dir)
		if err != nil {
			return fail(err)
		}
		d.mu.Lock()
		d.fuse = f
		d.mu.Unlock()
	}
	return d, nil
}

// ErrNoFUSE means the disk has no latency layer: it was made without
// DiskSpec.FUSE.
var ErrNoFUSE = errors.New("disk has no FUSE layer (DiskSpec.FUSE)")

// latencyLayer returns the disk's FUSE layer, or an error saying why there
// is none.
func (d *Disk) latencyLayer() (*FUSE, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case !d.fuseOn && d.fuse == nil:
		return nil, ErrNoFUSE
	case !d.fuseOn || !d.mountOn:
		return nil, errors.New("disk closed")
	}
	return d.fuse, nil
}

// SetLatency delays every call of op (one of LatencyOps) on the disk by
// delay, on top of what the disk takes; 0 removes the delay. The calls
// already waiting are measured against the new delay (FUSE.SetDelay): 0
// lets them go on at once. It needs the FUSE layer (DiskSpec.FUSE), and
// says ErrNoFUSE without it.
func (d *Disk) SetLatency(op string, delay time.Duration) error {
	f, err := d.latencyLayer()
	if err != nil {
		return fmt.Errorf("latency on %s: %w", d.Name, err)
	}
	if err := f.SetDelay(op, delay); err != nil {
		return fmt.Errorf("latency on %s: %w", d.Name, err)
	}
	return nil
}

// ClearLatency removes every delay, and lets every delayed call go on.
func (d *Disk) ClearLatency() error {
	f, err := d.latencyLayer()
	if err != nil {
		return fmt.Errorf("latency on %s: %w", d.Name, err)
	}
	f.ClearDelays()
	return nil
}

// LatencyStats are the FUSE layer's counters per operation: calls, and
// time spent in the delays.
func (d *Disk) LatencyStats() (map[string]OpStats, error) {
	f, err := d.latencyLayer()
	if err != nil {
		return nil, fmt.Errorf("latency on %s: %w", d.Name, err)
	}
	return f.Stats(), nil
}

// emptyDir checks that dir is an absolute path to an empty directory.
func emptyDir(dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("mount point %q is not an absolute path", dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("mount point: %w", err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("mount point %s is not empty", dir)
	}
	return nil
}

// attach creates the backing file and binds a free loop device to it with
// LOOP_CONFIGURE (Linux 5.8), and returns the device's open descriptor.
// Flags: LO_FLAGS_DIRECT_IO, so the device writes its file with O_DIRECT
// and nothing is cached twice (measured: 256 MiB written and fsynced on the
// filesystem leave 0 pages of the backing file in the page cache with it,
// 256 MiB without); LO_FLAGS_AUTOCLEAR, so the device unbinds itself at its
// last close, which also cleans up after a SIGKILL before the mount.
func (d *Disk) attach() (int, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("loop devices: %w", err)
	}
	defer ctl.Close()
	var backing *os.File
	defer func() {
		if backing != nil {
			backing.Close()
		}
	}()
	// Another process may bind the free device between LOOP_CTL_GET_FREE
	// and LOOP_CONFIGURE (EBUSY); then take the next free one.
	for attempt := 0; attempt < 10; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return -1, fmt.Errorf("find a free loop device: %w", err)
		}
		prev := d.loopEntry
		d.loopEntry = journal.Entry{Kind: journal.KindLoop, Path: "/dev/loop" + strconv.Itoa(n), Name: d.Backing}
		// Journal first. The new entry is added before the one it replaces
		// is marked undone, so the file is always covered by one.
		if err := d.j.Add(d.loopEntry); err != nil {
			d.loopEntry = prev
			return -1, err
		}
		d.mu.Lock()
		d.loopOn = true
		d.mu.Unlock()
		if prev.Kind != "" {
			if err := d.j.Undone(prev); err != nil {
				return -1, err
			}
		}
		if backing == nil {
			backing, err = os.OpenFile(d.Backing, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o600)
			if err != nil {
				// Not ours: forget the entry without undoing it, which
				// would remove the file.
				d.mu.Lock()
				d.loopOn = false
				d.mu.Unlock()
				return -1, errors.Join(fmt.Errorf("create %s: %w", d.Backing, err), d.j.Undone(d.loopEntry))
			}
			if err := backing.Truncate(d.Size); err != nil {
				return -1, fmt.Errorf("size %s: %w", d.Backing, err)
			}
		}
		fd, err := unix.Open(d.loopEntry.Path, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, fmt.Errorf("open %s: %w", d.loopEntry.Path, err)
		}
		cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_DIRECT_IO | unix.LO_FLAGS_AUTOCLEAR
		copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], d.Backing)
		err = unix.IoctlLoopConfigure(fd, &cfg)
		if errors.Is(err, unix.EINVAL) {
			// Refused with direct IO (a backing filesystem that cannot do
			// it): buffered then, and DirectIO says so.
			cfg.Info.Flags &^= unix.LO_FLAGS_DIRECT_IO
			err = unix.IoctlLoopConfigure(fd, &cfg)
		}
		if errors.Is(err, unix.EBUSY) {
			unix.Close(fd)
			continue
		}
		if err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("bind %s to %s: %w", d.loopEntry.Path, d.Backing, err)
		}
		d.Dev = d.loopEntry.Path
		ln := "loop" + strconv.Itoa(n)
		if mm, err := os.ReadFile(filepath.Join("/sys/block", ln, "dev")); err == nil {
			var maj, min uint32
			if _, err := fmt.Sscanf(strings.TrimSpace(string(mm)), "%d:%d", &maj, &min); err == nil {
				d.Major, d.Minor = maj, min
			}
		}
		if d.Major == 0 {
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err == nil {
				d.Major, d.Minor = unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))
			}
		}
		dio, _ := os.ReadFile(filepath.Join("/sys/block", ln, "loop", "dio"))
		d.DirectIO = strings.TrimSpace(string(dio)) == "1"
		return fd, nil
	}
	return -1, errors.New("no free loop device after 10 attempts")
}

// blockedWait bounds how long Close waits, after the thaw, for loads that
// Stop left blocked in the kernel.
const blockedWait = 30 * time.Second

// Close undoes everything the disk holds, in the order that works: remove
// the delays and any stall of the FUSE layer (nothing must wait on them
// from here on), thaw (a process blocked on the frozen filesystem would
// keep it busy, the FUSE server's writes among them, and a frozen
// filesystem unmounted stays frozen), stop the loads, remove the throttle,
// unmount the FUSE layer, then the ext4 (each lazily if busy: the server
// may still have files open), unbind the loop device, remove the backing
// file and the ext4's hidden mount point. It is idempotent, and marks each
// journal entry undone as it goes. Samplers are the caller's to stop.
func (d *Disk) Close() error {
	var errs []error
	d.mu.Lock()
	fr, th, fu := d.freeze, d.throttle, d.fuse
	var loads []*Load
	for l := range d.loads {
		loads = append(loads, l)
	}
	d.mu.Unlock()
	if fu != nil {
		fu.ClearDelays()
		fu.Release()
	}
	if fr != nil {
		if err := fr.Thaw(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, l := range loads {
		l.Stop()
	}
	if !waitTimeout(&d.blocked, blockedWait) {
		errs = append(errs, fmt.Errorf("close disk %s: a load writer still runs %v after the thaw", d.Name, blockedWait))
	}
	if th != nil {
		if err := th.Remove(); err != nil {
			errs = append(errs, err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fuseOn {
		// Unmount waits for the FUSE server to end, and may wait for the
		// kernel to drop the connection; it takes no lock of the disk's.
		var err error
		if fu != nil {
			err = fu.Unmount()
		} else {
			// Journaled, but MountFUSE failed or never ran.
			err = journal.Undo(d.fuseEntry)
		}
		if err != nil {
			errs = append(errs, err)
		} else if err := d.j.Undone(d.fuseEntry); err != nil {
			errs = append(errs, err)
		} else {
			d.fuseOn = false
		}
	}
	if d.mountOn && !d.fuseOn {
		err := unix.Unmount(d.FSMount, 0)
		if errors.Is(err, unix.EBUSY) {
			err = unix.Unmount(d.FSMount, unix.MNT_DETACH)
		}
		if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", d.FSMount, err))
		} else if err := d.j.Undone(d.mountEntry); err != nil {
			errs = append(errs, err)
		} else {
			d.mountOn = false
		}
	}
	if d.loopOn && !d.mountOn {
		if err := journal.Undo(d.loopEntry); err != nil {
			errs = append(errs, err)
		} else if err := d.j.Undone(d.loopEntry); err != nil {
			errs = append(errs, err)
		} else {
			d.loopOn = false
		}
	}
	if d.dirOn && !d.mountOn {
		// Remove, not RemoveAll: the directory is empty once the ext4 is
		// unmounted, and anything in it then is not ours.
		if err := os.Remove(d.FSMount); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		} else if err := d.j.Undone(d.dirEntry); err != nil {
			errs = append(errs, err)
		} else {
			d.dirOn = false
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("close disk %s: %w", d.Name, errors.Join(errs...))
	}
	return nil
}

// waitTimeout waits for wg, at most d; false when it timed out.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}
