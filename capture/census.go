package capture

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A socket census counts a namespace's TCP sockets by state over time,
// without keeping each socket (a server behind short connections holds
// tens of thousands in TIME_WAIT), and follows each TIME_WAIT from the
// first sample that shows it to the last, with its timer: how long the
// kernel keeps it (TCP_TIMEWAIT_LEN, 60 s on Linux) is read off the
// sockets themselves.

// CensusSample is one count of a host's sockets.
type CensusSample struct {
	Time   time.Time      `json:"time"`
	Host   string         `json:"host"`
	Counts map[string]int `json:"counts"`
	// Error says why this sample could not be taken.
	Error string `json:"error,omitempty"`
}

// TimeWait is one TIME_WAIT socket as the census saw it.
type TimeWait struct {
	Local  netip.AddrPort `json:"local"`
	Remote netip.AddrPort `json:"remote"`
	// First and Last are the first and last samples that showed it; the
	// socket entered TIME_WAIT within one period before First and left
	// within one period after Last, unless Open.
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
	// ExpiresFirst and ExpiresLast are the time left on its timer at
	// First and at Last.
	ExpiresFirst time.Duration `json:"expires_first"`
	ExpiresLast  time.Duration `json:"expires_last"`
	// Open is set when the census ended with the socket still there.
	Open bool `json:"open,omitempty"`
}

// Census samples a namespace's sockets until Stop.
type Census struct {
	host  string
	port  int
	every time.Duration
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once

	mu      sync.Mutex
	samples []CensusSample
	tw      map[[2]netip.AddrPort]*TimeWait
	ended   []TimeWait
	dropped int
}

// maxTimeWaits bounds the TIME_WAITs followed at once: about five minutes
// of the article's 3000 connections per second, each kept 60 s, fits.
const maxTimeWaits = 1 << 20

// StartCensus counts the TCP sockets on port (0: all) of namespace ns
// every period (at least 10 ms), starting at once; host labels the
// samples. Errors are recorded in the samples.
func StartCensus(ns netns.NsHandle, host string, port int, every time.Duration) *Census {
	c := &Census{host: host, port: port, every: max(every, minSamplePeriod), stop: make(chan struct{}),
		done: make(chan struct{}), tw: map[[2]netip.AddrPort]*TimeWait{}}
	h, err := diagHandle(ns)
	go c.run(h, err)
	return c
}

func (c *Census) run(h *netlink.Handle, herr error) {
	defer close(c.done)
	if h != nil {
		defer h.Close()
	}
	tick := time.NewTicker(c.every)
	defer tick.Stop()
	for {
		now := time.Now()
		var socks []*netlink.Socket
		err := herr
		if err == nil {
			socks, err = censusDump(h)
		}
		c.add(now, socks, err)
		if herr != nil {
			<-c.stop
			return
		}
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
	}
}

// censusDump lists the namespace's IPv4 TCP sockets without tcp_info:
// cheaper than the sampler's dump for a namespace full of TIME_WAITs.
func censusDump(h *netlink.Handle) ([]*netlink.Socket, error) {
	var (
		socks []*netlink.Socket
		err   error
	)
	for i := 0; i < dumpRetries; i++ {
		socks, err = h.SocketDiagTCP(unix.AF_INET)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("sock_diag dump: %w", err)
	}
	return socks, nil
}

// add records one dump: the counts, and the TIME_WAITs seen and gone.
func (c *Census) add(now time.Time, socks []*netlink.Socket, err error) {
	s := CensusSample{Time: now, Host: c.host, Counts: map[string]int{}}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		// A failed dump says nothing of which TIME_WAITs are gone.
		s.Error = err.Error()
		c.samples = append(c.samples, s)
		return
	}
	seen := make(map[[2]netip.AddrPort]bool, len(c.tw))
	for _, sk := range socks {
		local := addrPort(sk.ID.Source, sk.ID.SourcePort)
		remote := addrPort(sk.ID.Destination, sk.ID.DestinationPort)
		if c.port != 0 && int(local.Port()) != c.port && int(remote.Port()) != c.port {
			continue
		}
		state := StateName(sk.State)
		s.Counts[state]++
		if state != "TIME_WAIT" {
			continue
		}
		k := [2]netip.AddrPort{local, remote}
		exp := time.Duration(sk.Expires) * time.Millisecond
		seen[k] = true
		if tw, ok := c.tw[k]; ok && exp <= tw.ExpiresLast {
			tw.Last, tw.ExpiresLast = now, exp
			continue
		} else if ok {
			// Its timer went up: a new TIME_WAIT on the same 4-tuple
			// (the old one was recycled by a new SYN, then closed).
			c.ended = append(c.ended, *tw)
			delete(c.tw, k)
		}
		if len(c.tw) >= maxTimeWaits {
			c.dropped++
			continue
		}
		c.tw[k] = &TimeWait{Local: local, Remote: remote, First: now, Last: now, ExpiresFirst: exp, ExpiresLast: exp}
	}
	for k, tw := range c.tw {
		if !seen[k] {
			c.ended = append(c.ended, *tw)
			delete(c.tw, k)
		}
	}
	c.samples = append(c.samples, s)
	if len(c.samples) > maxSamples {
		c.samples = c.samples[1:]
	}
}

// Stop ends the census and returns its samples, oldest first, and the
// TIME_WAITs it followed: those that ended, then those still open. It can
// be called more than once.
func (c *Census) Stop() ([]CensusSample, []TimeWait) {
	c.once.Do(func() { close(c.stop) })
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	tws := append([]TimeWait(nil), c.ended...)
	for _, tw := range c.tw {
		t := *tw
		t.Open = true
		tws = append(tws, t)
	}
	return append([]CensusSample(nil), c.samples...), tws
}

// Dropped is how many TIME_WAITs were counted but not followed, past the
// bound on how many are followed at once.
func (c *Census) Dropped() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// TimeWaitLifetimes sums up the TIME_WAITs a census followed: how long the
// kernel set their timers for, and how long those that ran out lasted.
type TimeWaitLifetimes struct {
	// Seen counts the TIME_WAITs followed.
	Seen int `json:"seen"`
	// TimerMin and TimerMax bound the timer at first sight: a TIME_WAIT
	// is first seen up to Gap after it began, so its full timer lies in
	// [TimerMax, TimerMin + Gap].
	TimerMin time.Duration `json:"timer_min"`
	TimerMax time.Duration `json:"timer_max"`
	// Gap is the longest time between two samples.
	Gap time.Duration `json:"gap"`
	// Expired counts those that left with their timer run out (less than
	// Gap left at the last sight); ExpiredMin and ExpiredMax bound the
	// time between their first and last sight, so each lasted that plus
	// up to two gaps.
	Expired    int           `json:"expired"`
	ExpiredMin time.Duration `json:"expired_min,omitempty"`
	ExpiredMax time.Duration `json:"expired_max,omitempty"`
	// Ended counts those gone before their timer ran out: a new SYN on
	// the 4-tuple recycled it, or a RST killed it.
	Ended int `json:"ended"`
	// Open counts those still there when the census stopped.
	Open int `json:"open"`
}

// SummarizeTimeWaits sums up a census's TIME_WAITs; samples give the gap.
func SummarizeTimeWaits(samples []CensusSample, tws []TimeWait) TimeWaitLifetimes {
	var out TimeWaitLifetimes
	for i := 1; i < len(samples); i++ {
		out.Gap = max(out.Gap, samples[i].Time.Sub(samples[i-1].Time))
	}
	for i, tw := range tws {
		out.Seen++
		if i == 0 || tw.ExpiresFirst < out.TimerMin {
			out.TimerMin = tw.ExpiresFirst
		}
		out.TimerMax = max(out.TimerMax, tw.ExpiresFirst)
		switch {
		case tw.Open:
			out.Open++
		case tw.ExpiresLast <= out.Gap:
			span := tw.Last.Sub(tw.First)
			if out.Expired == 0 || span < out.ExpiredMin {
				out.ExpiredMin = span
			}
			out.ExpiredMax = max(out.ExpiredMax, span)
			out.Expired++
		default:
			out.Ended++
		}
	}
	return out
}

// CensusResult is one host's census as the checks and the report read it.
type CensusResult struct {
	Host    string         `json:"host"`
	Every   time.Duration  `json:"every"`
	Samples []CensusSample `json:"samples"`
	// TimeWaits sums up the TIME_WAITs followed; Dropped counts those not
	// followed, past the census's bound.
	TimeWaits TimeWaitLifetimes `json:"time_waits"`
	Dropped   int               `json:"dropped,omitempty"`
}

// TimeWaitPeak is the census's highest TIME_WAIT count over the samples
// that did not error, and when it was seen; -1 when every sample errored.
func (c *CensusResult) TimeWaitPeak() (int, time.Time) {
	peak, at := -1, time.Time{}
	for _, s := range c.Samples {
		if n := s.Counts["TIME_WAIT"]; s.Error == "" && n > peak {
			peak, at = n, s.Time
		}
	}
	return peak, at
}
