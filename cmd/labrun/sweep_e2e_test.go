package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSetRandomValues sweeps library scenarios with --set over values
// nobody chose: drawn at random, each run, within each sysctl's or
// variable's quick range (a few seconds to half a minute per cell). Every
// cell must pass, the model moving with the value and no other edit; the
// SYN counts must also agree with tshark. The seed is logged, so a failure
// can be replayed with LABRUN_SEED.
func TestSetRandomValues(t *testing.T) {
	needRoot(t)
	needFlavor(t, "mysql")
	seed := uint64(time.Now().UnixNano())
	if s := envSeed(); s != 0 {
		seed = s
	}
	t.Logf("seed %d (LABRUN_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	pick := func(lo, hi int) string { return fmt.Sprint(lo + rng.IntN(hi-lo+1)) }
	runs := []struct {
		file string
		sets []string
	}{
		// tcp_syn_retries 1 to 3 with any linear timeouts 0 to 4: at most
		// 19 s to give up.
		{"lab-e/syn-dropped.yaml", []string{"client.net.ipv4.tcp_syn_retries=" + pick(1, 3), "client.net.ipv4.tcp_syn_linear_timeouts=" + pick(0, 4)}},
		{"lab-e/synack-dropped.yaml", []string{"server.net.ipv4.tcp_synack_retries=" + pick(0, 4)}},
		// tcp_retries2 1 to 6: at most about 30 s.
		{"lab-e/data-retransmit.yaml", []string{"client.net.ipv4.tcp_retries2=" + pick(1, 6)}},
		// Keepalive ends the session after the first waiter's 6 s: time
		// at least 4, probes at least 3.
		{"lab-c/idle-trx-keepalive.yaml", []string{"server.net.ipv4.tcp_keepalive_time=" + pick(4, 8),
			"server.net.ipv4.tcp_keepalive_intvl=" + pick(1, 3), "server.net.ipv4.tcp_keepalive_probes=" + pick(3, 4)}},
		{"lab-c/idle-trx-wait-timeout.yaml", []string{"server.wait_timeout=" + pick(7, 20)}},
		{"lab-e/syn-dropped-go.yaml", []string{"client.net.ipv4.tcp_syn_retries=" + pick(1, 3), "client.net.ipv4.tcp_syn_linear_timeouts=" + pick(0, 4)}},
		{"lab-e/syn-dropped-mariadb.yaml", []string{"client.net.ipv4.tcp_syn_retries=" + pick(1, 3)}},
		// The server holds the request 3, 7 or 15 s; the observers run
		// past the client's keepalive error (14 s) until the model's drop.
		{"lab-e/third-ack-dropped.yaml", []string{"server.net.ipv4.tcp_synack_retries=" + pick(1, 3)}},
		// The server's result is retransmitted until tcp_retries2 gives up.
		{"lab-c/running-statement.yaml", []string{"server.net.ipv4.tcp_retries2=" + pick(2, 4)}},
		// The KILL at 4 s releases the waiter long before its lock wait.
		{"lab-c/kill-remedy.yaml", []string{"server.innodb_lock_wait_timeout=" + pick(10, 60)}},
		// Under the readers' 10 s pause (see the Lab D page).
		{"lab-d/slow-reader-ftwrl.yaml", []string{"server.net_write_timeout=" + pick(6, 9)}},
		// Lab B: the rate and the server's TIME_WAIT cap behind the NAT
		// (below the 4-tuples' two thirds, the cap decides); the client's
		// own port range without it (every other port is a 4-tuple).
		{"lab-b/nat-strip.yaml", []string{"php.rate=" + pick(100, 300), "server.net.ipv4.tcp_max_tw_buckets=" + pick(20, 200)}},
		{"lab-b/direct.yaml", []string{"app.net.ipv4.ip_local_port_range=40000 " + pick(40060, 40600), "php.rate=" + pick(100, 300)}},
	}
	// Each file gets only its own axes: one labrun per file.
	args := []string{"run", "-j", "3"}
	before := snapshot(t)
	for _, r := range runs {
		a := append(append([]string{}, args...), "../../scenarios/"+r.file)
		for _, s := range r.sets {
			a = append(a, "--set", s)
		}
		t.Run(r.file, func(t *testing.T) {
			t.Logf("labrun %s", strings.Join(a, " "))
			res := labrun(t, a...)
			if res.code != 0 {
				t.Fatalf("want exit 0: %s", res)
			}
			for _, sc := range res.report.Scenarios {
				checksPassAndSYNAgrees(t, sc)
			}
		})
	}
	assertUnchanged(t, before)
}

// A bad --set exits 4 naming the flag, before anything is created.
func TestSetInvalid(t *testing.T) {
	needRoot(t)
	before := snapshot(t)
	for _, tt := range []struct{ set, want string }{
		{"clinet.net.ipv4.tcp_retries2=3", `--set clinet.net.ipv4.tcp_retries2: unknown host "clinet" (hosts: client, server)`},
		{"client.net.ipv4.tcp_retries2=", "--set client.net.ipv4.tcp_retries2: no values"},
		{"tcp_retries2", "--set tcp_retries2: want PATH=VALUE[,VALUE...]"},
		{"session.sql=1", `--set session.sql: step "session" (client) has no option "sql" an axis may set`},
		{"client.net.ipv4.tcp_retries2=3,x", `in cell [tcp_retries2=x]`},
		{"client.net.ipv4.tcp_retries3=3", "--set client.net.ipv4.tcp_retries3: no sysctl net.ipv4.tcp_retries3 on this kernel"},
	} {
		r := labrun(t, "run", "../../scenarios/lab-e/data-retransmit.yaml", "--set", tt.set)
		if r.code != 4 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("--set %s: %s\nwant exit 4 saying %q", tt.set, r, tt.want)
		}
	}
	assertUnchanged(t, before)
}

// envSeed is LABRUN_SEED, or 0.
func envSeed() uint64 {
	var s uint64
	fmt.Sscan(os.Getenv("LABRUN_SEED"), &s)
	return s
}
