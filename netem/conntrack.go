package netem

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Conntrack sysctls that a lab namespace has a value of its own for: the
// TCP state timeouts (net.netfilter.nf_conntrack_tcp_timeout_*, in seconds)
// among others. nf_conntrack_max, nf_conntrack_expect_max and
// nf_conntrack_buckets are the machine's, shown read-only in a child
// namespace on the kernels labrun has run on (6.18 included); SetSysctls
// refuses them with ErrNotNamespaced before writing anything.
const (
	SysctlConntrackTimeWait = "net.netfilter.nf_conntrack_tcp_timeout_time_wait"
	SysctlConntrackMax      = "net.netfilter.nf_conntrack_max"
	SysctlConntrackBuckets  = "net.netfilter.nf_conntrack_buckets"
)

// ConntrackEntry is one connection of a namespace's conntrack table.
//
// A namespace tracks connections only once something there needs it: a
// rule in the nat table, a -m conntrack or -m state match, a CT target. A
// router without such rules has an empty table.
type ConntrackEntry struct {
	// Proto is "tcp", "udp", "icmp" or the protocol number.
	Proto string
	// Src and Dst are the original direction, as the initiator sent it.
	Src, Dst netip.AddrPort
	// ReplySrc and ReplyDst are the reply direction as the tracker expects
	// it: behind SNAT, ReplyDst is the translated source (address and
	// port) that the far side saw.
	ReplySrc, ReplyDst netip.AddrPort
	// State is the TCP tracker's state as conntrack -L prints it
	// ("ESTABLISHED", "TIME_WAIT", ...); empty for other protocols.
	State string
	// Timeout is what is left of the entry's lifetime, to the second.
	Timeout time.Duration
}

// tcpStates names the TCP conntrack states (enum tcp_conntrack in
// include/uapi/linux/netfilter/nf_conntrack_tcp.h).
var tcpStates = []string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

// TCPStateName names a TCP conntrack state number.
func TCPStateName(s uint8) string {
	if int(s) < len(tcpStates) {
		return tcpStates[s]
	}
	return fmt.Sprintf("STATE_%d", s)
}

// Conntrack lists the IPv4 conntrack table of the host's namespace.
func (h *Host) Conntrack() ([]ConntrackEntry, error) {
	es, err := ListConntrack(h.NS)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", h.Name, err)
	}
	return es, nil
}

// ListConntrack lists the IPv4 conntrack table of the namespace ns, read
// through a netlink socket opened in it: it never reads another
// namespace's table. Entries come sorted by original source, then
// destination.
func ListConntrack(ns netns.NsHandle) ([]ConntrackEntry, error) {
	nh, err := netlink.NewHandleAt(ns, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("conntrack: netlink handle: %w", err)
	}
	defer nh.Close()
	var flows []*netlink.ConntrackFlow
	// A dump interrupted by a change to the table is retried: a lab's
	// table changes all the time while connections close.
	for range 5 {
		flows, err = nh.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("conntrack: list: %w", err)
	}
	out := make([]ConntrackEntry, 0, len(flows))
	for _, f := range flows {
		out = append(out, conntrackEntry(f))
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Src.Compare(out[j].Src); c != 0 {
			return c < 0
		}
		return out[i].Dst.Compare(out[j].Dst) < 0
	})
	return out, nil
}

func conntrackEntry(f *netlink.ConntrackFlow) ConntrackEntry {
	e := ConntrackEntry{
		Proto:    protoName(f.Forward.Protocol),
		Src:      addrPort(f.Forward.SrcIP, f.Forward.SrcPort),
		Dst:      addrPort(f.Forward.DstIP, f.Forward.DstPort),
		ReplySrc: addrPort(f.Reverse.SrcIP, f.Reverse.SrcPort),
		ReplyDst: addrPort(f.Reverse.DstIP, f.Reverse.DstPort),
		Timeout:  time.Duration(f.TimeOut) * time.Second,
	}
	if p, ok := f.ProtoInfo.(*netlink.ProtoInfoTCP); ok && p != nil {
		e.State = TCPStateName(p.State)
	}
	return e
}

func addrPort(ip net.IP, port uint16) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), port)
}

func protoName(p uint8) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_ICMP:
		return "icmp"
	}
	return fmt.Sprint(p)
}

// CountByState counts TCP entries by State; other protocols are counted
// under their Proto.
func CountByState(es []ConntrackEntry) map[string]int {
	out := map[string]int{}
	for _, e := range es {
		if e.State != "" {
			out[e.State]++
		} else {
			out[e.Proto]++
		}
	}
	return out
}

// ConntrackSample is one count of a host's conntrack table.
type ConntrackSample struct {
	Time   time.Time      `json:"time"`
	Host   string         `json:"host"`
	Total  int            `json:"total"`
	Counts map[string]int `json:"counts"`
	// Error says why this sample could not be taken.
	Error string `json:"error,omitempty"`
}
