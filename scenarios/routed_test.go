package scenarios_test

import (
	"strings"
	"testing"

	"github.com/labrun/labrun/actions"
	. "github.com/labrun/labrun/scenarios"
)

// Addresses left out are assigned per network: a router's links from .1
// up, hosts from .10 up, in order of names, skipping every address
// written anywhere (an extra included).
func TestRoutedDefaults(t *testing.T) {
	s, err := Load("testdata/valid-routed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Routed() || s.Network.Subnet != "" {
		t.Errorf("routed %v, single subnet %q: want routed with no default subnet", s.Routed(), s.Network.Subnet)
	}
	if got := strings.Join(s.NetworkNames(), ","); got != "cloud,office" {
		t.Errorf("networks in bridge order %s", got)
	}
	nat := s.Hosts["nat"]
	if !nat.Router() || s.Hosts["app"].Router() {
		t.Error("nat is the router, app is not")
	}
	tests := []struct{ name, got, want string }{
		{"bastion, written", s.Hosts["bastion"].Address, "10.89.1.10"},
		{"app, the next free one on office", s.Hosts["app"].Address, "10.89.1.11"},
		{"server, the first on cloud", s.Hosts["server"].Address, "10.89.2.10"},
		{"nat eth0", nat.Links[0].Address, "10.89.1.1"},
		{"nat eth1", nat.Links[1].Address, "10.89.2.1"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, tt.got, tt.want)
		}
	}
}

// An address written anywhere is skipped by the defaults, a link's .1
// too: the router then takes the next one.
func TestRoutedDefaultsSkipWritten(t *testing.T) {
	src := `networks:
  a: {subnet: 10.89.1.0/28}
  b: {subnet: 192.168.7.0/24}
hosts:
  alpha: {network: a, extra: [10.89.1.10, 10.89.1.1]}
  beta: {network: a}
  gw: {links: [{network: a}, {network: b, address: 192.168.7.10}]}
  server: {network: b}
server: {host: server}
timeline:
  - {name: c, at: 0s, host: alpha, client: {kind: go, sql: [SELECT 1]}}
checks:
  - {name: v, type: query_value, step: c, expect: {value: "1"}}
`
	s, err := LoadBytes("x.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	got := []string{s.Hosts["alpha"].Address, s.Hosts["beta"].Address, s.Hosts["gw"].Links[0].Address, s.Hosts["server"].Address}
	if want := "10.89.1.11 10.89.1.12 10.89.1.2 192.168.7.11"; strings.Join(got, " ") != want {
		t.Errorf("addresses %v, want %s", got, want)
	}
	// A /28 has room up to .14: a third and fourth host get .13 and .14,
	// a fifth none.
	more := strings.Replace(src, "  server: {network: b}\n", "  server: {network: b}\n  h3: {network: a}\n  h4: {network: a}\n  h5: {network: a}\n", 1)
	_, err = LoadBytes("x.yaml", []byte(more))
	if err == nil || !strings.Contains(err.Error(), "hosts.h5.address: no free address left in 10.89.1.0/28") {
		t.Errorf("a full /28: %v", err)
	}
}

// A matrix axis sets an iptables step's whole rule, a step's skip, and a
// router's conntrack sysctl; labels name the values in the instances,
// and cells and tags may name a value by its label.
func TestMatrixLabelsRulesAndSkip(t *testing.T) {
	s, err := Load("testdata/valid-routed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	insts, err := Expand(s, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(insts) != 8 {
		t.Fatalf("%d instances, want 8", len(insts))
	}
	last := insts[7]
	if want := "valid-routed [nat=masquerade skip=false nf_conntrack_tcp_timeout_time_wait=120]"; last.Name != want {
		t.Errorf("name %q, want %q", last.Name, want)
	}
	if got := string(*last.Timeline[0].Action.(*actions.Iptables)); got != "-t nat -A POSTROUTING -o eth1 -j MASQUERADE" {
		t.Errorf("rule %q", got)
	}
	if last.Timeline[1].Skip || !insts[0].Timeline[1].Skip {
		t.Errorf("skip: first cell %v, last %v", insts[0].Timeline[1].Skip, last.Timeline[1].Skip)
	}
	if got := last.Hosts["nat"].Sysctls["net.netfilter.nf_conntrack_tcp_timeout_time_wait"]; got != "120" {
		t.Errorf("conntrack sysctl %q", got)
	}
	if got := strings.Join(last.Cell.Names(), "|"); got != "masquerade|false|120" {
		t.Errorf("cell names %s", got)
	}
	if got := last.Cell.Values[0]; got != "-t nat -A POSTROUTING -o eth1 -j MASQUERADE" {
		t.Errorf("cell value %q", got)
	}
	// The tag names the value by its label.
	for _, in := range insts {
		long := contains(in.Tags, "long")
		if want := strings.Contains(in.Name, "nat=masquerade skip=false"); long != want {
			t.Errorf("%s: tags %v", in.Name, in.Tags)
		}
	}
	// The cell's document loads back as that cell.
	doc, err := last.Document()
	if err != nil {
		t.Fatal(err)
	}
	back, err := LoadBytes("scenario.yaml", doc)
	if err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	if back.Timeline[1].Skip || string(*back.Timeline[0].Action.(*actions.Iptables)) != "-t nat -A POSTROUTING -o eth1 -j MASQUERADE" {
		t.Errorf("reloaded cell: skip %v rule %v", back.Timeline[1].Skip, *back.Timeline[0].Action.(*actions.Iptables))
	}

	// Listed cells name values by label or by value.
	s.Matrix.Cells = []map[string]Scalar{
		{"nat": "pool", "skip": "true", "nf_conntrack_tcp_timeout_time_wait": "30"},
		{"nat": "-t nat -A POSTROUTING -o eth1 -j MASQUERADE", "skip": "false", "nf_conntrack_tcp_timeout_time_wait": "60"},
	}
	var names []string
	for _, c := range s.Cells() {
		names = append(names, c.Label())
	}
	if want := "nat=pool skip=true nf_conntrack_tcp_timeout_time_wait=30|nat=masquerade skip=false nf_conntrack_tcp_timeout_time_wait=60"; strings.Join(names, "|") != want {
		t.Errorf("listed cells %q", strings.Join(names, "|"))
	}
	if c := s.Cells()[0]; !strings.Contains(c.Values[0], "SNAT") {
		t.Errorf("a cell naming the label pool runs %q", c.Values[0])
	}

	// --set replaces the values and drops the labels that named them.
	if err := s.SetAxis("snat.iptables", []string{"-t nat -A POSTROUTING -o eth1 -j MASQUERADE"}); err != nil {
		t.Fatal(err)
	}
	if a := s.Matrix.Axes[0]; a.Labels != nil || len(a.Values) != 1 {
		t.Errorf("axis after --set: %+v", a)
	}
}

// A skipped step's kind is not needed from the machine, and an axis
// cannot set the whole value of a kind that does not allow it.
func TestSkipAndSettableKinds(t *testing.T) {
	src := `hosts: {client: {}, server: {}}
server: {host: server}
timeline:
  - {name: lossy, at: 0s, host: client, skip: true, netem: {loss: 10%}}
  - {name: c, after: lossy, client: {kind: go, sql: [SELECT 1]}}
checks:
  - {name: v, type: query_value, step: c, expect: {value: "1"}}
`
	s, err := LoadBytes("x.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range s.Needs() {
		if r.Name == "sch_netem" {
			t.Errorf("a skipped netem step needs %s", r.Name)
		}
	}
	if err := s.SetAxis("c.client", []string{"x"}); err == nil || !strings.Contains(err.Error(), `has no option "client"`) {
		t.Errorf("--set c.client: %v", err)
	}
	if err := s.SetAxis("lossy.skip", []string{"false", "true"}); err != nil {
		t.Fatal(err)
	}
	insts, err := Expand(s, nil, nil)
	if err != nil || len(insts) != 2 || insts[0].Timeline[0].Skip || !insts[1].Timeline[0].Skip {
		t.Fatalf("skip axis: %v %v", insts, err)
	}
	if insts[0].Name != "x [skip=false]" {
		t.Errorf("name %q", insts[0].Name)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
