package iofault_test

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labrun/labrun/iofault"
	"github.com/labrun/labrun/journal"
)

// origGroup makes a blkio group for a test's process to start in, so that
// Remove's putting it back is seen; removed when the test ends.
func origGroup(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(journal.BlkioRoot, journal.CgroupPrefix+runID(t)+"-orig")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := journal.Undo(journal.Entry{Kind: journal.KindCgroup, Path: dir}); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	return dir
}

// gatedWriter is a shell that waits for a line on stdin, runs a command,
// says DONE, and waits for another line before it exits: it can be moved
// into a group before it writes, and is still there to be moved back
// after.
type gatedWriter struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	start time.Time
}

func startGated(t *testing.T, command string) *gatedWriter {
	t.Helper()
	cmd := exec.Command("sh", "-c", "read x; "+command+" 2>/dev/null; echo DONE; read y")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	return &gatedWriter{cmd: cmd, in: in, out: bufio.NewReader(out)}
}

// run lets the command go and returns how long it took.
func (g *gatedWriter) run(t *testing.T) time.Duration {
	t.Helper()
	g.start = time.Now()
	if _, err := io.WriteString(g.in, "go\n"); err != nil {
		t.Fatal(err)
	}
	line, err := g.out.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "DONE" {
		t.Fatalf("writer said %q, %v", line, err)
	}
	return time.Since(g.start)
}

func TestThrottle(t *testing.T) {
	needBlkio(t)
	const mib = 1 << 20
	tests := []struct {
		name    string
		command string // %s is the file
		limits  iofault.Limits
		want    time.Duration // at the limit
	}{
		{
			name:    "direct writes at write_bps",
			command: "dd if=/dev/zero of=%s bs=1M count=6 oflag=direct conv=fsync",
			limits:  iofault.Limits{WriteBPS: 2 * mib},
			want:    3 * time.Second,
		},
		{
			// Written to the page cache, then out by dd's own fsync: the
			// writeback is dd's, and throttled.
			name:    "buffered writes and fsync at write_bps",
			command: "dd if=/dev/zero of=%s bs=1M count=6 conv=fsync",
			limits:  iofault.Limits{WriteBPS: 2 * mib},
			want:    3 * time.Second,
		},
		{
			name:    "direct 4k writes at write_iops",
			command: "dd if=/dev/zero of=%s bs=4k count=300 oflag=direct",
			limits:  iofault.Limits{WriteIOPS: 100},
			want:    3 * time.Second,
		},
		{
			name:    "direct reads at read_bps",
			command: "dd if=%s of=/dev/null bs=1M count=6 iflag=direct",
			limits:  iofault.Limits{ReadBPS: 2 * mib},
			want:    3 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, j := newDisk(t)
			file := filepath.Join(d.Mount, "f")
			if strings.HasPrefix(tt.command, "dd if=%s") {
				// Something to read, written before the throttle.
				if out, err := exec.Command("dd", "if=/dev/urandom", "of="+file, "bs=1M", "count=6", "conv=fsync").CombinedOutput(); err != nil {
					t.Fatalf("%v: %s", err, out)
				}
			}
			orig := origGroup(t)
			g := startGated(t, strings.ReplaceAll(tt.command, "%s", file))
			pid := g.cmd.Process.Pid
			if err := journal.MoveToCgroup(orig, pid); err != nil {
				t.Fatal(err)
			}
			th, err := d.Throttle([]int{pid}, tt.limits)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { th.Remove() })
			if got, want := blkioGroupOf(t, pid), "/"+filepath.Base(th.Dir); got != want {
				t.Errorf("throttled process in %s, want %s", got, want)
			}
			if th.Prev[pid] != "/"+filepath.Base(orig) {
				t.Errorf("Prev[%d] = %q, want %q", pid, th.Prev[pid], "/"+filepath.Base(orig))
			}
			took := g.run(t)
			t.Logf("%s: took %v at the limit, %.2f of the %v expected", tt.name, took.Round(time.Millisecond), took.Seconds()/tt.want.Seconds(), tt.want)
			if took < tt.want*7/10 {
				t.Errorf("took %v, want at least 0.7 x %v", took, tt.want)
			}
			r, w, err := th.ThrottledIO()
			t.Logf("group counted read %d, write %d bytes (%v)", r, w, err)

			if _, err := d.Throttle([]int{pid}, tt.limits); !errors.Is(err, iofault.ErrThrottled) {
				t.Errorf("second Throttle = %v, want ErrThrottled", err)
			}
			if err := th.Remove(); err != nil {
				t.Fatal(err)
			}
			if got, want := blkioGroupOf(t, pid), "/"+filepath.Base(orig); got != want {
				t.Errorf("after Remove the process is in %s, want back in %s", got, want)
			}
			if _, err := os.Stat(th.Dir); !os.IsNotExist(err) {
				t.Errorf("group %s still there: %v", th.Dir, err)
			}
			if err := th.Remove(); err != nil {
				t.Errorf("second Remove: %v", err)
			}
			for _, e := range pending(t, j) {
				if e.Kind == journal.KindCgroup {
					t.Errorf("cgroup still pending: %+v", e)
				}
			}
		})
	}
}

// A process that is gone by Remove is fine, and a child that a throttled
// process started since is moved out of the group (to the root) so that
// the group can go.
func TestThrottleRemoveGoneAndForked(t *testing.T) {
	needBlkio(t)
	d, _ := newDisk(t)
	gone := exec.Command("sleep", "60")
	parent := exec.Command("sh", "-c", "read x; sleep 60 & echo $!; read y")
	in, _ := parent.StdinPipe()
	outp, _ := parent.StdoutPipe()
	for _, c := range []*exec.Cmd{gone, parent} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			c.Process.Kill()
			c.Wait()
		})
	}
	th, err := d.Throttle([]int{gone.Process.Pid, parent.Process.Pid}, iofault.Limits{WriteBPS: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { th.Remove() })
	io.WriteString(in, "go\n")
	line, _ := bufio.NewReader(outp).ReadString('\n')
	child, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("child pid %q: %v", line, err)
	}
	t.Cleanup(func() {
		if p, err := os.FindProcess(child); err == nil {
			p.Kill()
		}
	})
	if got := blkioGroupOf(t, child); got != "/"+filepath.Base(th.Dir) {
		t.Errorf("child in %s, want the group", got)
	}
	gone.Process.Kill()
	gone.Wait()
	if err := th.Remove(); err != nil {
		t.Fatal(err)
	}
	if got := blkioGroupOf(t, child); got != "/" {
		t.Errorf("child in %s after Remove, want the root", got)
	}
	in.Close()
}

// What the sampler shows of a throttled load: the device's bytes at the
// limit, and its utilisation, logged for the lab's notes. Only an upper
// bound is asserted: a slow machine writes less, never more.
func TestThrottledLoadSeenBySampler(t *testing.T) {
	needBlkio(t)
	d, _ := newDisk(t)
	const limit = 2 << 20
	l, err := d.StartLoad(iofault.LoadSpec{Bytes: 1 << 30, For: 3 * time.Second, Block: 256 << 10, Direct: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	th, err := d.Throttle([]int{l.PID()}, iofault.Limits{WriteBPS: limit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { th.Remove() })
	// Whatever it wrote before the move is behind this first sample.
	time.Sleep(300 * time.Millisecond)
	s := d.StartSampler(250 * time.Millisecond)
	t.Cleanup(func() { s.Stop() })
	<-l.Done()
	samples := s.Stop()
	st := l.Stop()
	var written uint64
	var maxUtil, maxAwait, maxQD float64
	for _, x := range samples {
		written += x.WriteBytes
		maxUtil, maxAwait, maxQD = max(maxUtil, x.Util), max(maxAwait, x.AwaitMs), max(maxQD, x.QueueDepth)
	}
	span := samples[len(samples)-1].Time.Sub(samples[0].Time) + 250*time.Millisecond
	rate := float64(written) / span.Seconds()
	t.Logf("throttled at %d B/s: device wrote %.0f B/s over %v; util max %.3f, await max %.1f ms, queue max %.2f; load %+v",
		limit, rate, span.Round(time.Millisecond), maxUtil, maxAwait, maxQD, st)
	if rate > 2*limit {
		t.Errorf("device wrote %.0f B/s, over twice the limit %d", rate, limit)
	}
}
