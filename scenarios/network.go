package scenarios

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/labrun/labrun/netem"
)

// A routed lab (networks:) has several networks, each a subnet on a bridge
// of its own, and routers, hosts with one link per network, between them:
// netem's routed Spec (docs/routed-network.md). The single network
// (network:) stays what it was.

// NetworkName is what a network name may be.
var NetworkName = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// Routed subnets are /16 to /30: netem takes nothing narrower than a /30,
// and a wider one has no use in a lab.
const (
	minRoutedBits = 16
	maxRoutedBits = 30
)

// readOnlySysctls are net.* keys that a child namespace shows read-only:
// their value is the machine's (netem.SetSysctls refuses them with
// ErrNotNamespaced), so a scenario may not set them on a host.
var readOnlySysctls = map[string]bool{
	netem.SysctlConntrackMax:                true,
	netem.SysctlConntrackBuckets:            true,
	"net.netfilter.nf_conntrack_expect_max": true,
}

// ParseRoutedSubnet parses the subnet of a routed network: an IPv4 prefix
// from /16 to /30, written as its network address, inside a private range.
func ParseRoutedSubnet(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil || !p.Addr().Is4() || p.Bits() < minRoutedBits || p.Bits() > maxRoutedBits {
		return netip.Prefix{}, fmt.Errorf("bad subnet %q: want an IPv4 prefix from /%d to /%d such as 10.89.1.0/24", s, minRoutedBits, maxRoutedBits)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("bad subnet %q: want the network address, %s", s, p.Masked())
	}
	if !p.Addr().IsPrivate() || !lastAddr(p).IsPrivate() {
		return netip.Prefix{}, fmt.Errorf("subnet %s is not private: want one inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16", p)
	}
	return p, nil
}

// subnet returns the prefix of a routed network, if it has a good one.
func (s *Scenario) subnet(network string) (netip.Prefix, bool) {
	n := s.Networks[network]
	if n == nil {
		return netip.Prefix{}, false
	}
	p, err := ParseRoutedSubnet(n.Subnet)
	return p, err == nil
}

// NetworkNames returns the routed lab's network names in the order netem
// makes their bridges (br0, br1, ...): sorted.
func (s *Scenario) NetworkNames() []string { return sortedNames(s.Networks) }

// Subnet returns the prefix of a routed network, or the single network's
// when network is "".
func (s *Scenario) Subnet(network string) (netip.Prefix, error) {
	if network == "" {
		return netip.ParsePrefix(s.Network.Subnet)
	}
	n := s.Networks[network]
	if n == nil {
		return netip.Prefix{}, fmt.Errorf("no network %q", network)
	}
	return ParseRoutedSubnet(n.Subnet)
}

// nextFree returns the first address of p from offset from up that is
// neither used nor p's broadcast address, and marks it used; "" when none
// is left.
func nextFree(p netip.Prefix, from int, used map[netip.Addr]bool) string {
	base := binary.BigEndian.Uint32(p.Masked().Addr().AsSlice())
	last := lastAddr(p)
	for off := uint32(from); ; off++ {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], base+off)
		a := netip.AddrFrom4(b)
		if !p.Contains(a) || a == last {
			return ""
		}
		if !used[a] {
			used[a] = true
			return a.String()
		}
	}
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	return netip.AddrFrom4(b)
}

// routedHosts checks a routed lab's networks and hosts: every host joins a
// known network, or is a router with one link per network it joins; every
// address is inside its network and unique across the lab; every network
// is joined by something; the server is not a router.
func (c *Validator) routedHosts() {
	s := c.s
	if s.Network.Subnet != "" || s.root != nil && hasKey(s.root, "network") {
		c.add("network", "network and networks are exclusive: a routed lab has its subnets in networks")
	}
	nets := c.networks()
	known := strings.Join(sortedNames(s.Networks), ", ")
	owner := map[netip.Addr]string{}
	joined := map[string]bool{}
	for _, name := range sortedNames(s.Hosts) {
		h := s.Hosts[name]
		path := joinKey("hosts", name)
		c.hostName(path, name)
		if h == nil {
			continue
		}
		c.sysctls(path+".sysctls", h.Sysctls)
		if h.Router() {
			for _, f := range []struct {
				key string
				set bool
			}{{"network", h.Network != ""}, {"address", h.Address != ""}, {"extra", len(h.Extra) > 0}} {
				if f.set {
					c.add(path+"."+f.key, "a router (a host with links) has its networks and addresses in links")
				}
			}
			first := map[string]int{}
			for i, l := range h.Links {
				lp := fmt.Sprintf("%s.links[%d]", path, i)
				switch _, ok := s.Networks[l.Network]; {
				case l.Network == "":
					c.add(lp+".network", "required")
					continue
				case !ok:
					c.add(lp+".network", "unknown network %q (networks: %s)", l.Network, known)
					continue
				}
				if j, dup := first[l.Network]; dup {
					c.add(lp+".network", "a second link to network %s (first at links[%d])", l.Network, j)
					continue
				}
				first[l.Network] = i
				joined[l.Network] = true
				if p, ok := nets[l.Network]; ok {
					c.address(lp+".address", name, l.Address, p, owner)
					c.extra(lp+".extra", name, l.Extra, p, owner)
				}
			}
			continue
		}
		_, ok := s.Networks[h.Network]
		switch {
		case h.Network == "":
			c.add(path+".network", "required in a routed lab: the network the host joins (networks: %s), or links for a router", known)
		case !ok:
			c.add(path+".network", "unknown network %q (networks: %s)", h.Network, known)
		default:
			joined[h.Network] = true
			if p, ok := nets[h.Network]; ok {
				c.address(path+".address", name, h.Address, p, owner)
				c.extra(path+".extra", name, h.Extra, p, owner)
			}
		}
	}
	for _, n := range sortedNames(s.Networks) {
		if !joined[n] {
			c.add(joinKey("networks", n), "no host or router link joins network %s", n)
		}
	}
	if sh := s.Hosts[s.Server.Host]; sh.Router() {
		c.add("server.host", "host %s is a router: the server runs on a host with a network", s.Server.Host)
	}
}

// networks checks the routed networks and returns the good ones' prefixes
// by name; a subnet that overlaps an earlier one (in name order) is left
// out.
func (c *Validator) networks() map[string]netip.Prefix {
	out := map[string]netip.Prefix{}
	for _, name := range sortedNames(c.s.Networks) {
		path := joinKey("networks", name)
		if !NetworkName.MatchString(name) {
			c.add(path, "bad network name %q: want up to 32 lowercase letters, digits, '-' and '_'", name)
		}
		n := c.s.Networks[name]
		if n == nil || n.Subnet == "" {
			c.add(path+".subnet", "required")
			continue
		}
		p, err := ParseRoutedSubnet(n.Subnet)
		if err != nil {
			c.add(path+".subnet", "%v", err)
			continue
		}
		overlaps := false
		for _, o := range sortedNames(out) {
			if out[o].Overlaps(p) {
				c.add(path+".subnet", "subnet %s overlaps network %s (%s)", p, o, out[o])
				overlaps = true
				break
			}
		}
		if !overlaps {
			out[name] = p
		}
	}
	return out
}

// extra checks a host's or a link's extra addresses.
func (c *Validator) extra(path, host string, addrs []string, prefix netip.Prefix, owner map[netip.Addr]string) {
	for i, a := range addrs {
		p := fmt.Sprintf("%s[%d]", path, i)
		if strings.TrimSpace(a) == "" {
			c.add(p, "empty address")
			continue
		}
		c.address(p, host, a, prefix, owner)
	}
}

// hostName checks a host's name. "hub" is the run's own namespace, which
// holds the bridges.
func (c *Validator) hostName(path, name string) {
	switch {
	case !HostName.MatchString(name):
		c.add(path, "bad host name %q: want up to 32 lowercase letters, digits, '-' and '_', starting with a letter", name)
	case name == "hub":
		c.add(path, "host name hub is reserved: the run's namespace holding the lab's bridges has it")
	}
}
