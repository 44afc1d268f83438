package capture

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Socket is one TCP socket as sock_diag reports it.
type Socket struct {
	Local   netip.AddrPort `json:"local"`
	Remote  netip.AddrPort `json:"remote"`
	State   string         `json:"state"` // ESTABLISHED, SYN_SENT, SYN_RECV, TIME_WAIT, ...
	Timer   string         `json:"timer,omitempty"`
	Retrans int            `json:"retrans,omitempty"`
	// ExpiresMs is the pending timer's remaining time in milliseconds.
	ExpiresMs int `json:"expires_ms,omitempty"`
}

// stateNames follow the kernel's enum (include/net/tcp_states.h) with ss's
// spelling; request sockets (TCP_NEW_SYN_RECV) are reported as SYN_RECV, as
// ss does.
var stateNames = map[uint8]string{
	1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
	7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "SYN_RECV",
}

// timerNames are inet_diag's idiag_timer values.
var timerNames = map[uint8]string{1: "on", 2: "keepalive", 3: "timewait", 4: "persist"}

// Sockets lists the IPv4 TCP sockets in namespace ns whose local or remote
// port is port (0: all), request sockets and TIME_WAIT included.
func Sockets(ns netns.NsHandle, port int) ([]Socket, error) {
	// The family must be named: a handle without a NETLINK_INET_DIAG socket
	// would quietly query the calling thread's namespace instead.
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_INET_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag handle: %w", err)
	}
	defer h.Close()
	raw, err := h.SocketDiagTCP(unix.AF_INET)
	if err != nil {
		return nil, fmt.Errorf("sock_diag: %w", err)
	}
	var out []Socket
	for _, s := range raw {
		src, _ := netip.AddrFromSlice(s.ID.Source.To4())
		dst, _ := netip.AddrFromSlice(s.ID.Destination.To4())
		sk := Socket{
			Local:     netip.AddrPortFrom(src, s.ID.SourcePort),
			Remote:    netip.AddrPortFrom(dst, s.ID.DestinationPort),
			State:     stateNames[s.State],
			Timer:     timerNames[s.Timer],
			Retrans:   int(s.Retrans),
			ExpiresMs: int(s.Expires),
		}
		if sk.State == "" {
			sk.State = fmt.Sprintf("STATE_%d", s.State)
		}
		if port != 0 && int(s.ID.SourcePort) != port && int(s.ID.DestinationPort) != port {
			continue
		}
		out = append(out, sk)
	}
	return out, nil
}

// Sample is the socket list of one host at one moment.
type Sample struct {
	Time    time.Time `json:"time"`
	Host    string    `json:"host"`
	Sockets []Socket  `json:"sockets"`
	Error   string    `json:"error,omitempty"`
}

// Sampler polls a namespace's sockets until stopped.
type Sampler struct {
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	samples []Sample
}

// StartSampler samples every period (at least 10 ms) until Stop. The
// namespace handle must stay open until then.
func StartSampler(ns netns.NsHandle, host string, port int, every time.Duration) *Sampler {
	if every < 10*time.Millisecond {
		every = 10 * time.Millisecond
	}
	s := &Sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			sm := Sample{Time: time.Now(), Host: host}
			socks, err := Sockets(ns, port)
			sm.Sockets = socks
			if err != nil {
				sm.Error = err.Error()
			}
			s.samples = append(s.samples, sm)
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Stop ends sampling and returns the samples; it is idempotent.
func (s *Sampler) Stop() []Sample {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	return s.samples
}
