// Package capture records packets in a run's namespaces to pcap files,
// analyses the TCP in them the way Wireshark does, and samples TCP socket
// states through sock_diag.
package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/labrun/labrun/netem"
)

// snaplen is the most a packet socket hands over (libpcap's
// MAXIMUM_SNAPLEN): segmentation offload on veth delivers frames of up to
// 64 KiB, which must not be cut.
const snaplen = 262144

// rcvbuf is the packet socket's receive buffer in bytes. The default
// (about 208 KiB) holds a few hundred full-size frames; a short-connection
// load of thousands of connections per second needs more headroom while the
// writer waits for the disk.
const rcvbuf = 8 << 20

// drainLimit bounds the frames read after Stop: what was queued before it
// is kept, but a flood that never pauses cannot hold Stop up.
const (
	drainLimit   = 1 << 17
	drainTimeout = 2 * time.Second
)

// Stats counts what a capture saw.
type Stats struct {
	// Packets is the number of frames written to the pcap file.
	Packets int
	// Dropped is the number of frames the kernel discarded because the
	// socket's receive buffer was full (PACKET_STATISTICS tp_drops).
	Dropped int
}

// Capture records the frames of one interface, both directions, to a pcap
// file until Stop.
type Capture struct {
	// Interface and Path are what Start was given.
	Interface string
	Path      string

	sock *os.File
	raw  syscall.RawConn
	file *os.File
	bw   *bufio.Writer
	w    *pcapgo.Writer

	done  chan struct{}
	once  sync.Once
	dirty bool // frames are buffered but not yet written to the file
	stats Stats
	// queued is the number of frames the kernel queued on the socket; when
	// Stop has drained the queue, it equals stats.Packets.
	queued int
	err    error // the first error of the reader, reported by Stop
}

// Start opens a packet socket on ifname inside the namespace ns and writes
// every frame it sees, sent or received, to a new pcap file at path (mode
// 0600, Ethernet link type, nanosecond timestamps taken by the kernel). It
// returns once the socket is bound: from then on no frame is missed, since
// the kernel queues what arrives before the reader gets to it.
func Start(ns netns.NsHandle, ifname, path string) (*Capture, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("capture %s: %w", ifname, err)
	}
	// An existing file keeps its mode through O_CREATE; pcaps hold
	// passwords in clear, so make sure.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("capture %s: %w", ifname, err)
	}
	fail := func(err error) (*Capture, error) {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("capture %s: %w", ifname, err)
	}

	var fd int
	if err := netem.Do(ns, func() error {
		var err error
		fd, err = openPacketSocket(ifname)
		return err
	}); err != nil {
		return fail(err)
	}
	// The descriptor is non-blocking, so os.NewFile registers it with the
	// runtime poller: reads park the goroutine, and a read deadline wakes
	// it for Stop.
	sock := os.NewFile(uintptr(fd), "packet:"+ifname)
	raw, err := sock.SyscallConn()
	if err != nil {
		sock.Close()
		return fail(err)
	}

	bw := bufio.NewWriterSize(f, 1<<16)
	w := pcapgo.NewWriterNanos(bw)
	if err := w.WriteFileHeader(snaplen, layers.LinkTypeEthernet); err != nil {
		sock.Close()
		return fail(err)
	}
	if err := bw.Flush(); err != nil {
		sock.Close()
		return fail(err)
	}

	c := &Capture{
		Interface: ifname, Path: path,
		sock: sock, raw: raw, file: f, bw: bw, w: w,
		done: make(chan struct{}),
	}
	ready := make(chan struct{})
	go c.run(ready)
	<-ready
	return c, nil
}

// openPacketSocket runs inside the namespace: the interface index and the
// socket both belong to it.
func openPacketSocket(ifname string) (int, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return -1, err
	}
	// Protocol 0 receives nothing until bind names the interface. Opening
	// with ETH_P_ALL, as pcapgo.NewEthernetHandle does, would queue the
	// frames of every interface of the namespace until bind.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return -1, fmt.Errorf("open packet socket: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	// Auxiliary data gives the original length and a VLAN tag the driver
	// stripped.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
		return -1, fmt.Errorf("packet auxdata: %w", err)
	}
	// Kernel timestamps in nanoseconds, taken when the frame was handed to
	// the tap, not when this process got around to reading it.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMP, 1); err != nil {
			return -1, fmt.Errorf("socket timestamps: %w", err)
		}
	}
	// SO_RCVBUFFORCE needs CAP_NET_ADMIN and passes the rmem_max limit;
	// without it, take what SO_RCVBUF allows.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}
	if err := unix.Bind(fd, sa); err != nil {
		return -1, fmt.Errorf("bind packet socket to %s: %w", ifname, err)
	}
	if bound, err := unix.Getsockname(fd); err == nil {
		if ll, isLL := bound.(*unix.SockaddrLinklayer); isLL &&
			ll.Hatype != unix.ARPHRD_ETHER && ll.Hatype != unix.ARPHRD_LOOPBACK {
			return -1, fmt.Errorf("interface %s has link type %d, not Ethernet", ifname, ll.Hatype)
		}
	}
	ok = true
	return fd, nil
}

// htons converts a 16-bit value to network byte order for the sockaddr.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// run is the reader: it writes frames until Stop sets the read deadline,
// then drains what is already queued.
func (c *Capture) run(ready chan<- struct{}) {
	defer close(c.done)
	buf := make([]byte, snaplen+4) // room for a VLAN tag put back
	oob := make([]byte, 512)
	close(ready)
	for {
		var (
			n, oobn int
			rerr    error
		)
		err := c.raw.Read(func(fd uintptr) bool {
			n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf[:snaplen], oob, unix.MSG_TRUNC)
			if rerr == unix.EAGAIN {
				// Idle: write out what is buffered, so that the file on
				// disk is complete whenever the link is quiet.
				c.flush()
				return false
			}
			return true
		})
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, os.ErrClosed):
			c.drain(buf, oob)
			return
		case err != nil:
			c.setErr(fmt.Errorf("read packet: %w", err))
			return
		case rerr == unix.EINTR:
			continue
		case rerr == unix.ENETDOWN:
			// The link went down: the kernel reports it once and hooks the
			// socket up again when the link comes back, so keep reading.
			continue
		case rerr != nil:
			c.setErr(fmt.Errorf("read packet: %w", rerr))
			return
		}
		c.write(buf, n, oob[:oobn])
	}
}

// drain reads, without waiting, the frames queued before Stop.
func (c *Capture) drain(buf, oob []byte) {
	deadline := time.Now().Add(drainTimeout)
	err := c.raw.Control(func(fd uintptr) {
		for i := 0; i < drainLimit && time.Now().Before(deadline); i++ {
			n, oobn, _, _, err := unix.Recvmsg(int(fd), buf[:snaplen], oob, unix.MSG_TRUNC|unix.MSG_DONTWAIT)
			if err == unix.EINTR || err == unix.ENETDOWN {
				continue
			}
			if err != nil {
				return // EAGAIN: the queue is empty
			}
			c.write(buf, n, oob[:oobn])
		}
	})
	if err != nil && !errors.Is(err, os.ErrClosed) {
		c.setErr(fmt.Errorf("drain packet socket: %w", err))
	}
}

// write adds one frame to the pcap. n is the frame's length on the wire
// (recvmsg with MSG_TRUNC); buf holds at most snaplen bytes of it.
func (c *Capture) write(buf []byte, n int, oob []byte) {
	ci := gopacket.CaptureInfo{Length: n, CaptureLength: min(n, snaplen)}
	msgs, _ := unix.ParseSocketControlMessage(oob)
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS &&
			len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})):
			ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
			ci.Timestamp = time.Unix(int64(ts.Sec), int64(ts.Nsec))
		case m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMP &&
			len(m.Data) >= int(unsafe.Sizeof(unix.Timeval{})):
			tv := (*unix.Timeval)(unsafe.Pointer(&m.Data[0]))
			ci.Timestamp = time.Unix(int64(tv.Sec), int64(tv.Usec)*1000)
		case m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA &&
			len(m.Data) >= int(unsafe.Sizeof(unix.TpacketAuxdata{})):
			aux := (*unix.TpacketAuxdata)(unsafe.Pointer(&m.Data[0]))
			ci.Length = int(aux.Len)
			// A driver that strips the 802.1Q tag reports it here; put it
			// back after the MAC addresses, as libpcap does, so that the
			// file shows the frame as it was on the wire.
			if aux.Status&unix.TP_STATUS_VLAN_VALID != 0 && ci.CaptureLength >= 12 {
				tpid := uint16(layers.EthernetTypeDot1Q)
				if aux.Status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
					tpid = aux.Vlan_tpid
				}
				copy(buf[16:ci.CaptureLength+4], buf[12:ci.CaptureLength])
				binary.BigEndian.PutUint16(buf[12:], tpid)
				binary.BigEndian.PutUint16(buf[14:], aux.Vlan_tci)
				ci.CaptureLength += 4
				ci.Length += 4
			}
		}
	}
	if ci.Timestamp.IsZero() {
		ci.Timestamp = time.Now()
	}
	ci.Length = max(ci.Length, ci.CaptureLength)
	if err := c.w.WritePacket(ci, buf[:ci.CaptureLength]); err != nil {
		c.setErr(fmt.Errorf("write %s: %w", c.Path, err))
		return
	}
	c.stats.Packets++
	c.dirty = true
}

func (c *Capture) flush() {
	if !c.dirty {
		return
	}
	c.dirty = false
	if err := c.bw.Flush(); err != nil {
		c.setErr(fmt.Errorf("write %s: %w", c.Path, err))
	}
}

func (c *Capture) setErr(err error) {
	if c.err == nil {
		c.err = err
	}
}

// Stop ends the capture: the frames that arrived before it are written,
// none after; the file is flushed and closed, and the socket closed. It can be called more than
// once; later calls return what the first returned.
func (c *Capture) Stop() (Stats, error) {
	c.once.Do(func() {
		// A filter that refuses everything closes the door: frames that
		// arrive from now on are neither queued nor counted, so the drain
		// below ends, and the kernel's counters match what was written.
		c.raw.Control(func(fd uintptr) {
			refuse := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
			_ = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
				&unix.SockFprog{Len: uint16(len(refuse)), Filter: &refuse[0]})
		})
		// A deadline in the past wakes the reader without closing the
		// socket under it, so it can still drain the queue.
		if err := c.sock.SetReadDeadline(time.Now()); err != nil {
			c.sock.Close()
		}
		<-c.done
		if err := c.raw.Control(func(fd uintptr) {
			// The counters run from the socket's creation; tp_packets
			// includes the drops.
			if st, err := unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
				c.stats.Dropped = int(st.Drops)
				c.queued = int(st.Packets - st.Drops)
			}
		}); err != nil && !errors.Is(err, os.ErrClosed) {
			c.setErr(fmt.Errorf("packet statistics: %w", err))
		}
		if err := c.sock.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			c.setErr(fmt.Errorf("close packet socket: %w", err))
		}
		if err := c.bw.Flush(); err != nil {
			c.setErr(fmt.Errorf("write %s: %w", c.Path, err))
		}
		if err := c.file.Close(); err != nil {
			c.setErr(fmt.Errorf("close %s: %w", c.Path, err))
		}
	})
	if c.err != nil {
		return c.stats, fmt.Errorf("capture %s: %w", c.Interface, c.err)
	}
	return c.stats, nil
}
