package iofault

import (
	"testing"
	"time"
)

func TestSample(t *testing.T) {
	t0 := time.Unix(1000, 0)
	base := diskStat{t: t0, rIOs: 10, rSectors: 80, rTicks: 5, wIOs: 20, wSectors: 160, wTicks: 40, ioTicks: 100, timeInQueue: 200, flushIOs: 3}
	tests := []struct {
		name string
		cur  diskStat
		want IOSample
	}{
		{
			name: "idle",
			cur:  func() diskStat { c := base; c.t = t0.Add(time.Second); return c }(),
			want: IOSample{Time: t0.Add(time.Second)},
		},
		{
			// 1 s: 4 writes of 8 sectors taking 10 ms each, busy 40 ms,
			// 60 ms of queue time, 2 flushes, 1 in flight at the end.
			name: "writes",
			cur: diskStat{t: t0.Add(time.Second), rIOs: 10, rSectors: 80, rTicks: 5, wIOs: 24, wSectors: 192, wTicks: 80,
				inFlight: 1, ioTicks: 140, timeInQueue: 260, flushIOs: 5},
			want: IOSample{Time: t0.Add(time.Second), WriteBytes: 32 * 512, WriteIOs: 4, Flushes: 2,
				Util: 0.04, AwaitMs: 10, QueueDepth: 0.06, InFlight: 1},
		},
		{
			name: "reads and writes, await over both",
			cur: diskStat{t: t0.Add(500 * time.Millisecond), rIOs: 12, rSectors: 96, rTicks: 15, wIOs: 22, wSectors: 176, wTicks: 50,
				ioTicks: 150, timeInQueue: 220, flushIOs: 3},
			want: IOSample{Time: t0.Add(500 * time.Millisecond), ReadBytes: 16 * 512, WriteBytes: 16 * 512, ReadIOs: 2, WriteIOs: 2,
				Util: 0.1, AwaitMs: 5, QueueDepth: 0.04},
		},
		{
			// io_ticks can run ahead of the wall clock read a moment
			// earlier; util is capped at 1.
			name: "util capped",
			cur: diskStat{t: t0.Add(100 * time.Millisecond), rIOs: 10, rSectors: 80, rTicks: 5, wIOs: 21, wSectors: 168, wTicks: 140,
				ioTicks: 205, timeInQueue: 300, flushIOs: 3},
			want: IOSample{Time: t0.Add(100 * time.Millisecond), WriteBytes: 8 * 512, WriteIOs: 1,
				Util: 1, AwaitMs: 100, QueueDepth: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sample(base, tt.cur)
			if !near(got.Util, tt.want.Util) || !near(got.AwaitMs, tt.want.AwaitMs) || !near(got.QueueDepth, tt.want.QueueDepth) {
				t.Errorf("util/await/queue = %v/%v/%v, want %v/%v/%v", got.Util, got.AwaitMs, got.QueueDepth, tt.want.Util, tt.want.AwaitMs, tt.want.QueueDepth)
			}
			got.Util, got.AwaitMs, got.QueueDepth = tt.want.Util, tt.want.AwaitMs, tt.want.QueueDepth
			if got != tt.want {
				t.Errorf("sample = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
