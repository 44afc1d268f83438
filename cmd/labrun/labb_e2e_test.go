package main

import (
	"encoding/json"
	"errors"
	"os"
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
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("tshark on %s: %v: %s", pcap, err, ee.Stderr)
		}
		t.Fatalf("tshark on %s: %v", pcap, err)
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
					pcap = p // made absolute by labrun()
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

// The remedies matrix on Oracle MySQL: every cell passes; report.json
// carries its comparison table (a column per headline figure, a row per
// cell) and the HTML report draws it; the cells without TIME_WAITs to
// meet (long connections, tcp_max_tw_buckets 0, the client closing
// first) have no SYN answered by a bare ACK, the incident's cell has.
func TestLabBRemedies(t *testing.T) {
	needRoot(t)
	needFlavor(t, "mysql")
	before := snapshot(t)
	htmlPath := filepath.Join(t.TempDir(), "report.html")
	r := labrun(t, "run", "../../scenarios/lab-b/remedies.yaml", "--html", htmlPath)
	if r.code != 0 {
		t.Fatalf("want exit 0: %s", r)
	}
	b, err := os.ReadFile(filepath.Join(r.dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Matrices []struct {
			Axes    []string `json:"axes"`
			Metrics []string `json:"metrics"`
			Cells   []struct {
				Values  []string           `json:"values"`
				Metrics map[string]float64 `json:"metrics"`
			} `json:"cells"`
		} `json:"matrices"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Matrices) != 1 || len(rep.Matrices[0].Cells) != 7 || len(rep.Matrices[0].Metrics) == 0 {
		t.Fatalf("matrices: %+v", rep.Matrices)
	}
	for _, c := range rep.Matrices[0].Cells {
		label := strings.Join(c.Values, " ")
		bare, ok := c.Metrics["SYN→bare ACK"]
		if !ok {
			t.Fatalf("cell %s has no SYN→bare ACK figure: %v", label, c.Metrics)
		}
		quiet := c.Values[0] != "quit" || c.Values[3] == "0"
		if quiet && bare != 0 {
			t.Errorf("cell %s: %v SYNs answered by a bare ACK, want none", label, bare)
		}
		if label == "quit 1x100 1 131072 stripped" && bare < 100 {
			t.Errorf("the incident's cell: only %v SYNs answered by a bare ACK", bare)
		}
	}
	html, err := os.ReadFile(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(html), `<table class="compare">`) || !strings.Contains(string(html), "SYN→bare ACK") {
		t.Error("the HTML report has no comparison table")
	}
	assertUnchanged(t, before)
}
