package netem

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Impairment is a netem qdisc on a host's eth0: delay, jitter and loss on
// egress. The zero value removes the qdisc.
type Impairment struct {
	Delay  time.Duration
	Jitter time.Duration
	// Loss is the probability of dropping a packet, in percent (0 to 100).
	Loss float64
}

// IsZero reports whether the impairment removes the qdisc.
func (i Impairment) IsZero() bool { return i == Impairment{} }

// ParsePercent reads "10%" or "10" as 10 percent.
func ParsePercent(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
	if err != nil || v < 0 || v > 100 {
		return 0, fmt.Errorf("bad percentage %q: want 0%% to 100%%", s)
	}
	return v, nil
}

// qdisc builds the netem qdisc for a link: the root qdisc, handle 1:.
func (i Impairment) qdisc(link int) *netlink.Netem {
	return netlink.NewNetem(
		netlink.QdiscAttrs{LinkIndex: link, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT},
		netlink.NetemQdiscAttrs{
			Latency: uint32(i.Delay / time.Microsecond),
			Jitter:  uint32(i.Jitter / time.Microsecond),
			Loss:    float32(i.Loss),
		})
}

var (
	netemOnce sync.Once
	netemErr  error
)

// NetemAvailable reports, once per process, whether the kernel has
// sch_netem; the answer comes from Probe's throwaway namespace.
func NetemAvailable() error {
	netemOnce.Do(func() {
		caps := Probe()
		for _, c := range caps {
			if c.Name == "netem qdisc" {
				if !c.OK {
					netemErr = fmt.Errorf("%w", ErrNoNetem)
				}
				return
			}
		}
		// The probe stopped before it could try the qdisc (not root, no
		// namespaces): that is no evidence the kernel has it.
		netemErr = errors.New("could not probe sch_netem")
		for _, c := range caps {
			if !c.OK {
				netemErr = fmt.Errorf("could not probe sch_netem: %s: %s", c.Name, c.Detail)
				break
			}
		}
	})
	return netemErr
}

// Impair replaces the root qdisc of the host's eth0 with netem, or removes
// it for a zero Impairment. Only the host's own namespace is touched.
func (h *Host) Impair(i Impairment) error {
	nh, err := netlink.NewHandleAt(h.NS)
	if err != nil {
		return fmt.Errorf("host %s: netlink handle: %w", h.Name, err)
	}
	defer nh.Close()
	l, err := nh.LinkByName(Iface)
	if err != nil {
		return fmt.Errorf("host %s: find %s: %w", h.Name, Iface, err)
	}
	q := i.qdisc(l.Attrs().Index)
	if i.IsZero() {
		err := nh.QdiscDel(q)
		if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("host %s: remove netem: %w", h.Name, err)
		}
		return nil
	}
	if err := nh.QdiscReplace(q); err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("host %s: %w", h.Name, ErrNoNetem)
		}
		return fmt.Errorf("host %s: netem %+v: %w", h.Name, i, err)
	}
	return nil
}
