package checks_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/labrun/labrun/actions"

	_ "github.com/labrun/labrun/actions"
	"github.com/labrun/labrun/capture"
	"github.com/labrun/labrun/checks"
	"github.com/labrun/labrun/client"
	"github.com/labrun/labrun/scenarios"
)

// The check kinds are evaluated on what labrun recorded in its own runs of
// the library's quick scenarios (Linux 6.18; Oracle MySQL 9.7.4, and
// MariaDB 10.11.18 where a kind behaves differently): each run's report
// directory as the runner left it (scenario.yaml, observations.json, the
// pcaps, cut after the TCP headers when large) under testdata/runs/RUN,
// copied there by testdata/runs/copyrun.go. A case takes a check of the
// recorded scenario or writes its own, and may alter the observations (a
// sample that errored, a step that did not run, a packet the capture
// missed, a sysctl that moves the model) to show that the kind fails, and
// says why, when its evidence is missing.

// loadRun replays testdata/runs/name.
func loadRun(t *testing.T, name string) *checks.Observations {
	t.Helper()
	o, err := checks.LoadObservations(filepath.Join("testdata", "runs", name))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// recordedCheck returns a copy of the recorded scenario's check named
// name, which a case may change without touching the scenario.
func recordedCheck(t *testing.T, o *checks.Observations, name string) *scenarios.Check {
	t.Helper()
	for _, c := range o.Scenario.Checks {
		if c.Name == name {
			cp := *c
			if c.Expect != nil {
				e := *c.Expect
				cp.Expect = &e
			}
			return &cp
		}
	}
	t.Fatalf("the recorded scenario %s has no check %q", o.Scenario.Name, name)
	return nil
}

// kindCase is one evaluation of a check on a recorded run.
type kindCase struct {
	name string
	run  string
	// check names a check of the recorded scenario; c is one written
	// here. Exactly one is set.
	check string
	c     *scenarios.Check
	// alter changes the observations, or the check (a copy), before the
	// evaluation.
	alter func(t *testing.T, o *checks.Observations, c *scenarios.Check)
	// want is empty for a case that must pass, else a part of the
	// message of the failure it must be.
	want string
}

func count(n int) *int { return &n }

func dur(d time.Duration) *scenarios.Duration { x := scenarios.Duration(d); return &x }

func durs(ds ...time.Duration) []scenarios.Duration {
	var out []scenarios.Duration
	for _, d := range ds {
		out = append(out, scenarios.Duration(d))
	}
	return out
}

func text(s string) *string { return &s }

// Alterations of recorded observations. Each says what the run would have
// lacked.

// sysctl sets a host's sysctl as if the run had read it back: the model
// moves, the observations do not.
func sysctl(host, key, value string) func(*testing.T, *checks.Observations, *scenarios.Check) {
	return func(t *testing.T, o *checks.Observations, _ *scenarios.Check) {
		if o.Sysctls[host] == nil {
			t.Fatalf("no sysctls recorded for host %s", host)
		}
		o.Sysctls[host][key] = value
	}
}

// variable sets a server variable of the scenario as it ran.
func variable(name, value string) func(*testing.T, *checks.Observations, *scenarios.Check) {
	return func(_ *testing.T, o *checks.Observations, _ *scenarios.Check) {
		if o.Scenario.Server.Variables == nil {
			o.Scenario.Server.Variables = map[string]string{}
		}
		o.Scenario.Server.Variables[name] = value
	}
}

// dropStep removes a step's result: the step never ran.
func dropStep(name string) func(*testing.T, *checks.Observations, *scenarios.Check) {
	return func(t *testing.T, o *checks.Observations, _ *scenarios.Check) {
		if o.Steps[name] == nil {
			t.Fatalf("no step %s to drop", name)
		}
		delete(o.Steps, name)
	}
}

// setSQL rewrites a client step's statements in the scenario as it ran,
// as if the scenario had said them.
func setSQL(step string, sql ...string) func(*testing.T, *checks.Observations, *scenarios.Check) {
	return func(t *testing.T, o *checks.Observations, _ *scenarios.Check) {
		for _, st := range o.Scenario.Timeline {
			if c, ok := actions.ClientOf(st); ok && st.Name == step {
				c.SQL = sql
				return
			}
		}
		t.Fatalf("no client step %s", step)
	}
}

// both applies two alterations in turn.
func both(a, b func(*testing.T, *checks.Observations, *scenarios.Check)) func(*testing.T, *checks.Observations, *scenarios.Check) {
	return func(t *testing.T, o *checks.Observations, c *scenarios.Check) {
		a(t, o, c)
		b(t, o, c)
	}
}

const sampleErr = "netlink receive: no buffer space available"

// lastSeen is the last sample that showed the check's state, from the
// check's own verdict on the unaltered observations.
func lastSeen(t *testing.T, o *checks.Observations, c *scenarios.Check) time.Time {
	t.Helper()
	out := o.Check(c)
	obs, _ := out.Observed.(map[string]any)
	last, ok := obs["last_s"].(float64)
	if !ok {
		t.Fatalf("check %q saw no state to start from: %s", c.Name, out.Message)
	}
	return o.T0.Add(time.Duration(last*float64(time.Second)) + time.Millisecond)
}

// erroredAfterLastSighting makes every sample (sock_diag for socket_state,
// processlist otherwise) taken after the last one that showed the check's
// state an errored one: none of them shows the state gone.
func erroredAfterLastSighting(t *testing.T, o *checks.Observations, c *scenarios.Check) {
	after := lastSeen(t, o, c)
	n := 0
	if c.Type == "socket_state" {
		for i := range o.Sockets {
			if s := &o.Sockets[i]; s.Time.After(after) {
				s.Sockets, s.Error = nil, sampleErr
				n++
			}
		}
	} else {
		for i := range o.Threads {
			if s := &o.Threads[i]; s.Time.After(after) {
				s.Threads, s.Trx, s.Error = nil, nil, sampleErr
				n++
			}
		}
	}
	if n == 0 {
		t.Fatal("no sample after the last sighting to make errored")
	}
}

// allErrored makes every sample errored.
func allErrored(_ *testing.T, o *checks.Observations, _ *scenarios.Check) {
	for i := range o.Sockets {
		o.Sockets[i].Sockets, o.Sockets[i].Error = nil, sampleErr
	}
	for i := range o.Threads {
		o.Threads[i].Threads, o.Threads[i].Trx, o.Threads[i].Error = nil, nil, sampleErr
	}
}

// noSamples removes the sock_diag and processlist samples.
func noSamples(_ *testing.T, o *checks.Observations, _ *scenarios.Check) {
	o.Sockets, o.Threads = nil, nil
}

// withoutPackets replaces the analysis of host's capture with one that
// lacks the packets drop picks (given the packets in file order): a
// capture that missed them. The other packets keep their analysis.
func withoutPackets(host string, drop func(o *checks.Observations, pkts []capture.Packet) map[int]bool) func(*testing.T, *checks.Observations, *scenarios.Check) {
	return func(t *testing.T, o *checks.Observations, _ *scenarios.Check) {
		a := o.Analyses[host]
		if a == nil {
			t.Fatalf("no capture on %s", host)
		}
		frames := drop(o, a.Packets)
		if len(frames) == 0 {
			t.Fatalf("nothing to drop from %s.pcap", host)
		}
		cut := *a
		cut.Packets = nil
		for _, p := range a.Packets {
			if !frames[p.Frame] {
				cut.Packets = append(cut.Packets, p)
			}
		}
		o.Analyses[host] = &cut
	}
}

// firstSYN picks the first SYN of host from.
func firstSYN(from string) func(*checks.Observations, []capture.Packet) map[int]bool {
	return func(o *checks.Observations, pkts []capture.Packet) map[int]bool {
		for _, p := range pkts {
			if p.SYN && !p.ACK && p.Src.Addr() == o.Addresses[from] {
				return map[int]bool{p.Frame: true}
			}
		}
		return nil
	}
}

// firstTransmission picks the first transmission of the first data
// segment that host from retransmitted.
func firstTransmission(from string) func(*checks.Observations, []capture.Packet) map[int]bool {
	return func(o *checks.Observations, pkts []capture.Packet) map[int]bool {
		for _, r := range pkts {
			if r.Src.Addr() != o.Addresses[from] || !r.Retransmission || r.Payload == 0 {
				continue
			}
			for _, p := range pkts {
				if p.Src == r.Src && p.Seq == r.Seq && p.Payload > 0 && !p.Retransmission {
					return map[int]bool{p.Frame: true}
				}
			}
			return nil
		}
		return nil
	}
}

// receivedBeforeProbes picks every segment host prober received before
// its first keepalive probe: the capture starts with the probes.
func receivedBeforeProbes(prober string) func(*checks.Observations, []capture.Packet) map[int]bool {
	return func(o *checks.Observations, pkts []capture.Packet) map[int]bool {
		var first *capture.Packet
		for i := range pkts {
			if pkts[i].KeepAlive && pkts[i].Src.Addr() == o.Addresses[prober] {
				first = &pkts[i]
				break
			}
		}
		if first == nil {
			return nil
		}
		out := map[int]bool{}
		for _, p := range pkts {
			if p.Frame < first.Frame && p.Dst == first.Src {
				out[p.Frame] = true
			}
		}
		return out
	}
}

// unknownThread hides a step's server thread from the processlist
// samples: the step has neither a thread id nor a client address.
func unknownThread(step string) func(*testing.T, *checks.Observations, *scenarios.Check) {
	return func(t *testing.T, o *checks.Observations, _ *scenarios.Check) {
		res := o.Steps[step]
		if res == nil || res.Client == nil {
			t.Fatalf("no client step %s", step)
		}
		res.Client.ConnID, res.Client.Local = 0, ""
	}
}

var kindCases = []kindCase{
	// client_error
	{name: "model syn", run: "syn-dropped-mysql", check: "connect error and time to give up"},
	{name: "model data", run: "data-retransmit-mysql", check: "client error when the kernel gives up"},
	{name: "model innodb_lock_wait_timeout", run: "idle-trx-keepalive-mysql", check: "the waiter gets ERROR 1205 after innodb_lock_wait_timeout"},
	{name: "model session_end by keepalive", run: "idle-trx-keepalive-mysql", check: "the late waiter proceeds once the keepalive has ended the session"},
	{name: "model session_end by keepalive on mariadb", run: "idle-trx-keepalive-mariadb", check: "the late waiter proceeds once the keepalive has ended the session"},
	{name: "model session_end by wait_timeout", run: "idle-trx-wait-timeout-mysql", check: "the late waiter proceeds once the idle session is gone"},
	{name: "model syn on mariadb", run: "syn-dropped-mariadb", check: "connect error and time to give up"},
	// MariaDB's client fails otherwise than Oracle's: the article's error
	// is not this one.
	{name: "oracle's connect error on mariadb", run: "syn-dropped-mariadb",
		c:    &scenarios.Check{Name: "x", Type: "client_error", Step: "connect", Expect: &scenarios.Expect{Code: 2003, Errno: 110, Model: "syn"}},
		want: "code 2002, expected 2003; errno 115, expected 110"},
	{name: "ftwrl at once on mariadb", run: "slow-reader-ftwrl-mariadb", check: "FTWRL succeeds at once on MariaDB"},
	{name: "model lock_wait_timeout from the step's SET SESSION", run: "slow-reader-ftwrl-mysql", check: "FTWRL fails with 1205 after its lock_wait_timeout"},
	// The session's value wins over the server's variable.
	{name: "model lock_wait_timeout ignores the server variable", run: "slow-reader-ftwrl-mysql", check: "FTWRL fails with 1205 after its lock_wait_timeout",
		alter: variable("lock_wait_timeout", "9")},
	{name: "model lock_wait_timeout moves with the step's SET SESSION", run: "slow-reader-ftwrl-mysql", check: "FTWRL fails with 1205 after its lock_wait_timeout",
		alter: setSQL("ftwrl", "SET SESSION lock_wait_timeout = 5", "FLUSH TABLES WITH READ LOCK"), want: "expected 5.000s"},
	{name: "another code", run: "syn-dropped-mysql", check: "connect error and time to give up",
		alter: func(_ *testing.T, _ *checks.Observations, c *scenarios.Check) { c.Expect.Code = 2013 },
		want:  "code 2003, expected 2013"},
	{name: "an error where none is expected", run: "slow-reader-ftwrl-mysql",
		c:    &scenarios.Check{Name: "x", Type: "client_error", Step: "ftwrl"},
		want: "unexpected error Error 1205 (HY000)"},
	{name: "the step did not run", run: "syn-dropped-mysql", check: "connect error and time to give up",
		alter: dropStep("connect"), want: "step connect did not run"},
	// Model data times the ladder from the first retransmitted segment: a
	// capture without one leaves nothing to time it from.
	{name: "model data without a retransmission in the capture", run: "syn-dropped-mysql",
		c:    &scenarios.Check{Name: "x", Type: "client_error", Step: "connect", Expect: &scenarios.Expect{Code: 2003, Model: "data"}},
		want: "model data: no retransmitted data segment of the client in the capture to start the ladder from"},
	{name: "model data with the client's retransmissions missing from the capture", run: "data-retransmit-mysql", check: "client error when the kernel gives up",
		alter: withoutPackets("client", func(o *checks.Observations, pkts []capture.Packet) map[int]bool {
			out := map[int]bool{}
			for _, p := range pkts {
				if p.Retransmission && p.Src.Addr() == o.Addresses["client"] {
					out[p.Frame] = true
				}
			}
			return out
		}),
		want: "model data: no retransmitted data segment of the client in the capture"},
	{name: "model syn moves with tcp_syn_retries", run: "syn-dropped-mysql", check: "connect error and time to give up",
		alter: sysctl("client", "net.ipv4.tcp_syn_retries", "4"), want: "took 19.395s, expected 35.000s"},
	{name: "model innodb_lock_wait_timeout moves with the server variable", run: "idle-trx-keepalive-mysql", check: "the waiter gets ERROR 1205 after innodb_lock_wait_timeout",
		alter: variable("innodb_lock_wait_timeout", "8"), want: "expected 8.000s"},
	{name: "model session_end moves with the server's keepalive", run: "idle-trx-keepalive-mysql", check: "the late waiter proceeds once the keepalive has ended the session",
		alter: sysctl("server", "net.ipv4.tcp_keepalive_time", "8"), want: "expected 5.001s"},
	{name: "model session_end with the other step missing", run: "idle-trx-keepalive-mysql", check: "the late waiter proceeds once the keepalive has ended the session",
		alter: dropStep("lock"), want: "model session_end: step lock did not run"},

	// data_retransmits
	{name: "client", run: "data-retransmit-mysql", check: "client data retransmissions, tail loss probe included"},
	{name: "server", run: "running-statement-mysql", check: "the server retransmits the statement's result until tcp_retries2"},
	{name: "another count", run: "data-retransmit-mysql", check: "client data retransmissions, tail loss probe included",
		alter: func(_ *testing.T, _ *checks.Observations, c *scenarios.Check) {
			c.Expect = &scenarios.Expect{Count: count(11)}
		},
		want: "6 retransmissions, expected 11"},
	// The ladder starts at the segment's first transmission: without it
	// the first interval is unknown, and comparing the rest would pass a
	// ladder whose start is missing.
	{name: "first transmission missing", run: "data-retransmit-mysql", check: "client data retransmissions, tail loss probe included",
		alter: withoutPackets("client", firstTransmission("client")),
		want:  "5 intervals observed, expected 6: the packet the ladder starts from is missing from the capture"},
	{name: "model moves with tcp_retries2", run: "data-retransmit-mysql", check: "client data retransmissions, tail loss probe included",
		alter: sysctl("client", "net.ipv4.tcp_retries2", "6"), want: "6 retransmissions, expected 7"},
	// expect.count agrees with what was seen but not with the model: the
	// model's intervals are for another count, so the times cannot be
	// compared.
	{name: "count other than the model's", run: "data-retransmit-mysql", check: "client data retransmissions, tail loss probe included",
		alter: both(sysctl("client", "net.ipv4.tcp_retries2", "6"), func(_ *testing.T, _ *checks.Observations, c *scenarios.Check) {
			c.Expect = &scenarios.Expect{Count: count(6)}
		}),
		want: "6 intervals observed, expected 7: expect.count 6 is not the model's 7, whose intervals cannot be compared (set expect.intervals too)"},
	// Nothing retransmitted is only a pass if the capture covers the time
	// the model's ladder would have taken.
	{name: "zero retransmissions, capture shorter than the ladder", run: "kill-remedy-mysql",
		c:    &scenarios.Check{Name: "x", Type: "data_retransmits", Step: "waiter", Host: "server", Expect: &scenarios.Expect{Count: count(0)}},
		want: "none seen, but the capture of the flow covers"},
	{name: "no flow", run: "data-retransmit-mysql", check: "client data retransmissions, tail loss probe included",
		alter: func(_ *testing.T, o *checks.Observations, _ *scenarios.Check) {
			o.Analyses = map[string]*capture.Analysis{}
		},
		want: "no capture on host client: add it to captures"},

	// ends_after
	{name: "released when the reader is gone", run: "slow-reader-ftwrl-mysql", check: "the query completes only once the reader is gone"},
	{name: "released when the cli reader is gone", run: "slow-reader-ftwrl-mysql", check: "the query completes only once the cli reader is gone"},
	{name: "ended by the kill", run: "slow-reader-kill-mysql", check: "the KILL ends the reader's thread at once"},
	{name: "released by the kill", run: "slow-reader-kill-mysql", check: "the query completes as soon as the reader is killed"},
	{name: "ended by the kill on mariadb", run: "slow-reader-kill-mariadb", check: "the KILL ends the reader's thread at once"},
	// The waiter started once FTWRL had failed: it never waited for it.
	{name: "the waiter never waited", run: "slow-reader-ftwrl-mysql",
		c:    &scenarios.Check{Name: "x", Type: "ends_after", Step: "waiter", Expect: &scenarios.Expect{After: "ftwrl"}},
		want: "step waiter started at +3.505s, after ftwrl was over (+3.005s): it never waited for it"},
	// FTWRL gave up on its own in the middle of the cli reader's long
	// statement: it was over before the reader was.
	{name: "released in the middle of a long step", run: "slow-reader-ftwrl-mysql",
		c:    &scenarios.Check{Name: "x", Type: "ends_after", Step: "ftwrl", Expect: &scenarios.Expect{After: "reader-cli"}},
		want: "step ftwrl was over at +3.005s, before reader-cli was (+6.101s)"},
	// The killed reader's thread is gone at once: the waiter is over after
	// it, although the reader's client only hears of it at 10 s.
	{name: "released when the killed reader's thread is gone", run: "slow-reader-kill-mysql", check: "the query completes as soon as the reader is killed",
		alter: func(_ *testing.T, _ *checks.Observations, c *scenarios.Check) { c.Expect.After = "reader" }},
	// Without its thread in the samples the reader counts as over at its
	// end; the waiter, over in its middle, was released by something else.
	{name: "released in the middle of a long step whose thread is unknown", run: "slow-reader-kill-mysql", check: "the query completes as soon as the reader is killed",
		alter: both(unknownThread("reader"), func(_ *testing.T, _ *checks.Observations, c *scenarios.Check) { c.Expect.After = "reader" }),
		want:  "step waiter was over at +6.003s, before reader was (+10.014s)"},
	{name: "over long after the other", run: "slow-reader-ftwrl-mysql",
		c:    &scenarios.Check{Name: "x", Type: "ends_after", Step: "reader", Expect: &scenarios.Expect{After: "ftwrl"}},
		want: "was over 2.996s after ftwrl was, expected within 1.000s"},
	{name: "the other step did not run", run: "slow-reader-kill-mysql", check: "the query completes as soon as the reader is killed",
		alter: dropStep("kill-reader"), want: "step kill-reader did not run"},

	// iptables_counter
	{name: "model syn", run: "syn-dropped-mysql", check: "the server's rule dropped every SYN"},
	{name: "model syn on mariadb", run: "syn-dropped-mariadb", check: "the server's rule dropped every SYN"},
	{name: "count", run: "syn-dropped-mysql", check: "the server's rule dropped every SYN",
		alter: func(_ *testing.T, _ *checks.Observations, c *scenarios.Check) {
			c.Expect = &scenarios.Expect{Count: count(8)}
		}},
	{name: "no counters", run: "syn-dropped-mysql", check: "the server's rule dropped every SYN",
		alter: func(_ *testing.T, o *checks.Observations, _ *scenarios.Check) { o.Counters = nil },
		want:  "no labrun rule counters on server for step connect"},
	{name: "no counters for the host", run: "syn-dropped-mysql",
		c:    &scenarios.Check{Name: "x", Type: "iptables_counter", Step: "connect", Host: "client", Expect: &scenarios.Expect{Model: "syn"}},
		want: "no labrun rule counters on client for step connect"},
	{name: "model syn moves with tcp_syn_retries", run: "syn-dropped-mysql", check: "the server's rule dropped every SYN",
		alter: sysctl("client", "net.ipv4.tcp_syn_retries", "2"), want: "8 packets matched, expected 6"},
	{name: "another count", run: "syn-dropped-mysql", check: "the server's rule dropped every SYN",
		alter: func(_ *testing.T, _ *checks.Observations, c *scenarios.Check) {
			c.Expect = &scenarios.Expect{Count: count(7)}
		},
		want: "8 packets matched, expected 7"},
	{name: "model syn without its step", run: "syn-dropped-mysql",
		c:     &scenarios.Check{Name: "x", Type: "iptables_counter", Step: "connect", Host: "server", Expect: &scenarios.Expect{Model: "syn"}},
		alter: dropStep("connect"), want: "no expectation: step connect did not run"},

	// keepalive_probes
	{name: "client", run: "third-ack-dropped-mysql", check: "client keepalive probes"},
	{name: "server", run: "idle-trx-keepalive-mysql", check: "the server's keepalive probes the vanished client"},
	{name: "server on mariadb", run: "idle-trx-keepalive-mariadb", check: "the server's keepalive probes the vanished client"},
	// The first interval counts from the last segment the prober
	// received; without it the ladder's start is missing.
	{name: "the last segment received is missing", run: "idle-trx-keepalive-mysql", check: "the server's keepalive probes the vanished client",
		alter: withoutPackets("server", receivedBeforeProbes("server")),
		want:  "2 intervals observed, expected 3: the packet the ladder starts from is missing from the capture"},
	{name: "model moves with tcp_keepalive_probes", run: "idle-trx-keepalive-mysql", check: "the server's keepalive probes the vanished client",
		alter: sysctl("server", "net.ipv4.tcp_keepalive_probes", "5"), want: "3 keepalive probes, expected 5"},
	{name: "model moves with tcp_keepalive_intvl", run: "third-ack-dropped-mysql", check: "client keepalive probes",
		alter: sysctl("client", "net.ipv4.tcp_keepalive_intvl", "3"), want: "interval 2 is 2.016s, expected 3.000s"},

	// query_value
	{name: "rolled back", run: "idle-trx-keepalive-mysql", check: "the rolled-back row is unchanged"},
	{name: "the waiter's update", run: "kill-remedy-mysql", check: "the killed transaction was rolled back, the waiter's update applied"},
	{name: "another value", run: "kill-remedy-mysql", check: "the killed transaction was rolled back, the waiter's update applied",
		alter: func(_ *testing.T, _ *checks.Observations, c *scenarios.Check) { c.Expect.Value = text("0") },
		want:  `returned "100", expected "0"`},
	{name: "no statement", run: "kill-remedy-mysql", check: "the killed transaction was rolled back, the waiter's update applied",
		alter: func(_ *testing.T, o *checks.Observations, _ *scenarios.Check) {
			o.Steps["read-row"].Client.Statements = nil
		},
		want: "step read-row ran no statement"},

	// socket_state
	{name: "model synack", run: "third-ack-dropped-mysql", check: "server holds the request in SYN_RECV until it gives up"},
	{name: "for and gone", run: "third-ack-dropped-mysql", check: "client is ESTABLISHED while it waits for the greeting"},
	{name: "model session_end by keepalive", run: "idle-trx-keepalive-mysql", check: "server keeps the vanished client's connection ESTABLISHED"},
	{name: "model session_end by keepalive on mariadb", run: "idle-trx-keepalive-mariadb", check: "server keeps the vanished client's connection ESTABLISHED"},
	{name: "model session_end by wait_timeout", run: "idle-trx-wait-timeout-mysql", check: "server keeps the vanished client's connection ESTABLISHED"},
	// The server's sysctls put the session's end elsewhere than where it
	// was seen: the model moved, the run did not.
	{name: "model session_end, keepalive later than seen", run: "idle-trx-keepalive-mysql", check: "server keeps the vanished client's connection ESTABLISHED",
		alter: sysctl("server", "net.ipv4.tcp_keepalive_time", "8"), want: `expected at +14.002s`},
	{name: "model session_end, keepalive sooner than wait_timeout", run: "idle-trx-wait-timeout-mysql", check: "server keeps the vanished client's connection ESTABLISHED",
		alter: both(sysctl("server", "net.ipv4.tcp_keepalive_time", "2"), both(sysctl("server", "net.ipv4.tcp_keepalive_intvl", "1"), sysctl("server", "net.ipv4.tcp_keepalive_probes", "3"))),
		want:  `left "ESTABLISHED" between`},
	{name: "model session_end, wait_timeout later than seen", run: "idle-trx-wait-timeout-mysql", check: "server keeps the vanished client's connection ESTABLISHED",
		alter: variable("wait_timeout", "20"), want: `expected at +20.001s`},
	{name: "model synack moves with tcp_synack_retries", run: "third-ack-dropped-mysql", check: "server holds the request in SYN_RECV until it gives up",
		alter: sysctl("server", "net.ipv4.tcp_synack_retries", "3"), want: `left "SYN_RECV" between`},
	// An errored sample shows neither the state nor its absence: samples
	// that all errored after the last sighting do not show it gone.
	{name: "errored samples after the last sighting", run: "idle-trx-keepalive-mysql", check: "server keeps the vanished client's connection ESTABLISHED",
		alter: erroredAfterLastSighting, want: `still in "ESTABLISHED" at the last good sample`},
	{name: "errored samples after the last sighting, gone", run: "third-ack-dropped-mysql", check: "client is ESTABLISHED while it waits for the greeting",
		alter: erroredAfterLastSighting, want: `still in "ESTABLISHED" at the last good sample`},
	{name: "all samples errored", run: "third-ack-dropped-mysql", check: "server holds the request in SYN_RECV until it gives up",
		alter: allErrored, want: "samples in sock_diag on server errored (first: " + sampleErr + ")"},
	{name: "no samples", run: "third-ack-dropped-mysql", check: "server holds the request in SYN_RECV until it gives up",
		alter: noSamples, want: "no samples in sock_diag on server"},
	{name: "never in the state", run: "idle-trx-keepalive-mysql", check: "server keeps the vanished client's connection ESTABLISHED",
		alter: func(_ *testing.T, _ *checks.Observations, c *scenarios.Check) { c.Expect.State = "CLOSE_WAIT" },
		want:  `never seen in "CLOSE_WAIT"`},

	// syn_retransmits
	{name: "dropped SYNs", run: "syn-dropped-mysql", check: "client SYN retransmissions and backoff"},
	{name: "dropped SYN-ACKs", run: "synack-dropped-mysql", check: "client SYN retransmissions"},
	{name: "dropped SYNs on mariadb", run: "syn-dropped-mariadb", check: "client SYN retransmissions and backoff"},
	{name: "intervals of another length", run: "syn-dropped-mysql", check: "client SYN retransmissions and backoff",
		alter: func(_ *testing.T, _ *checks.Observations, c *scenarios.Check) {
			c.Expect = &scenarios.Expect{Intervals: durs(time.Second, time.Second, time.Second, time.Second, time.Second, 2*time.Second)}
		},
		want: "7 intervals observed, expected 6: expect.intervals lists 6 intervals for 7 retransmissions"},
	// The first SYN is what the ladder counts from.
	{name: "first SYN missing", run: "syn-dropped-mysql", check: "client SYN retransmissions and backoff",
		alter: withoutPackets("client", firstSYN("client")), want: "6 retransmissions, expected 7"},
	{name: "model moves with tcp_syn_linear_timeouts", run: "syn-dropped-mysql", check: "client SYN retransmissions and backoff",
		alter: sysctl("client", "net.ipv4.tcp_syn_linear_timeouts", "0"), want: "7 retransmissions, expected 3"},
	{name: "intervals other than seen", run: "syn-dropped-mysql", check: "client SYN retransmissions and backoff",
		alter: func(_ *testing.T, _ *checks.Observations, c *scenarios.Check) {
			c.Expect = &scenarios.Expect{Intervals: durs(time.Second, 2*time.Second, 2*time.Second, 2*time.Second, 2*time.Second, 2*time.Second, 4*time.Second)}
		},
		want: "interval 2 is 1.024s, expected 2.000s"},
	{name: "zero retransmissions, capture shorter than the ladder", run: "kill-remedy-mysql",
		c:    &scenarios.Check{Name: "x", Type: "syn_retransmits", Step: "waiter", Host: "server", Expect: &scenarios.Expect{Count: count(0)}},
		want: "none seen, but the capture of the flow covers"},
	{name: "no flow in the step's time", run: "syn-dropped-mysql", check: "client SYN retransmissions and backoff",
		alter: func(_ *testing.T, o *checks.Observations, _ *scenarios.Check) {
			o.Steps["connect"].Start = o.Steps["connect"].Start.Add(time.Minute)
			o.Steps["connect"].End = o.Steps["connect"].End.Add(time.Minute)
		},
		want: "no TCP flow from 10.89.0.10 to 10.89.0.11:3306 during step connect in client.pcap"},

	// synack_retransmits
	{name: "duplicate SYNs", run: "synack-dropped-mysql", check: "server SYN-ACKs, timer and duplicate SYNs"},
	{name: "timer only", run: "third-ack-dropped-mysql", check: "server SYN-ACK retransmissions"},
	{name: "another count", run: "third-ack-dropped-mysql", check: "server SYN-ACK retransmissions",
		alter: func(_ *testing.T, _ *checks.Observations, c *scenarios.Check) {
			c.Expect = &scenarios.Expect{Count: count(3)}
		},
		want: "2 SYN-ACK retransmissions, expected 3"},
	// expect.count is what was seen, but the model (tcp_synack_retries 3
	// now) gives offsets for another count: they cannot be checked.
	{name: "count other than the model's", run: "third-ack-dropped-mysql", check: "server SYN-ACK retransmissions",
		alter: both(sysctl("server", "net.ipv4.tcp_synack_retries", "3"), func(_ *testing.T, _ *checks.Observations, c *scenarios.Check) {
			c.Expect = &scenarios.Expect{Count: count(2)}
		}),
		want: "3 SYN-ACKs seen, the model gives offsets for 4: their times cannot be checked"},
	{name: "model moves with tcp_synack_retries", run: "synack-dropped-mysql", check: "server SYN-ACKs, timer and duplicate SYNs",
		alter: sysctl("server", "net.ipv4.tcp_synack_retries", "2"), want: "2 SYN-ACK retransmissions, expected 4"},
	{name: "no SYN-ACK", run: "syn-dropped-mysql",
		c:    &scenarios.Check{Name: "x", Type: "synack_retransmits", Step: "connect", Host: "server"},
		want: "no SYN-ACK from the server in server.pcap"},

	// thread_state
	{name: "sending to client", run: "slow-reader-ftwrl-mysql", check: "the reader's thread is stuck sending"},
	{name: "waiting for table flush", run: "slow-reader-ftwrl-mysql", check: "the next query waits for the table flush"},
	{name: "writing to net on mariadb", run: "slow-reader-ftwrl-mariadb", check: "the reader's thread is stuck writing (MariaDB's name)"},
	{name: "cli reader on mariadb", run: "slow-reader-ftwrl-mariadb", check: "the cli reader's thread is stuck writing (MariaDB's name)"},
	{name: "writing to net until the kill on mariadb", run: "slow-reader-kill-mariadb", check: "the reader's thread is stuck writing until the KILL (MariaDB's name)"},
	// MariaDB names the state otherwise.
	{name: "mysql's state on mariadb", run: "slow-reader-ftwrl-mariadb",
		c:    &scenarios.Check{Name: "x", Type: "thread_state", Step: "reader", Expect: &scenarios.Expect{State: "Sending to client"}},
		want: `thread of step reader never seen in "Sending to client"`},
	{name: "not for long enough", run: "slow-reader-ftwrl-mysql", check: "the reader's thread is stuck sending",
		alter: func(_ *testing.T, _ *checks.Observations, c *scenarios.Check) {
			c.Expect.For = scenarios.Duration(8 * time.Second)
		},
		want: `thread of step reader in "Sending to client" for 5.900s, expected at least 8s`},
	{name: "errored samples after the last sighting", run: "slow-reader-ftwrl-mysql", check: "the reader's thread is stuck sending",
		alter: erroredAfterLastSighting, want: `still in "Sending to client" at the last good sample`},
	{name: "all samples errored", run: "slow-reader-ftwrl-mysql", check: "the reader's thread is stuck sending",
		alter: allErrored, want: "samples in server-threads.json errored (first: " + sampleErr + ")"},
	{name: "no processlist samples", run: "slow-reader-ftwrl-mysql", check: "the reader's thread is stuck sending",
		alter: noSamples, want: "no processlist samples: add observe.processlist"},
	{name: "model session_end", run: "idle-trx-keepalive-mysql",
		c:     &scenarios.Check{Name: "x", Type: "thread_state", Step: "lock", Expect: &scenarios.Expect{State: "Sleep", Model: "session_end"}},
		alter: sysctl("server", "net.ipv4.tcp_keepalive_probes", "6"), want: `expected at +16.002s`},

	// trx_state
	{name: "lock wait", run: "kill-remedy-mysql", check: "the waiter waits in LOCK WAIT"},
	{name: "ended by kill", run: "kill-remedy-mysql", check: "KILL ends the vanished client's transaction"},
	{name: "model session_end by keepalive", run: "idle-trx-keepalive-mysql", check: "the transaction stays RUNNING until the keepalive gives up"},
	{name: "model session_end by keepalive on mariadb", run: "idle-trx-keepalive-mariadb", check: "the transaction stays RUNNING until the keepalive gives up"},
	{name: "model session_end by wait_timeout", run: "idle-trx-wait-timeout-mysql", check: "the transaction stays RUNNING until wait_timeout"},
	{name: "model session_end, wait_timeout sooner than seen", run: "idle-trx-wait-timeout-mysql", check: "the transaction stays RUNNING until wait_timeout",
		alter: variable("wait_timeout", "5"), want: `expected at +5.001s`},
	{name: "errored samples after the last sighting", run: "idle-trx-keepalive-mysql", check: "the transaction stays RUNNING until the keepalive gives up",
		alter: erroredAfterLastSighting, want: `still in "RUNNING" at the last good sample`},
	{name: "errored samples after the last sighting, gone", run: "kill-remedy-mysql", check: "KILL ends the vanished client's transaction",
		alter: erroredAfterLastSighting, want: `still in "RUNNING" at the last good sample`},
	{name: "all samples errored", run: "kill-remedy-mysql", check: "the waiter waits in LOCK WAIT",
		alter: allErrored, want: "samples in server-threads.json errored"},
	{name: "no thread id", run: "kill-remedy-mysql", check: "the waiter waits in LOCK WAIT",
		alter: unknownThread("waiter"), want: "step waiter has no server thread id: use the go client"},
	{name: "the step did not run", run: "kill-remedy-mysql", check: "the waiter waits in LOCK WAIT",
		alter: dropStep("waiter"), want: "step waiter did not run"},

	// write_timeout
	{name: "socket leaves ESTABLISHED on mysql", run: "slow-reader-ftwrl-mysql", check: "the server gives up on the reader after net_write_timeout"},
	{name: "cli reader on mysql", run: "slow-reader-ftwrl-mysql", check: "the server gives up on the cli reader after net_write_timeout"},
	{name: "server RST on mariadb", run: "slow-reader-ftwrl-mariadb", check: "the server gives up on the reader after net_write_timeout"},
	{name: "processlist only", run: "slow-reader-ftwrl-mysql", check: "the server gives up on the reader after net_write_timeout",
		alter: func(_ *testing.T, o *checks.Observations, _ *scenarios.Check) { o.Sockets = nil }},
	{name: "another elapsed", run: "slow-reader-ftwrl-mysql", check: "the server gives up on the reader after net_write_timeout",
		alter: func(_ *testing.T, _ *checks.Observations, c *scenarios.Check) {
			c.Expect = &scenarios.Expect{Elapsed: dur(3 * time.Second)}
		},
		want: "the server gave up 5.998s after the window closed, expected 3.000s"},
	{name: "model moves with net_write_timeout", run: "slow-reader-ftwrl-mariadb", check: "the server gives up on the reader after net_write_timeout",
		alter: variable("net_write_timeout", "12"), want: "expected 12.000s"},
	// Samples that errored after the stall show no abort: the server
	// never gave up, as far as the run can tell.
	{name: "samples errored after the stall", run: "slow-reader-ftwrl-mysql", check: "the server gives up on the reader after net_write_timeout",
		alter: func(_ *testing.T, o *checks.Observations, _ *scenarios.Check) {
			at := o.T0.Add(time.Second)
			for i := range o.Sockets {
				if o.Sockets[i].Time.After(at) {
					o.Sockets[i].Sockets, o.Sockets[i].Error = nil, sampleErr
				}
			}
			for i := range o.Threads {
				if o.Threads[i].Time.After(at) {
					o.Threads[i].Threads, o.Threads[i].Error = nil, sampleErr
				}
			}
		},
		want: "samples of the server's socket and thread after the window closed errored"},
	{name: "no stall", run: "slow-reader-ftwrl-mysql",
		c:    &scenarios.Check{Name: "x", Type: "write_timeout", Step: "waiter"},
		want: "no stall: the client's window never stayed closed long enough for a zero-window probe"},

	// zero_window
	{name: "go reader on mysql", run: "slow-reader-ftwrl-mysql", check: "the reader's window closes and the server probes it"},
	{name: "cli reader on mysql", run: "slow-reader-ftwrl-mysql", check: "the cli reader's window closes and the server probes it"},
	{name: "reset by mariadb", run: "slow-reader-ftwrl-mariadb", check: "the reader's window closes and the server probes it"},
	{name: "killed reader", run: "slow-reader-kill-mysql", check: "the reader's window closes and the server probes it"},
	{name: "killed reader on mariadb", run: "slow-reader-kill-mariadb", check: "the reader's window closes and the server probes it"},
	{name: "another count", run: "slow-reader-ftwrl-mysql", check: "the reader's window closes and the server probes it",
		alter: func(_ *testing.T, _ *checks.Observations, c *scenarios.Check) {
			c.Expect = &scenarios.Expect{Count: count(3)}
		},
		want: "5 zero-window probes, expected 3"},
	{name: "window never closed", run: "slow-reader-ftwrl-mysql",
		c:    &scenarios.Check{Name: "x", Type: "zero_window", Step: "ftwrl"},
		want: "the client's window never closed"},
	{name: "intervals of another length", run: "slow-reader-ftwrl-mariadb", check: "the reader's window closes and the server probes it",
		alter: func(_ *testing.T, _ *checks.Observations, c *scenarios.Check) {
			c.Expect = &scenarios.Expect{Intervals: durs(200*time.Millisecond, 400*time.Millisecond, 800*time.Millisecond)}
		},
		want: "4 intervals observed, expected 3: expect.intervals lists 3 intervals for 4 zero-window probes"},
	{name: "no capture", run: "slow-reader-ftwrl-mysql", check: "the reader's window closes and the server probes it",
		alter: func(_ *testing.T, o *checks.Observations, _ *scenarios.Check) {
			o.Analyses = map[string]*capture.Analysis{}
		},
		want: "no capture on host client: add it to captures"},

	// request_ack
	{name: "bare ack on mysql", run: "freeze-mysql", check: labAAck},
	{name: "bare ack on mariadb", run: "freeze-mariadb", check: labAAck},
	{name: "ack missed by the capture", run: "freeze-mysql", check: labAAck,
		alter: withoutPackets("server", serverACKOfRequest), want: "ms after the request, more than 200 ms"},
	{name: "no mysql decoded", run: "freeze-mysql", check: labAAck,
		alter: func(_ *testing.T, o *checks.Observations, _ *scenarios.Check) {
			a := *o.Analyses["server"]
			a.MySQL = nil
			o.Analyses["server"] = &a
		},
		want: "server.pcap has no MySQL exchange on flow"},

	// late_reply
	{name: "after the client closed on mysql", run: "freeze-mysql", check: labALate},
	{name: "after the client closed on mariadb", run: "freeze-mariadb", check: labALate},
	{name: "a longer read timeout moves the model", run: "freeze-mysql", check: labALate,
		alter: readTimeout("app", 5*time.Second), want: "the client closed before the reply, though its read timeout was the longer"},
	{name: "a later thaw moves the model", run: "freeze-mysql", check: labALate,
		alter: thawLater("stall", 2*time.Second), want: "expected at the thaw"},
	{name: "no RST seen", run: "freeze-mysql", check: labALate,
		alter: withoutPackets("server", clientRSTs), want: "the client's kernel sent no RST after the reply"},
	{name: "no fault recorded", run: "freeze-mysql", check: labALate,
		alter: func(_ *testing.T, o *checks.Observations, _ *scenarios.Check) { o.Steps["stall"].Fault = nil },
		want:  "no model: no disk fault was in force when the request went out"},

	// client_close
	{name: "without COM_QUIT on mysql", run: "freeze-mysql", check: labAClose},
	{name: "without COM_QUIT on mariadb", run: "freeze-mariadb", check: labAClose},
	{name: "a shorter read timeout moves the model", run: "freeze-mysql", check: labAClose,
		alter: readTimeout("app", 800*time.Millisecond), want: "the client closed 1.50"},
	{name: "FIN missed by the capture", run: "freeze-mysql", check: labAClose,
		alter: withoutPackets("server", clientFINs), want: "the client never closed the connection in server.pcap"},

	// A pooled connection the server ended at wait_timeout.
	{name: "pooled connection ended at wait_timeout", run: "pool-wait-timeout-mysql", check: "the server ends the idle pooled connection at wait_timeout"},
	{name: "the pool dials anew", run: "pool-wait-timeout-mysql", check: "the pool replaces the dead connection and the statement succeeds"},
	{name: "a longer wait_timeout moves the model", run: "pool-wait-timeout-mysql", check: "the server ends the idle pooled connection at wait_timeout",
		alter: variable("wait_timeout", "5"), want: "expected"},

	// A throttle and a shared load only bound the reply.
	{name: "by the throttle's end", run: "throttle-mysql", check: "the result comes by the end of the throttle"},
	{name: "by the writer's last batch", run: "load-mysql", check: "the result comes by the end of the competing writer's last batch"},
	{name: "after the throttle's end", run: "throttle-mysql", check: "the result comes by the end of the throttle",
		alter: thawLater("slow", -2*time.Second), want: "after the end of the throttle"},
	{name: "closed at the read timeout under a throttle", run: "throttle-mysql", check: "the client closes at its read timeout, or waits for the result"},
	{name: "read timeout under a shared load", run: "load-mysql", check: "the client's read timeout decides, and its error names no cause"},
	{name: "device idle under the throttle", run: "throttle-mysql", check: "the device stays nearly idle while the server waits in the throttle"},
	{name: "device busy under the throttle", run: "throttle-mysql", check: "the device stays nearly idle while the server waits in the throttle",
		alter: func(_ *testing.T, o *checks.Observations, _ *scenarios.Check) {
			for i := range o.IO {
				o.IO[i].Util = 0.9
			}
		},
		want: "the device was busy 90% of the throttle's time"},
	{name: "shared slow disk saturated", run: "load-mysql", check: "the competing writer saturates the slow disk it shares, while the device idles"},
	{name: "shared slow disk not saturated", run: "load-mysql", check: "the competing writer saturates the slow disk it shares, while the device idles",
		alter: func(_ *testing.T, o *checks.Observations, _ *scenarios.Check) {
			o.Steps["transcode"].Fault.Detail["group_write_bytes"] = float64(1 << 20)
		},
		want: "the shared disk took 1048576 bytes of writes"},

	// client_error, model read_timeout
	{name: "invalid connection at the read timeout", run: "freeze-mysql", check: labAError},
	{name: "invalid connection on mariadb", run: "freeze-mariadb", check: labAError},
	{name: "no driver log", run: "freeze-mysql", check: labAError,
		alter: func(_ *testing.T, o *checks.Observations, _ *scenarios.Check) {
			cr := o.Steps["app"].Client
			var kept []client.Event
			for _, e := range cr.Events {
				if !strings.HasPrefix(e.What, "driver: ") {
					kept = append(kept, e)
				}
			}
			cr.Events = kept
		},
		want: `the driver's log has no "i/o timeout"`},
	{name: "a longer read timeout expects no error", run: "freeze-mysql", check: labAError,
		alter: readTimeout("app", 5*time.Second), want: "unexpected error invalid connection"},

	// io_stat
	{name: "nothing written while frozen", run: "freeze-mysql", check: labAIO},
	{name: "a write while frozen", run: "freeze-mysql", check: labAIO,
		alter: func(_ *testing.T, o *checks.Observations, _ *scenarios.Check) {
			f := o.Steps["stall"].Fault
			for i := range o.IO {
				if o.IO[i].Time.After(f.Applied.Add(time.Second)) {
					o.IO[i].WriteBytes = 4096
					return
				}
			}
		},
		want: "4096 bytes reached the device while the filesystem was frozen"},
	{name: "an errored sample", run: "freeze-mysql", check: labAIO,
		alter: func(_ *testing.T, o *checks.Observations, _ *scenarios.Check) {
			f := o.Steps["stall"].Fault
			for i := range o.IO {
				if o.IO[i].Time.After(f.Applied.Add(time.Second)) {
					o.IO[i].Err = "open /sys/block/loop9/stat: no such file or directory"
					return
				}
			}
		},
		want: "1 IO samples during the freeze failed"},
	{name: "no samples", run: "freeze-mysql", check: labAIO,
		alter: func(_ *testing.T, o *checks.Observations, _ *scenarios.Check) { o.IO = nil },
		want:  "no IO samples: observe.io took none"},
}

// The recorded Lab A checks.
const (
	labAAck   = "the server's kernel acknowledges the request at once, with no result"
	labALate  = "the result arrives at the thaw, after the client closed, and meets RSTs"
	labAClose = "the client closes at its read timeout"
	labAError = "the client gives up at its read timeout with \"invalid connection\""
	labAIO    = "the disk sees no IO while it is frozen"
)

// readTimeout sets a client step's read_timeout in the scenario as it ran:
// the model moves, the observations do not.
func readTimeout(step string, d time.Duration) func(*testing.T, *checks.Observations, *scenarios.Check) {
	return func(t *testing.T, o *checks.Observations, _ *scenarios.Check) {
		for _, st := range o.Scenario.Timeline {
			if c, ok := actions.ClientOf(st); ok && st.Name == step {
				c.ReadTimeout = scenarios.Duration(d)
				return
			}
		}
		t.Fatalf("no client step %s", step)
	}
}

// thawLater records a fault step's end later than it was.
func thawLater(step string, d time.Duration) func(*testing.T, *checks.Observations, *scenarios.Check) {
	return func(t *testing.T, o *checks.Observations, _ *scenarios.Check) {
		f := o.Steps[step].Fault
		if f == nil {
			t.Fatalf("step %s recorded no fault", step)
		}
		f.Ended = f.Ended.Add(d)
	}
}

// serverACKOfRequest picks the server's bare ACKs that follow the
// client's request of step app.
func serverACKOfRequest(o *checks.Observations, pkts []capture.Packet) map[int]bool {
	srv := o.Addresses[o.Scenario.Server.Host]
	app := o.Steps["app"]
	out := map[int]bool{}
	for _, p := range pkts {
		if p.Src.Addr() == srv && p.Payload == 0 && !p.FIN && !p.RST && !p.SYN && p.Time.After(app.Start.Add(time.Millisecond)) && p.Time.Before(app.End) {
			out[p.Frame] = true
		}
	}
	return out
}

// clientRSTs and clientFINs pick the client's RSTs and FINs.
func clientRSTs(o *checks.Observations, pkts []capture.Packet) map[int]bool {
	out := map[int]bool{}
	for _, p := range pkts {
		if p.RST && p.Src.Addr() == o.Addresses["client"] {
			out[p.Frame] = true
		}
	}
	return out
}

func clientFINs(o *checks.Observations, pkts []capture.Packet) map[int]bool {
	out := map[int]bool{}
	for _, p := range pkts {
		if p.FIN && p.Src.Addr() == o.Addresses["client"] {
			out[p.Frame] = true
		}
	}
	return out
}

// caseCheck is the check a case evaluates: the recorded one (a copy,
// which alter may change) or the one written in the case.
func caseCheck(t *testing.T, o *checks.Observations, tc kindCase) *scenarios.Check {
	t.Helper()
	switch {
	case tc.check != "" && tc.c == nil:
		return recordedCheck(t, o, tc.check)
	case tc.check == "" && tc.c != nil:
		c := *tc.c
		if tc.c.Expect != nil {
			e := *tc.c.Expect
			c.Expect = &e
		}
		return &c
	}
	t.Fatal("a case names a recorded check or writes one, not both")
	return nil
}

// caseKind is the kind a case evaluates, read from the recorded scenario
// for a recorded check.
func caseKind(t *testing.T, tc kindCase) string {
	t.Helper()
	if tc.c != nil {
		return tc.c.Type
	}
	sc, err := scenarios.Load(filepath.Join("testdata", "runs", tc.run, "scenario.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return caseCheck(t, &checks.Observations{Scenario: sc}, tc).Type
}

func TestKinds(t *testing.T) {
	for _, tc := range kindCases {
		t.Run(caseKind(t, tc)+"/"+tc.run+"/"+tc.name, func(t *testing.T) {
			o := loadRun(t, tc.run)
			c := caseCheck(t, o, tc)
			if tc.alter != nil {
				tc.alter(t, o, c)
			}
			out := o.Check(c)
			if out.Skipped {
				t.Fatalf("%s was skipped (%s): a case must evaluate its check", c.Type, out.Message)
			}
			if tc.want == "" {
				if !out.Passed {
					t.Errorf("%s failed: %s", c.Type, out.Message)
				}
				return
			}
			if out.Passed {
				t.Errorf("%s passed, want a failure saying %q (observed %v)", c.Type, tc.want, out.Observed)
				return
			}
			if !strings.Contains(out.Message, tc.want) {
				t.Errorf("%s failed with %q, want a message containing %q", c.Type, out.Message, tc.want)
			}
		})
	}
}

// Every registered kind has a case that passes and one that fails.
func TestKindsCovered(t *testing.T) {
	pass, fail := map[string]int{}, map[string]int{}
	for _, tc := range kindCases {
		k := caseKind(t, tc)
		if tc.want == "" {
			pass[k]++
		} else {
			fail[k]++
		}
	}
	registered := map[string]bool{}
	for _, k := range checks.Kinds() {
		registered[k.Name] = true
		if pass[k.Name] == 0 {
			t.Errorf("check kind %s has no case that passes on a recorded run: add one to kindCases", k.Name)
		}
		if fail[k.Name] == 0 {
			t.Errorf("check kind %s has no case that must fail: add one to kindCases", k.Name)
		}
	}
	for k := range pass {
		if !registered[k] {
			t.Errorf("kindCases test %s, which is not a registered kind", k)
		}
	}
	for k := range fail {
		if !registered[k] {
			t.Errorf("kindCases test %s, which is not a registered kind", k)
		}
	}
}

// Every check of every recorded run passes when replayed, or is skipped
// for the run's flavor: the runs were recorded passing, and a kind that
// changes its verdict on the same observations has changed its meaning.
func TestRecordedRunsReplay(t *testing.T) {
	dirs, err := os.ReadDir(filepath.Join("testdata", "runs"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		n++
		t.Run(d.Name(), func(t *testing.T) {
			o := loadRun(t, d.Name())
			evaluated := 0
			for _, c := range checks.Evaluate(o) {
				if c.Skipped {
					continue
				}
				evaluated++
				if !c.Passed {
					t.Errorf("%s (%s) failed: %s", c.Name, c.Type, c.Message)
				}
			}
			if evaluated == 0 {
				t.Error("every check was skipped")
			}
		})
	}
	if n == 0 {
		t.Fatal("no recorded runs under testdata/runs")
	}
}

// A scenario whose every check applies to another flavor checks nothing:
// Evaluate skips each, with the reason. (The runner then fails the
// scenario, "every check was skipped on this server"; that rule lives in
// runner.Run, after the namespaces are set up, and is not reachable
// without root.)
func TestEveryCheckSkipped(t *testing.T) {
	o := loadRun(t, "syn-dropped-mysql")
	for _, c := range o.Scenario.Checks {
		c.Flavors = []string{"mariadb"}
	}
	got := checks.Evaluate(o)
	if len(got) != len(o.Scenario.Checks) {
		t.Fatalf("%d results for %d checks", len(got), len(o.Scenario.Checks))
	}
	for _, c := range got {
		if !c.Skipped {
			t.Errorf("%s: not skipped (passed %v, %s)", c.Name, c.Passed, c.Message)
		}
		if want := "applies to mariadb only; this run's server is mysql"; c.Message != want {
			t.Errorf("%s: message %q, want %q", c.Name, c.Message, want)
		}
	}
	// A scenario that checked nothing does not pass.
	if passed, why := checks.Verdict(got, o.Flavor); passed || !strings.Contains(why, "every check was skipped on this server (mysql)") {
		t.Errorf("Verdict = %v, %q; want a failure saying every check was skipped", passed, why)
	}
	// One evaluated check that passed is enough; one that failed fails.
	o = loadRun(t, "syn-dropped-mysql")
	all := checks.Evaluate(o)
	if passed, why := checks.Verdict(all, o.Flavor); !passed {
		t.Errorf("Verdict of the recorded run = fail (%s), want pass", why)
	}
	all[0].Passed = false
	if passed, _ := checks.Verdict(all, o.Flavor); passed {
		t.Error("Verdict passes with a failed check")
	}
	if passed, why := checks.Verdict(nil, o.Flavor); passed || why == "" {
		t.Errorf("Verdict of no checks = %v, %q; want a failure", passed, why)
	}
}

// LoadObservations rebuilds what the runner saved: the scenario, the
// steps, the samples and a capture's analysis per host.
func TestLoadObservations(t *testing.T) {
	o := loadRun(t, "slow-reader-ftwrl-mariadb")
	if o.Scenario == nil || o.Scenario.Name != "lab-d/slow-reader-ftwrl" {
		t.Fatalf("scenario %+v", o.Scenario)
	}
	if o.Flavor != "mariadb" || o.Version == "" || o.Kernel == "" {
		t.Errorf("flavor %q version %q kernel %q", o.Flavor, o.Version, o.Kernel)
	}
	if o.T0.IsZero() || len(o.Steps) == 0 || len(o.Sockets) == 0 || len(o.Threads) == 0 {
		t.Errorf("t0 %v, %d steps, %d socket samples, %d processlist samples", o.T0, len(o.Steps), len(o.Sockets), len(o.Threads))
	}
	var hosts []string
	for h, a := range o.Analyses {
		hosts = append(hosts, h)
		if len(a.Packets) == 0 {
			t.Errorf("%s.pcap: no packets", h)
		}
	}
	sort.Strings(hosts)
	if strings.Join(hosts, ",") != "client,server" {
		t.Errorf("analyses of %v, want client and server", hosts)
	}
	if o.Addresses["client"] != netip.MustParseAddr("10.89.0.10") {
		t.Errorf("client address %v", o.Addresses["client"])
	}

	// A recording that lacks a part is refused, naming it. files replaces
	// a file of a good recording; "-" leaves it out.
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"no scenario", map[string]string{"scenario.yaml": "-"}, "scenario.yaml"},
		{"no observations", map[string]string{"observations.json": "-"}, "observations.json"},
		{"bad observations", map[string]string{"observations.json": "{"}, "observations.json"},
		{"a pcap outside the directory", map[string]string{"observations.json": `{"pcaps": {"client": "../client.pcap"}}`}, `pcap of host client: "../client.pcap" is not a file name`},
		{"a missing pcap", map[string]string{"observations.json": `{"pcaps": {"client": "none.pcap"}}`}, "pcap of host client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join("testdata", "runs", "syn-dropped-mysql")
			for _, f := range []string{"scenario.yaml", "observations.json"} {
				b, err := os.ReadFile(filepath.Join(src, f))
				if err != nil {
					t.Fatal(err)
				}
				if v, ok := tc.files[f]; ok {
					if v == "-" {
						continue
					}
					b = []byte(v)
				}
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := checks.LoadObservations(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}
