package iofault

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// The latency layer: a FUSE loopback (passthrough) filesystem between the
// server and its ext4, served by this process, whose file operations can be
// delayed, or stalled until released. A freeze or a throttle acts on the
// whole device; this acts on one kind of operation (fsync, write, ...) and
// adds exactly the delay asked for, which is what a slow disk looks like
// to a database: measured with InnoDB on it, fsync +200 ms makes a COMMIT
// take 200 ms (400 ms when MySQL's commit does two fsyncs).

// LatencyOps are the operations SetDelay accepts. "open" covers open,
// create and O_TMPFILE; "write" covers write and writev; "fsync" covers
// fsync and fdatasync of files (not of directories); "setattr" is a
// truncate.
var LatencyOps = []string{"open", "read", "write", "fsync", "flush", "allocate", "setattr"}

// stallOps are the operations Stall blocks: the ones that put data on disk.
var stallOps = map[string]bool{"write": true, "fsync": true, "allocate": true, "setattr": true}

// FUSEOptions tune the mount; the zero value is what a database wants.
type FUSEOptions struct {
	// DirectIO sets FOPEN_DIRECT_IO on every open file: the kernel's page
	// cache is bypassed for the FUSE file, so every read reaches the
	// filesystem, and its delay. Without it, reads that hit the page cache
	// are not delayed; writes are delayed either way, because the
	// writeback cache is off (every write(2) is sent synchronously).
	DirectIO bool
	// StripODirect opens the backing files without O_DIRECT even when the
	// caller asks for it. The FUSE file keeps O_DIRECT semantics (no FUSE
	// page cache); only the host's cache of the backing file is used.
	StripODirect bool
	// Debug logs every FUSE request.
	Debug bool
}

// FUSE is a mounted latency filesystem.
type FUSE struct {
	Backing, Mountpoint string

	opts   FUSEOptions
	server *fuse.Server
	// conn is the FUSE connection's number, the minor of the mount's
	// st_dev: its directory under /sys/fs/fuse/connections.
	conn uint32
	// Keys are fixed at mount, so the maps are read without a lock.
	delay  map[string]*atomic.Int64 // op -> nanoseconds
	count  map[string]*atomic.Int64 // op -> calls seen
	waited map[string]*atomic.Int64 // op -> nanoseconds spent delayed or stalled
	// waiting counts the calls delayed or stalled now: their time is in
	// waited once they go on.
	waiting map[string]*atomic.Int64

	mu    sync.Mutex
	stall chan struct{} // non-nil while stalled; closed by Release
	// changed[op] is closed, and replaced, when op's delay changes: the
	// calls waiting then measure their wait against the new delay.
	changed map[string]chan struct{}
	// open are the file and directory handles the kernel has not released:
	// released by Unmount, since a kernel that drops the connection at the
	// unmount drops the RELEASEs still queued with it, and each handle
	// holds a descriptor on the backing filesystem, which then could not
	// be unmounted.
	open      map[releaser]struct{}
	unmounted bool
}

// releaser is an open handle: a file's or a directory's.
type releaser interface{ release() }

// MountFUSE mounts a loopback of the directory backing at mountpoint, with
// no delay. It needs root: it mounts with mount(2), there being no
// fusermount to ask.
func MountFUSE(backing, mountpoint string) (*FUSE, error) {
	return MountFUSEOptions(backing, mountpoint, FUSEOptions{})
}

// serveWait bounds how long Unmount waits for the kernel to drop the
// connection after the unmount, before it aborts it.
var serveWait = 10 * time.Second

// MountFUSEOptions is MountFUSE with options.
func MountFUSEOptions(backing, mountpoint string, o FUSEOptions) (*FUSE, error) {
	f := &FUSE{Backing: backing, Mountpoint: mountpoint, opts: o,
		delay: map[string]*atomic.Int64{}, count: map[string]*atomic.Int64{}, waited: map[string]*atomic.Int64{},
		waiting: map[string]*atomic.Int64{}, open: map[releaser]struct{}{}, changed: map[string]chan struct{}{}}
	for _, op := range LatencyOps {
		f.delay[op], f.count[op], f.waited[op] = new(atomic.Int64), new(atomic.Int64), new(atomic.Int64)
		f.waiting[op] = new(atomic.Int64)
		f.changed[op] = make(chan struct{})
	}
	var st syscall.Stat_t
	if err := syscall.Stat(backing, &st); err != nil {
		return nil, fmt.Errorf("fuse mount %s: %w", mountpoint, err)
	}
	root := &fs.LoopbackRoot{Path: backing, Dev: uint64(st.Dev)}
	root.NewNode = func(r *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder {
		return &node{LoopbackNode: fs.LoopbackNode{RootData: r}, f: f}
	}
	rootNode := root.NewNode(root, nil, "", &st)
	root.RootNode = rootNode
	sec := time.Second
	opts := &fs.Options{
		EntryTimeout: &sec,
		AttrTimeout:  &sec,
		MountOptions: fuse.MountOptions{
			// The server may run as another user than root: a container's
			// mysql. Permissions are then the backing filesystem's, checked
			// as root; the loopback gives new files the caller's owner.
			AllowOther:        true,
			FsName:            backing,
			Name:              "iofault",
			DirectMountStrict: true,
			// With passthrough the kernel sends reads and writes straight
			// to the backing file, and no delay applies. The writeback
			// cache is off by default: every write reaches us.
			DisabledCapabilities: fuse.CAP_PASSTHROUGH,
			Debug:                o.Debug,
		},
	}
	// go-fuse opens /dev/fuse without O_CLOEXEC. A child that inherits it
	// (the server, a load writer, a client) keeps the connection alive
	// after this process dies, and whatever it then does on the mount
	// waits for answers that never come, instead of failing at once. The
	// fork lock keeps any fork out until the descriptor is close-on-exec.
	syscall.ForkLock.RLock()
	server, err := fs.Mount(mountpoint, rootNode, opts)
	if err == nil {
		err = closeOnExecFUSE()
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		if server != nil {
			f.server = server
			err = errors.Join(err, f.Unmount())
		}
		return nil, fmt.Errorf("fuse mount %s: %w", mountpoint, err)
	}
	f.server = server
	var mst unix.Stat_t
	if err := unix.Stat(mountpoint, &mst); err != nil {
		return nil, errors.Join(fmt.Errorf("fuse mount %s: %w", mountpoint, err), f.Unmount())
	}
	f.conn = unix.Minor(mst.Dev)
	return f, nil
}

// closeOnExecFUSE sets FD_CLOEXEC on every descriptor of this process
// that is open on /dev/fuse.
func closeOnExecFUSE() error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("close-on-exec: %w", err)
	}
	for _, e := range ents {
		if t, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err != nil || t != "/dev/fuse" {
			continue
		}
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && !errors.Is(err, unix.EBADF) {
			return fmt.Errorf("close-on-exec /dev/fuse: %w", err)
		}
	}
	return nil
}

// SetDelay sets the delay of op (one of LatencyOps); zero removes it. A
// call waits until the delay in force has passed since it arrived: the
// calls already waiting are held longer by a longer delay, and let go by a
// shorter one, so that when a fault ends nothing still waits on it.
func (f *FUSE) SetDelay(op string, d time.Duration) error {
	v, ok := f.delay[op]
	if !ok {
		return fmt.Errorf("fuse %s: unknown operation %q (known: %v)", f.Mountpoint, op, LatencyOps)
	}
	if d < 0 {
		return fmt.Errorf("fuse %s: negative delay %s", f.Mountpoint, d)
	}
	// Stored before the waiters are woken, so that they see it.
	v.Store(int64(d))
	f.mu.Lock()
	close(f.changed[op])
	f.changed[op] = make(chan struct{})
	f.mu.Unlock()
	return nil
}

// ClearDelays removes every delay, and lets every delayed call go on.
func (f *FUSE) ClearDelays() {
	for _, op := range LatencyOps {
		f.SetDelay(op, 0)
	}
}

// Stall blocks every write, fsync, allocate and setattr (truncate) from
// now on until Release or Unmount.
func (f *FUSE) Stall() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stall == nil {
		f.stall = make(chan struct{})
	}
}

// Release lets stalled operations go on and ends the stall.
func (f *FUSE) Release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stall != nil {
		close(f.stall)
		f.stall = nil
	}
}

// OpStats are one operation's counters.
type OpStats struct {
	Calls  int64
	Waited time.Duration // spent delayed or stalled, by the calls that went on
	// Waiting are the calls delayed or stalled now, not yet in Waited.
	Waiting int64
	Delay   time.Duration // in force now
}

// Stats returns, per operation, the calls seen and the time spent delayed.
func (f *FUSE) Stats() map[string]OpStats {
	out := map[string]OpStats{}
	for _, op := range LatencyOps {
		out[op] = OpStats{Calls: f.count[op].Load(), Waited: time.Duration(f.waited[op].Load()),
			Waiting: f.waiting[op].Load(), Delay: time.Duration(f.delay[op].Load())}
	}
	return out
}

// Unmount removes every delay and releases any stall, so that nothing
// waits on them, then unmounts: lazily when the mount is busy (a server
// with files still open), and an unmount already done by someone else (a
// lazy unmount of the run directory) is fine. It then waits for the kernel
// to drop the connection, which it does at the mount's last reference,
// aborting it after serveWait (a process that keeps files open, a copy of
// the mount in another mount namespace), and closes the handles the kernel
// never released. It is idempotent.
func (f *FUSE) Unmount() error {
	f.ClearDelays()
	f.Release()
	f.mu.Lock()
	if f.unmounted {
		f.mu.Unlock()
		return nil
	}
	f.mu.Unlock()
	err := unix.Unmount(f.Mountpoint, 0)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(f.Mountpoint, unix.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("fuse unmount %s: %w", f.Mountpoint, err)
	}
	if !f.waitServed(serveWait) {
		if err := abortFUSE(f.conn); err != nil {
			return fmt.Errorf("fuse unmount %s: the connection outlived the unmount by %s: %w", f.Mountpoint, serveWait, err)
		}
		if !f.waitServed(serveWait) {
			return fmt.Errorf("fuse unmount %s: the connection still runs %s after its abort", f.Mountpoint, serveWait)
		}
	}
	f.mu.Lock()
	left := f.open
	f.open = map[releaser]struct{}{}
	f.unmounted = true
	f.mu.Unlock()
	for h := range left {
		h.release()
	}
	return nil
}

// waitServed waits, at most d, for the server's loops to end: the kernel
// has dropped the connection.
func (f *FUSE) waitServed(d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		f.server.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// abortFUSE aborts a FUSE connection through fusectl: every request
// pending and to come fails with ENOTCONN, and the server's reads end.
// fusectl is mounted for this in a short-lived process with a mount
// namespace of its own (made private by the runtime's fork), which takes
// the mount along when it exits: nothing is left to unmount, even after a
// SIGKILL. (Unsharing a thread of this process instead taints the main
// thread when the goroutine happens to run there: the runtime never ends
// that thread, and /proc/self then shows the private namespace.)
func abortFUSE(conn uint32) error {
	dir, err := os.MkdirTemp("", "labrun-fusectl-")
	if err != nil {
		return fmt.Errorf("abort: %w", err)
	}
	defer os.Remove(dir)
	cmd := exec.Command("/bin/sh", "-c", `mount -t fusectl fusectl "$1" || exit 1; [ -e "$1/$2" ] || exit 0; echo 1 > "$1/$2/abort"`,
		"sh", dir, strconv.FormatUint(uint64(conn), 10))
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("abort: fusectl: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// track records an open handle until its release.
func (f *FUSE) track(h releaser) {
	f.mu.Lock()
	f.open[h] = struct{}{}
	f.mu.Unlock()
}

func (f *FUSE) forget(h releaser) {
	f.mu.Lock()
	delete(f.open, h)
	f.mu.Unlock()
}

// wait applies op's stall and delay. A FUSE interrupt (the caller got a
// fatal signal, or one it does not block) cuts the wait short and the
// operation then runs: a killed server must not hang on a stall. mysqld
// blocks signals in its IO threads, so only SIGKILL ends its waits; a
// SIGTERM'd server finishes shutting down only after Release. A Go program
// writing here is interrupted by the runtime's preemption signals.
func (f *FUSE) wait(ctx context.Context, op string) {
	f.count[op].Add(1)
	var stall chan struct{}
	if stallOps[op] {
		f.mu.Lock()
		stall = f.stall
		f.mu.Unlock()
	}
	if stall == nil && f.delay[op].Load() <= 0 {
		return
	}
	start := time.Now()
	f.waiting[op].Add(1)
	defer func() {
		f.waited[op].Add(int64(time.Since(start)))
		f.waiting[op].Add(-1)
	}()
	if stall != nil {
		select {
		case <-stall:
		case <-ctx.Done():
			return
		}
	}
	// The delay counts from the end of the stall.
	from := time.Now()
	for {
		// The channel before the delay: a change between the two closes
		// the channel this wait holds.
		f.mu.Lock()
		changed := f.changed[op]
		f.mu.Unlock()
		left := time.Duration(f.delay[op].Load()) - time.Since(from)
		if left <= 0 {
			return
		}
		t := time.NewTimer(left)
		select {
		case <-t.C:
			return
		case <-changed:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// node is a loopback node whose open files are delayed.
type node struct {
	fs.LoopbackNode
	f *FUSE
}

var (
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeTmpfiler       = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
)

func (n *node) openFlags(flags uint32) (uint32, uint32) {
	var fuseFlags uint32
	if n.f.opts.DirectIO {
		fuseFlags |= fuse.FOPEN_DIRECT_IO
	}
	if n.f.opts.StripODirect {
		flags &^= syscall.O_DIRECT
	}
	return flags, fuseFlags
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	n.f.wait(ctx, "open")
	flags, fuseFlags := n.openFlags(flags)
	fh, _, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return n.f.wrap(fh), fuseFlags, 0
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	n.f.wait(ctx, "open")
	flags, fuseFlags := n.openFlags(flags)
	ch, fh, _, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return ch, n.f.wrap(fh), fuseFlags, 0
}

func (n *node) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	n.f.wait(ctx, "open")
	flags, fuseFlags := n.openFlags(flags)
	ch, fh, _, errno := n.LoopbackNode.Tmpfile(ctx, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return ch, n.f.wrap(fh), fuseFlags, 0
}

// OpendirHandle is the loopback's, tracked until its release.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	d := &dir{h: fh, f: n.f}
	n.f.track(d)
	return d, fuseFlags, 0
}

// Setattr covers truncate(2) on a path and ftruncate: only a change of
// size is delayed.
func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if _, ok := in.GetSize(); ok {
		n.f.wait(ctx, "setattr")
	}
	if df, ok := fh.(*file); ok {
		fh = df.LoopbackFile
	}
	return n.LoopbackNode.Setattr(ctx, fh, in, out)
}

// wrap makes an open loopback file one with delays, tracked until its
// release.
func (f *FUSE) wrap(fh fs.FileHandle) fs.FileHandle {
	lf, ok := fh.(*fs.LoopbackFile)
	if !ok {
		// go-fuse's loopback returns *fs.LoopbackFile (v2.12); another
		// type would be a new version's, and its file would not be
		// delayed. Say so rather than fail the open.
		fmt.Fprintf(os.Stderr, "iofault: fuse: unexpected file handle %T: no delays on it\n", fh)
		return fh
	}
	h := &file{LoopbackFile: lf, f: f}
	f.track(h)
	return h
}

// file is a loopback file with delays. Methods not listed here (locks,
// getattr, lseek, ioctl, statx) are the loopback's own.
type file struct {
	*fs.LoopbackFile
	f *FUSE
}

// PassthroughFd hides the loopback's: a passthrough file bypasses us.
func (h *file) PassthroughFd() (int, bool) { return -1, false }

func (h *file) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h.f.wait(ctx, "read")
	return h.LoopbackFile.Read(ctx, buf, off)
}

func (h *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.f.wait(ctx, "write")
	return h.LoopbackFile.Write(ctx, data, off)
}

func (h *file) Writev(ctx context.Context, data [][]byte, off int64) (uint32, syscall.Errno) {
	h.f.wait(ctx, "write")
	return h.LoopbackFile.Writev(ctx, data, off)
}

func (h *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	h.f.wait(ctx, "fsync")
	return h.LoopbackFile.Fsync(ctx, flags)
}

func (h *file) Flush(ctx context.Context) syscall.Errno {
	h.f.wait(ctx, "flush")
	return h.LoopbackFile.Flush(ctx)
}

func (h *file) Allocate(ctx context.Context, off uint64, sz uint64, mode uint32) syscall.Errno {
	h.f.wait(ctx, "allocate")
	return h.LoopbackFile.Allocate(ctx, off, sz, mode)
}

func (h *file) Release(ctx context.Context) syscall.Errno {
	h.f.forget(h)
	return h.LoopbackFile.Release(ctx)
}

func (h *file) release() { h.LoopbackFile.Release(context.Background()) }

// dir is the loopback's directory handle, tracked until its release; it
// forwards what go-fuse asks of a directory handle.
type dir struct {
	h fs.FileHandle
	f *FUSE
}

var (
	_ fs.FileReaddirenter = (*dir)(nil)
	_ fs.FileSeekdirer    = (*dir)(nil)
	_ fs.FileFsyncdirer   = (*dir)(nil)
	_ fs.FileReleasedirer = (*dir)(nil)
)

func (d *dir) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if r, ok := d.h.(fs.FileReaddirenter); ok {
		return r.Readdirent(ctx)
	}
	return nil, syscall.ENOTSUP
}

func (d *dir) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if s, ok := d.h.(fs.FileSeekdirer); ok {
		return s.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

func (d *dir) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	if s, ok := d.h.(fs.FileFsyncdirer); ok {
		return s.Fsyncdir(ctx, flags)
	}
	return syscall.ENOTSUP
}

func (d *dir) Releasedir(ctx context.Context, flags uint32) {
	d.f.forget(d)
	if r, ok := d.h.(fs.FileReleasedirer); ok {
		r.Releasedir(ctx, flags)
	}
}

func (d *dir) release() {
	if r, ok := d.h.(fs.FileReleasedirer); ok {
		r.Releasedir(context.Background(), 0)
	}
}
