// Package journal records, on disk and before it returns, every resource a
// run creates, so that a run killed with SIGKILL can be cleaned up later by
// `labrun cleanup`, and `labrun doctor` can list what was left.
package journal

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Root is where journals live. /run is a tmpfs, so journals vanish at reboot
// together with the namespaces and processes they describe.
var Root = "/run/labrun/runs"

// Resource kinds, undone in reverse order of creation.
const (
	KindNetns     = "netns"     // Name: a namespace bind-mounted under /run/netns
	KindProcess   = "process"   // PID and StartTime identify one process
	KindDir       = "dir"       // Path: a directory removed recursively
	KindMount     = "mount"     // Path: a mount point unmounted lazily
	KindContainer = "container" // Name: a Docker container, removed with its anonymous volumes
	// Path: a loop device (/dev/loopN); Name: its backing file, in
	// DiskRoot. Undo unbinds the device if it is still bound to that file,
	// then removes the file.
	KindLoop = "loop"
	// Path: the mount point of a frozen filesystem; Name: its loop device.
	// Undo thaws it. Clean undoes every freeze before anything else.
	KindFreeze = "freeze"
	// Path: a cgroup v1 group under BlkioRoot. Undo moves the processes
	// still in it to the root group, then removes it.
	KindCgroup = "cgroup"
)

// Entry is one created resource.
type Entry struct {
	Kind      string    `json:"kind"`
	Name      string    `json:"name,omitempty"`
	Path      string    `json:"path,omitempty"`
	PID       int       `json:"pid,omitempty"`
	StartTime uint64    `json:"start_time,omitempty"` // clock ticks since boot, from /proc/PID/stat field 22
	Created   time.Time `json:"created"`
	Done      bool      `json:"done,omitempty"` // set by a later "undone" record
}

// Journal is one run's append-only log of resources.
type Journal struct {
	RunID string
	Dir   string

	mu sync.Mutex
	f  *os.File
}

// Create starts the journal of a new run and records the owning process.
func Create(runID string) (*Journal, error) {
	dir := filepath.Join(Root, runID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create journal: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "journal.jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create journal: %w", err)
	}
	owner := strconv.Itoa(os.Getpid()) + " " + strconv.FormatUint(ProcessStartTime(os.Getpid()), 10)
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(owner), 0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("create journal: %w", err)
	}
	return &Journal{RunID: runID, Dir: dir, f: f}, nil
}

type record struct {
	Op    string `json:"op"` // "add" or "undone"
	Entry Entry  `json:"entry"`
}

// Add records a resource and syncs it to disk before returning.
func (j *Journal) Add(e Entry) error {
	if e.Created.IsZero() {
		e.Created = time.Now()
	}
	return j.write(record{Op: "add", Entry: e})
}

// AddProcess records a started process by PID and start time, so that a
// later cleanup never signals a different process that reused the PID.
func (j *Journal) AddProcess(pid int, name string) error {
	return j.Add(Entry{Kind: KindProcess, PID: pid, StartTime: ProcessStartTime(pid), Name: name})
}

// Undone records that a resource was removed.
func (j *Journal) Undone(e Entry) error {
	return j.write(record{Op: "undone", Entry: e})
}

func (j *Journal) write(r record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// Close closes the journal file; Remove deletes the journal once everything
// in it has been undone.
func (j *Journal) Close() error { return j.f.Close() }

// Remove deletes the journal directory.
func (j *Journal) Remove() error {
	j.Close()
	return os.RemoveAll(j.Dir)
}

// key identifies an entry across its add and undone records.
func key(e Entry) string {
	return fmt.Sprintf("%s|%s|%s|%d|%d", e.Kind, e.Name, e.Path, e.PID, e.StartTime)
}

// Pending reads a journal and returns the resources not yet undone, newest
// first: the order in which they must be removed.
func Pending(dir string) ([]Entry, error) {
	f, err := os.Open(filepath.Join(dir, "journal.jsonl"))
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	defer f.Close()
	var order []string
	live := map[string]Entry{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			// A record cut short by SIGKILL is the last line; skip it.
			continue
		}
		k := key(r.Entry)
		switch r.Op {
		case "add":
			if _, ok := live[k]; !ok {
				order = append(order, k)
			}
			live[k] = r.Entry
		case "undone":
			delete(live, k)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	var out []Entry
	for i := len(order) - 1; i >= 0; i-- {
		if e, ok := live[order[i]]; ok {
			out = append(out, e)
			delete(live, order[i])
		}
	}
	return out, nil
}

// Run is a journal found on disk.
type Run struct {
	ID       string
	Dir      string
	OwnerPID int
	Alive    bool // the process that created it still runs
}

// List returns the journals under Root, oldest first.
func List() ([]Run, error) {
	ents, err := os.ReadDir(Root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	var runs []Run
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		r := Run{ID: e.Name(), Dir: filepath.Join(Root, e.Name())}
		if b, err := os.ReadFile(filepath.Join(r.Dir, "owner")); err == nil {
			var st uint64
			fmt.Sscanf(strings.TrimSpace(string(b)), "%d %d", &r.OwnerPID, &st)
			r.Alive = r.OwnerPID > 0 && ProcessStartTime(r.OwnerPID) == st && st != 0
		}
		runs = append(runs, r)
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].ID < runs[j].ID })
	return runs, nil
}

// ProcessStartTime returns field 22 of /proc/PID/stat (start time in clock
// ticks since boot), or 0 when the process does not exist.
func ProcessStartTime(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may contain spaces; fields after it are
	// counted from the closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state); field 22 is fields[19].
	if len(fields) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(fields[19], 10, 64)
	return v
}
