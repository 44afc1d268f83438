package capture

import (
	"net/netip"
	"os/exec"
	"path/filepath"
	"testing"
)

// The pcaps under testdata/runs were recorded by labrun's own Lab E runs
// (Linux 6.18, Oracle MySQL 9.7.4): client 10.89.0.10, server
// 10.89.0.11:3306. Their counts are what the reports said at the time, and
// the analyser must keep finding them.
func TestRecordedRuns(t *testing.T) {
	client := netip.MustParseAddr("10.89.0.10")
	server := netip.MustParseAddrPort("10.89.0.11:3306")
	tests := []struct {
		pcap string
		// In the first flow: retransmitted SYNs, SYN-ACKs of the first
		// request (same ISN), retransmitted client data, client keepalives.
		synRtx, synacks, dataRtx, keepalives int
	}{
		{"syn-dropped.client.pcap", 7, 0, 0, 0},
		{"synack-dropped.server.pcap", 2, 3, 0, 0},
		{"synack-dropped-documented.server.pcap", 6, 11, 0, 0},
		{"third-ack-dropped-documented.client.pcap", 0, 6, 0, 2},
		{"data-retransmit.client.pcap", 0, 1, 6, 0},
		{"data-retransmit-documented.client.pcap", 0, 1, 11, 0},
	}
	for _, tc := range tests {
		t.Run(tc.pcap, func(t *testing.T) {
			path := filepath.Join("testdata", "runs", tc.pcap)
			a, err := Analyze(path)
			if err != nil {
				t.Fatal(err)
			}
			flows := a.Flows(client, server)
			if len(flows) == 0 {
				t.Fatal("no flow from the client to the server")
			}
			f := flows[0]
			synacks := 0
			if sa := f.SYNACKs(); len(sa) > 0 {
				for _, p := range sa {
					if p.Seq == sa[0].Seq {
						synacks++
					}
				}
			}
			got := [4]int{len(f.SYNs()) - 1, synacks, len(f.DataRetransmits(f.Client)), len(f.KeepAlives(f.Client))}
			if got[0] < 0 {
				got[0] = 0
			}
			want := [4]int{tc.synRtx, tc.synacks, tc.dataRtx, tc.keepalives}
			if got != want {
				t.Errorf("SYN rtx, SYN-ACKs, data rtx, keepalives = %v, want %v", got, want)
			}
			// Frame by frame against the oracle; the counts above stand
			// without it.
			if tshark, err := exec.LookPath("tshark"); err == nil {
				if n := compareWithTshark(t, tshark, path); n > 0 {
					t.Errorf("%d disagreements with tshark", n)
				}
			}
		})
	}
}
