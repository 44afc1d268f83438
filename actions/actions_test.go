package actions_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/labrun/labrun/actions"
	_ "github.com/labrun/labrun/checks"
	"github.com/labrun/labrun/scenarios"
)

// base is a scenario with one step to fill in; its check names the step
// "connect", a client step, so that only the step under test can be wrong.
const base = `name: t
hosts: {client: {}, server: {}}
server: %s
timeline:
  - name: connect
    at: 0s
    client: {kind: go, sql: ["SELECT 1"]}
  - name: x
    at: 1s
%s
checks:
  - {name: c, type: client_error, step: connect}
`

// Each action kind: a step that loads and steps the loader must refuse,
// with the exact problem (line 10 is the step's action key when it has no host, 11 with one).
var cases = []struct {
	action string
	step   string
	want   string // "" loads
	// server is the scenario's server; default one without a disk.
	server string
}{
	{"iptables", `    host: server
    iptables: -A INPUT -p tcp --dport 3306 -j DROP`, "", ""},
	{"iptables", `    host: server
    iptables: -F INPUT`, "11: timeline[1].iptables: bad iptables rule: command -F not allowed: a scenario may only add (-A, -I) or delete (-D) rules", ""},
	{"iptables", `    host: server
    iptables: -D INPUT -j DROP`, "11: timeline[1].iptables: impossible timeline: no step adds this rule on host server before this step deletes it", ""},
	{"sysctl", `    host: client
    sysctl: {net.ipv4.tcp_syn_retries: 2}`, "", ""},
	{"sysctl", `    host: client
    sysctl: {kernel.pid_max: 100}`, `11: timeline[1].sysctl[kernel.pid_max]: bad sysctl key "kernel.pid_max": only per-namespace keys under net. are accepted`, ""},
	{"client", `    client: {kind: cli, sql: ["SELECT 1"]}`, "", ""},
	{"client", `    client: {kind: cli, session: s}`, "10: timeline[1].client.session: only for kind go", ""},
	{"client", `    client: {kind: go, sql: ["KILL {{nobody.id}}"]}`, "10: timeline[1].client.sql[0]: {{nobody.id}} names no session (no step has session: nobody)", ""},
	{"burst", `    burst: {rate: 200, for: 10s, close: quit}`, "", ""},
	{"burst", `    burst: {rate: 200, close: linger}`, "10: timeline[1].burst.for: want a positive duration: a burst is bounded in time", ""},
	{"burst", `    burst: {rate: 200, for: 1s, sources: 3}`, "10: timeline[1].burst.sources: host client has 1 addresses (address and extra), not 3", ""},
	{"sleep", `    sleep: 2s`, "", ""},
	{"sleep", `    sleep: 2`, `10: timeline[1].sleep: bad duration "2": want a number with a unit (ms, s, m)`, ""},
	{"netem", `    host: client
    netem: {delay: 100ms, jitter: 10ms, loss: 1%}`, "", ""},
	{"netem", `    host: client
    netem: {jitter: 10ms}`, "11: timeline[1].netem: want delay or loss, or remove: true", ""},
	{"vanish", `    host: client
    vanish: true`, "", ""},
	{"vanish", `    vanish: true`, "8: timeline[1].host: required for a vanish step", ""},
	{"freeze", `    freeze: {for: 2s}`, "", withDisk},
	{"freeze", `    freeze: {for: 2s}`, "10: timeline[1].freeze: acts on the server's own disk: set server.disk", ""},
	{"throttle", `    throttle: {write_bps: 1MiB, write_iops: 10}`, "", withDisk},
	{"throttle", `    throttle: {for: 2s}`, "10: timeline[1].throttle: want at least one limit: read_bps, write_bps, read_iops or write_iops", withDisk},
	{"throttle", `    throttle: {write_bps: 1MiB}`, "10: timeline[1].throttle: cannot limit a server behind the FUSE layer (server.disk.fuse): its IO reaches the disk from labrun's FUSE server, not from its own processes", withFUSEDisk},
	{"throttle", `    throttle: {write_bps: 1MB}`, `10: timeline[1].throttle.write_bps: bad size "1MB": want bytes, or a number with KiB, MiB or GiB`, withDisk},
	{"load", `    load: {bytes: 64MiB, for: 5s, block: 1MiB, sync_every: 16}`, "", withDisk},
	{"load", `    load: {bytes: 64MiB}`, "10: timeline[1].load.for: want a positive duration: a load is bounded in time", withDisk},
	{"load", `    load: {bytes: 1GiB, for: 5s}`, "10: timeline[1].load.bytes: want less than the disk's size, 512MiB", withDisk},
	{"latency", `    latency: {op: fsync, delay: 200ms, for: 3s}`, "", withFUSEDisk},
	{"latency", `    latency: {op: write, delay: 50ms}`, "", withFUSEDisk},
	{"latency", `    latency: {op: fsync, delay: 200ms}`, "10: timeline[1].latency: acts on the disk's FUSE layer: set server.disk.fuse: true", withDisk},
	{"latency", `    latency: {op: fsync, delay: 200ms}`, "10: timeline[1].latency: acts on the server's own disk: set server.disk", ""},
	{"latency", `    latency: {op: fsink, delay: 200ms}`, "10: timeline[1].latency.op: want one of open, read, write, fsync, flush, allocate, setattr", withFUSEDisk},
	{"latency", `    latency: {op: fsync}`, "10: timeline[1].latency.delay: want a positive duration", withFUSEDisk},
	{"end", `    throttle: {write_iops: 1}
  - name: y
    after: x
    end: x`, "", withDisk},
	{"end", `    latency: {op: fsync, delay: 1s}
  - name: y
    after: x
    end: x`, "", withFUSEDisk},
	{"end", `    latency: {op: fsync, delay: 1s, for: 2s}
  - name: y
    after: x
    end: x`, `13: timeline[2].end: step "x" ends by itself after its for`, withFUSEDisk},
	{"end", `    sleep: 1s
  - name: y
    after: x
    end: x`, `13: timeline[2].end: step "x" is a sleep step; end ends a freeze, a throttle or a latency`, withDisk},
	{"end", `    freeze: {for: 1s}
  - name: y
    after: x
    end: x`, `13: timeline[2].end: step "x" ends by itself after its for`, withDisk},
}

// withDisk is a server whose data directory has a disk of its own, for the
// disk faults.
const withDisk = "{host: server, disk: {size: 512MiB}}"

// withFUSEDisk is a server whose disk has the FUSE layer, for latency.
const withFUSEDisk = "{host: server, disk: {size: 512MiB, fuse: true}}"

func TestActions(t *testing.T) {
	for _, tt := range cases {
		name := tt.action + " loads"
		if tt.want != "" {
			name = tt.action + " refused"
		}
		t.Run(name, func(t *testing.T) {
			srv := tt.server
			if srv == "" {
				srv = "{host: server}"
			}
			src := fmt.Sprintf(base, srv, tt.step)
			sc, err := scenarios.LoadBytes("t.yaml", []byte(src))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused:\n%v", err)
				}
				st := sc.Timeline[len(sc.Timeline)-1]
				if st.Kind != tt.action {
					t.Fatalf("kind %q, want %q", st.Kind, tt.action)
				}
				if _, ok := st.Action.(actions.Applier); !ok {
					t.Errorf("%T cannot apply itself", st.Action)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "t.yaml:"+tt.want) {
				t.Errorf("error:\n%v\nwant:\n%s", err, tt.want)
			}
		})
	}
}

// Every registered action has a case that loads and one that is refused.
func TestActionsCovered(t *testing.T) {
	loads, refused := map[string]bool{}, map[string]bool{}
	for _, tt := range cases {
		if tt.want == "" {
			loads[tt.action] = true
		} else {
			refused[tt.action] = true
		}
	}
	for _, k := range scenarios.Actions() {
		if !loads[k.Name] || !refused[k.Name] {
			t.Errorf("action %s: want a case that loads and one that is refused in TestActions", k.Name)
		}
	}
}
