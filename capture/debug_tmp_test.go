package capture

import (
	"fmt"
	"os"
	"strconv"
	"testing"
)

func TestDebugTmp(t *testing.T) {
	path := os.Getenv("DBG_PCAP")
	if path == "" {
		t.Skip()
	}
	if seed, err := strconv.Atoi(os.Getenv("DBG_SEED")); err == nil {
		randomTrace(uint64(seed), 60).write(t, path)
	}
	stream, _ := strconv.Atoi(os.Getenv("DBG_STREAM"))
	a, err := Analyze(path)
	if err != nil {
		t.Fatal(err)
	}
	table := tsharkTable(t, "/usr/bin/tshark", path)
	for i := range a.Packets {
		p := &a.Packets[i]
		if p.Stream != stream {
			continue
		}
		var ours, theirs string
		cols := table[p.Frame]
		for j, f := range oracleFields {
			if f.flag == nil {
				continue
			}
			short := f.name[len("tcp.analysis."):]
			if f.flag(p) {
				ours += short + " "
			}
			if cols[j] != "" {
				theirs += short + " "
			}
		}
		mark := " "
		if ours != theirs {
			mark = "*"
		}
		fmt.Printf("%s %-100s | ours: %s| tshark: %s (ts stream %s)\n", mark, fmt.Sprintf("%s t=%s", p, p.Time.Format("05.000000")), ours, theirs, cols[0])
	}
}
