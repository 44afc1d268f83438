package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const labDQuick = "../../scenarios/lab-d/slow-reader-ftwrl.yaml"

// waitFor waits until the run's verbose output contains want.
func waitFor(t *testing.T, cmd *exec.Cmd, out *bytes.Buffer, want string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if strings.Contains(out.String(), want) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	t.Fatalf("no %q in the run's output after %s:\n%s", want, limit, out.String())
}

// SIGINT while the readers are blocked (their windows closed, their server
// threads in "Sending to client", the cli reader's process alive and
// stalled on a full pipe) leaves no client, server or namespace behind.
func TestLabDInterruptWhileReaderBlocked(t *testing.T) {
	needRoot(t)
	needFlavor(t, "mysql")
	before := snapshot(t)
	cmd, out := startRun(t, labDQuick)
	// FTWRL gives up 2 s after it started at 1 s; the readers stay blocked
	// until 6 s.
	waitFor(t, cmd, out, "step=ftwrl", 30*time.Second)
	names := map[string]bool{}
	for _, l := range strings.Split(serverProcs(), "\n") {
		if _, name, ok := strings.Cut(l, " "); ok {
			names[name] = true
		}
	}
	if !names["mysqld"] || !names["mysql"] {
		t.Fatalf("the server and the blocked cli reader should be running now, got %v", names)
	}
	interrupt(t, cmd, out)
	assertUnchanged(t, before)
}

// The quick Lab D run on Oracle MySQL: report.json shows the article's
// facts, and the zero-window probes the analysis counted agree with tshark
// on the same capture.
func TestLabDReportAgreesWithTshark(t *testing.T) {
	needRoot(t)
	needFlavor(t, "mysql")
	r := labrun(t, "run", labDQuick, "--flavor", "mysql")
	if r.code != 0 {
		t.Fatalf("want exit 0: %s", r)
	}
	states := fmt.Sprint(check(t, r, "the reader's thread is stuck sending")["states_seen"])
	if !strings.Contains(states, "Sending to client") {
		t.Errorf("reader states %s, want Sending to client", states)
	}
	if code := check(t, r, "FTWRL fails with 1205 after its lock_wait_timeout")["code"]; code != float64(1205) {
		t.Errorf("FTWRL code %v, want 1205", code)
	}
	if states := fmt.Sprint(check(t, r, "the next query waits for the table flush")["states_seen"]); !strings.Contains(states, "Waiting for table flush") {
		t.Errorf("waiter states %s, want Waiting for table flush", states)
	}
	zw := check(t, r, "the reader's window closes and the server probes it")
	probes, _ := zw["count"].(float64)
	if probes < 1 {
		t.Fatalf("zero-window probes %v, want some", zw["count"])
	}
	// The stall is the period from the zero window the check reports to
	// the window update; tshark counts the server's probes (flagged
	// keep_alive, as Linux sends them) on the reader's connection then.
	var pcap string
	for _, p := range r.report.Scenarios[0].Artifacts.Pcap {
		if filepath.Base(p) == "client.pcap" {
			pcap = p
		}
	}
	var port string
	for _, ev := range r.report.Scenarios[0].Checks {
		if ev.Name == "the reader's window closes and the server probes it" && len(ev.Evidence) > 0 {
			// "client.pcap frame N zero window ... 10.89.0.10:PORT -> ..."
			f := strings.Fields(ev.Evidence[0])
			for i, w := range f {
				if w == "->" && i > 0 {
					port = f[i-1][strings.LastIndexByte(f[i-1], ':')+1:]
				}
			}
		}
	}
	if pcap == "" || port == "" {
		t.Fatalf("no client.pcap (%v) or reader port (%q)", r.report.Scenarios[0].Artifacts.Pcap, port)
	}
	at, _ := zw["zero_window_s"].(float64)
	closed, _ := zw["closed_s"].(float64)
	// frame.time_relative counts from the capture's first frame, which
	// the timeline's start precedes a little: compare by probe count over
	// the flow's whole life, the stall being its only stall with probes.
	got := tsharkCount(t, pcap, fmt.Sprintf("tcp.port==%s && tcp.srcport==3306 && (tcp.analysis.keep_alive || tcp.analysis.zero_window_probe)", port))
	if float64(got) != probes {
		t.Errorf("tshark counts %d probes on port %s, the check %v (stall at %.3fs for %.3fs)", got, port, probes, at, closed)
	}
}
