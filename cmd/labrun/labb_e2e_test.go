package main

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/labrun/labrun/netem"
)

const labBQuick = "../../scenarios/lab-b/nat-strip.yaml"

// hostConntrack lists the host namespace's conntrack entries of the lab
// networks (10.89.*): a run must never leave one there, its traffic stays
// in its own namespaces.
func hostConntrack(t *testing.T) []string {
	t.Helper()
	self, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	es, err := netem.ListConntrack(self)
	if err != nil {
		// No conntrack in the host namespace: nothing can be left there.
		return nil
	}
	var out []string
	for _, e := range es {
		if s := e.Src.Addr().String() + " " + e.Dst.Addr().String(); strings.Contains(s, "10.89.") {
			out = append(out, e.Src.String()+" > "+e.Dst.String()+" "+e.State)
		}
	}
	return out
}

// tsharkBareACKs counts, with tshark's own dissection, the SYNs answered by
// a bare ACK: per tshark stream, the first segment from the server after a
// client SYN is an ACK alone, without payload, that does not acknowledge
// the SYN.
func tsharkBareACKs(t *testing.T, pcap string, port int) int {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("needs tshark as the test oracle (apt-get install tshark)")
	}
	out, err := exec.Command("tshark", "-n", "-r", pcap, "-T", "fields", "-E", "separator=,",
		"-e", "tcp.stream", "-e", "tcp.srcport", "-e", "tcp.flags", "-e", "tcp.seq_raw", "-e", "tcp.ack_raw", "-e", "tcp.len").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	synSeq := map[string]uint64{}
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(l, ",")
		if len(f) < 6 {
			continue
		}
		flags, _ := strconv.ParseUint(strings.TrimPrefix(f[2], "0x"), 16, 16)
		seq, _ := strconv.ParseUint(f[3], 10, 32)
		ack, _ := strconv.ParseUint(f[4], 10, 32)
		fromServer := f[1] == strconv.Itoa(port)
		switch {
		case !fromServer && flags == 0x002:
			synSeq[f[0]] = seq
		case fromServer:
			s, ok := synSeq[f[0]]
			if !ok {
				continue
			}
			delete(synSeq, f[0])
			if flags == 0x010 && f[5] == "0" && ack != (s+1)&0xffffffff {
				n++
			}
		}
	}
	return n
}

// The quick Lab B scenario on both flavors: it passes, and the counts its
// checks report are tshark's on the saved server capture: reused ports
// (tcp.analysis.reused_ports) and SYNs answered by a bare ACK.
func TestLabBAgreesWithTshark(t *testing.T) {
	needRoot(t)
	for _, flavor := range []string{"mysql", "mariadb"} {
		t.Run(flavor, func(t *testing.T) {
			needFlavor(t, flavor)
			before := snapshot(t)
			r := labrun(t, "run", labBQuick, "--flavor", flavor)
			if r.code != 0 {
				t.Fatalf("want exit 0: %s", r)
			}
			obs := check(t, r, "syn_bare_ack")
			var pcap string
			for _, p := range r.report.Scenarios[0].Artifacts.Pcap {
				if filepath.Base(p) == "server.pcap" {
					pcap = filepath.Join(r.dir, p)
				}
			}
			if pcap == "" {
				t.Fatalf("no server.pcap in %v", r.report.Scenarios[0].Artifacts.Pcap)
			}
			bare, reused := obs["bare_acks"].(float64), obs["reused_ports"].(float64)
			if bare < 10 {
				t.Errorf("only %v SYNs answered by a bare ACK: the lab did not reproduce the incident", bare)
			}
			if got := tsharkBareACKs(t, pcap, 3306); float64(got) != bare {
				t.Errorf("bare ACKs: labrun %v, tshark %d", bare, got)
			}
			if got := tsharkCount(t, pcap, "tcp.analysis.reused_ports"); float64(got) != reused {
				t.Errorf("reused ports: labrun %v, tshark %d", reused, got)
			}
			assertUnchanged(t, before)
			if left := hostConntrack(t); len(left) > 0 {
				t.Errorf("lab connections in the host's conntrack table: %v", left)
			}
		})
	}
}

// A run stopped in the middle of the load, by SIGINT or by SIGKILL and
// then `labrun cleanup`, leaves no namespace, rule, process, journal or
// host conntrack entry.
func TestLabBStopMidLoad(t *testing.T) {
	needRoot(t)
	needFlavor(t, "mysql")
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			before := snapshot(t)
			cmd, out := startRun(t, labBQuick)
			time.Sleep(3 * time.Second)
			if sig == syscall.SIGINT {
				interrupt(t, cmd, out)
			} else {
				cmd.Process.Signal(sig)
				cmd.Wait()
				if after := snapshot(t); after.netns == before.netns {
					t.Fatalf("SIGKILL left nothing to clean: the test proves nothing\n%s", out)
				}
				if c := labrun(t, "cleanup"); c.code != 0 {
					t.Fatalf("cleanup: %s", c)
				}
			}
			assertUnchanged(t, before)
			if left := hostConntrack(t); len(left) > 0 {
				t.Errorf("lab connections in the host's conntrack table: %v", left)
			}
		})
	}
}
