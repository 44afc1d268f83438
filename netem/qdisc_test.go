package netem

import (
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

func TestImpairmentQdisc(t *testing.T) {
	tests := []struct {
		name string
		in   Impairment
		// want holds the netem attributes in the kernel's units: latency
		// and jitter in ticks of the netlink package's clock, loss as a
		// fraction of 2^32.
		wantLatency, wantJitter uint32
		wantLoss                uint32
	}{
		{"delay only", Impairment{Delay: 100 * time.Millisecond}, tick(100000), 0, 0},
		{"delay and jitter", Impairment{Delay: 50 * time.Millisecond, Jitter: 10 * time.Millisecond}, tick(50000), tick(10000), 0},
		{"loss 10%", Impairment{Loss: 10}, 0, 0, netlink.Percentage2u32(10)},
		{"loss 100%", Impairment{Loss: 100}, 0, 0, netlink.Percentage2u32(100)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.in.qdisc(7)
			if q.LinkIndex != 7 || q.Parent != netlink.HANDLE_ROOT || q.Handle != netlink.MakeHandle(1, 0) {
				t.Errorf("attrs %+v: want the root qdisc 1: of link 7", q.QdiscAttrs)
			}
			if q.Latency != tc.wantLatency || q.Jitter != tc.wantJitter || q.Loss != tc.wantLoss {
				t.Errorf("latency %d jitter %d loss %d, want %d %d %d", q.Latency, q.Jitter, q.Loss, tc.wantLatency, tc.wantJitter, tc.wantLoss)
			}
			if q.Type() != "netem" {
				t.Errorf("type %s", q.Type())
			}
		})
	}
}

func TestParsePercent(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		err  string
	}{
		{"10%", 10, ""},
		{"0.5", 0.5, ""},
		{" 100% ", 100, ""},
		{"101%", 0, `bad percentage "101%": want 0% to 100%`},
		{"-1", 0, `bad percentage "-1": want 0% to 100%`},
		{"ten", 0, `bad percentage "ten": want 0% to 100%`},
	}
	for _, tc := range tests {
		got, err := ParsePercent(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("ParsePercent(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParsePercent(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// tick converts microseconds to the packet scheduler's ticks, as netlink
// does when it builds the request.
func tick(us uint32) uint32 { return uint32(float64(us) * netlink.TickInUsec()) }
