package capture

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

func diagSock(state uint8, local, remote string, expires uint32) *netlink.Socket {
	l, r := netip.MustParseAddrPort(local), netip.MustParseAddrPort(remote)
	s := &netlink.Socket{State: state, Expires: expires}
	s.ID.Source, s.ID.SourcePort = l.Addr().AsSlice(), l.Port()
	s.ID.Destination, s.ID.DestinationPort = r.Addr().AsSlice(), r.Port()
	return s
}

// The census follows each TIME_WAIT from its first to its last sighting,
// starts a new one when a 4-tuple's timer goes up (a recycled TIME_WAIT),
// keeps counting through a failed dump, and counts only the port's
// sockets.
func TestCensusFollowsTimeWaits(t *testing.T) {
	// A census without its sampling goroutine: add is fed by hand.
	c := &Census{host: "server", port: 3306, tw: map[[2]netip.AddrPort]*TimeWait{}, stop: make(chan struct{}), done: make(chan struct{})}
	close(c.done)
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	const srv, a, b = "10.89.0.11:3306", "10.89.0.10:40000", "10.89.0.10:40001"
	c.add(at(0), []*netlink.Socket{
		diagSock(netlink.TCP_TIME_WAIT, srv, a, 59000),
		diagSock(netlink.TCP_ESTABLISHED, srv, b, 0),
		diagSock(netlink.TCP_LISTEN, "10.89.0.11:22", "0.0.0.0:0", 0),
	}, nil)
	c.add(at(1), nil, errTest)
	c.add(at(2), []*netlink.Socket{
		diagSock(netlink.TCP_TIME_WAIT, srv, a, 57000),
		diagSock(netlink.TCP_TIME_WAIT, srv, b, 60000),
	}, nil)
	// a's timer went up: the old one was recycled and a new one began.
	c.add(at(3), []*netlink.Socket{
		diagSock(netlink.TCP_TIME_WAIT, srv, a, 59500),
		diagSock(netlink.TCP_TIME_WAIT, srv, b, 59000),
	}, nil)
	c.add(at(4), []*netlink.Socket{diagSock(netlink.TCP_TIME_WAIT, srv, a, 58500)}, nil)
	samples, tws := c.Stop()
	if len(samples) != 5 || samples[1].Error == "" {
		t.Fatalf("samples %+v", samples)
	}
	if got := samples[0].Counts; got["TIME_WAIT"] != 1 || got["ESTABLISHED"] != 1 || got["LISTEN"] != 0 {
		t.Errorf("first counts %v: want the port's sockets only", got)
	}
	if got := samples[2].Counts["TIME_WAIT"]; got != 2 {
		t.Errorf("TIME_WAITs at 2 s: %d, want 2", got)
	}
	want := []TimeWait{
		{Local: netip.MustParseAddrPort(srv), Remote: netip.MustParseAddrPort(a), First: at(0), Last: at(2), ExpiresFirst: 59 * time.Second, ExpiresLast: 57 * time.Second},
		{Local: netip.MustParseAddrPort(srv), Remote: netip.MustParseAddrPort(b), First: at(2), Last: at(3), ExpiresFirst: 60 * time.Second, ExpiresLast: 59 * time.Second},
		{Local: netip.MustParseAddrPort(srv), Remote: netip.MustParseAddrPort(a), First: at(3), Last: at(4), ExpiresFirst: 59500 * time.Millisecond, ExpiresLast: 58500 * time.Millisecond, Open: true},
	}
	if len(tws) != len(want) {
		t.Fatalf("TIME_WAITs %+v, want %+v", tws, want)
	}
	for i := range want {
		if tws[i] != want[i] {
			t.Errorf("TIME_WAIT %d: %+v, want %+v", i, tws[i], want[i])
		}
	}
}

var errTest = net.ErrClosed

// In a namespace: connections the client closes first leave TIME_WAITs on
// the client, with the kernel's timer (TCP_TIMEWAIT_LEN, 60 s) running.
func TestCensusInNamespace(t *testing.T) {
	l := newTestLab(t)
	const port = 4406
	l.listen(t, port)
	c := StartCensus(l.client, "client", port, 20*time.Millisecond)
	t.Cleanup(func() { c.Stop() })
	const n = 5
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := l.dial(ctx, port)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte("ping\n"))
		if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	// Bounded wait for the last close to reach TIME_WAIT and be sampled.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		s, _ := c.snapshot()
		if s >= n {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	samples, tws := c.Stop()
	last := samples[len(samples)-1]
	if last.Error != "" || last.Counts["TIME_WAIT"] != n {
		t.Fatalf("last sample %+v: want %d TIME_WAITs", last, n)
	}
	if len(tws) != n {
		t.Fatalf("%d TIME_WAITs followed, want %d", len(tws), n)
	}
	for _, tw := range tws {
		if !tw.Open || tw.ExpiresFirst > 60*time.Second || tw.ExpiresFirst < 50*time.Second || tw.Local.Addr() != l.clientAddr {
			t.Errorf("TIME_WAIT %+v: want an open one on the client with about 60 s left", tw)
		}
	}
}

// snapshot is the TIME_WAIT count of the newest sample.
func (c *Census) snapshot() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.samples) == 0 {
		return 0, nil
	}
	return c.samples[len(c.samples)-1].Counts["TIME_WAIT"], nil
}
