package reports

import (
	"strings"
	"testing"
)

func TestSummarizeIO(t *testing.T) {
	pts := []IOPoint{
		{AtS: 0.1, Util: 0.2, AwaitMs: 1, QueueDepth: 0.5, WriteBytes: 4096},
		{AtS: 0.2, Err: "read /sys/block/loop3/stat: no such device"},
		{AtS: 0.3, Util: 0.9, AwaitMs: 7, QueueDepth: 2, WriteBytes: 1 << 20, ReadBytes: 512},
	}
	s := SummarizeIO(pts)
	if s.Samples != 3 || s.Errors != 1 || s.MaxUtil != 0.9 || s.MaxAwaitMs != 7 || s.MaxQueue != 2 || s.WrittenBytes != 4096+1<<20 || s.ReadBytes != 512 {
		t.Errorf("summary %+v", s)
	}
}

// The lane shows each fault, a mark for each errored sample, and nothing
// without samples.
func TestIOLane(t *testing.T) {
	if got := ioLane(nil); got != "" {
		t.Errorf("lane without samples: %q", got)
	}
	s := SummarizeIO([]IOPoint{{AtS: 0.5, Util: 0.5, WriteBytes: 10}, {AtS: 1, Err: "boom"}})
	s.Faults = []IOFault{{Step: "stall", Kind: "freeze", StartS: 0.2, EndS: 0.8}, {Step: "slow", Kind: "throttle", StartS: 0.3, EndS: 0.9}}
	svg := string(ioLane(s))
	for _, want := range []string{"<svg", "freeze stall", "throttle slow", "<title>boom</title>", "polyline"} {
		if !strings.Contains(svg, want) {
			t.Errorf("lane lacks %q", want)
		}
	}
}
