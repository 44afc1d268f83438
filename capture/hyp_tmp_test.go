package capture

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// DBG_SPEC: segments separated by ';', each "from flags seq ack len [win]".
func TestHypTmp(t *testing.T) {
	spec := os.Getenv("DBG_SPEC")
	if spec == "" {
		t.Skip()
	}
	tr := newTrace()
	for i, s := range strings.Split(spec, ";") {
		f := strings.Fields(s)
		if len(f) == 0 {
			continue
		}
		n := func(k int) uint32 { v, _ := strconv.ParseUint(f[k], 10, 32); return uint32(v) }
		sg := seg{At: time.Duration(i) * 50 * time.Millisecond, From: f[0], Flags: f[1], Seq: n(2), Ack: n(3), Len: int(n(4)), WScale: -1}
		if len(f) > 5 {
			sg.Win = uint16(n(5))
			if sg.Win == 0 {
				sg.Flags += "0"
			}
		}
		tr.add(sg)
	}
	path := "/tmp/hyp.pcap"
	tr.write(t, path)
	a, _ := Analyze(path)
	table := tsharkTable(t, "/usr/bin/tshark", path)
	for i := range a.Packets {
		p := &a.Packets[i]
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
		fmt.Printf("%s %-90s | ours: %s| tshark: %s\n", mark, p.String(), ours, theirs)
	}
}
