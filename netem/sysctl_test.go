package netem_test

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labrun/labrun/netem"
)

// The keys the sysctl tests write or try to write, and compare before and
// after: in the host namespace, where nothing may change, and in the lab's.
var sysctlKeys = []string{
	"net.ipv4.tcp_syn_retries",
	"net.ipv4.tcp_fin_timeout",
	"net.ipv4.ip_local_port_range",
	"net.core.wmem_default",
	"net.ipv4.tcp_mem",
	"vm.swappiness",
	"kernel.hostname",
}

// hostSysctls reads keys from /proc/sys on the test's own goroutine. Only
// the throwaway threads of netem.Do ever enter a lab namespace, so this
// reads the host namespace's values.
func hostSysctls(t *testing.T, keys []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, k := range keys {
		b, err := os.ReadFile(filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/")))
		if err != nil {
			t.Fatalf("read host sysctl %s: %v", k, err)
		}
		out[k] = strings.Join(strings.Fields(string(b)), " ")
	}
	return out
}

func TestSetSysctls(t *testing.T) {
	l := up(t, "client", "server")
	client, server := l.host(t, "client"), l.host(t, "server")
	hostBefore := hostSysctls(t, sysctlKeys)

	// A key that a child namespace lacks is global. tcp_mem has always
	// been one; the kernel must not grow a per-namespace copy under this
	// test's feet, or the not-namespaced cases would prove nothing.
	present, err := client.ReadSysctls(sysctlKeys)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := present["net.ipv4.tcp_mem"]; ok {
		t.Fatal("net.ipv4.tcp_mem is present in a child namespace; the not-namespaced cases need another key")
	}

	tests := []struct {
		name string
		kv   map[string]string
		want map[string]string // read back; nil when an error is expected
		err  error             // a sentinel the error wraps, if any
		bad  bool              // an error is expected
	}{
		{
			name: "one key",
			kv:   map[string]string{"net.ipv4.tcp_syn_retries": "2"},
			want: map[string]string{"net.ipv4.tcp_syn_retries": "2"},
		},
		{
			name: "several keys",
			kv:   map[string]string{"net.ipv4.tcp_syn_retries": "3", "net.ipv4.tcp_fin_timeout": "9"},
			want: map[string]string{"net.ipv4.tcp_syn_retries": "3", "net.ipv4.tcp_fin_timeout": "9"},
		},
		{
			// The kernel prints multi-value keys tab-separated.
			name: "multi-value key",
			kv:   map[string]string{"net.ipv4.ip_local_port_range": "40000   40100"},
			want: map[string]string{"net.ipv4.ip_local_port_range": "40000 40100"},
		},
		{
			// Global too: absent from child namespaces before Linux 6.15,
			// shown there read-only (with the host's value) since.
			name: "net.core.wmem_default",
			kv:   map[string]string{"net.core.wmem_default": "65536"},
			err:  netem.ErrNotNamespaced,
			bad:  true,
		},
		{
			name: "not namespaced",
			kv:   map[string]string{"net.ipv4.tcp_mem": "1000 2000 3000"},
			err:  netem.ErrNotNamespaced,
			bad:  true,
		},
		{
			// Keys are written in order; the refusal must come before any
			// of them is written.
			name: "not namespaced after a good key",
			kv:   map[string]string{"net.ipv4.tcp_fin_timeout": "11", "net.ipv4.tcp_mem": "1000 2000 3000"},
			err:  netem.ErrNotNamespaced,
			bad:  true,
		},
		{
			// Written from inside a namespace, a vm. or kernel. key would
			// change the whole machine.
			name: "outside net.",
			kv:   map[string]string{"vm.swappiness": "10"},
			bad:  true,
		},
		{
			name: "outside net. after a good key",
			kv:   map[string]string{"kernel.hostname": "lab", "net.ipv4.tcp_syn_retries": "4"},
			bad:  true,
		},
		{
			name: "outside net. before a good key",
			kv:   map[string]string{"net.ipv4.tcp_syn_retries": "4", "vm.swappiness": "10"},
			bad:  true,
		},
		{
			// Every dot becomes a slash, so ".." cannot climb out of
			// /proc/sys/net.
			name: "path that tries to climb",
			kv:   map[string]string{"net.ipv4.conf.eth0/../../../../vm.swappiness": "10"},
			bad:  true,
		},
		{
			name: "value the kernel refuses",
			kv:   map[string]string{"net.ipv4.tcp_syn_retries": "many"},
			bad:  true,
		},
		{
			// The good key is written first, then put back when the
			// second write fails.
			name: "value the kernel refuses after a good key",
			kv:   map[string]string{"net.ipv4.tcp_fin_timeout": "13", "net.ipv4.tcp_syn_retries": "many"},
			bad:  true,
		},
		{
			name: "value out of range",
			kv:   map[string]string{"net.ipv4.tcp_syn_retries": "1000"},
			bad:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clientBefore, err := client.ReadSysctls(sysctlKeys)
			if err != nil {
				t.Fatal(err)
			}
			serverBefore, err := server.ReadSysctls(sysctlKeys)
			if err != nil {
				t.Fatal(err)
			}

			got, err := client.SetSysctls(tt.kv)
			switch {
			case tt.bad && err == nil:
				t.Fatalf("SetSysctls(%v) = %v, want an error", tt.kv, got)
			case tt.bad && tt.err != nil && !errors.Is(err, tt.err):
				t.Fatalf("SetSysctls(%v) error = %v, want %v", tt.kv, err, tt.err)
			case !tt.bad && err != nil:
				t.Fatalf("SetSysctls(%v): %v", tt.kv, err)
			}

			clientAfter, err := client.ReadSysctls(sysctlKeys)
			if err != nil {
				t.Fatal(err)
			}
			wantClient := maps.Clone(clientBefore)
			if !tt.bad {
				if !maps.Equal(got, tt.want) {
					t.Errorf("SetSysctls(%v) = %v, want %v", tt.kv, got, tt.want)
				}
				maps.Copy(wantClient, tt.want)
			}
			// A refused set changes nothing at all.
			if !maps.Equal(clientAfter, wantClient) {
				t.Errorf("client sysctls = %v, want %v", clientAfter, wantClient)
			}
			if serverAfter, err := server.ReadSysctls(sysctlKeys); err != nil || !maps.Equal(serverAfter, serverBefore) {
				t.Errorf("the other namespace's sysctls changed: %v (%v), want %v", serverAfter, err, serverBefore)
			}
			if hostAfter := hostSysctls(t, sysctlKeys); !maps.Equal(hostAfter, hostBefore) {
				t.Errorf("host namespace's sysctls changed: %v, want %v", hostAfter, hostBefore)
			}
		})
	}
}

func TestReadSysctlsLeavesOutAbsentKeys(t *testing.T) {
	l := up(t, "client")
	got, err := l.host(t, "client").ReadSysctls([]string{"net.ipv4.tcp_syn_retries", "net.ipv4.no_such_key"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got["net.ipv4.no_such_key"]; ok || got["net.ipv4.tcp_syn_retries"] == "" || len(got) != 1 {
		t.Errorf("ReadSysctls = %v, want tcp_syn_retries only", got)
	}
}
