package iofault

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// IOSample is one interval of the disk's device, what iostat -x shows,
// from the differences of /sys/block/loopN/stat between two readings.
type IOSample struct {
	Time time.Time `json:"time"`
	// Bytes and requests since the previous sample.
	ReadBytes  uint64 `json:"read_bytes"`
	WriteBytes uint64 `json:"write_bytes"`
	ReadIOs    uint64 `json:"read_ios"`
	WriteIOs   uint64 `json:"write_ios"`
	// Flushes are the flush requests (an fsync's cache flush), which
	// iostat -x shows as f/s.
	Flushes uint64 `json:"flushes"`
	// Util is the share of the interval with IO in flight (%util / 100):
	// io_ticks over the wall time, 0..1.
	Util float64 `json:"util"`
	// AwaitMs is the mean time of a read or write, queued and served
	// (await): read and write ticks over their count; 0 with no IO.
	AwaitMs float64 `json:"await_ms"`
	// QueueDepth is the mean number in flight (avgqu-sz, aqu-sz):
	// time_in_queue over the wall time.
	QueueDepth float64 `json:"queue_depth"`
	// InFlight is the number in flight at the sample.
	InFlight int    `json:"in_flight"`
	Err      string `json:"error,omitempty"`
}

// diskStat is one reading of /sys/block/<dev>/stat (Documentation/block/
// stat.rst); sectors are 512 bytes whatever the device's block size, and
// times are in ms.
type diskStat struct {
	t                              time.Time
	rIOs, rSectors, rTicks         uint64
	wIOs, wSectors, wTicks         uint64
	inFlight, ioTicks, timeInQueue uint64
	flushIOs                       uint64
}

func readDiskStat(dev string) (diskStat, error) {
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "stat"))
	if err != nil {
		return diskStat{}, err
	}
	f := strings.Fields(string(b))
	if len(f) < 11 {
		return diskStat{}, fmt.Errorf("%s stat: %d fields, want 11 or more", dev, len(f))
	}
	v := make([]uint64, len(f))
	for i, s := range f {
		if v[i], err = strconv.ParseUint(s, 10, 64); err != nil {
			return diskStat{}, fmt.Errorf("%s stat: %w", dev, err)
		}
	}
	st := diskStat{t: time.Now(),
		rIOs: v[0], rSectors: v[2], rTicks: v[3],
		wIOs: v[4], wSectors: v[6], wTicks: v[7],
		inFlight: v[8], ioTicks: v[9], timeInQueue: v[10]}
	if len(v) >= 17 {
		st.flushIOs = v[15]
	}
	return st, nil
}

// sample is what happened between two readings.
func sample(prev, cur diskStat) IOSample {
	s := IOSample{
		Time:       cur.t,
		ReadBytes:  (cur.rSectors - prev.rSectors) * 512,
		WriteBytes: (cur.wSectors - prev.wSectors) * 512,
		ReadIOs:    cur.rIOs - prev.rIOs,
		WriteIOs:   cur.wIOs - prev.wIOs,
		Flushes:    cur.flushIOs - prev.flushIOs,
		InFlight:   int(cur.inFlight),
	}
	wallMs := float64(cur.t.Sub(prev.t)) / float64(time.Millisecond)
	if wallMs > 0 {
		s.Util = min(float64(cur.ioTicks-prev.ioTicks)/wallMs, 1)
		s.QueueDepth = float64(cur.timeInQueue-prev.timeInQueue) / wallMs
	}
	if ios := s.ReadIOs + s.WriteIOs; ios > 0 {
		s.AwaitMs = float64(cur.rTicks-prev.rTicks+cur.wTicks-prev.wTicks) / float64(ios)
	}
	return s
}

// Sampler samples a disk's device at an interval.
type Sampler struct {
	dev   string
	every time.Duration
	stop  chan struct{}
	done  chan struct{}

	mu      sync.Mutex
	samples []IOSample
	once    sync.Once
}

// MinSampleEvery is the shortest interval: the kernel counts io_ticks in
// jiffies, and shorter intervals only show their rounding.
const MinSampleEvery = 10 * time.Millisecond

// StartSampler samples the disk's device every interval (at least
// MinSampleEvery) until Stop. A reading that fails is a sample with Err,
// and the next one is taken against the last good reading.
func (d *Disk) StartSampler(every time.Duration) *Sampler {
	s := &Sampler{dev: d.Dev, every: max(every, MinSampleEvery), stop: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

func (s *Sampler) run() {
	defer close(s.done)
	prev, err := readDiskStat(s.dev)
	havePrev := err == nil
	if err != nil {
		s.add(IOSample{Time: time.Now(), Err: err.Error()})
	}
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		cur, err := readDiskStat(s.dev)
		switch {
		case err != nil:
			s.add(IOSample{Time: time.Now(), Err: err.Error()})
			continue
		case havePrev:
			s.add(sample(prev, cur))
		}
		prev, havePrev = cur, true
	}
}

func (s *Sampler) add(x IOSample) {
	s.mu.Lock()
	s.samples = append(s.samples, x)
	s.mu.Unlock()
}

// Samples returns the samples so far.
func (s *Sampler) Samples() []IOSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]IOSample(nil), s.samples...)
}

// Stop ends the sampling and returns every sample. It is idempotent.
func (s *Sampler) Stop() []IOSample {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	return s.Samples()
}
