package tcpmodel_test

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/labrun/labrun/tcpmodel"
)

// The article's kernel had no linear SYN timeouts; a lab that wants its
// numbers sets tcp_syn_linear_timeouts to 0.
func ExampleSYN() {
	s := tcpmodel.Defaults()
	s[tcpmodel.KeySynLinearTimeouts] = "0"
	sc := tcpmodel.SYN(s)
	fmt.Println(sc.Count, sc.Offsets, sc.GiveUp)

	s[tcpmodel.KeySynLinearTimeouts] = "4"
	s[tcpmodel.KeySynRetries] = "3"
	sc = tcpmodel.SYN(s)
	fmt.Println(sc.Count, sc.Intervals, sc.GiveUp)
	// Output:
	// 6 [1s 3s 7s 15s 31s 1m3s] 2m7s
	// 7 [1s 1s 1s 1s 1s 2s 4s] 19s
}

func ExampleSYNACK() {
	sc := tcpmodel.SYNACK(tcpmodel.Defaults())
	fmt.Println(sc.Count, sc.Offsets, sc.GiveUp)
	// Output: 5 [1s 3s 7s 15s 31s] 1m3s
}

// When the server's SYN-ACKs are dropped, the client's retransmitted SYNs
// each draw an extra SYN-ACK and postpone the request timer.
func ExampleSYNACKWithSYNs() {
	s := tcpmodel.Defaults()
	s[tcpmodel.KeySynLinearTimeouts] = "0"
	client := tcpmodel.SYN(s)
	server := tcpmodel.SYNACKWithSYNs(s, client.Offsets)
	fmt.Println(server.Count, server.Offsets, server.GiveUp, server.Borderline)
	// Output: 10 [1s 1s 3s 3s 7s 7s 15s 15s 31s 31s] 1m3s true
}

// On a veth link (RTT about 50 µs) the tail loss probe adds one
// retransmission to the tcp_retries2 RTO retransmissions.
func ExampleData() {
	s := tcpmodel.Defaults()
	s[tcpmodel.KeyRetries2] = "5"
	sc := tcpmodel.Data(s, 50*time.Microsecond)
	fmt.Println(sc.Count, sc.Offsets, sc.GiveUp)

	s[tcpmodel.KeyEarlyRetrans] = "0"
	fmt.Println(tcpmodel.Data(s, 50*time.Microsecond).Count)
	// Output:
	// 6 [204ms 408ms 816ms 1.632s 3.264s 6.528s] 13.056s
	// 5
}

func ExampleKeepalive() {
	s := tcpmodel.Defaults()
	s[tcpmodel.KeyKeepaliveTime] = "40"
	s[tcpmodel.KeyKeepaliveIntvl] = "10"
	s[tcpmodel.KeyKeepaliveProbes] = "2"
	sc := tcpmodel.Keepalive(s)
	fmt.Println(sc.Count, sc.Offsets, sc.GiveUp)
	fmt.Println(sc.Explain)
	// Output:
	// 2 [40s 50s] 1m0s
	// tcp_keepalive_time=40 s, tcp_keepalive_intvl=10 s, tcp_keepalive_probes=2: probes at 40 s, 50 s after the last activity; at 60 s the timer finds 2 unanswered probes, sends a RST and the socket reports ETIMEDOUT.
}

func ExampleTolerance() {
	// A 1 s SYN interval: 125 ms (12.5 %) + 300 ms + 50 ms.
	fmt.Println(tcpmodel.Tolerance(time.Second, 0, 1))
	// The same on a machine twice as slow, with a 200 ms floor.
	fmt.Println(tcpmodel.Tolerance(time.Second, 200*time.Millisecond, 2))
	// Output:
	// 475ms
	// 1.1s
}

func ExampleModelTimeout() {
	fmt.Println(tcpmodel.ModelTimeout(15, tcpmodel.RTOMin, tcpmodel.RTOMax))
	// Output: 15m24.6s
}

func ExampleRead() {
	dir, err := os.MkdirTemp("", "procsys")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "net", "ipv4")
	_ = os.MkdirAll(p, 0o755)
	_ = os.WriteFile(filepath.Join(p, "tcp_syn_retries"), []byte("2\n"), 0o644)
	_ = os.WriteFile(filepath.Join(p, "tcp_syn_linear_timeouts"), []byte("0\n"), 0o644)

	s, err := tcpmodel.Read(dir) // "/proc/sys" on a live host
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s)
	fmt.Println(tcpmodel.SYN(s).GiveUp)
	// Output:
	// map[net.ipv4.tcp_syn_linear_timeouts:0 net.ipv4.tcp_syn_retries:2]
	// 7s
}

func ExampleKeys() {
	for _, k := range tcpmodel.Keys()[:3] {
		fmt.Println(k, tcpmodel.Defaults()[k])
	}
	// Output:
	// net.ipv4.tcp_early_retrans 3
	// net.ipv4.tcp_invalid_ratelimit 500
	// net.ipv4.tcp_keepalive_intvl 75
}
