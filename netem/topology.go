package netem

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/labrun/labrun/journal"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Iface is the name of every host's lab interface, so that rules written
// for a real machine ("-i eth0") work unchanged.
const Iface = "eth0"

// HostSpec describes one host of the lab network.
type HostSpec struct {
	Name    string
	Address netip.Addr
	// NSPath, if set, is an existing network namespace to use for this host
	// instead of a new one, e.g. "/proc/PID/ns/net" of a container's first
	// process. The topology names it "lr-<run>-<host>" like any other host
	// (a bind mount under /run/netns) and plugs eth0 into it; Down removes
	// that name and the link, but the namespace itself lives until its owner
	// ends (the container's removal).
	NSPath string
	// Network names the host's network in a routed spec (Spec.Networks);
	// it stays empty in a single-network spec.
	Network string
	// Extra are further addresses on eth0, in the same subnet, e.g. more
	// client source addresses. The kernel picks Address as the source
	// unless a socket binds one of these.
	Extra []netip.Addr
}

// Spec is a run's lab network: one /24 shared by all hosts through a bridge
// that lives in its own hub namespace. With Networks set it is a routed
// network instead (see routed.go): Subnet is then unused, each network has
// its own bridge in the hub namespace, and Routers join them.
type Spec struct {
	RunID  string
	Subnet netip.Prefix
	Hosts  []HostSpec
	// Networks and Routers make the spec routed; both empty is the single
	// network above, exactly as before they existed.
	Networks []NetworkSpec
	Routers  []RouterSpec
}

// Host is one namespace of the run.
type Host struct {
	Name    string
	NSName  string // the name under /run/netns
	NS      netns.NsHandle
	Address netip.Addr
	Prefix  netip.Prefix
	// Adopted is true for a namespace the topology did not create (see
	// HostSpec.NSPath).
	Adopted bool
	// Network is the network of eth0 ("" in a single-network spec).
	Network string
	// Links are the host's lab interfaces, eth0 first: one for a host, one
	// per network for a router. Address and Prefix are eth0's.
	Links []Link
	// Router is true for a host made from a RouterSpec.
	Router bool
}

// Topology is a run's network, up.
type Topology struct {
	RunID string
	// Hosts holds hosts and routers by name; the hub is not one.
	Hosts map[string]*Host
	// Networks holds the networks by name. A single-network spec has one,
	// named "", on bridge br0.
	Networks map[string]*Network
	hub      *Host
	j        *journal.Journal
	// links counts the veth pairs made, so that a host plugged late gets
	// the next hub port name.
	links int
}

// NSName is the namespace name of a run's host: "lr-<run>-<host>".
func NSName(runID, host string) string { return "lr-" + runID + "-" + host }

// IsRunNamespace reports whether a namespace name was made by labrun.
func IsRunNamespace(name string) bool { return strings.HasPrefix(name, "lr-") }

// Up creates the namespaces, the hub bridge and one veth pair per host. Each
// namespace is recorded in the journal as soon as it exists; on error the
// caller tears down through the journal.
func Up(spec Spec, j *journal.Journal) (*Topology, error) {
	t := &Topology{RunID: spec.RunID, Hosts: map[string]*Host{}, Networks: map[string]*Network{}, j: j}
	nets := []*Network{{Subnet: spec.Subnet, Bridge: "br0"}}
	if spec.routed() {
		var err error
		if nets, err = spec.networks(); err != nil {
			return t, err
		}
	} else if err := spec.checkSingle(); err != nil {
		return t, err
	}
	for _, n := range nets {
		t.Networks[n.Name] = n
	}
	hub, err := t.newNS("hub")
	if err != nil {
		return t, err
	}
	t.hub = hub
	hh, err := netlink.NewHandleAt(hub.NS)
	if err != nil {
		return t, fmt.Errorf("hub netlink handle: %w", err)
	}
	defer hh.Close()
	if err := setSysctls(hub.NS, map[string]string{"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}); err != nil {
		return t, err
	}
	if err := linkUp(hh, "lo"); err != nil {
		return t, err
	}
	if err := t.noForwarding(hub); err != nil {
		return t, err
	}
	for _, n := range nets {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.Bridge}}
		if err := hh.LinkAdd(br); err != nil {
			return t, fmt.Errorf("hub bridge %s: %w", n.Bridge, err)
		}
		if err := hh.LinkSetUp(br); err != nil {
			return t, fmt.Errorf("hub bridge %s up: %w", n.Bridge, err)
		}
	}
	for _, hs := range spec.Hosts {
		if _, err := t.addHost(hh, hs); err != nil {
			return t, err
		}
	}
	for _, rs := range spec.Routers {
		if _, err := t.addRouter(hh, rs); err != nil {
			return t, err
		}
	}
	return t, nil
}

// Plug adds a host to a topology that is already up: the way in for a
// namespace that exists only once the hosts around it do, such as a
// container's (HostSpec.NSPath). On error the caller tears down through the
// journal, as after Up.
func (t *Topology) Plug(hs HostSpec) (*Host, error) {
	if t.hub == nil {
		return nil, fmt.Errorf("host %s: the topology is not up", hs.Name)
	}
	if _, ok := t.Hosts[hs.Name]; ok {
		return nil, fmt.Errorf("host %s: already in the topology", hs.Name)
	}
	if err := t.checkPlug(hs); err != nil {
		return nil, err
	}
	hh, err := netlink.NewHandleAt(t.hub.NS)
	if err != nil {
		return nil, fmt.Errorf("hub netlink handle: %w", err)
	}
	defer hh.Close()
	return t.addHost(hh, hs)
}

// bridge finds a network's bridge in the hub namespace.
func bridge(hh *netlink.Handle, n *Network) (*netlink.Bridge, error) {
	l, err := hh.LinkByName(n.Bridge)
	if err != nil {
		return nil, fmt.Errorf("hub bridge: %w", err)
	}
	br, ok := l.(*netlink.Bridge)
	if !ok {
		return nil, fmt.Errorf("hub bridge: %s is a %s, not a bridge", n.Bridge, l.Type())
	}
	return br, nil
}

// addHost creates or adopts the host's namespace and plugs it into its
// network's bridge.
func (t *Topology) addHost(hh *netlink.Handle, hs HostSpec) (*Host, error) {
	n, ok := t.Networks[hs.Network]
	if !ok {
		return nil, fmt.Errorf("host %s: no network %q", hs.Name, hs.Network)
	}
	br, err := bridge(hh, n)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", hs.Name, err)
	}
	var h *Host
	if hs.NSPath != "" {
		h, err = t.adoptNS(hs.Name, hs.NSPath)
	} else {
		h, err = t.newNS(hs.Name)
	}
	if err != nil {
		return nil, err
	}
	h.Address = hs.Address
	h.Prefix = netip.PrefixFrom(hs.Address, n.Subnet.Bits())
	h.Network = n.Name
	link := Link{Iface: Iface, Network: n.Name, Prefix: h.Prefix}
	for _, a := range hs.Extra {
		link.Extra = append(link.Extra, netip.PrefixFrom(a, n.Subnet.Bits()))
	}
	h.Links = []Link{link}
	i := t.links
	t.links++
	if err := t.plug(hh, br, h, link, i); err != nil {
		return nil, fmt.Errorf("host %s: %w", hs.Name, err)
	}
	if err := t.noForwarding(h); err != nil {
		return nil, err
	}
	if n.Gateway.IsValid() {
		if err := defaultRoute(h.NS, n.Gateway); err != nil {
			return nil, fmt.Errorf("host %s: %w", hs.Name, err)
		}
	}
	return h, nil
}

// adoptNS gives an existing namespace the run's name for the host: a bind
// mount of path under /run/netns, recorded in the journal before it is
// made, so that `labrun cleanup` removes the name whatever happens. Tools
// such as `ip netns exec lr-<run>-<host>` then work on it as on any host.
func (t *Topology) adoptNS(host, path string) (*Host, error) {
	name := NSName(t.RunID, host)
	target := filepath.Join(netnsDir, name)
	if err := t.j.Add(journal.Entry{Kind: journal.KindNetns, Name: name}); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return nil, fmt.Errorf("adopt namespace %s: %w", path, err)
	}
	f, err := os.OpenFile(target, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return nil, fmt.Errorf("adopt namespace %s: %w", path, err)
	}
	f.Close()
	if err := unix.Mount(path, target, "none", unix.MS_BIND, ""); err != nil {
		return nil, fmt.Errorf("adopt namespace %s as %s: %w", path, name, err)
	}
	ns, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("open namespace %s: %w", name, err)
	}
	h := &Host{Name: host, NSName: name, NS: ns, Adopted: true}
	t.Hosts[host] = h
	return h, nil
}

// newNS creates a named namespace and records it in the journal.
func (t *Topology) newNS(host string) (*Host, error) {
	name := NSName(t.RunID, host)
	h := &Host{Name: host, NSName: name}
	ns, err := NewNamed(name)
	if err != nil {
		return nil, err
	}
	if err := t.j.Add(journal.Entry{Kind: journal.KindNetns, Name: name}); err != nil {
		ns.Close()
		return nil, err
	}
	h.NS = ns
	if host != "hub" {
		t.Hosts[host] = h
	}
	return h, nil
}

// plug connects a host to a hub bridge: the veth's host end is created
// directly in the host namespace as link.Iface (eth0 for every host, eth1
// and on for a router's further links).
func (t *Topology) plug(hh *netlink.Handle, br *netlink.Bridge, h *Host, link Link, i int) error {
	hubEnd := fmt.Sprintf("p%d", i)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: hubEnd, MasterIndex: br.Index},
		PeerName:      link.Iface,
		PeerNamespace: netlink.NsFd(int(h.NS)),
	}
	if err := hh.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth: %w", err)
	}
	if err := hh.LinkSetUp(veth); err != nil {
		return fmt.Errorf("veth up: %w", err)
	}
	// IPv6 is off so that router solicitations and DAD do not clutter the
	// captures.
	if err := setSysctls(h.NS, map[string]string{"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}); err != nil {
		return err
	}
	nh, err := netlink.NewHandleAt(h.NS)
	if err != nil {
		return fmt.Errorf("netlink handle: %w", err)
	}
	defer nh.Close()
	if err := linkUp(nh, "lo"); err != nil {
		return err
	}
	l, err := nh.LinkByName(link.Iface)
	if err != nil {
		return fmt.Errorf("find %s: %w", link.Iface, err)
	}
	for _, p := range append([]netip.Prefix{link.Prefix}, link.Extra...) {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
		if err := nh.AddrAdd(l, addr); err != nil {
			return fmt.Errorf("address %s on %s: %w", p, link.Iface, err)
		}
	}
	if err := nh.LinkSetUp(l); err != nil {
		return fmt.Errorf("%s up: %w", link.Iface, err)
	}
	return nil
}

func linkUp(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("%s up: %w", name, err)
	}
	return nil
}

// Down closes the handles and deletes the namespaces, hosts first. Deleting a
// namespace destroys its interfaces, and a veth dies with either end. An
// adopted namespace only loses its name here: the hub's end of its link
// dies with the hub, which takes eth0 with it, and the namespace ends with
// its owner. It is idempotent.
func (t *Topology) Down() error {
	var errs []error
	names := make([]string, 0, len(t.Hosts))
	for n := range t.Hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	hosts := make([]*Host, 0, len(names)+1)
	for _, n := range names {
		hosts = append(hosts, t.Hosts[n])
	}
	if t.hub != nil {
		hosts = append(hosts, t.hub)
	}
	for _, h := range hosts {
		if h.Adopted && h.NS.IsOpen() {
			// The namespace outlives the run if its owner does, and a
			// namespace dies asynchronously: removing the link now keeps a
			// live container from holding the lab interface meanwhile.
			if err := delLink(h.NS, Iface); err != nil {
				errs = append(errs, fmt.Errorf("host %s: %w", h.Name, err))
			}
		}
		if h.NS.IsOpen() {
			h.NS.Close()
			h.NS = netns.None()
		}
		e := journal.Entry{Kind: journal.KindNetns, Name: h.NSName}
		if err := journal.Undo(e); err != nil {
			errs = append(errs, err)
			continue
		}
		if t.j != nil {
			t.j.Undone(e)
		}
	}
	return errors.Join(errs...)
}

// netnsDir is where named network namespaces are bind-mounted, as by
// `ip netns add` and netns.NewNamed.
const netnsDir = "/run/netns"

// delLink deletes a link in ns; a link already gone counts as deleted.
func delLink(ns netns.NsHandle, name string) error {
	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink handle: %w", err)
	}
	defer nh.Close()
	l, err := nh.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := nh.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// Namespaces lists the labrun namespaces present under /run/netns.
func Namespaces() ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	var out []string
	for _, e := range ents {
		if IsRunNamespace(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// sysctlPath maps "net.ipv4.tcp_syn_retries" to its /proc/sys file.
func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}
