package netem

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Capability is one thing the machine can or cannot do for labrun.
type Capability struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// ErrNoNetem is returned where the kernel has no sch_netem: delay and loss
// faults cannot run on this machine.
var ErrNoNetem = errors.New("the kernel has no sch_netem (netem qdisc)")

// Probe tries each capability inside a throwaway namespace of its own
// ("lr-probe-<id>"), never in the host namespace, and removes it.
func Probe() []Capability {
	var caps []Capability
	add := func(name string, err error, ok string) {
		c := Capability{Name: name, OK: err == nil, Detail: ok}
		if err != nil {
			c.Detail = err.Error()
		}
		caps = append(caps, c)
	}
	if os.Geteuid() != 0 {
		add("root", errors.New("not root: namespaces, iptables and servers need root"), "")
		return caps
	}
	add("root", nil, "running as root")
	b := make([]byte, 3)
	rand.Read(b)
	name := "lr-probe-" + hex.EncodeToString(b)
	ns, err := NewNamed(name)
	add("network namespaces", err, "created and removed "+name)
	if err != nil {
		return caps
	}
	defer func() {
		ns.Close()
		netns.DeleteNamed(name)
	}()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		add("netlink", err, "")
		return caps
	}
	defer h.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "pa"}, PeerName: "pb"}
	err = h.LinkAdd(veth)
	add("veth", err, "veth pair created")
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	add("bridge", h.LinkAdd(br), "bridge created")
	if err == nil {
		l, _ := h.LinkByName("pa")
		if l != nil {
			h.LinkSetUp(l)
			add("netem qdisc", probeNetem(h, l), "delay and loss faults available")
			tbf := &netlink.Tbf{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT}, Rate: 1 << 20, Limit: 1 << 16, Buffer: 1 << 14}
			add("tbf qdisc", h.QdiscAdd(tbf), "rate limits available")
		}
	}
	_, err = exec.LookPath("iptables")
	if err == nil {
		err = Do(ns, func() error {
			ipt, err := iptables.New(iptables.Timeout(5))
			if err != nil {
				return err
			}
			if err := ipt.Append("filter", "INPUT", "-p", "tcp", "--dport", "3306", "-j", "DROP"); err != nil {
				return err
			}
			return ipt.Append("mangle", "POSTROUTING", "-p", "tcp", "-j", "TCPOPTSTRIP", "--strip-options", "timestamp")
		})
	}
	add("iptables", err, "filter DROP and mangle TCPOPTSTRIP rules work in a namespace")
	var linear string
	err = Do(ns, func() error {
		b, err := os.ReadFile(sysctlPath("net.ipv4.tcp_syn_linear_timeouts"))
		linear = string(b)
		return err
	})
	if err != nil {
		add("tcp_syn_linear_timeouts", fmt.Errorf("absent (kernel < 6.5): SYN backoff is exponential from the first retransmission"), "")
	} else {
		add("tcp_syn_linear_timeouts", nil, "present, default "+normalize(linear))
	}
	return caps
}

func probeNetem(h *netlink.Handle, l netlink.Link) error {
	q := netlink.NewNetem(netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT},
		netlink.NetemQdiscAttrs{Latency: 1000})
	err := h.QdiscAdd(q)
	if err == nil {
		return h.QdiscDel(q)
	}
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("%w: netem faults will be skipped (they run in the Vagrant VM)", ErrNoNetem)
	}
	return fmt.Errorf("netem qdisc: %w", err)
}

// NewNamed creates a namespace bind-mounted as /run/netns/NAME and returns
// an open handle. netns.NewNamed moves the calling thread into the new
// namespace, so it runs on a locked thread that is thrown away with its
// goroutine and never goes back into Go's pool.
func NewNamed(name string) (netns.NsHandle, error) {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := netns.NewNamed(name)
		if err == nil {
			ns.Close()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		return netns.None(), fmt.Errorf("create namespace %s: %w", name, err)
	}
	return netns.GetFromName(name)
}
