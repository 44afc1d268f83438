package iofault_test

import (
	"os"
	"testing"
	"time"

	"github.com/labrun/labrun/iofault"
	"github.com/labrun/labrun/journal"
)

// loadGone checks that a stopped load left no file, process or pending
// journal entry.
func loadGone(t *testing.T, j *journal.Journal, l *iofault.Load) {
	t.Helper()
	if _, err := os.Lstat(l.File); !os.IsNotExist(err) {
		t.Errorf("load file %s still there: %v", l.File, err)
	}
	if s := procState(l.PID()); s != 0 && s != 'Z' {
		t.Errorf("load writer %d still running (state %q)", l.PID(), s)
	}
	for _, e := range pending(t, j) {
		if e.Kind == journal.KindProcess {
			t.Errorf("load writer still pending in the journal: %+v", e)
		}
	}
}

func TestLoad(t *testing.T) {
	needLoop(t)
	const mib = 1 << 20
	tests := []struct {
		name string
		spec iofault.LoadSpec
		// byBytes: it ends at Bytes, else at For.
		byBytes bool
	}{
		{
			name:    "bounded in bytes, direct",
			spec:    iofault.LoadSpec{Bytes: 16 * mib, For: 2 * time.Minute, Block: mib, SyncEvery: 1, Direct: true},
			byBytes: true,
		},
		{
			name:    "bounded in bytes, buffered, fsync every 4 blocks, last block short",
			spec:    iofault.LoadSpec{Bytes: 10*mib + 4096, For: 2 * time.Minute, Block: mib, SyncEvery: 4},
			byBytes: true,
		},
		{
			// More bytes than the disk holds: it writes its file over and
			// over, and ends at For.
			name: "bounded in time",
			spec: iofault.LoadSpec{Bytes: 1 << 40, For: time.Second, Block: 64 << 10, SyncEvery: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, j := newDisk(t)
			l, err := d.StartLoad(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Stop() })
			select {
			case <-l.Done():
			case <-time.After(2 * time.Minute):
				t.Fatal("load did not end by itself")
			}
			st := l.Stop()
			t.Logf("%+v", st)
			if st.Err != "" || st.Blocked {
				t.Errorf("stats %+v, want no error, not blocked", st)
			}
			if tt.byBytes {
				if st.Bytes != tt.spec.Bytes {
					t.Errorf("Bytes = %d, want %d", st.Bytes, tt.spec.Bytes)
				}
				blocks := (tt.spec.Bytes + int64(tt.spec.Block) - 1) / int64(tt.spec.Block)
				if want := (blocks + int64(tt.spec.SyncEvery) - 1) / int64(tt.spec.SyncEvery); st.Fsyncs != want {
					t.Errorf("Fsyncs = %d, want %d", st.Fsyncs, want)
				}
			} else {
				if st.Bytes <= 0 || st.Bytes >= tt.spec.Bytes {
					t.Errorf("Bytes = %d, want some and less than %d", st.Bytes, tt.spec.Bytes)
				}
				if st.Duration < tt.spec.For {
					t.Errorf("Duration = %v, want at least For %v", st.Duration, tt.spec.For)
				}
				if l.Spec.FileSize >= d.Size {
					t.Errorf("FileSize = %d, want less than the disk", l.Spec.FileSize)
				}
			}
			if st.Fsyncs == 0 || st.FsyncP50 <= 0 || st.FsyncMax < st.FsyncP50 || st.Duration <= 0 {
				t.Errorf("stats %+v, want fsyncs with positive latencies", st)
			}
			loadGone(t, j, l)
			if again := l.Stop(); again != st {
				t.Errorf("second Stop = %+v, want %+v", again, st)
			}
		})
	}
}

// Stop before the end stops it at once.
func TestLoadStopEarly(t *testing.T) {
	needLoop(t)
	d, j := newDisk(t)
	l, err := d.StartLoad(iofault.LoadSpec{Bytes: 1 << 40, For: 10 * time.Minute, Block: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	st := l.Stop()
	t.Logf("%+v", st)
	if st.Err != "" || st.Bytes == 0 {
		t.Errorf("stats %+v, want some bytes and no error", st)
	}
	loadGone(t, j, l)
}

func TestLoadRefuses(t *testing.T) {
	needLoop(t)
	d, j := newDisk(t)
	tests := []struct {
		name string
		spec iofault.LoadSpec
	}{
		{"no bytes", iofault.LoadSpec{For: time.Second}},
		{"no time", iofault.LoadSpec{Bytes: 1 << 20}},
		{"negative bytes", iofault.LoadSpec{Bytes: -1, For: time.Second}},
		{"negative block", iofault.LoadSpec{Bytes: 1 << 20, For: time.Second, Block: -1}},
		{"negative sync_every", iofault.LoadSpec{Bytes: 1 << 20, For: time.Second, SyncEvery: -1}},
		{"direct with an unaligned block", iofault.LoadSpec{Bytes: 1 << 20, For: time.Second, Block: 1000, Direct: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if l, err := d.StartLoad(tt.spec); err == nil {
				l.Stop()
				t.Fatalf("StartLoad(%+v) = nil error, want one", tt.spec)
			}
		})
	}
	for _, e := range pending(t, j) {
		if e.Kind == journal.KindProcess {
			t.Errorf("a refused load was journaled: %+v", e)
		}
	}
}

// A load blocked on a frozen filesystem: Stop returns its figures without
// waiting for the thaw, and the writer ends, and its file goes, after it.
func TestLoadBlockedByFreeze(t *testing.T) {
	needFreeze(t)
	d, j := newDisk(t)
	l, err := d.StartLoad(iofault.LoadSpec{Bytes: 1 << 40, For: 10 * time.Minute, Block: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop() })
	time.Sleep(200 * time.Millisecond)
	f, err := d.Freeze()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Thaw() })
	waitState(t, l.PID(), 'D')
	st := l.Stop()
	t.Logf("stopped while frozen: %+v", st)
	if !st.Blocked {
		t.Errorf("Blocked = false for a writer blocked on a frozen filesystem")
	}
	if st.Bytes == 0 || st.Err != "" {
		t.Errorf("stats %+v, want the bytes written before the freeze and no error", st)
	}
	if err := f.Thaw(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Lstat(l.File); os.IsNotExist(err) && procState(l.PID()) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after the thaw: file or writer %d (state %q) still there", l.PID(), procState(l.PID()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The journal entry goes once the writer is reaped.
	deadline = time.Now().Add(5 * time.Second)
	for {
		left := false
		for _, e := range pending(t, j) {
			left = left || e.Kind == journal.KindProcess
		}
		if !left {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writer still pending in the journal")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSampler(t *testing.T) {
	needLoop(t)
	d, _ := newDisk(t)
	s := d.StartSampler(100 * time.Millisecond)
	t.Cleanup(func() { s.Stop() })
	l, err := d.StartLoad(iofault.LoadSpec{Bytes: 1 << 40, For: 2 * time.Second, Block: 256 << 10, SyncEvery: 1, Direct: true})
	if err != nil {
		t.Fatal(err)
	}
	<-l.Done()
	st := l.Stop()
	time.Sleep(250 * time.Millisecond)
	samples := s.Stop()
	if again := s.Stop(); len(again) != len(samples) {
		t.Errorf("second Stop returned %d samples, want %d", len(again), len(samples))
	}
	var busy int
	var maxUtil, maxAwait, maxQD float64
	var written uint64
	for _, x := range samples {
		if x.Err != "" {
			t.Errorf("sample error: %s", x.Err)
		}
		if x.Util > 0 && x.WriteBytes > 0 {
			busy++
		}
		if x.Util < 0 || x.Util > 1 {
			t.Errorf("Util = %v, want 0..1", x.Util)
		}
		maxUtil, maxAwait, maxQD = max(maxUtil, x.Util), max(maxAwait, x.AwaitMs), max(maxQD, x.QueueDepth)
		written += x.WriteBytes
	}
	t.Logf("load %+v; %d samples, %d busy, util max %.2f, await max %.2f ms, queue max %.2f, %d bytes written to the device",
		st, len(samples), busy, maxUtil, maxAwait, maxQD, written)
	if busy == 0 {
		t.Errorf("no sample with Util > 0 and WriteBytes > 0 during the load: %+v", samples)
	}
	if written < uint64(st.Bytes) {
		t.Errorf("device saw %d bytes written, the load wrote %d", written, st.Bytes)
	}
}
