package netem

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// A routed spec (Spec.Networks set) has several networks, each a subnet on a
// bridge of its own, and routers with one link per network between them.
//
// All the bridges live in the one hub namespace, br0, br1, ... in the
// order of Spec.Networks. A bridge has no address and the hub forwards
// nothing (net.ipv4.ip_forward is 0 there, and it would not route between
// interfaces that carry no address anyway), so two
// bridges are two separate Ethernet segments: the only way from one
// network to another is through a router's namespace, where its iptables
// rules and conntrack table see the traffic. One hub rather than one per
// network keeps a single extra namespace per run, journaled and removed
// last by Down exactly as in a single-network spec, so crash cleanup and
// `labrun doctor` need nothing new.

// NetworkSpec is one network of a routed spec.
type NetworkSpec struct {
	// Name is how hosts and router links refer to the network.
	Name string
	// Subnet is the network's IPv4 prefix, e.g. 10.89.1.0/24.
	Subnet netip.Prefix
}

// RouterSpec is a host with one link per network it joins: Links[0] is its
// eth0, Links[1] its eth1, and so on, so that rules written for a real
// router ("-o eth1") work unchanged. net.ipv4.ip_forward is set to 1 in
// its namespace, and nowhere else. The first router (in Spec.Routers
// order) with a link on a network is that network's gateway: every host
// on it gets a default route via the router's address there.
type RouterSpec struct {
	Name  string
	Links []LinkSpec
}

// LinkSpec is a router's link to one network.
type LinkSpec struct {
	Network string
	Address netip.Addr
	// Extra are further addresses on the link, e.g. an SNAT pool: the
	// router answers ARP for them, which an address that only appears in
	// an SNAT rule would not get.
	Extra []netip.Addr
}

// Network is one network of a topology that is up.
type Network struct {
	Name   string
	Subnet netip.Prefix
	// Bridge is the network's bridge in the hub namespace.
	Bridge string
	// Gateway is the address of the network's first router on it, the
	// hosts' default route; it is the zero Addr on a network no router
	// joins, and in a single-network spec.
	Gateway netip.Addr
}

// Link is one lab interface of a host.
type Link struct {
	// Iface is the interface name in the host's namespace: eth0, eth1, ...
	Iface   string
	Network string
	// Prefix is the link's first address with the network's prefix length;
	// Extra holds the others.
	Prefix netip.Prefix
	Extra  []netip.Prefix
}

// LinkOn returns the host's link to a network.
func (h *Host) LinkOn(network string) (Link, bool) {
	for _, l := range h.Links {
		if l.Network == network {
			return l, true
		}
	}
	return Link{}, false
}

// routed reports whether the spec asks for several networks.
func (s Spec) routed() bool { return len(s.Networks) > 0 || len(s.Routers) > 0 }

// checkSingle checks what a single-network spec may not have of the routed
// fields; the rest is as it always was.
func (s Spec) checkSingle() error {
	for _, hs := range s.Hosts {
		if err := checkHost(hs, &Network{Subnet: s.Subnet}, false); err != nil {
			return err
		}
	}
	return nil
}

// networks checks a routed spec and returns its networks, with their
// bridge names and gateways.
func (s Spec) networks() ([]*Network, error) {
	if len(s.Networks) == 0 {
		return nil, errors.New("routers need networks: Spec.Networks is empty")
	}
	if s.Subnet.IsValid() {
		return nil, errors.New("a routed spec has its subnets in Networks: leave Spec.Subnet unset")
	}
	var nets []*Network
	byName := map[string]*Network{}
	for i, ns := range s.Networks {
		if ns.Name == "" {
			return nil, fmt.Errorf("network %d has no name", i)
		}
		if _, ok := byName[ns.Name]; ok {
			return nil, fmt.Errorf("network %s given twice", ns.Name)
		}
		if !ns.Subnet.IsValid() || !ns.Subnet.Addr().Is4() || ns.Subnet.Bits() > 30 {
			return nil, fmt.Errorf("network %s: subnet %s: want an IPv4 prefix of /30 or wider", ns.Name, ns.Subnet)
		}
		if ns.Subnet.Masked() != ns.Subnet {
			return nil, fmt.Errorf("network %s: subnet %s has host bits set (want %s)", ns.Name, ns.Subnet, ns.Subnet.Masked())
		}
		for _, o := range nets {
			if o.Subnet.Overlaps(ns.Subnet) {
				return nil, fmt.Errorf("network %s: subnet %s overlaps network %s (%s)", ns.Name, ns.Subnet, o.Name, o.Subnet)
			}
		}
		n := &Network{Name: ns.Name, Subnet: ns.Subnet, Bridge: fmt.Sprintf("br%d", i)}
		nets = append(nets, n)
		byName[n.Name] = n
	}
	names := map[string]bool{"hub": true}
	addrs := map[netip.Addr]string{}
	claim := func(who string, a netip.Addr) error {
		if o, ok := addrs[a]; ok {
			return fmt.Errorf("%s: address %s is %s's already", who, a, o)
		}
		addrs[a] = who
		return nil
	}
	for _, hs := range s.Hosts {
		if names[hs.Name] {
			return nil, fmt.Errorf("host %s: name taken", hs.Name)
		}
		names[hs.Name] = true
		n, ok := byName[hs.Network]
		if !ok {
			return nil, fmt.Errorf("host %s: no network %q", hs.Name, hs.Network)
		}
		if err := checkHost(hs, n, true); err != nil {
			return nil, err
		}
		for _, a := range append([]netip.Addr{hs.Address}, hs.Extra...) {
			if err := claim("host "+hs.Name, a); err != nil {
				return nil, err
			}
		}
	}
	for _, rs := range s.Routers {
		if rs.Name == "" || names[rs.Name] {
			return nil, fmt.Errorf("router %q: name empty or taken", rs.Name)
		}
		names[rs.Name] = true
		if len(rs.Links) == 0 {
			return nil, fmt.Errorf("router %s has no links", rs.Name)
		}
		seen := map[string]bool{}
		for i, ls := range rs.Links {
			who := fmt.Sprintf("router %s eth%d", rs.Name, i)
			n, ok := byName[ls.Network]
			if !ok {
				return nil, fmt.Errorf("%s: no network %q", who, ls.Network)
			}
			if seen[ls.Network] {
				return nil, fmt.Errorf("%s: a second link to network %s", who, ls.Network)
			}
			seen[ls.Network] = true
			for _, a := range append([]netip.Addr{ls.Address}, ls.Extra...) {
				if err := checkAddr(who, a, n); err != nil {
					return nil, err
				}
				if err := claim(who, a); err != nil {
					return nil, err
				}
			}
			if !n.Gateway.IsValid() {
				n.Gateway = ls.Address
			}
		}
	}
	return nets, nil
}

// checkHost checks a host's addresses against its network. In a
// single-network spec only the new field, Extra, is checked, so that specs
// that worked before keep working.
func checkHost(hs HostSpec, n *Network, routed bool) error {
	who := "host " + hs.Name
	if !routed && hs.Network != "" {
		return fmt.Errorf("%s: network %q in a spec without Networks", who, hs.Network)
	}
	if routed {
		if hs.Name == "" || hs.Name == "hub" {
			return fmt.Errorf("host %q: name empty or reserved", hs.Name)
		}
		if err := checkAddr(who, hs.Address, n); err != nil {
			return err
		}
	}
	seen := map[netip.Addr]bool{hs.Address: true}
	for _, a := range hs.Extra {
		if err := checkAddr(who, a, n); err != nil {
			return err
		}
		if seen[a] {
			return fmt.Errorf("%s: address %s given twice", who, a)
		}
		seen[a] = true
	}
	return nil
}

// checkAddr checks that a is a usable host address of n's subnet: inside
// it, and neither its network nor its broadcast address.
func checkAddr(who string, a netip.Addr, n *Network) error {
	if !a.IsValid() || !n.Subnet.Contains(a) {
		return fmt.Errorf("%s: address %s is not in %s", who, a, n.Subnet)
	}
	if a == n.Subnet.Masked().Addr() || a == lastAddr(n.Subnet) {
		return fmt.Errorf("%s: address %s is the network or broadcast address of %s", who, a, n.Subnet)
	}
	return nil
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	return netip.AddrFrom4(b)
}

// routed reports whether the topology was made from a routed spec.
func (t *Topology) routed() bool { _, single := t.Networks[""]; return !single }

// noForwarding turns IPv4 forwarding off in a namespace the routed
// topology made, other than a router's. A new namespace copies the
// machine's net.ipv4 settings, forwarding included (on a Docker host it
// is 1), and in a routed lab only the routers route. A single-network
// topology leaves the value alone, as it always has, and so does an
// adopted namespace: that is its owner's.
func (t *Topology) noForwarding(h *Host) error {
	if !t.routed() || h.Adopted || h.Router {
		return nil
	}
	if err := setSysctls(h.NS, map[string]string{"net.ipv4.ip_forward": "0"}); err != nil {
		return fmt.Errorf("host %s: %w", h.Name, err)
	}
	return nil
}

// checkPlug checks a host given to Plug against the topology.
func (t *Topology) checkPlug(hs HostSpec) error {
	n, ok := t.Networks[hs.Network]
	if !ok {
		return fmt.Errorf("host %s: no network %q", hs.Name, hs.Network)
	}
	return checkHost(hs, n, t.routed())
}

// addRouter creates a router's namespace, plugs one link per network into
// the networks' bridges and turns forwarding on in it.
func (t *Topology) addRouter(hh *netlink.Handle, rs RouterSpec) (*Host, error) {
	h, err := t.newNS(rs.Name)
	if err != nil {
		return nil, err
	}
	h.Router = true
	for i, ls := range rs.Links {
		n := t.Networks[ls.Network]
		link := Link{Iface: fmt.Sprintf("eth%d", i), Network: n.Name, Prefix: netip.PrefixFrom(ls.Address, n.Subnet.Bits())}
		for _, a := range ls.Extra {
			link.Extra = append(link.Extra, netip.PrefixFrom(a, n.Subnet.Bits()))
		}
		h.Links = append(h.Links, link)
		br, err := bridge(hh, n)
		if err != nil {
			return nil, fmt.Errorf("router %s: %w", rs.Name, err)
		}
		j := t.links
		t.links++
		if err := t.plug(hh, br, h, link, j); err != nil {
			return nil, fmt.Errorf("router %s: %w", rs.Name, err)
		}
	}
	h.Address, h.Prefix, h.Network = h.Links[0].Prefix.Addr(), h.Links[0].Prefix, h.Links[0].Network
	// net.ipv4.ip_forward is per namespace: this turns routing on in the
	// router only.
	if err := setSysctls(h.NS, map[string]string{"net.ipv4.ip_forward": "1"}); err != nil {
		return nil, fmt.Errorf("router %s: %w", rs.Name, err)
	}
	return h, nil
}

// defaultRoute adds "default via gw" in ns; gw is on eth0's subnet.
func defaultRoute(ns netns.NsHandle, gw netip.Addr) error {
	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink handle: %w", err)
	}
	defer nh.Close()
	l, err := nh.LinkByName(Iface)
	if err != nil {
		return fmt.Errorf("find %s: %w", Iface, err)
	}
	r := &netlink.Route{
		LinkIndex: l.Attrs().Index,
		Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		Gw:        gw.AsSlice(),
	}
	if err := nh.RouteAdd(r); err != nil {
		return fmt.Errorf("default route via %s: %w", gw, err)
	}
	return nil
}
