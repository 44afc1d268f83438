package capture

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Socket is one TCP socket of a namespace as sock_diag reports it, the
// information `ss -tanoi` prints.
type Socket struct {
	Local  netip.AddrPort `json:"local"`
	Remote netip.AddrPort `json:"remote"`
	// State is the kernel's name for the TCP state: ESTABLISHED, SYN_SENT,
	// SYN_RECV (request sockets included), FIN_WAIT1, FIN_WAIT2, TIME_WAIT,
	// CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN or CLOSING.
	State string `json:"state"`
	// Timer is the pending timer as ss names it: "on" (retransmission,
	// also of a request socket's SYN-ACK), "keepalive", "timewait",
	// "persist" (zero-window probe), or "" for none.
	Timer string `json:"timer,omitempty"`
	// Expires is the time left on Timer (JSON: nanoseconds).
	Expires time.Duration `json:"expires,omitempty"`
	// Retransmits is the number of retransmissions of the current segment
	// (icsk_retransmits; for a request socket, its SYN-ACK retransmissions).
	Retransmits int `json:"retransmits,omitempty"`
	// Probes is the number of unanswered keepalive or zero-window probes
	// (icsk_probes_out).
	Probes int `json:"probes,omitempty"`
	// RecvQ and SendQ are the bytes queued: for LISTEN, the accept queue
	// length and its limit.
	RecvQ int `json:"recv_q,omitempty"`
	SendQ int `json:"send_q,omitempty"`
}

func (s Socket) String() string {
	out := fmt.Sprintf("%s %s -> %s", s.State, s.Local, s.Remote)
	if s.Timer != "" {
		out += fmt.Sprintf(" timer:(%s,%s,%d)", s.Timer, s.Expires, max(s.Retransmits, s.Probes))
	}
	return out
}

// tcpStates names the kernel's TCP states (include/net/tcp_states.h).
var tcpStates = map[uint8]string{
	netlink.TCP_ESTABLISHED: "ESTABLISHED",
	netlink.TCP_SYN_SENT:    "SYN_SENT",
	netlink.TCP_SYN_RECV:    "SYN_RECV",
	netlink.TCP_FIN_WAIT1:   "FIN_WAIT1",
	netlink.TCP_FIN_WAIT2:   "FIN_WAIT2",
	netlink.TCP_TIME_WAIT:   "TIME_WAIT",
	netlink.TCP_CLOSE:       "CLOSE",
	netlink.TCP_CLOSE_WAIT:  "CLOSE_WAIT",
	netlink.TCP_LAST_ACK:    "LAST_ACK",
	netlink.TCP_LISTEN:      "LISTEN",
	netlink.TCP_CLOSING:     "CLOSING",
	// A request socket; ss shows it as SYN-RECV.
	netlink.TCP_NEW_SYN_REC: "SYN_RECV",
}

// StateName returns the name of a kernel TCP state number.
func StateName(state uint8) string {
	if s, ok := tcpStates[state]; ok {
		return s
	}
	return fmt.Sprintf("STATE_%d", state)
}

// timerNames are inet_diag's idiag_timer values, as ss prints them.
var timerNames = []string{"", "on", "keepalive", "timewait", "persist"}

// dumpRetries bounds the retries of a socket dump that the kernel
// interrupted because the socket table changed under it.
const dumpRetries = 3

// Sockets lists the TCP IPv4 sockets of the namespace ns whose local or
// remote port is port (0: all), request sockets in SYN_RECV and TIME_WAIT
// sockets included, sorted by local then remote address.
func Sockets(ns netns.NsHandle, port int) ([]Socket, error) {
	h, err := diagHandle(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return dump(h, port)
}

// diagHandle opens a sock_diag netlink socket inside ns. The family must be
// named: a handle created without NETLINK_SOCK_DIAG would open a fresh
// socket in the caller's namespace for each dump.
func diagHandle(ns netns.NsHandle) (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag in namespace: %w", err)
	}
	return h, nil
}

func dump(h *netlink.Handle, port int) ([]Socket, error) {
	var (
		resp []*netlink.InetDiagTCPInfoResp
		err  error
	)
	for i := 0; i < dumpRetries; i++ {
		resp, err = h.SocketDiagTCPInfo(unix.AF_INET)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	// An interrupted dump after the retries is still a usable sample.
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("sock_diag dump: %w", err)
	}
	out := make([]Socket, 0, len(resp))
	for _, r := range resp {
		m := r.InetDiagMsg
		if m == nil {
			continue
		}
		local := addrPort(m.ID.Source, m.ID.SourcePort)
		remote := addrPort(m.ID.Destination, m.ID.DestinationPort)
		if port != 0 && int(local.Port()) != port && int(remote.Port()) != port {
			continue
		}
		s := Socket{
			Local:   local,
			Remote:  remote,
			State:   StateName(m.State),
			Expires: time.Duration(m.Expires) * time.Millisecond,
			RecvQ:   int(m.RQueue),
			SendQ:   int(m.WQueue),
		}
		if int(m.Timer) < len(timerNames) {
			s.Timer = timerNames[m.Timer]
		} else {
			s.Timer = fmt.Sprintf("timer%d", m.Timer)
		}
		if s.Timer == "" {
			s.Expires = 0
		}
		// idiag_retrans is the retransmission count for the "on" timer and
		// the probe count for the others; tcp_info, where the socket has
		// one (not TIME_WAIT or request sockets), has both.
		switch s.Timer {
		case "on":
			s.Retransmits = int(m.Retrans)
		case "keepalive", "persist":
			s.Probes = int(m.Retrans)
		}
		if ti := r.TCPInfo; ti != nil {
			s.Retransmits = int(ti.Retransmits)
			s.Probes = int(ti.Probes)
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Local.Compare(out[j].Local); c != 0 {
			return c < 0
		}
		return out[i].Remote.Compare(out[j].Remote) < 0
	})
	return out, nil
}

func addrPort(ip []byte, port uint16) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), port)
}

// Sample is the sockets of one host at one time.
type Sample struct {
	Time    time.Time `json:"time"`
	Host    string    `json:"host"`
	Sockets []Socket  `json:"sockets"`
	// Error says why this sample could not be taken.
	Error string `json:"error,omitempty"`
}

// minSamplePeriod bounds the sampling rate: a dump of a busy namespace
// takes a few milliseconds of kernel time.
const minSamplePeriod = 10 * time.Millisecond

// maxSamples bounds the memory a forgotten sampler can use: a day at
// 100 ms is 864000 samples; past the bound the oldest are dropped.
const maxSamples = 1 << 20

// Sampler samples a namespace's sockets periodically until Stop.
type Sampler struct {
	host  string
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
	mu    sync.Mutex
	out   []Sample
	taken int
}

// StartSampler samples the TCP sockets on port (0: all) of the namespace
// ns every period, at least 10 ms, starting at once; host labels the
// samples. Errors are recorded in the samples, not returned.
func StartSampler(ns netns.NsHandle, host string, port int, every time.Duration) *Sampler {
	every = max(every, minSamplePeriod)
	s := &Sampler{host: host, stop: make(chan struct{}), done: make(chan struct{})}
	h, err := diagHandle(ns)
	go s.run(h, err, port, every)
	return s
}

func (s *Sampler) run(h *netlink.Handle, herr error, port int, every time.Duration) {
	defer close(s.done)
	if h != nil {
		defer h.Close()
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		smp := Sample{Time: time.Now(), Host: s.host}
		err := herr
		if err == nil {
			smp.Sockets, err = dump(h, port)
		}
		if err != nil {
			smp.Error = err.Error()
		}
		s.mu.Lock()
		if len(s.out) >= maxSamples {
			s.out = s.out[1:]
		}
		s.out = append(s.out, smp)
		s.taken++
		s.mu.Unlock()
		if herr != nil {
			// Without a handle there is nothing to retry.
			<-s.stop
			return
		}
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
	}
}

// Samples returns a copy of the samples taken so far, without stopping.
func (s *Sampler) Samples() []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sample(nil), s.out...)
}

// Stop ends the sampling and returns all samples, oldest first. It can be
// called more than once.
func (s *Sampler) Stop() []Sample {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	return s.Samples()
}

// StateSpan is how long a socket was seen in one state.
type StateSpan struct {
	Local, Remote netip.AddrPort
	State         string
	First, Last   time.Time
	// Samples is the number of samples that saw it.
	Samples int
}

// Spans condenses samples into the runs of consecutive samples in which
// each socket (4-tuple) kept one state: the evidence for checks such as
// "SYN_RECV for at least 30 s, then gone".
func Spans(samples []Sample) []StateSpan {
	type key struct{ l, r netip.AddrPort }
	open := map[key]int{} // index into out of the span still running
	var out []StateSpan
	for _, smp := range samples {
		if smp.Error != "" {
			continue
		}
		seen := map[key]bool{}
		for _, so := range smp.Sockets {
			k := key{so.Local, so.Remote}
			seen[k] = true
			if i, ok := open[k]; ok && out[i].State == so.State {
				out[i].Last = smp.Time
				out[i].Samples++
				continue
			}
			open[k] = len(out)
			out = append(out, StateSpan{Local: so.Local, Remote: so.Remote, State: so.State, First: smp.Time, Last: smp.Time, Samples: 1})
		}
		for k := range open {
			if !seen[k] {
				delete(open, k)
			}
		}
	}
	return out
}
