package checks_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	_ "github.com/labrun/labrun/actions"
	"github.com/labrun/labrun/scenarios"
)

// validationBase is a scenario every kind can be checked in: a client
// step, an iptables step, captures, sock_diag on the server and the
// processlist. Its one check, on line 19 (18 with one line of observe),
// is the case's; observe is replaced for the cases about it.
const validationBase = `name: v
hosts:
  client: {}
  server: {}
server: {host: server}
captures: [client, server]
observe:
%s
timeline:
  - name: drop
    at: 0s
    host: server
    iptables: -A INPUT -p tcp --dport 3306 -j DROP
  - name: connect
    at: 1s
    client: {kind: go, sql: ["SELECT 1"]}
checks:
  - %s
`

const observeAll = `  sockets: [{host: server}, {host: client}]
  processlist: {}`

// The loader refuses what a kind cannot evaluate, before anything runs:
// an expectation the kind does not read would be ignored, an unknown model
// would predict nothing, a counter with nothing to compare with would pass
// on any packet.
func TestValidateKinds(t *testing.T) {
	tests := []struct {
		name    string
		observe string
		check   string
		want    []string
	}{
		{"a ladder with a client's expectation", "", `{name: c, type: syn_retransmits, step: connect, expect: {code: 2003}}`,
			[]string{"19: checks[0].expect.code: syn_retransmits does not read expect.code (it reads: count, intervals, tolerance)"}},
		{"synack_retransmits takes no intervals", "", `{name: c, type: synack_retransmits, step: connect, expect: {intervals: [1s]}}`,
			[]string{"19: checks[0].expect.intervals: synack_retransmits does not read expect.intervals (it reads: count, tolerance)"}},
		{"a state with a count", "", `{name: c, type: thread_state, step: connect, expect: {state: Sleep, count: 1}}`,
			[]string{"19: checks[0].expect.count: thread_state does not read expect.count (it reads: for, gone, model, state)"}},
		{"ends_after with elapsed", "", `{name: c, type: ends_after, step: connect, expect: {after: drop, elapsed: 1s}}`,
			[]string{"19: checks[0].expect.elapsed: ends_after does not read expect.elapsed (it reads: after, tolerance)"}},
		{"query_value with a model", "", `{name: c, type: query_value, step: connect, expect: {value: "1", model: syn}}`,
			[]string{"19: checks[0].expect.model: query_value does not read expect.model (it reads: value)"}},
		{"an unknown model", "", `{name: c, type: iptables_counter, step: connect, host: server, expect: {model: data}}`,
			[]string{`19: checks[0].expect.model: iptables_counter has no model "data" (want syn)`}},
		{"an unknown socket model", "", `{name: c, type: socket_state, step: connect, host: server, expect: {state: ESTABLISHED, model: keepalive}}`,
			[]string{`19: checks[0].expect.model: socket_state has no model "keepalive" (want session_end or synack)`}},
		{"an unknown thread model", "", `{name: c, type: trx_state, step: connect, expect: {state: RUNNING, model: synack}}`,
			[]string{`19: checks[0].expect.model: trx_state has no model "synack" (want session_end)`}},
		{"iptables_counter without count or model", "", `{name: c, type: iptables_counter, step: drop, host: server}`,
			[]string{"19: checks[0].expect: want count or model: a counter compared with nothing would pass on any packet"}},
		{"iptables_counter with count and model", "", `{name: c, type: iptables_counter, step: connect, host: server, expect: {count: 7, model: syn}}`,
			[]string{"19: checks[0].expect: count and model are exclusive"}},
		{"iptables_counter without host", "", `{name: c, type: iptables_counter, step: drop, expect: {count: 7}}`,
			[]string{"19: checks[0].host: required for iptables_counter: the host whose rules are counted"}},
		{"iptables_counter model syn on a rule's step", "", `{name: c, type: iptables_counter, step: drop, host: server, expect: {model: syn}}`,
			[]string{"19: checks[0].step: model syn needs a client step, whose host's sysctls predict the SYNs"}},
		{"client_error with elapsed and model", "", `{name: c, type: client_error, step: connect, expect: {elapsed: 1s, model: syn}}`,
			[]string{"19: checks[0].expect: elapsed and model are exclusive: the model gives the elapsed time"}},
		{"client_error session_end without after", "", `{name: c, type: client_error, step: connect, expect: {model: session_end}}`,
			[]string{"19: checks[0].expect.after: required with model session_end: the step whose idle session this one waits on"}},
		{"client_error after without session_end", "", `{name: c, type: client_error, step: connect, expect: {model: syn, after: drop}}`,
			[]string{"19: checks[0].expect.after: only with model session_end or read_timeout"}},
		{"socket_state of an unknown state", "", `{name: c, type: socket_state, step: connect, host: server, expect: {state: ESTABLISH}}`,
			[]string{`19: checks[0].expect.state: unknown TCP state "ESTABLISH" (known: CLOSE, CLOSE_WAIT, CLOSING, ESTABLISHED, FIN_WAIT1, FIN_WAIT2, LAST_ACK, LISTEN, NEW_SYN_RECV, SYN_RECV, SYN_SENT, TIME_WAIT)`}},
		{"socket_state session_end on the client", "", `{name: c, type: socket_state, step: connect, host: client, expect: {state: ESTABLISHED, model: session_end}}`,
			[]string{"19: checks[0].host: model session_end is about the server's socket: host must be server"}},
		{"socket_state without state", "", `{name: c, type: socket_state, step: connect, host: server, expect: {gone: true}}`,
			[]string{"19: checks[0].expect.state: required for socket_state"}},
		{"query_value without value", "", `{name: c, type: query_value, step: connect}`,
			[]string{"19: checks[0].expect.value: required for query_value"}},
		{"a ladder on a rule's step", "", `{name: c, type: data_retransmits, step: drop}`,
			[]string{`19: checks[0].step: step "drop" is not a client step: data_retransmits follows the connection a step opens`}},
		{"a ladder without a step", "", `{name: c, type: keepalive_probes}`,
			[]string{"19: checks[0].step: required for keepalive_probes"}},
		{"a negative count", "", `{name: c, type: zero_window, step: connect, expect: {count: -1}}`,
			[]string{"19: checks[0].expect.count: want 0 or more"}},
		{"intervals of another length than count", "", `{name: c, type: syn_retransmits, step: connect, expect: {count: 3, intervals: [1s, 2s]}}`,
			[]string{"19: checks[0].expect.intervals: 2 intervals for count 3: want one interval per retransmission"}},
		{"write_timeout with a state", "", `{name: c, type: write_timeout, step: connect, expect: {state: ESTABLISHED}}`,
			[]string{"19: checks[0].expect.state: write_timeout does not read expect.state (it reads: elapsed, tolerance)"}},
		{"thread_state without the processlist", "  sockets: [{host: server}]", `{name: c, type: thread_state, step: connect, expect: {state: Sleep}}`,
			[]string{"18: checks[0].type: thread_state needs observe.processlist"}},
		{"socket_state without sock_diag on its host", "  processlist: {}", `{name: c, type: socket_state, step: connect, host: server, expect: {state: ESTABLISHED}}`,
			[]string{"18: checks[0].host: socket_state reads sock_diag samples of host server: add it to observe.sockets"}},
		{"a valid check", "", `{name: c, type: socket_state, step: connect, host: server, expect: {state: ESTABLISHED, model: session_end}}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			observe := tt.observe
			if observe == "" {
				observe = observeAll
			}
			src := fmt.Sprintf(validationBase, observe, tt.check)
			_, err := scenarios.LoadBytes("x.yaml", []byte(src))
			var got []string
			var ve *scenarios.ValidationError
			switch {
			case err == nil:
			case errors.As(err, &ve):
				for _, p := range ve.Problems {
					got = append(got, p.String())
				}
			default:
				t.Fatalf("not a validation error: %v", err)
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
