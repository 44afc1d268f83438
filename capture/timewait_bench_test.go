package capture

import (
	"bufio"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// labBGenerated is what writeLabBCapture wrote.
type labBGenerated struct {
	packets, conns, bareACKs int
}

// writeLabBCapture writes a synthetic capture of at least minPackets
// packets modelled on the Lab B server-side capture: short MySQL
// connections (handshake, greeting, authentication, OK, COM_QUIT, server's
// FIN first) every 5 ms from 100 NAT ports, with random ISNs. A SYN whose
// ISN is not after the previous connection's last client sequence number
// on its port meets the server's TIME_WAIT: bare ACK with the old numbers,
// the client's RST, and the SYN again 10 ms later. The connections are
// written one at a time, so the generator's memory stays small whatever
// the size.
func writeLabBCapture(tb testing.TB, path string, minPackets int) labBGenerated {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := pcapgo.NewWriter(bw)
	if err := w.WriteFileHeader(snaplen, layers.LinkTypeEthernet); err != nil {
		tb.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 11))
	type portState struct {
		used         bool
		cnext, snext uint32
	}
	var (
		g     labBGenerated
		ports [100]portState
		b     = newTWBuilder()
		at    time.Duration
	)
	for g.packets < minPackets {
		b.tr.Segs, b.quits = b.tr.Segs[:0], b.quits[:0]
		i := r.IntN(len(ports))
		port := uint16(20000 + i)
		cisn, sisn := r.Uint32(), r.Uint32()
		ps := &ports[i]
		var c, s uint32
		if ps.used && !gtSeq(cisn, ps.cnext) {
			at, c, s = b.timeWaitACK(port, at, cisn, sisn, ps.cnext, ps.snext, 10*time.Millisecond)
			g.bareACKs++
		} else {
			at, c, s = b.conn(port, at, cisn, sisn, twQuit)
		}
		g.conns++
		*ps = portState{used: true, cnext: c, snext: s}
		at += 5 * time.Millisecond
		for j, sg := range b.tr.Segs {
			data, err := b.tr.frame(sg)
			if err != nil {
				tb.Fatal(err)
			}
			for _, q := range b.quits {
				if q == j {
					// Ethernet, IPv4 and TCP headers without options: the
					// payload starts at byte 54.
					copy(data[54:], twCOMQuit)
				}
			}
			ci := gopacket.CaptureInfo{Timestamp: b.tr.Start.Add(sg.At), CaptureLength: len(data), Length: len(data)}
			if err := w.WritePacket(ci, data); err != nil {
				tb.Fatal(err)
			}
			g.packets++
		}
	}
	if err := bw.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return g
}

// benchPackets is the size of the benchmark's capture.
const benchPackets = 1_000_000

func BenchmarkAnalyzeTimeWait(b *testing.B) {
	path := filepath.Join(b.TempDir(), "lab-b-1m.pcap")
	g := writeLabBCapture(b, path, benchPackets)
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Size())
	b.ReportAllocs()
	for b.Loop() {
		a, err := AnalyzeTimeWait(path, TimeWaitOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if a.TCPPackets != g.packets || a.BareACKs != g.bareACKs {
			b.Fatalf("%d packets %d bare ACKs, generator wrote %d %d", a.TCPPackets, a.BareACKs, g.packets, g.bareACKs)
		}
	}
	b.ReportMetric(float64(g.packets)*float64(b.N)/b.Elapsed().Seconds(), "packets/s")
}

// TestTimeWaitSpeedVsTshark times AnalyzeTimeWait and `tshark -q -z
// expert` on the same million-packet capture and prints both, with the
// analyser's peak heap. It asserts the counts, never the times. It runs
// only with LABRUN_SPEED=1: it takes a minute.
func TestTimeWaitSpeedVsTshark(t *testing.T) {
	if os.Getenv("LABRUN_SPEED") != "1" {
		t.Skip("set LABRUN_SPEED=1 to time the analyser against tshark")
	}
	tshark := needTshark(t)
	path := filepath.Join(t.TempDir(), "lab-b-1m.pcap")
	t0 := time.Now()
	g := writeLabBCapture(t, path, benchPackets)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("generated %d packets, %d connections, %d bare ACKs, %.1f MB in %s",
		g.packets, g.conns, g.bareACKs, float64(st.Size())/1e6, time.Since(t0).Round(time.Millisecond))

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var (
		peak uint64
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	t1 := time.Now()
	a, err := AnalyzeTimeWait(path, TimeWaitOptions{})
	ours := time.Since(t1)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if a.TCPPackets != g.packets || a.BareACKs != g.bareACKs || a.Connections != g.conns {
		t.Errorf("analyser: %d packets %d bare ACKs %d connections, generator %+v", a.TCPPackets, a.BareACKs, a.Connections, g)
	}

	cmd := exec.Command(tshark, "-r", path, "-q", "-z", "expert")
	t2 := time.Now()
	out, err := cmd.CombinedOutput()
	theirs := time.Since(t2)
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	var tsharkRSS int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		tsharkRSS = ru.Maxrss // KiB on Linux
	}
	t.Logf("%s", a)
	t.Logf("AnalyzeTimeWait: %s (%.0f packets/s); heap in use: %.1f MB before, %.1f MB peak; allocated %.1f MB in total; Sys %.1f MB",
		ours.Round(time.Millisecond), float64(g.packets)/ours.Seconds(),
		float64(before.HeapInuse)/1e6, float64(peak)/1e6, float64(after.TotalAlloc-before.TotalAlloc)/1e6, float64(after.Sys)/1e6)
	t.Logf("tshark -q -z expert: %s, max RSS %.1f MB", theirs.Round(time.Millisecond), float64(tsharkRSS)/1024)
	t.Logf("ratio tshark/analyser: %.1f", theirs.Seconds()/ours.Seconds())
}
