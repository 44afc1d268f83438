package iofault

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/labrun/labrun/journal"
	"golang.org/x/sys/unix"
)

// LoadSpec is a competing writer: another job on the same machine,
// fsync-heavy, bounded in bytes and in time (both required).
type LoadSpec struct {
	Bytes int64         // at most this many bytes are written
	For   time.Duration // for at most this long
	Block int           // bytes per write; 0 means 1 MiB
	// SyncEvery is the number of blocks between fsyncs; 0 means 1. A last
	// fsync follows the last block.
	SyncEvery int
	// Direct opens the file with O_DIRECT. Block must then be a multiple
	// of 4 KiB, and a last piece of Bytes under 4 KiB is not written.
	Direct bool
	// FileSize is where the writer goes back to the file's start and
	// writes it over; 0 means Bytes, or half the filesystem's free space
	// when that is less, so that no load fills the disk.
	FileSize int64
}

// LoadStats is what a load did.
type LoadStats struct {
	Bytes  int64 `json:"bytes"`
	Fsyncs int64 `json:"fsyncs"`
	// FsyncP50 and FsyncMax are over the fsyncs that returned; FsyncMax
	// also counts one still blocked when the writer stopped.
	FsyncP50 time.Duration `json:"fsync_p50"`
	FsyncMax time.Duration `json:"fsync_max"`
	Duration time.Duration `json:"duration"`
	// Blocked: the writer was still blocked in the kernel when Stop
	// returned (a frozen filesystem); it ends, and its file is removed,
	// after the thaw. Disk.Close waits for it.
	Blocked bool   `json:"blocked,omitempty"`
	Err     string `json:"error,omitempty"`
}

// Load is a running competing writer.
type Load struct {
	Spec LoadSpec
	File string // on the disk; removed when the writer ends

	d     *Disk
	cmd   *exec.Cmd
	entry journal.Entry
	out   *statsWriter
	errs  headBuffer
	// stopPipe is the writer's stdin; closing it stops the writer.
	stopPipe *os.File
	// exited is closed when the writer process has been reaped.
	exited  chan struct{}
	waitErr error

	stopOnce sync.Once
	result   LoadStats
}

// How long Stop waits for the writer's figures after asking it to stop,
// and then for it to exit: it answers at once, from another thread than
// the one writing, even when that one is blocked.
const (
	statsWait = 10 * time.Second
	exitWait  = 3 * time.Second
)

// Defaults of LoadSpec.
const (
	defaultBlock = 1 << 20
	directAlign  = 4096
)

// StartLoad starts a competing writer on the disk's filesystem.
//
// The writer is a child process (this same binary, run again: see
// writer.go), not a goroutine. A write or fsync on a frozen filesystem
// blocks uninterruptibly; a goroutine stuck there would keep its thread and
// its file until the thaw, and Stop could neither end it nor return its
// figures without waiting. A process can be left blocked: it answers Stop
// from another thread, exits after the thaw, and is journaled, so cleanup
// kills it (after the thaw, which journal.Clean does first). It also ends
// by itself at For, and when its parent is gone (its stdin ends).
func (d *Disk) StartLoad(spec LoadSpec) (*Load, error) {
	if err := spec.fill(); err != nil {
		return nil, fmt.Errorf("load on %s: %w", d.Name, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.mountOn {
		return nil, fmt.Errorf("load on %s: disk closed", d.Name)
	}
	d.nextLoad++
	l := &Load{
		Spec:   spec,
		File:   filepath.Join(d.FSMount, fmt.Sprintf("labrun-load-%d.dat", d.nextLoad)),
		d:      d,
		exited: make(chan struct{}),
		out:    newStatsWriter(),
	}
	if l.Spec.FileSize == 0 {
		l.Spec.FileSize = l.Spec.Bytes
		var st unix.Statfs_t
		if err := unix.Statfs(d.FSMount, &st); err == nil {
			l.Spec.FileSize = min(l.Spec.FileSize, int64(st.Bavail)*st.Bsize/2)
		}
	}
	l.Spec.FileSize = max(l.Spec.FileSize/int64(l.Spec.Block)*int64(l.Spec.Block), int64(l.Spec.Block))
	ws, err := json.Marshal(writerSpec{File: l.File, LoadSpec: l.Spec})
	if err != nil {
		return nil, fmt.Errorf("load on %s: %w", d.Name, err)
	}
	// /proc/self/exe: this binary even if its file was replaced since.
	cmd := exec.Command("/proc/self/exe")
	cmd.Args = []string{"labrun-iofault-load"}
	cmd.Env = []string{writerEnv + "=" + string(ws)}
	cmd.Stdout, cmd.Stderr = l.out, &l.errs
	// The writer stops at the end of its stdin: when Stop closes our end,
	// or when this process dies. Close-on-exec, so that no other child
	// holds it open.
	stdin, stop, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("load on %s: %w", d.Name, err)
	}
	cmd.Stdin = stdin
	err = cmd.Start()
	stdin.Close()
	if err != nil {
		stop.Close()
		return nil, fmt.Errorf("load on %s: %w", d.Name, err)
	}
	l.cmd, l.stopPipe = cmd, stop
	go func() {
		l.waitErr = cmd.Wait()
		l.out.close()
		close(l.exited)
	}()
	// After the start, as the PID is known only then. A run killed in
	// between leaves a writer that ends by itself when it sees its parent
	// gone.
	l.entry = journal.Entry{Kind: journal.KindProcess, PID: cmd.Process.Pid,
		StartTime: journal.ProcessStartTime(cmd.Process.Pid), Name: "iofault load on " + d.Name}
	if err := d.j.Add(l.entry); err != nil {
		stop.Close()
		cmd.Process.Kill()
		return nil, fmt.Errorf("load on %s: %w", d.Name, err)
	}
	d.loads[l] = struct{}{}
	return l, nil
}

// fill checks a spec and fills in its defaults.
func (s *LoadSpec) fill() error {
	if s.Bytes <= 0 {
		return errors.New("want a positive Bytes: a load is bounded in bytes")
	}
	if s.For <= 0 {
		return errors.New("want a positive For: a load is bounded in time")
	}
	if s.Block < 0 || s.SyncEvery < 0 || s.FileSize < 0 {
		return errors.New("Block, SyncEvery and FileSize must not be negative")
	}
	if s.Block == 0 {
		s.Block = defaultBlock
	}
	if s.SyncEvery == 0 {
		s.SyncEvery = 1
	}
	if s.Direct && s.Block%directAlign != 0 {
		return fmt.Errorf("with Direct, Block must be a multiple of %d, not %d", directAlign, s.Block)
	}
	return nil
}

// PID is the writer process's, to throttle it as well.
func (l *Load) PID() int { return l.cmd.Process.Pid }

// Done is closed when the writer has stopped writing: at its bound in
// bytes or time, or on an error.
func (l *Load) Done() <-chan struct{} { return l.out.done }

// Stop ends the writer if it still runs and returns its figures. It is
// idempotent, and never waits for a writer blocked in the kernel: that one
// is left to end after the thaw (Blocked).
func (l *Load) Stop() LoadStats {
	l.stopOnce.Do(func() { l.result = l.stop() })
	return l.result
}

func (l *Load) stop() LoadStats {
	l.stopPipe.Close()
	select {
	case <-l.out.done:
	case <-time.After(statsWait):
	}
	st, ok := l.out.stats()
	exited := false
	select {
	case <-l.exited:
		exited = true
	case <-time.After(exitWait):
	}
	if !ok {
		msg := "no figures from the load writer"
		if exited && l.waitErr != nil {
			msg += ": " + l.waitErr.Error()
		}
		if s := strings.TrimSpace(l.errs.String()); s != "" {
			msg += ": " + s
		}
		st.Err = msg
	}
	l.d.mu.Lock()
	frozen := l.d.freeze != nil
	l.d.mu.Unlock()
	if exited && !frozen {
		l.afterExit()
	} else {
		// Blocked, or exited while the filesystem is frozen: removing its
		// file would block here.
		if !exited {
			l.cmd.Process.Kill()
			st.Blocked = true
		}
		l.d.blocked.Add(1)
		go func() {
			defer l.d.blocked.Done()
			<-l.exited
			l.afterExit()
		}()
	}
	l.d.mu.Lock()
	delete(l.d.loads, l)
	l.d.mu.Unlock()
	return st
}

// afterExit removes the file if the writer could not (it was killed), and
// records the writer gone.
func (l *Load) afterExit() {
	if _, err := os.Lstat(l.File); err == nil {
		os.Remove(l.File)
	}
	l.d.j.Undone(l.entry)
}

// statsWriter is the writer's stdout: one JSON line of LoadStats when it
// stops.
type statsWriter struct {
	done chan struct{}

	mu   sync.Mutex
	buf  bytes.Buffer
	st   LoadStats
	ok   bool
	once sync.Once
}

func newStatsWriter() *statsWriter { return &statsWriter{done: make(chan struct{})} }

func (w *statsWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ok || w.buf.Len() > 64<<10 {
		return len(p), nil
	}
	w.buf.Write(p)
	for {
		line, rest, found := bytes.Cut(w.buf.Bytes(), []byte("\n"))
		if !found {
			break
		}
		if json.Unmarshal(line, &w.st) == nil {
			w.ok = true
			w.once.Do(func() { close(w.done) })
			break
		}
		w.buf = *bytes.NewBuffer(append([]byte(nil), rest...))
	}
	return len(p), nil
}

// close marks the end of the output: the writer exited.
func (w *statsWriter) close() { w.once.Do(func() { close(w.done) }) }

func (w *statsWriter) stats() (LoadStats, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st, w.ok
}

// headBuffer keeps the first 4 KiB of the writer's stderr.
type headBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (t *headBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if room := 4096 - t.b.Len(); room > 0 {
		t.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (t *headBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.b.String()
}
