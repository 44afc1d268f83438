package iofault

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/labrun/labrun/journal"
	"golang.org/x/sys/unix"
)

// FIFREEZE and FITHAW, _IOWR('X', 119, int) and _IOWR('X', 120, int),
// which x/sys/unix does not define.
const (
	fiFreeze = 0xc0045877
	fiThaw   = 0xc0045878
)

// ErrFrozen means the disk is already frozen: one freeze at a time, the
// kernel refuses a second (EBUSY), and both would share a journal entry.
var ErrFrozen = errors.New("disk already frozen")

// Freeze is a freeze in force on a disk.
type Freeze struct {
	At time.Time // when the filesystem was frozen

	d     *Disk
	entry journal.Entry

	mu     sync.Mutex
	thawed bool
}

// Freeze freezes the disk's filesystem (FIFREEZE, as fsfreeze -f): the
// kernel writes out what is dirty, then every write, fsync and metadata
// change on it blocks, uninterruptibly, until Thaw; reads of cached data
// go on. Measured on this machine: a write+fsync blocks for exactly the
// frozen time, in mnt_want_write or the fsync, in state D; SIGKILL does not
// end it, the thaw does.
func (d *Disk) Freeze() (*Freeze, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.mountOn {
		return nil, fmt.Errorf("freeze %s: disk closed", d.Name)
	}
	if d.freeze != nil {
		return nil, fmt.Errorf("freeze %s: %w", d.Name, ErrFrozen)
	}
	f := &Freeze{d: d, entry: journal.Entry{Kind: journal.KindFreeze, Path: d.FSMount, Name: d.Dev}}
	if err := d.j.Add(f.entry); err != nil {
		return nil, fmt.Errorf("freeze %s: %w", d.Name, err)
	}
	dir, err := os.Open(d.FSMount)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("freeze %s: %w", d.Name, err), d.j.Undone(f.entry))
	}
	defer dir.Close()
	if err := unix.IoctlSetInt(int(dir.Fd()), fiFreeze, 0); err != nil {
		// EBUSY: frozen by someone else (fsfreeze by hand); that freeze is
		// theirs to thaw.
		return nil, errors.Join(fmt.Errorf("freeze %s: %w", d.Name, err), d.j.Undone(f.entry))
	}
	f.At = time.Now()
	d.freeze = f
	return f, nil
}

// Thaw ends the freeze (FITHAW). It is idempotent; a filesystem that is
// not frozen (EINVAL) is fine.
func (f *Freeze) Thaw() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.thawed {
		return nil
	}
	if err := journal.Undo(f.entry); err != nil {
		return fmt.Errorf("thaw %s: %w", f.d.Name, err)
	}
	if err := f.d.j.Undone(f.entry); err != nil {
		return fmt.Errorf("thaw %s: %w", f.d.Name, err)
	}
	f.thawed = true
	f.d.mu.Lock()
	if f.d.freeze == f {
		f.d.freeze = nil
	}
	f.d.mu.Unlock()
	return nil
}
