package journal_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/labrun/labrun/journal"
	"github.com/labrun/labrun/netem"
	"golang.org/x/sys/unix"
)

// tempRoot points journal.Root at a directory of the test's own, so that no
// test ever reads or writes the real /run/labrun/runs. Root is a package
// variable, so tests that use it must not run in parallel.
func tempRoot(t *testing.T) string {
	t.Helper()
	old := journal.Root
	journal.Root = filepath.Join(t.TempDir(), "runs")
	t.Cleanup(func() { journal.Root = old })
	return journal.Root
}

// runID returns a run ID no other test or run uses.
func runID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "t" + hex.EncodeToString(b)
}

func create(t *testing.T) *journal.Journal {
	t.Helper()
	j, err := journal.Create(runID(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Remove() })
	return j
}

// startSleep starts a child that would live for a minute and makes sure it
// is gone when the test ends, whatever the test did to it.
func startSleep(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sleep: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// running reports whether pid is a live process, not a zombie waiting to
// be reaped.
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

func TestPending(t *testing.T) {
	a := journal.Entry{Kind: journal.KindDir, Path: "/tmp/a"}
	b := journal.Entry{Kind: journal.KindNetns, Name: "lr-x-b"}
	c := journal.Entry{Kind: journal.KindProcess, PID: 42, StartTime: 7}
	tests := []struct {
		name string
		// write records the journal; it may append raw bytes to the
		// file afterwards, as a killed run would leave them.
		write func(t *testing.T, j *journal.Journal)
		want  []journal.Entry
	}{
		{
			name:  "empty journal",
			write: func(t *testing.T, j *journal.Journal) {},
			want:  nil,
		},
		{
			name: "newest first",
			write: func(t *testing.T, j *journal.Journal) {
				add(t, j, a, b, c)
			},
			want: []journal.Entry{c, b, a},
		},
		{
			name: "undone entries removed",
			write: func(t *testing.T, j *journal.Journal) {
				add(t, j, a, b, c)
				undone(t, j, b)
			},
			want: []journal.Entry{c, a},
		},
		{
			name: "everything undone",
			write: func(t *testing.T, j *journal.Journal) {
				add(t, j, a, b)
				undone(t, j, b, a)
			},
			want: nil,
		},
		{
			// A resource created again after its removal is pending again,
			// at the place of its newest creation.
			name: "added again after undone",
			write: func(t *testing.T, j *journal.Journal) {
				add(t, j, a, b)
				undone(t, j, a)
				add(t, j, a)
			},
			want: []journal.Entry{a, b},
		},
		{
			// Undone matches on identity, not on the creation time that
			// the add record carries.
			name: "undone without creation time",
			write: func(t *testing.T, j *journal.Journal) {
				add(t, j, a, b)
				undone(t, j, journal.Entry{Kind: journal.KindNetns, Name: "lr-x-b"})
			},
			want: []journal.Entry{a},
		},
		{
			// SIGKILL during a write leaves the last line cut short.
			name: "truncated last line",
			write: func(t *testing.T, j *journal.Journal) {
				add(t, j, a, b)
				appendRaw(t, j, `{"op":"add","entry":{"kind":"dir","pa`)
			},
			want: []journal.Entry{b, a},
		},
		{
			name: "truncated undone record",
			write: func(t *testing.T, j *journal.Journal) {
				add(t, j, a, b)
				appendRaw(t, j, `{"op":"undone","entry":{"kind":"netns","name":"lr-x-b"`)
			},
			want: []journal.Entry{b, a},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tempRoot(t)
			j := create(t)
			tt.write(t, j)
			got, err := journal.Pending(j.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if !sameEntries(got, tt.want) {
				t.Errorf("Pending() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPendingMissingJournal(t *testing.T) {
	if _, err := journal.Pending(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Pending(dir without a journal) error = %v, want ErrNotExist", err)
	}
}

func add(t *testing.T, j *journal.Journal, es ...journal.Entry) {
	t.Helper()
	for _, e := range es {
		if err := j.Add(e); err != nil {
			t.Fatal(err)
		}
	}
}

func undone(t *testing.T, j *journal.Journal, es ...journal.Entry) {
	t.Helper()
	for _, e := range es {
		if err := j.Undone(e); err != nil {
			t.Fatal(err)
		}
	}
}

func appendRaw(t *testing.T, j *journal.Journal, s string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(j.Dir, "journal.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// sameEntries compares entries without their creation time, which Add
// fills in.
func sameEntries(got, want []journal.Entry) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].Created.IsZero() {
			return false
		}
		g := got[i]
		g.Created = want[i].Created
		if !reflect.DeepEqual(g, want[i]) {
			return false
		}
	}
	return true
}

func TestCreateWritesOwner(t *testing.T) {
	root := tempRoot(t)
	j := create(t)
	if want := filepath.Join(root, j.RunID); j.Dir != want {
		t.Errorf("Dir = %q, want %q", j.Dir, want)
	}
	b, err := os.ReadFile(filepath.Join(j.Dir, "owner"))
	if err != nil {
		t.Fatal(err)
	}
	want := strconv.Itoa(os.Getpid()) + " " + strconv.FormatUint(journal.ProcessStartTime(os.Getpid()), 10)
	if string(b) != want {
		t.Errorf("owner = %q, want %q", b, want)
	}
	// The journal names namespaces and processes of a root run: it is the
	// owner's alone.
	for _, name := range []string{"", "journal.jsonl", "owner"} {
		fi, err := os.Stat(filepath.Join(j.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s: mode %v, want no group or other access", filepath.Join(j.Dir, name), perm)
		}
	}
}

func TestAddProcessRecordsStartTime(t *testing.T) {
	tempRoot(t)
	j := create(t)
	cmd := startSleep(t)
	if err := j.AddProcess(cmd.Process.Pid, "sleep"); err != nil {
		t.Fatal(err)
	}
	got, err := journal.Pending(j.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("Pending() = %+v, want one process", got)
	}
	e := got[0]
	if e.Kind != journal.KindProcess || e.PID != cmd.Process.Pid || e.Name != "sleep" || e.StartTime == 0 || e.StartTime != journal.ProcessStartTime(cmd.Process.Pid) {
		t.Errorf("entry = %+v, want the sleep process with its start time %d", e, journal.ProcessStartTime(cmd.Process.Pid))
	}
	if !journal.Exists(e) {
		t.Errorf("Exists(%+v) = false for a running process", e)
	}
}

// pidMax returns a PID that no process can have: PIDs are below pid_max.
func pidMax(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestProcessStartTime(t *testing.T) {
	self := journal.ProcessStartTime(os.Getpid())
	if self == 0 {
		t.Fatalf("ProcessStartTime(self) = 0")
	}
	if got := journal.ProcessStartTime(os.Getpid()); got != self {
		t.Errorf("ProcessStartTime(self) changed from %d to %d", self, got)
	}
	if got := journal.ProcessStartTime(pidMax(t)); got != 0 {
		t.Errorf("ProcessStartTime(missing pid) = %d, want 0", got)
	}
	if got := journal.ProcessStartTime(0); got != 0 {
		t.Errorf("ProcessStartTime(0) = %d, want 0", got)
	}

	// A command name may hold spaces and parentheses; the fields are
	// counted from the last closing parenthesis. The child starts after
	// this process, so its start time cannot be earlier.
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("needs sleep in PATH")
	}
	odd := filepath.Join(t.TempDir(), "a) (b c")
	if err := os.Symlink(sleep, odd); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(odd, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	stat, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat")
	if !strings.Contains(string(stat), "(a) (b c)") {
		t.Fatalf("the child's comm is not the odd name: %q", stat)
	}
	if got := journal.ProcessStartTime(cmd.Process.Pid); got < self {
		t.Errorf("ProcessStartTime(child named %q) = %d, want >= %d (ours)", "a) (b c", got, self)
	}
}

func TestList(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	start := journal.ProcessStartTime(os.Getpid())
	tests := []struct {
		id    string
		owner *string // nil: no owner file
		pid   int
		alive bool
	}{
		{"a-self", ptr(self + " " + strconv.FormatUint(start, 10)), os.Getpid(), true},
		// The PID was reused by another process: the start time differs.
		{"b-reused", ptr(self + " " + strconv.FormatUint(start+1, 10)), os.Getpid(), false},
		{"c-gone", ptr(strconv.Itoa(pidMax(t)) + " 5"), pidMax(t), false},
		{"d-zero-start", ptr(self + " 0"), os.Getpid(), false},
		{"e-garbage", ptr("not a pid"), 0, false},
		{"f-no-owner", nil, 0, false},
	}
	root := tempRoot(t)
	if runs, err := journal.List(); err != nil || runs != nil {
		t.Fatalf("List() with no root = %v, %v; want nil, nil", runs, err)
	}
	// Listed in reverse so that the sort by ID is what orders them.
	for i := len(tests) - 1; i >= 0; i-- {
		tt := tests[i]
		dir := filepath.Join(root, tt.id)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if tt.owner != nil {
			if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(*tt.owner), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A stray file beside the run directories is not a run.
	if err := os.WriteFile(filepath.Join(root, "stray"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	runs, err := journal.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != len(tests) {
		t.Fatalf("List() = %+v, want %d runs", runs, len(tests))
	}
	for i, tt := range tests {
		want := journal.Run{ID: tt.id, Dir: filepath.Join(root, tt.id), OwnerPID: tt.pid, Alive: tt.alive}
		if runs[i] != want {
			t.Errorf("List()[%d] = %+v, want %+v", i, runs[i], want)
		}
	}
}

func ptr(s string) *string { return &s }

func TestUndoIdempotent(t *testing.T) {
	tmp := t.TempDir()
	tests := []struct {
		name  string
		entry journal.Entry
		root  bool // needs root to call the syscall at all
	}{
		{"dir", journal.Entry{Kind: journal.KindDir, Path: filepath.Join(tmp, "d")}, false},
		{"process gone", journal.Entry{Kind: journal.KindProcess, PID: pidMax(t), StartTime: 5}, false},
		// A process that had exited before it was recorded has no start
		// time: there is nothing to kill.
		{"process without start time", journal.Entry{Kind: journal.KindProcess, PID: os.Getpid()}, false},
		{"netns", journal.Entry{Kind: journal.KindNetns, Name: "lr-" + runID(t) + "-absent"}, true},
		{"mount", journal.Entry{Kind: journal.KindMount, Path: filepath.Join(tmp, "m")}, true},
	}
	if err := os.MkdirAll(filepath.Join(tmp, "d", "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.root && os.Geteuid() != 0 {
				t.Skip("needs root: unmounting")
			}
			for i := range 2 {
				if err := journal.Undo(tt.entry); err != nil {
					t.Fatalf("Undo #%d: %v", i+1, err)
				}
				if journal.Exists(tt.entry) {
					t.Fatalf("Exists after Undo #%d = true", i+1)
				}
			}
		})
	}
}

func TestUndoRefuses(t *testing.T) {
	tests := []struct {
		name  string
		entry journal.Entry
		is    error
	}{
		{"relative dir", journal.Entry{Kind: journal.KindDir, Path: "relative/dir"}, nil},
		{"root dir", journal.Entry{Kind: journal.KindDir, Path: "/"}, nil},
		{"empty dir", journal.Entry{Kind: journal.KindDir}, nil},
		// A container name comes from a file on disk too; it must not
		// reach another API path.
		{"container name with a slash", journal.Entry{Kind: journal.KindContainer, Name: "../images/x"}, nil},
		{"container without a name", journal.Entry{Kind: journal.KindContainer}, nil},
		{"unknown kind", journal.Entry{Kind: "volume", Name: "v"}, nil},
		// A namespace name comes from a file on disk; it must not reach
		// outside /run/netns.
		{"netns outside /run/netns", journal.Entry{Kind: journal.KindNetns, Name: "../labrun"}, nil},
		{"netns without a name", journal.Entry{Kind: journal.KindNetns}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := journal.Undo(tt.entry)
			if err == nil {
				t.Fatalf("Undo(%+v) = nil, want an error", tt.entry)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Undo(%+v) = %v, want %v", tt.entry, err, tt.is)
			}
		})
	}
}

func TestCleanDirAndProcess(t *testing.T) {
	tempRoot(t)
	j := create(t)
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := j.Add(journal.Entry{Kind: journal.KindDir, Path: dir}); err != nil {
		t.Fatal(err)
	}
	victim := startSleep(t)
	if err := j.AddProcess(victim.Process.Pid, "victim"); err != nil {
		t.Fatal(err)
	}
	// The second child's PID is recorded with a start time it does not
	// have, as if the recorded process had exited and its PID been reused:
	// Clean must leave it alone.
	bystander := startSleep(t)
	start := journal.ProcessStartTime(bystander.Process.Pid)
	if err := j.Add(journal.Entry{Kind: journal.KindProcess, PID: bystander.Process.Pid, StartTime: start + 1, Name: "reused"}); err != nil {
		t.Fatal(err)
	}
	j.Close()

	left, err := journal.Clean(j.Dir)
	if err != nil || len(left) != 0 {
		t.Fatalf("Clean() = %+v, %v; want nothing left", left, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory %s still there: %v", dir, err)
	}
	if _, err := os.Stat(j.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("journal %s still there after everything was undone: %v", j.Dir, err)
	}
	err = victim.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("recorded process: Wait() = %v, want killed by SIGKILL", err)
	}
	if !running(bystander.Process.Pid) || journal.ProcessStartTime(bystander.Process.Pid) != start {
		t.Errorf("process %d with a different start time was killed", bystander.Process.Pid)
	}
}

// A cleanup that cannot remove something keeps the journal, so that a later
// cleanup can try again, and returns what is left.
func TestCleanKeepsJournalWhenSomethingIsLeft(t *testing.T) {
	tempRoot(t)
	j := create(t)
	bad := journal.Entry{Kind: journal.KindDir, Path: "relative/dir"}
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	add(t, j, bad, journal.Entry{Kind: journal.KindDir, Path: dir})
	left, err := journal.Clean(j.Dir)
	if err == nil || len(left) != 1 || left[0].Kind != bad.Kind || left[0].Path != bad.Path {
		t.Fatalf("Clean() = %+v, %v; want the refused directory left with an error", left, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory %s still there: %v", dir, err)
	}
	if _, err := os.Stat(filepath.Join(j.Dir, "journal.jsonl")); err != nil {
		t.Errorf("journal removed although something is left: %v", err)
	}
}

// needRoot skips tests that create network namespaces.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creating network namespaces")
	}
	if testing.Short() {
		t.Skip("-short: namespace tier skipped")
	}
}

// upHub brings up a network with no hosts, which is only its hub namespace,
// recorded in j. Down in t.Cleanup removes it whatever the test did.
func upHub(t *testing.T, j *journal.Journal) *netem.Topology {
	t.Helper()
	topo, err := netem.Up(netem.Spec{RunID: j.RunID, Subnet: netip.MustParsePrefix("10.89.251.0/24")}, j)
	t.Cleanup(func() {
		if err := topo.Down(); err != nil {
			t.Errorf("Down: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func TestCleanNamespace(t *testing.T) {
	needRoot(t)
	tempRoot(t)
	j := create(t)
	upHub(t, j)
	name := netem.NSName(j.RunID, "hub")
	if !journal.Exists(journal.Entry{Kind: journal.KindNetns, Name: name}) {
		t.Fatalf("namespace %s missing after Up", name)
	}
	// A run killed here never calls Down: cleanup goes through the journal.
	left, err := journal.Clean(j.Dir)
	if err != nil || len(left) != 0 {
		t.Fatalf("Clean() = %+v, %v; want nothing left", left, err)
	}
	if _, err := os.Stat(filepath.Join("/run/netns", name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("namespace %s still under /run/netns: %v", name, err)
	}
}

// A namespace file whose bind mount is gone (a run killed between creating
// the file and mounting it, or an earlier lazy unmount) still shows in
// `ip netns list`; Undo must remove the file too.
func TestUndoNamespaceFileWithoutMount(t *testing.T) {
	needRoot(t)
	tempRoot(t)
	j := create(t)
	upHub(t, j)
	name := netem.NSName(j.RunID, "hub")
	path := filepath.Join("/run/netns", name)
	t.Cleanup(func() { os.Remove(path) })
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	e := journal.Entry{Kind: journal.KindNetns, Name: name}
	if err := journal.Undo(e); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there after Undo: %v", path, err)
	}
}
