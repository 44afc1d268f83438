package capture

import (
	"bytes"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the pcap fixtures under testdata/ from their generators")

// TestFixtures keeps testdata/*.pcap identical to what the generators in
// synth_test.go produce; run with -update after changing a generator.
func TestFixtures(t *testing.T) {
	for _, f := range fixtures {
		t.Run(f.name, func(t *testing.T) {
			want := f.trace().bytes(t)
			path := fixturePath(f.name)
			if *update {
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestFixtures -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from its generator (run go test -run TestFixtures -update)", path)
			}
		})
	}
}

func count(pkts []Packet, keep func(p *Packet) bool) int {
	n := 0
	for i := range pkts {
		if keep(&pkts[i]) {
			n++
		}
	}
	return n
}

func retransmitted(p *Packet) bool { return p.Retransmission }

// onlyFlow returns the single flow between the synthetic client and
// server.
func onlyFlow(t *testing.T, a *Analysis) *Flow {
	t.Helper()
	flows := a.Flows(synthClient.Addr(), synthServer)
	if len(flows) != 1 {
		t.Fatalf("Flows: got %d flows, want 1", len(flows))
	}
	f := flows[0]
	if f.Client != synthClient || f.Server != synthServer {
		t.Fatalf("flow %s -> %s, want %s -> %s", f.Client, f.Server, synthClient, synthServer)
	}
	return f
}

func ms(v ...float64) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x * float64(time.Millisecond))
	}
	return out
}

// The fixtures carry the timestamps they were written with, so exact
// intervals are fine here: nothing depends on this machine's clock.
func TestAnalyzeFixtures(t *testing.T) {
	client, server := synthClient, synthServer
	tests := []struct {
		name  string
		check func(t *testing.T, a *Analysis, f *Flow)
	}{
		{"syn-ladder", func(t *testing.T, a *Analysis, f *Flow) {
			syns := f.SYNs()
			if got := Frames(syns); !slices.Equal(got, []int{2, 3, 4, 5}) {
				t.Errorf("SYN frames %v, want [2 3 4 5] (frame 1 is ARP)", got)
			}
			if got := count(syns, retransmitted); got != 3 {
				t.Errorf("SYN retransmissions: got %d, want 3", got)
			}
			if got := Intervals(syns); !slices.Equal(got, ms(1010, 2020, 4040)) {
				t.Errorf("SYN intervals %v", got)
			}
			if got := Offsets(syns); !slices.Equal(got, ms(0, 1010, 3030, 7070)) {
				t.Errorf("SYN offsets %v", got)
			}
			if a.Frames != 5 || len(a.Packets) != 4 {
				t.Errorf("frames %d, TCP packets %d; want 5 and 4", a.Frames, len(a.Packets))
			}
			if len(f.SYNACKs()) != 0 {
				t.Errorf("SYN-ACKs in a dropped-SYN ladder")
			}
		}},
		{"synack-ladder", func(t *testing.T, a *Analysis, f *Flow) {
			if got := count(f.SYNs(), retransmitted); got != 2 {
				t.Errorf("SYN retransmissions: got %d, want 2", got)
			}
			sa := f.SYNACKs()
			if len(sa) != 6 || count(sa, retransmitted) != 5 {
				t.Errorf("SYN-ACKs %d (retransmitted %d), want 6 (5)", len(sa), count(sa, retransmitted))
			}
			groups := f.SYNACKsByISN()
			if len(groups) != 1 || len(groups[0]) != 6 || groups[0][0].Seq != isnS {
				t.Errorf("SYN-ACKs by ISN: %d groups, want one of 6 with ISN %d", len(groups), isnS)
			}
		}},
		{"third-ack-dropped", func(t *testing.T, a *Analysis, f *Flow) {
			sa := f.SYNACKs()
			if got := count(sa, retransmitted); got != 3 {
				t.Errorf("SYN-ACK retransmissions: got %d, want 3", got)
			}
			if got := Intervals(sa); !slices.Equal(got, ms(1000.05, 2000, 4000)) {
				t.Errorf("SYN-ACK intervals %v", got)
			}
			if got := count(f.From(client), func(p *Packet) bool { return p.DuplicateACK }); got != 3 {
				t.Errorf("client duplicate ACKs: got %d, want 3", got)
			}
			ka := f.KeepAlives(client)
			if len(ka) != 2 || !slices.Equal(Intervals(ka), ms(10000)) {
				t.Errorf("client keepalives %v, want 2, 10 s apart", Frames(ka))
			}
			if len(f.RSTs(client)) != 1 || len(f.RSTs(server)) != 0 {
				t.Errorf("RSTs: client %d, server %d; want 1 and 0", len(f.RSTs(client)), len(f.RSTs(server)))
			}
		}},
		{"keepalive", func(t *testing.T, a *Analysis, f *Flow) {
			ka := f.KeepAlives(server)
			if len(ka) != 3 {
				t.Fatalf("server keepalives: got %d, want 3", len(ka))
			}
			if got := Intervals(ka); !slices.Equal(got, ms(4000, 2000)) {
				t.Errorf("keepalive intervals %v", got)
			}
			if len(f.KeepAlives(client)) != 0 {
				t.Errorf("client keepalives where there are none")
			}
			if got := count(f.Packets, func(p *Packet) bool { return p.KeepAliveACK }); got != 1 {
				t.Errorf("keepalive ACKs: got %d, want 1", got)
			}
			if len(f.RSTs(server)) != 1 {
				t.Errorf("server RSTs: got %d, want 1", len(f.RSTs(server)))
			}
			if got := count(f.Packets, retransmitted); got != 0 {
				t.Errorf("keepalives counted as retransmissions: %d", got)
			}
		}},
		{"data-retransmit", func(t *testing.T, a *Analysis, f *Flow) {
			rt := f.DataRetransmits(client)
			if len(rt) != 5 {
				t.Fatalf("client data retransmissions: got %d, want 5 (TLP + 4 RTO)", len(rt))
			}
			if got := Intervals(append([]Packet{f.Packets[3]}, rt...)); !slices.Equal(got, ms(10, 210, 420, 840, 1680)) {
				t.Errorf("retransmission intervals %v", got)
			}
			if len(f.DataRetransmits(server)) != 0 {
				t.Errorf("server data retransmissions where there are none")
			}
		}},
		{"timewait-reuse", func(t *testing.T, a *Analysis, f *Flow) {
			if a.Streams != 2 {
				t.Errorf("streams: got %d, want 2 (the 4-tuple is reused)", a.Streams)
			}
			bare := f.BareACKsToSYN()
			if len(bare) != 1 || bare[0].Frame != 9 || bare[0].Ack != isnC+7 {
				t.Errorf("bare ACKs to SYN: %v, want frame 9 acking the old connection", bare)
			}
			syns := f.SYNs()
			if len(syns) != 3 || count(syns, retransmitted) != 1 || !syns[1].ReusedPorts {
				t.Errorf("SYNs %v, want 3: first connection, new ISN (port reuse), its retransmission", Frames(syns))
			}
			if got := Intervals(syns[1:]); !slices.Equal(got, ms(1000)) {
				t.Errorf("SYN retransmission after the RST: %v, want 1 s", got)
			}
			if len(f.RSTs(client)) != 1 {
				t.Errorf("client RSTs: got %d, want 1", len(f.RSTs(client)))
			}
			if got := f.FINs(server); len(got) != 1 || got[0].Frame != 5 {
				t.Errorf("server FINs %v, want frame 5 (the server closes first)", Frames(got))
			}
		}},
		{"fast-spurious-ooo", func(t *testing.T, a *Analysis, f *Flow) {
			want := map[string]int{"fast": 1, "spurious": 1, "ooo": 1, "retrans": 2, "lost": 2, "dupack": 2, "zwp": 1, "zwpack": 1, "update": 1}
			got := map[string]int{}
			for i := range f.Packets {
				p := &f.Packets[i]
				for name, on := range map[string]bool{"fast": p.FastRetransmission, "spurious": p.SpuriousRetransmission,
					"ooo": p.OutOfOrder, "retrans": p.Retransmission, "lost": p.LostSegment, "dupack": p.DuplicateACK,
					"zwp": p.ZeroWindowProbe, "zwpack": p.ZeroWindowProbeACK, "update": p.WindowUpdate} {
					if on {
						got[name]++
					}
				}
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s: got %d, want %d", k, got[k], v)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := Analyze(fixturePath(tt.name))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, a, onlyFlow(t, a))
		})
	}
}

// TestAnalyzeEncapsulations checks that the same conversation reads the
// same in every file format and encapsulation the analyser accepts.
func TestAnalyzeEncapsulations(t *testing.T) {
	base := fixtures[slices.IndexFunc(fixtures, func(f fixture) bool { return f.name == "synack-ladder" })].trace
	want, err := AnalyzeReader(bytes.NewReader(base().bytes(t)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range encapsulations {
		t.Run(tt.name, func(t *testing.T) {
			tr := base()
			tt.edit(tr)
			a, err := AnalyzeReader(bytes.NewReader(tr.bytes(t)))
			if err != nil {
				t.Fatal(err)
			}
			if len(a.Packets) != len(want.Packets) {
				t.Fatalf("got %d packets, want %d", len(a.Packets), len(want.Packets))
			}
			for i := range a.Packets {
				g, w := a.Packets[i], want.Packets[i]
				if tr.IPv6 {
					w.Src = netip.AddrPortFrom(v6(w.Src.Addr()), w.Src.Port())
					w.Dst = netip.AddrPortFrom(v6(w.Dst.Addr()), w.Dst.Port())
				}
				if g != w {
					t.Errorf("packet %d:\n got %+v\nwant %+v", i, g, w)
				}
			}
		})
	}
}

func TestAnalyzeTruncatedFile(t *testing.T) {
	b, err := os.ReadFile(fixturePath("synack-ladder"))
	if err != nil {
		t.Fatal(err)
	}
	// Cut the last record in half, as a writer killed mid-record leaves it.
	a, err := AnalyzeReader(bytes.NewReader(b[:len(b)-30]))
	if err != nil {
		t.Fatal(err)
	}
	if !a.Truncated || len(a.Packets) != 8 {
		t.Errorf("truncated %v with %d packets, want true with 8", a.Truncated, len(a.Packets))
	}
}

func TestAnalyzeErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content []byte
		want    error
	}{
		{"empty", nil, ErrNotCapture},
		{"text", []byte("this is not a capture file\n"), ErrNotCapture},
		{"short pcap header", []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0}, ErrNotCapture},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name)
			if err := os.WriteFile(path, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Analyze(path); !errors.Is(err, tt.want) {
				t.Errorf("Analyze: got %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := Analyze(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Analyze(missing): got %v, want os.ErrNotExist", err)
	}
}

func TestFlowsSeparatesTuplesAndDirections(t *testing.T) {
	tr := newTrace()
	tr.add(seg{At: 0, From: "c", Flags: "S", Seq: 1, CPort: 40002})
	tr.add(seg{At: 1, From: "c", Flags: "S", Seq: 7, CPort: 40001})
	tr.add(seg{At: 2, From: "s", Flags: "SA", Seq: 9, Ack: 2, CPort: 40002})
	tr.add(seg{At: 3, From: "c", Flags: "S", Seq: 7, CPort: 40001})
	a, err := AnalyzeReader(bytes.NewReader(tr.bytes(t)))
	if err != nil {
		t.Fatal(err)
	}
	flows := a.Flows(synthClient.Addr(), synthServer)
	if len(flows) != 2 {
		t.Fatalf("got %d flows, want 2", len(flows))
	}
	if flows[0].Client.Port() != 40002 || len(flows[0].Packets) != 2 || len(flows[0].SYNACKs()) != 1 {
		t.Errorf("first flow %s with %d packets, want port 40002 with SYN and SYN-ACK", flows[0].Client, len(flows[0].Packets))
	}
	if flows[1].Client.Port() != 40001 || len(flows[1].SYNs()) != 2 {
		t.Errorf("second flow %s, want port 40001 with 2 SYNs", flows[1].Client)
	}
	if got := a.Flows(synthServer.Addr(), synthClient); len(got) != 0 {
		t.Errorf("flows with the roles swapped: got %d, want 0", len(got))
	}
}

func TestIntervals(t *testing.T) {
	at := func(d ...time.Duration) []Packet {
		var out []Packet
		for _, x := range d {
			out = append(out, Packet{Time: synthStart.Add(x)})
		}
		return out
	}
	tests := []struct {
		name string
		pkts []Packet
		want []time.Duration
	}{
		{"none", nil, nil},
		{"one", at(0), nil},
		{"ladder", at(0, time.Second, 3*time.Second, 7*time.Second), []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Intervals(tt.pkts); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPacketFlagsString(t *testing.T) {
	tests := []struct {
		p    Packet
		want string
	}{
		{Packet{SYN: true}, "S"},
		{Packet{SYN: true, ACK: true}, "S."},
		{Packet{PSH: true, ACK: true}, "P."},
		{Packet{RST: true}, "R"},
		{Packet{FIN: true, ACK: true}, "F."},
		{Packet{}, "none"},
	}
	for _, tt := range tests {
		if got := tt.p.Flags(); got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.p, got, tt.want)
		}
	}
}

// FuzzAnalyze feeds arbitrary bytes to the parser: it must return an
// analysis or an error, never panic, and what it returns must be
// consistent.
func FuzzAnalyze(f *testing.F) {
	for _, fx := range fixtures {
		b, err := os.ReadFile(fixturePath(fx.name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	tr := fixtures[0].trace()
	tr.Format = "pcapng"
	f.Add(tr.bytes(f))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := AnalyzeReader(bytes.NewReader(b))
		if err != nil {
			return
		}
		last := 0
		for _, p := range a.Packets {
			if p.Frame <= last || p.Frame > a.Frames {
				t.Fatalf("frame %d out of order or beyond %d frames", p.Frame, a.Frames)
			}
			last = p.Frame
			if p.Stream < 0 || p.Stream >= a.Streams || p.Payload < 0 {
				t.Fatalf("packet %+v: stream or payload out of range", p)
			}
		}
		for _, fl := range a.Flows(synthClient.Addr(), synthServer) {
			_ = fl.BareACKsToSYN()
			_ = fl.SYNACKsByISN()
			_ = Intervals(fl.SYNs())
		}
	})
}

// encapsulations are the file formats and link layers the readers take,
// as edits of a synthetic trace.
var encapsulations = []struct {
	name string
	edit func(tr *trace)
}{
	{"pcap nanoseconds", func(tr *trace) { tr.Format = "ns" }},
	{"pcapng", func(tr *trace) { tr.Format = "pcapng" }},
	{"linux cooked", func(tr *trace) { tr.Format = "sll" }},
	{"802.1Q", func(tr *trace) { tr.VLAN = 250 }},
	{"IPv6", func(tr *trace) { tr.IPv6 = true }},
}
