package iofault

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The load writer is this same binary run again with writerEnv set: any
// program that uses StartLoad imports this package, so its init turns the
// process into the writer before main runs (a test binary too). No other
// binary is needed, and none has to be found on the machine.

// writerEnv carries the writer's spec, as JSON.
const writerEnv = "LABRUN_IOFAULT_LOAD"

type writerSpec struct {
	File string `json:"file"`
	LoadSpec
}

func init() {
	if s, ok := os.LookupEnv(writerEnv); ok {
		os.Exit(runWriter(s))
	}
}

// writer is the child's state, shared by the writing goroutine and the one
// that ends it (a signal, the time bound): the writing goroutine may be
// blocked in the kernel, on a frozen filesystem, when it is asked to stop.
type writer struct {
	spec  writerSpec
	start time.Time

	mu      sync.Mutex
	bytes   int64
	fsyncs  int64
	lat     []time.Duration
	inFsync time.Time // when the fsync in progress began; zero when none
	err     string

	once sync.Once
}

func runWriter(specJSON string) int {
	w := &writer{start: time.Now()}
	if err := json.Unmarshal([]byte(specJSON), &w.spec); err != nil {
		fmt.Fprintf(os.Stderr, "load writer: bad spec: %v\n", err)
		return 2
	}
	// Asked to stop by the end of stdin: the parent closes it in Stop, and
	// the kernel closes it when the parent dies. Not by a signal: a signal
	// sent to a process whose main thread is blocked in the kernel
	// uninterruptibly (a write on a frozen filesystem) waits for that
	// thread (measured: no answer in 10 s), while a read of stdin on
	// another thread wakes at once.
	go func() {
		io.Copy(io.Discard, os.Stdin)
		w.finish()
	}()
	// A terminal's ^C reaches the whole process group.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		w.finish()
	}()
	time.AfterFunc(w.spec.For, w.finish)
	w.write()
	w.finish()
	return 0
}

// write writes until Bytes are written or an error.
func (w *writer) write() {
	s := w.spec
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_CLOEXEC
	if s.Direct {
		flags |= unix.O_DIRECT
	}
	fd, err := unix.Open(s.File, flags, 0o600)
	if err != nil {
		w.fail(fmt.Errorf("open %s: %w", s.File, err))
		return
	}
	defer unix.Close(fd)
	// Page-aligned, as O_DIRECT wants; random, so that nothing on the way
	// (a hypervisor's zero detection) writes less than asked.
	buf, err := unix.Mmap(-1, 0, s.Block, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		w.fail(fmt.Errorf("buffer: %w", err))
		return
	}
	for i := range buf {
		buf[i] = byte(rand.Uint32())
	}
	var off, written int64
	unsynced := 0
	for written < s.Bytes {
		n := min(int64(s.Block), s.Bytes-written)
		if s.Direct {
			n -= n % directAlign
			if n == 0 {
				break
			}
		}
		if off+n > s.FileSize {
			off = 0
		}
		m, err := unix.Pwrite(fd, buf[:n], off)
		if err != nil {
			w.fail(fmt.Errorf("write %s: %w", s.File, err))
			return
		}
		written += int64(m)
		off += int64(m)
		w.mu.Lock()
		w.bytes = written
		w.mu.Unlock()
		unsynced++
		if unsynced >= s.SyncEvery {
			if !w.fsync(fd) {
				return
			}
			unsynced = 0
		}
	}
	if unsynced > 0 {
		w.fsync(fd)
	}
}

// fsync syncs the file and records how long it took; false on an error.
func (w *writer) fsync(fd int) bool {
	t0 := time.Now()
	w.mu.Lock()
	w.inFsync = t0
	w.mu.Unlock()
	err := unix.Fsync(fd)
	d := time.Since(t0)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inFsync = time.Time{}
	if err != nil {
		w.err = fmt.Sprintf("fsync %s: %v", w.spec.File, err)
		return false
	}
	w.fsyncs++
	w.lat = append(w.lat, d)
	return true
}

func (w *writer) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == "" {
		w.err = err.Error()
	}
}

// finish prints the figures, removes the file and exits, once, from
// whichever goroutine comes first. The figures go out before the removal:
// on a frozen filesystem the unlink blocks until the thaw, and the parent
// has what it needs meanwhile.
func (w *writer) finish() {
	w.once.Do(func() {
		w.mu.Lock()
		st := LoadStats{Bytes: w.bytes, Fsyncs: w.fsyncs, Duration: time.Since(w.start), Err: w.err}
		lat := slices.Clone(w.lat)
		if !w.inFsync.IsZero() {
			st.FsyncMax = time.Since(w.inFsync)
		}
		w.mu.Unlock()
		if len(lat) > 0 {
			slices.Sort(lat)
			st.FsyncP50 = lat[(len(lat)-1)/2]
			st.FsyncMax = max(st.FsyncMax, lat[len(lat)-1])
		}
		b, _ := json.Marshal(st)
		os.Stdout.Write(append(b, '\n'))
		os.Remove(w.spec.File)
		os.Exit(0)
	})
}
