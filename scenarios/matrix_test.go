package scenarios_test

import (
	"strings"
	"testing"
	"time"

	"github.com/labrun/labrun/actions"
	. "github.com/labrun/labrun/scenarios"
)

const sweep = `name: lab-x/sweep
tags: [quick]
hosts:
  client:
    sysctls: {net.ipv4.tcp_syn_retries: "3"}
  server: {}
server: {host: server, variables: {wait_timeout: "10"}}
timeline:
  - name: connect
    at: 0s
    client: {kind: go, sql: ["SELECT 1"]}
checks:
  - {name: syns, type: syn_retransmits, step: connect}
matrix:
  axes:
    - {set: client.net.ipv4.tcp_syn_retries, values: [1, 2]}
    - {name: linear, set: client.net.ipv4.tcp_syn_linear_timeouts, values: [0, 4]}
    - {set: server.wait_timeout, values: ["5"]}
    - {set: connect.read_timeout, values: [2s]}
  tags:
    - {when: {tcp_syn_retries: "2", linear: "4"}, tags: [long]}
`

func TestMatrixProduct(t *testing.T) {
	sc, err := LoadBytes("sweep.yaml", []byte(sweep))
	if err != nil {
		t.Fatal(err)
	}
	insts, err := Expand(sc, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, in := range insts {
		names = append(names, in.Name)
	}
	want := []string{
		"lab-x/sweep [tcp_syn_retries=1 linear=0 wait_timeout=5 read_timeout=2s]",
		"lab-x/sweep [tcp_syn_retries=1 linear=4 wait_timeout=5 read_timeout=2s]",
		"lab-x/sweep [tcp_syn_retries=2 linear=0 wait_timeout=5 read_timeout=2s]",
		"lab-x/sweep [tcp_syn_retries=2 linear=4 wait_timeout=5 read_timeout=2s]",
	}
	if strings.Join(names, "\n") != strings.Join(want, "\n") {
		t.Fatalf("instances:\n%s\nwant:\n%s", strings.Join(names, "\n"), strings.Join(want, "\n"))
	}
	last := insts[3]
	if got := last.Hosts["client"].Sysctls; got["net.ipv4.tcp_syn_retries"] != "2" || got["net.ipv4.tcp_syn_linear_timeouts"] != "4" {
		t.Errorf("sysctls %v", got)
	}
	if got := last.Server.Variables["wait_timeout"]; got != "5" {
		t.Errorf("wait_timeout %q", got)
	}
	if got := last.Timeline[0].Action.(*actions.Client).ReadTimeout.D(); got != 2*time.Second {
		t.Errorf("read_timeout %v", got)
	}
	if last.Matrix != nil || last.Cell == nil || last.Parent != "lab-x/sweep" {
		t.Errorf("instance matrix %v cell %v parent %q", last.Matrix, last.Cell, last.Parent)
	}
	// The long cell is not quick; the others keep the scenario's tags.
	if strings.Join(last.Tags, ",") != "long" || strings.Join(insts[0].Tags, ",") != "quick" {
		t.Errorf("tags %v and %v", last.Tags, insts[0].Tags)
	}
	// The original keeps its own values.
	if sc.Hosts["client"].Sysctls["net.ipv4.tcp_syn_retries"] != "3" {
		t.Error("expanding changed the scenario")
	}
}

func TestMatrixCellsAndSet(t *testing.T) {
	src := sweep + `  cells:
    - {tcp_syn_retries: "6", linear: "0", wait_timeout: "5", read_timeout: 2s}
`
	sc, err := LoadBytes("sweep.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	insts, err := Expand(sc, nil, nil)
	if err != nil || len(insts) != 1 || insts[0].Hosts["client"].Sysctls["net.ipv4.tcp_syn_retries"] != "6" {
		t.Fatalf("listed cell: %v %v", insts, err)
	}
	// --set replaces an axis's values (the listed cells give way to the
	// product) or adds one.
	if err := sc.SetAxis("client.net.ipv4.tcp_syn_retries", []string{"3", "4", "5"}); err != nil {
		t.Fatal(err)
	}
	if err := sc.SetAxis("server.net_write_timeout", []string{"7"}); err != nil {
		t.Fatal(err)
	}
	insts, err = Expand(sc, []string{"mysql", "mariadb"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(insts) != 3*2*2 {
		t.Fatalf("%d instances, want 12", len(insts))
	}
	if got := insts[len(insts)-1].Name; got != "lab-x/sweep [tcp_syn_retries=5 linear=4 wait_timeout=5 read_timeout=2s net_write_timeout=7] [mariadb/process]" {
		t.Errorf("last instance %q", got)
	}
}

// A latency step's delay is the action's option, not the step's start
// delay of the same name.
func TestMatrixActionOptionNamedAsStepField(t *testing.T) {
	src := `name: lab-x/latency
hosts: {client: {}, server: {}}
server: {host: server, disk: {size: 512MiB, fuse: true}}
timeline:
  - name: connect
    at: 0s
    client: {kind: go, sql: ["SELECT 1"]}
  - name: slow
    after: connect
    delay: 1s
    latency: {op: fsync, delay: 100ms}
checks:
  - {name: c, type: client_error, step: connect}
matrix:
  axes:
    - {set: slow.delay, values: [50ms, 300ms]}
`
	sc, err := LoadBytes("latency.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	insts, err := Expand(sc, nil, nil)
	if err != nil || len(insts) != 2 {
		t.Fatalf("instances %v, %v", insts, err)
	}
	st := insts[1].Timeline[1]
	if got := st.Action.(*actions.Latency).Delay.D(); got != 300*time.Millisecond {
		t.Errorf("latency delay %v, want 300ms", got)
	}
	if got := st.Delay.D(); got != time.Second {
		t.Errorf("step delay %v, want the scenario's 1s", got)
	}
}

func TestMatrixInvalid(t *testing.T) {
	tests := []struct {
		name, axes, want string
	}{
		{"unknown host", `    - {set: clinet.net.ipv4.tcp_syn_retries, values: [1]}`,
			`sweep.yaml:16: matrix.axes[0].set: unknown host "clinet" (hosts: client, server)`},
		{"not a client option", `    - {set: connect.sql, values: [x]}`,
			`sweep.yaml:16: matrix.axes[0].set: step "connect" (client) has no option "sql" an axis may set (want at, connect_timeout, delay, rcvbuf, read_timeout, skip or write_timeout)`},
		{"no values", `    - {set: server.wait_timeout, values: []}`,
			`sweep.yaml:16: matrix.axes[0].values: want at least one value`},
		{"twice", "    - {set: server.wait_timeout, values: [1]}\n    - {name: wt, set: server.wait_timeout, values: [2]}",
			`sweep.yaml:17: matrix.axes[1].set: server.wait_timeout is set by another axis`},
		{"nothing", `    - {set: nowhere, values: [1]}`,
			`sweep.yaml:16: matrix.axes[0].set: bad axis "nowhere": want HOST.net.KEY, server.NAME, STEP.OPTION, flavor or engine`},
	}
	head := strings.Split(sweep, "matrix:\n")[0] + "matrix:\n  axes:\n"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBytes("sweep.yaml", []byte(head+tt.axes+"\n"))
			if err == nil || err.Error() != tt.want {
				t.Errorf("error:\n%v\nwant:\n%s", err, tt.want)
			}
		})
	}
	// A value the cell cannot take is named with the cell and the line of
	// the axis's values.
	sc, err := LoadBytes("sweep.yaml", []byte(head+"    - {set: connect.read_timeout, values: [2s, soon]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Expand(sc, nil, nil)
	if want := `sweep.yaml:16: timeline[0].client.read_timeout: in cell [read_timeout=soon]: bad duration "soon": want a number with a unit (ms, s, m)`; err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}
	// A value the kernel would refuse is refused before anything runs.
	if err := sc.SetAxis("client.net.ipv4.tcp_syn_retries", []string{"200"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Expand(sc, nil, nil); err == nil || !strings.Contains(err.Error(), `in cell [read_timeout=2s tcp_syn_retries=200]: bad value "200": out of the kernel's range 1 to 127`) {
		t.Errorf("kernel range: %v", err)
	}
	if err := sc.SetAxis("clinet.net.ipv4.tcp_retries2", []string{"3"}); err == nil || err.Error() != `--set clinet.net.ipv4.tcp_retries2: unknown host "clinet" (hosts: client, server)` {
		t.Errorf("--set error: %v", err)
	}
	if err := sc.SetAxis("client.net.ipv4.tcp_retries2", nil); err == nil || !strings.Contains(err.Error(), "no values") {
		t.Errorf("--set with no values: %v", err)
	}
}

// A cell's document, as a run saves it, loads back as that cell.
func TestCellDocument(t *testing.T) {
	sc, err := LoadBytes("sweep.yaml", []byte(sweep))
	if err != nil {
		t.Fatal(err)
	}
	insts, err := Expand(sc, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := insts[2].Document()
	if err != nil {
		t.Fatal(err)
	}
	back, err := LoadBytes("scenario.yaml", doc)
	if err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	if back.Name != insts[2].Name || back.Matrix != nil || back.Hosts["client"].Sysctls["net.ipv4.tcp_syn_retries"] != "2" {
		t.Errorf("reloaded %q matrix %v sysctls %v", back.Name, back.Matrix, back.Hosts["client"].Sysctls)
	}
}
