package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// routedSNAT is a routed lab: the client on network a, the server on
// network b, a router between them that rewrites the client's source to
// an address of its SNAT pool. A skipped step sits in the chain.
const routedSNAT = `name: routed-snat
limit: 30s
networks:
  a: {subnet: 10.89.1.0/24}
  b: {subnet: 10.89.2.0/24}
hosts:
  client: {network: a}
  nat:
    links:
      - {network: a}
      - {network: b, extra: [10.89.2.201]}
    sysctls: {net.netfilter.nf_conntrack_tcp_timeout_time_wait: 30}
  server: {network: b}
server: {host: server}
captures: [server, nat]
timeline:
  - name: snat
    at: 0s
    host: nat
    iptables: -t nat -A POSTROUTING -o eth1 -p tcp -j SNAT --to-source 10.89.2.201
  - name: drop
    after: snat
    host: nat
    skip: true
    iptables: -A FORWARD -p tcp --dport 3306 -j DROP
  - name: connect
    after: drop
    client: {kind: go, sql: [SELECT 1]}
checks:
  - {name: value, type: query_value, step: connect, expect: {value: "1"}}
`

// A client reaches a server on another network through a router, whose
// SNAT rule the server's capture shows; the skipped DROP does not run.
func TestRoutedSNAT(t *testing.T) {
	needRoot(t)
	needFlavor(t, "mysql")
	before := snapshot(t)
	p := filepath.Join(t.TempDir(), "routed-snat.yaml")
	if err := os.WriteFile(p, []byte(routedSNAT), 0o644); err != nil {
		t.Fatal(err)
	}
	r := labrun(t, "run", p)
	if r.code != 0 {
		t.Fatalf("want exit 0: %s", r)
	}
	b, err := os.ReadFile(filepath.Join(r.dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Scenarios []struct {
			Environment struct {
				Hosts   map[string]string            `json:"hosts"`
				Sysctls map[string]map[string]string `json:"sysctls"`
			} `json:"environment"`
			Steps []struct {
				Name    string `json:"name"`
				Skipped bool   `json:"skipped"`
			} `json:"steps"`
		} `json:"scenarios"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	sc := rep.Scenarios[0]
	if got := sc.Environment.Hosts; got["client"] != "10.89.1.10" || got["server"] != "10.89.2.10" || got["nat"] != "10.89.1.1, 10.89.2.1" {
		t.Errorf("environment.hosts %v", got)
	}
	if got := sc.Environment.Sysctls["nat"]["net.netfilter.nf_conntrack_tcp_timeout_time_wait"]; got != "30" {
		t.Errorf("the router's conntrack TIME_WAIT timeout reads %q, want 30", got)
	}
	skipped := map[string]bool{}
	for _, st := range sc.Steps {
		skipped[st.Name] = st.Skipped
	}
	if len(skipped) != 3 || !skipped["drop"] || skipped["connect"] || skipped["snat"] {
		t.Errorf("steps and their skipped marks: %v", skipped)
	}
	pcaps := map[string]string{}
	for _, f := range r.report.Scenarios[0].Artifacts.Pcap {
		pcaps[filepath.Base(f)] = f
	}
	for _, want := range []string{"server.pcap", "nat-eth0.pcap", "nat-eth1.pcap"} {
		if pcaps[want] == "" {
			t.Errorf("no %s among %v", want, r.report.Scenarios[0].Artifacts.Pcap)
		}
	}
	// The server sees the router's SNAT address, never the client's; the
	// router's eth0 sees the client's own.
	if n := tsharkCount(t, pcaps["server.pcap"], "ip.src==10.89.2.201 && tcp.dstport==3306 && tcp.flags.syn==1"); n == 0 {
		t.Error("the server's capture has no SYN from the SNAT address 10.89.2.201")
	}
	if n := tsharkCount(t, pcaps["server.pcap"], "ip.addr==10.89.1.10"); n != 0 {
		t.Errorf("the server's capture has %d packets of the client's own address", n)
	}
	if n := tsharkCount(t, pcaps["nat-eth0.pcap"], "ip.src==10.89.1.10 && tcp.dstport==3306"); n == 0 {
		t.Error("the router's eth0 capture has no packet from the client")
	}
	assertUnchanged(t, before)
}
