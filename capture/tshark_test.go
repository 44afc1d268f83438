package capture

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tshark is the oracle for the analyser: for every frame, each field below
// must be present in tshark's dissection exactly when the analyser says so
// (or, for values, be equal). tshark is never needed at run time.

// oracleField is one tshark field and the analyser's view of it.
type oracleField struct {
	name string
	// flag is set for presence fields (tcp.analysis.*: "1" when present).
	flag func(p *Packet) bool
	// value is set for numeric fields.
	value func(p *Packet) int
}

var oracleFields = []oracleField{
	{name: "tcp.stream", value: func(p *Packet) int { return p.Stream }},
	{name: "tcp.len", value: func(p *Packet) int { return p.Payload }},
	{name: "tcp.window_size_value", value: func(p *Packet) int { return p.Window }},
	{name: "tcp.window_size", value: func(p *Packet) int { return p.WindowScaled }},
	{name: "tcp.flags.syn", value: func(p *Packet) int { return b2i(p.SYN) }},
	{name: "tcp.flags.ack", value: func(p *Packet) int { return b2i(p.ACK) }},
	{name: "tcp.flags.reset", value: func(p *Packet) int { return b2i(p.RST) }},
	{name: "tcp.flags.fin", value: func(p *Packet) int { return b2i(p.FIN) }},
	{name: "tcp.analysis.retransmission", flag: func(p *Packet) bool { return p.Retransmission }},
	{name: "tcp.analysis.fast_retransmission", flag: func(p *Packet) bool { return p.FastRetransmission }},
	{name: "tcp.analysis.spurious_retransmission", flag: func(p *Packet) bool { return p.SpuriousRetransmission }},
	{name: "tcp.analysis.out_of_order", flag: func(p *Packet) bool { return p.OutOfOrder }},
	{name: "tcp.analysis.keep_alive", flag: func(p *Packet) bool { return p.KeepAlive }},
	{name: "tcp.analysis.keep_alive_ack", flag: func(p *Packet) bool { return p.KeepAliveACK }},
	{name: "tcp.analysis.duplicate_ack", flag: func(p *Packet) bool { return p.DuplicateACK }},
	{name: "tcp.analysis.zero_window", flag: func(p *Packet) bool { return p.ZeroWindow }},
	{name: "tcp.analysis.zero_window_probe", flag: func(p *Packet) bool { return p.ZeroWindowProbe }},
	{name: "tcp.analysis.zero_window_probe_ack", flag: func(p *Packet) bool { return p.ZeroWindowProbeACK }},
	{name: "tcp.analysis.window_update", flag: func(p *Packet) bool { return p.WindowUpdate }},
	{name: "tcp.analysis.window_full", flag: func(p *Packet) bool { return p.WindowFull }},
	{name: "tcp.analysis.lost_segment", flag: func(p *Packet) bool { return p.LostSegment }},
	{name: "tcp.analysis.ack_lost_segment", flag: func(p *Packet) bool { return p.ACKedUnseen }},
	{name: "tcp.analysis.reused_ports", flag: func(p *Packet) bool { return p.ReusedPorts }},
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// needTshark returns tshark's path or skips the test.
func needTshark(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("needs tshark (the test oracle): not in PATH")
	}
	return path
}

// tsharkTable dissects path with tshark and returns, per frame number, the
// raw text of each oracle field ("" when absent).
func tsharkTable(t testing.TB, tshark, path string) map[int][]string {
	t.Helper()
	args := []string{"-r", path, "-n", "-Y", "tcp", "-T", "fields", "-E", "separator=/t", "-E", "occurrence=f", "-e", "frame.number"}
	for _, f := range oracleFields {
		args = append(args, "-e", f.name)
	}
	cmd := exec.Command(tshark, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %s: %v\n%s", path, err, stderr.String())
	}
	table := map[int][]string{}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		cols := strings.Split(line, "\t")
		frame, err := strconv.Atoi(cols[0])
		if err != nil {
			t.Fatalf("tshark output %q: %v", line, err)
		}
		for len(cols) < len(oracleFields)+1 {
			cols = append(cols, "")
		}
		table[frame] = cols[1:]
	}
	return table
}

// compareWithTshark reports every frame and field where the analyser and
// tshark disagree, and returns the number of disagreements.
func compareWithTshark(t testing.TB, tshark, path string) int {
	t.Helper()
	a, err := Analyze(path)
	if err != nil {
		t.Fatalf("Analyze(%s): %v", path, err)
	}
	table := tsharkTable(t, tshark, path)
	diffs := 0
	report := func(format string, args ...any) {
		diffs++
		if diffs <= 20 {
			t.Errorf("%s: "+format, append([]any{path}, args...)...)
		}
	}
	seen := map[int]bool{}
	for i := range a.Packets {
		p := &a.Packets[i]
		seen[p.Frame] = true
		cols, ok := table[p.Frame]
		if !ok {
			report("frame %d: analyser has TCP, tshark has none", p.Frame)
			continue
		}
		for j, f := range oracleFields {
			got := cols[j]
			switch {
			case f.flag != nil:
				if want := f.flag(p); want != (got != "") {
					report("frame %d %s: tshark %q, analyser %v (%s)", p.Frame, f.name, got, want, p)
				}
			case f.value != nil:
				if want := strconv.Itoa(f.value(p)); got != want {
					report("frame %d %s: tshark %q, analyser %s (%s)", p.Frame, f.name, got, want, p)
				}
			}
		}
	}
	for frame := range table {
		if !seen[frame] {
			report("frame %d: tshark has TCP, analyser has none", frame)
		}
	}
	return diffs
}

// tsharkCount counts the frames matching a display filter.
func tsharkCount(t testing.TB, tshark, path, filter string) int {
	t.Helper()
	out, err := exec.Command(tshark, "-r", path, "-n", "-Y", filter, "-T", "fields", "-e", "frame.number").Output()
	if err != nil {
		t.Fatalf("tshark -Y %q %s: %v", filter, path, err)
	}
	return len(strings.Fields(string(out)))
}

func TestFixturesAgreeWithTshark(t *testing.T) {
	tshark := needTshark(t)
	for _, f := range fixtures {
		t.Run(f.name, func(t *testing.T) {
			compareWithTshark(t, tshark, fixturePath(f.name))
		})
	}
}

func fixturePath(name string) string { return fmt.Sprintf("testdata/%s.pcap", name) }

// TestEncapsulationsAgreeWithTshark runs a random trace through every file
// format and encapsulation the analyser reads.
func TestEncapsulationsAgreeWithTshark(t *testing.T) {
	tshark := needTshark(t)
	dir := t.TempDir()
	tests := []struct {
		name string
		edit func(tr *trace)
	}{
		{"pcap-ns", func(tr *trace) { tr.Format = "ns" }},
		{"pcapng", func(tr *trace) { tr.Format = "pcapng" }},
		{"sll", func(tr *trace) { tr.Format = "sll" }},
		{"vlan", func(tr *trace) { tr.VLAN = 250 }},
		{"ipv6", func(tr *trace) { tr.IPv6 = true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := randomTrace(1000, 20)
			tt.edit(tr)
			path := filepath.Join(dir, tt.name+".pcap")
			tr.write(t, path)
			compareWithTshark(t, tshark, path)
		})
	}
}

// TestManyUnackedAgreesWithTshark covers a capture that misses one
// direction: more than a thousand unacknowledged segments, then a FIN and
// its retransmission.
func TestManyUnackedAgreesWithTshark(t *testing.T) {
	tshark := needTshark(t)
	tr := newTrace()
	at := tr.handshake(0, isnC)
	seq := isnC + 1
	for i := 0; i < 1100; i++ {
		at += 10 * time.Microsecond
		tr.add(seg{At: at, From: "c", Flags: "A", Seq: seq, Ack: isnS + 1, Len: 10})
		seq += 10
	}
	for i := 0; i < 2; i++ {
		at += 200 * time.Millisecond
		tr.add(seg{At: at, From: "c", Flags: "FA", Seq: seq, Ack: isnS + 1})
	}
	tr.add(seg{At: at + time.Millisecond, From: "c", Flags: "A", Seq: seq + 1, Ack: isnS + 1})
	path := filepath.Join(t.TempDir(), "unacked.pcap")
	tr.write(t, path)
	compareWithTshark(t, tshark, path)
	a, err := Analyze(path)
	if err != nil {
		t.Fatal(err)
	}
	fins := onlyFlow(t, a).FINs(synthClient)
	if len(fins) != 2 || !fins[1].Retransmission {
		t.Errorf("FINs %v, want 2, the second a retransmission", Frames(fins))
	}
}
