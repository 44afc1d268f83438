package iofault

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labrun/labrun/journal"
)

// Limits are blkio throttle limits on one device, per second; 0 is no
// limit.
type Limits struct {
	ReadBPS, WriteBPS, ReadIOPS, WriteIOPS uint64
}

// limitFiles are the cgroup v1 files of Limits, in its field order.
var limitFiles = [4]string{
	"blkio.throttle.read_bps_device",
	"blkio.throttle.write_bps_device",
	"blkio.throttle.read_iops_device",
	"blkio.throttle.write_iops_device",
}

func (l Limits) values() [4]uint64 {
	return [4]uint64{l.ReadBPS, l.WriteBPS, l.ReadIOPS, l.WriteIOPS}
}

// ErrThrottled means the disk already has a throttle: one at a time, as
// they would share a group and a journal entry.
var ErrThrottled = errors.New("disk already throttled")

// Throttle is a blkio group in force: processes moved into it, limited on
// the disk's device.
type Throttle struct {
	Dir    string // the group, /sys/fs/cgroup/blkio/labrun-<runID>-<name>
	Limits Limits
	At     time.Time
	// Prev is each moved process's blkio group before, relative to the
	// hierarchy's root ("/", "/docker/<id>"); a process that was gone
	// when Throttle ran is not in it.
	Prev map[int]string

	d     *Disk
	entry journal.Entry

	mu      sync.Mutex
	removed bool
}

// Throttle moves whole processes (all their threads; cgroup.procs) into a
// blkio group of the disk's own, limited on its device's MAJ:MIN, and
// records where each was. Children they start later are in it too.
//
// What it limits is the block IO the processes themselves submit: O_DIRECT
// writes, and buffered writes that their own fsync writes out (measured:
// both at the limit). Writeback by the kernel's flusher threads and ext4's
// journal commits (jbd2) are not theirs in cgroup v1, and are not limited.
// Time spent waiting in the throttle is not the device's: iostat's util and
// await on the loop device stay low while the processes wait.
func (d *Disk) Throttle(pids []int, l Limits) (*Throttle, error) {
	if len(pids) == 0 {
		return nil, fmt.Errorf("throttle %s: no processes", d.Name)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.mountOn {
		return nil, fmt.Errorf("throttle %s: disk closed", d.Name)
	}
	if d.throttle != nil {
		return nil, fmt.Errorf("throttle %s: %w", d.Name, ErrThrottled)
	}
	t := &Throttle{
		Dir:    filepath.Join(journal.BlkioRoot, journal.CgroupPrefix+d.runID+"-"+d.Name),
		Limits: l,
		Prev:   map[int]string{},
		d:      d,
	}
	t.entry = journal.Entry{Kind: journal.KindCgroup, Path: t.Dir, Name: d.Dev}
	if err := d.j.Add(t.entry); err != nil {
		return nil, fmt.Errorf("throttle %s: %w", d.Name, err)
	}
	if err := os.Mkdir(t.Dir, 0o755); err != nil {
		// EEXIST: a group of this run and disk that an earlier Remove
		// failed to remove; its entry stays for cleanup.
		return nil, fmt.Errorf("throttle %s: %w", d.Name, err)
	}
	fail := func(err error) (*Throttle, error) {
		return nil, errors.Join(fmt.Errorf("throttle %s: %w", d.Name, err), t.remove())
	}
	for i, v := range l.values() {
		if v == 0 {
			continue
		}
		rule := fmt.Sprintf("%d:%d %d", d.Major, d.Minor, v)
		if err := os.WriteFile(filepath.Join(t.Dir, limitFiles[i]), []byte(rule), 0); err != nil {
			return fail(fmt.Errorf("%s %q: %w", limitFiles[i], rule, err))
		}
	}
	for _, pid := range pids {
		prev, err := blkioGroup(pid)
		if errors.Is(err, os.ErrNotExist) {
			continue // gone already
		}
		if err != nil {
			return fail(err)
		}
		// Recorded before the move: Remove puts back what was moved.
		t.Prev[pid] = prev
		if err := journal.MoveToCgroup(t.Dir, pid); err != nil {
			return fail(err)
		}
	}
	t.At = time.Now()
	d.throttle = t
	return t, nil
}

// blkioGroup returns a process's blkio group from /proc/PID/cgroup, as
// "/" or "/docker/<id>".
func blkioGroup(pid int) (string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 7:blkio:/docker/0123
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "blkio" {
				return parts[2], nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("process %d: no blkio group in /proc/%d/cgroup", pid, pid)
}

// Remove puts each moved process back into its group (one that is gone
// meanwhile is fine; a group that is gone, the root), then removes the
// group, moving anything left in it (children started since) to the root.
// It is idempotent.
func (t *Throttle) Remove() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.removed {
		return nil
	}
	// The limits go first, so that what the group has queued is
	// dispatched now rather than at the limit's pace; then the
	// processes go back.
	journal.LiftLimits(t.Dir)
	var errs []error
	for pid, prev := range t.Prev {
		dir := filepath.Join(journal.BlkioRoot, filepath.Clean("/"+prev))
		if _, err := os.Stat(dir); err != nil {
			dir = journal.BlkioRoot
		}
		if err := journal.MoveToCgroup(dir, pid); err != nil {
			errs = append(errs, err)
		}
	}
	if err := t.remove(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("remove throttle %s: %w", t.d.Name, errors.Join(errs...))
	}
	t.removed = true
	t.d.mu.Lock()
	if t.d.throttle == t {
		t.d.throttle = nil
	}
	t.d.mu.Unlock()
	return nil
}

// remove removes the group through the journal's undo and records it.
func (t *Throttle) remove() error {
	if err := journal.Undo(t.entry); err != nil {
		return err
	}
	return t.d.j.Undone(t.entry)
}

// ThrottledIO is what the kernel counted for the group on the disk's
// device (blkio.throttle.io_service_bytes): bytes read and written by the
// throttled processes, for reports.
func (t *Throttle) ThrottledIO() (read, write uint64, err error) {
	return t.counts("blkio.throttle.io_service_bytes")
}

// ThrottledOps is the count of IOs the group's processes issued on the
// disk's device (blkio.throttle.io_serviced), reads and writes.
func (t *Throttle) ThrottledOps() (read, write uint64, err error) {
	return t.counts("blkio.throttle.io_serviced")
}

// counts reads the Read and Write lines of the device from a blkio
// statistics file.
func (t *Throttle) counts(file string) (read, write uint64, err error) {
	b, err := os.ReadFile(filepath.Join(t.Dir, file))
	if err != nil {
		return 0, 0, fmt.Errorf("throttle %s: %w", t.d.Name, err)
	}
	dev := fmt.Sprintf("%d:%d", t.d.Major, t.d.Minor)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != dev {
			continue
		}
		v, _ := strconv.ParseUint(f[2], 10, 64)
		switch f[1] {
		case "Read":
			read = v
		case "Write":
			write = v
		}
	}
	return read, write, nil
}

// Add moves one more process into the group, as Throttle did the first
// ones: a competing writer that shares the slow disk with the server, so
// that both wait in one queue on the device's limits.
func (t *Throttle) Add(pid int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.removed {
		return fmt.Errorf("throttle %s: removed", t.d.Name)
	}
	prev, err := blkioGroup(pid)
	if err != nil {
		return fmt.Errorf("throttle %s: %w", t.d.Name, err)
	}
	t.Prev[pid] = prev
	if err := journal.MoveToCgroup(t.Dir, pid); err != nil {
		return fmt.Errorf("throttle %s: %w", t.d.Name, err)
	}
	return nil
}

// Throttled returns the throttle in force on the disk, or nil.
func (d *Disk) Throttled() *Throttle {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.throttle
}
