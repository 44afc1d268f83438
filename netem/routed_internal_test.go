package netem

import (
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

var (
	nA = NetworkSpec{Name: "a", Subnet: netip.MustParsePrefix("10.89.0.0/24")}
	nB = NetworkSpec{Name: "b", Subnet: netip.MustParsePrefix("10.89.1.0/24")}
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestRoutedSpecNetworks(t *testing.T) {
	spec := Spec{
		RunID:    "x",
		Networks: []NetworkSpec{nA, nB, {Name: "c", Subnet: netip.MustParsePrefix("10.89.2.0/24")}},
		Hosts: []HostSpec{
			{Name: "client", Network: "a", Address: addr("10.89.0.10"), Extra: []netip.Addr{addr("10.89.0.11")}},
			{Name: "server", Network: "b", Address: addr("10.89.1.10")},
		},
		Routers: []RouterSpec{
			{Name: "nat", Links: []LinkSpec{{Network: "a", Address: addr("10.89.0.1")}, {Network: "b", Address: addr("10.89.1.1"), Extra: []netip.Addr{addr("10.89.1.2")}}}},
			// A second router on b is not b's gateway: the first one is.
			{Name: "r2", Links: []LinkSpec{{Network: "b", Address: addr("10.89.1.254")}}},
		},
	}
	nets, err := spec.networks()
	if err != nil {
		t.Fatal(err)
	}
	want := []*Network{
		{Name: "a", Subnet: nA.Subnet, Bridge: "br0", Gateway: addr("10.89.0.1")},
		{Name: "b", Subnet: nB.Subnet, Bridge: "br1", Gateway: addr("10.89.1.1")},
		{Name: "c", Subnet: netip.MustParsePrefix("10.89.2.0/24"), Bridge: "br2"},
	}
	if !reflect.DeepEqual(nets, want) {
		t.Errorf("networks() =\n%+v\nwant\n%+v", nets, want)
	}
}

func TestRoutedSpecErrors(t *testing.T) {
	good := func() Spec {
		return Spec{
			RunID:    "x",
			Networks: []NetworkSpec{nA, nB},
			Hosts:    []HostSpec{{Name: "client", Network: "a", Address: addr("10.89.0.10")}},
			Routers:  []RouterSpec{{Name: "nat", Links: []LinkSpec{{Network: "a", Address: addr("10.89.0.1")}, {Network: "b", Address: addr("10.89.1.1")}}}},
		}
	}
	tests := []struct {
		name string
		edit func(*Spec)
		want string
	}{
		{"routers without networks", func(s *Spec) { s.Networks = nil }, "routers need networks"},
		{"subnet set too", func(s *Spec) { s.Subnet = nA.Subnet }, "leave Spec.Subnet unset"},
		{"unnamed network", func(s *Spec) { s.Networks[1].Name = "" }, "network 1 has no name"},
		{"network twice", func(s *Spec) { s.Networks[1].Name = "a" }, "network a given twice"},
		{"overlap", func(s *Spec) { s.Networks[1].Subnet = netip.MustParsePrefix("10.89.0.128/25") }, "overlaps network a"},
		{"host bits", func(s *Spec) { s.Networks[1].Subnet = netip.MustParsePrefix("10.89.1.1/24") }, "host bits set"},
		{"IPv6", func(s *Spec) { s.Networks[1].Subnet = netip.MustParsePrefix("fd00::/64") }, "want an IPv4 prefix"},
		{"host without network", func(s *Spec) { s.Hosts[0].Network = "" }, `host client: no network ""`},
		{"host on an unknown network", func(s *Spec) { s.Hosts[0].Network = "z" }, `host client: no network "z"`},
		{"host outside its network", func(s *Spec) { s.Hosts[0].Address = addr("10.89.1.10") }, "10.89.1.10 is not in 10.89.0.0/24"},
		{"host on the broadcast address", func(s *Spec) { s.Hosts[0].Address = addr("10.89.0.255") }, "network or broadcast"},
		{"extra outside", func(s *Spec) { s.Hosts[0].Extra = []netip.Addr{addr("10.89.1.11")} }, "10.89.1.11 is not in"},
		{"extra twice", func(s *Spec) { s.Hosts[0].Extra = []netip.Addr{addr("10.89.0.10")} }, "given twice"},
		{"host named hub", func(s *Spec) { s.Hosts[0].Name = "hub" }, "host hub: name taken"},
		{"router named like a host", func(s *Spec) { s.Routers[0].Name = "client" }, `router "client": name empty or taken`},
		{"router without links", func(s *Spec) { s.Routers[0].Links = nil }, "router nat has no links"},
		{"router twice on a network", func(s *Spec) { s.Routers[0].Links[1].Network = "a" }, "router nat eth1: a second link to network a"},
		{"router link outside", func(s *Spec) { s.Routers[0].Links[1].Address = addr("10.89.0.2") }, "router nat eth1: address 10.89.0.2 is not in 10.89.1.0/24"},
		{"router on a host's address", func(s *Spec) { s.Routers[0].Links[0].Address = addr("10.89.0.10") }, "is host client's already"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good()
			if _, err := s.networks(); err != nil {
				t.Fatalf("the good spec: %v", err)
			}
			tt.edit(&s)
			_, err := s.networks()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("networks() = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// A single-network spec is checked only for the new fields.
func TestSingleSpecChecks(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want string // "" for no error
	}{
		{"as before", Spec{Subnet: nA.Subnet, Hosts: []HostSpec{{Name: "c", Address: addr("10.89.0.10")}}}, ""},
		{"no subnet, no hosts", Spec{}, ""},
		{"extra address", Spec{Subnet: nA.Subnet, Hosts: []HostSpec{{Name: "c", Address: addr("10.89.0.10"), Extra: []netip.Addr{addr("10.89.0.20")}}}}, ""},
		{"extra outside", Spec{Subnet: nA.Subnet, Hosts: []HostSpec{{Name: "c", Address: addr("10.89.0.10"), Extra: []netip.Addr{addr("10.89.1.20")}}}}, "not in 10.89.0.0/24"},
		{"network without Networks", Spec{Subnet: nA.Subnet, Hosts: []HostSpec{{Name: "c", Address: addr("10.89.0.10"), Network: "a"}}}, `network "a" in a spec without Networks`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.spec.routed() {
				t.Fatal("spec is routed")
			}
			err := tt.spec.checkSingle()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("checkSingle() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestLastAddr(t *testing.T) {
	for in, want := range map[string]string{"10.89.0.0/24": "10.89.0.255", "10.89.0.64/26": "10.89.0.127", "10.0.0.0/8": "10.255.255.255", "10.89.0.4/30": "10.89.0.7"} {
		if got := lastAddr(netip.MustParsePrefix(in)); got != addr(want) {
			t.Errorf("lastAddr(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestConntrackEntry(t *testing.T) {
	f := &netlink.ConntrackFlow{
		Forward:   netlink.IPTuple{Protocol: 6, SrcIP: net.ParseIP("10.89.0.10"), SrcPort: 41000, DstIP: net.ParseIP("10.89.1.10").To4(), DstPort: 3306},
		Reverse:   netlink.IPTuple{Protocol: 6, SrcIP: net.ParseIP("10.89.1.10"), SrcPort: 3306, DstIP: net.ParseIP("10.89.1.1"), DstPort: 20007},
		TimeOut:   117,
		ProtoInfo: &netlink.ProtoInfoTCP{State: 7},
	}
	want := ConntrackEntry{
		Proto: "tcp",
		Src:   netip.MustParseAddrPort("10.89.0.10:41000"), Dst: netip.MustParseAddrPort("10.89.1.10:3306"),
		ReplySrc: netip.MustParseAddrPort("10.89.1.10:3306"), ReplyDst: netip.MustParseAddrPort("10.89.1.1:20007"),
		State: "TIME_WAIT", Timeout: 117 * time.Second,
	}
	if got := conntrackEntry(f); got != want {
		t.Errorf("conntrackEntry() = %+v, want %+v", got, want)
	}
	udp := conntrackEntry(&netlink.ConntrackFlow{Forward: netlink.IPTuple{Protocol: 17}})
	if udp.Proto != "udp" || udp.State != "" {
		t.Errorf("udp entry = %+v", udp)
	}
	got := CountByState([]ConntrackEntry{want, want, {Proto: "tcp", State: "ESTABLISHED"}, udp, {Proto: "47"}})
	if !reflect.DeepEqual(got, map[string]int{"TIME_WAIT": 2, "ESTABLISHED": 1, "udp": 1, "47": 1}) {
		t.Errorf("CountByState() = %v", got)
	}
	for s, name := range map[uint8]string{0: "NONE", 3: "ESTABLISHED", 7: "TIME_WAIT", 9: "SYN_SENT2", 42: "STATE_42"} {
		if got := TCPStateName(s); got != name {
			t.Errorf("TCPStateName(%d) = %s, want %s", s, got, name)
		}
	}
}
