package netem_test

import (
	"errors"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/labrun/labrun/netem"
)

// hostRuleset returns the host namespace's rules, read on the test's own
// goroutine (never inside a lab namespace). Listing is read-only: it does
// not even create the tables it lists.
func hostRuleset(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{{"iptables", "-S"}, {"nft", "list", "ruleset"}} {
		if _, err := exec.LookPath(args[0]); err != nil {
			continue
		}
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		b.WriteString("# " + strings.Join(args, " ") + "\n")
		b.Write(out)
	}
	return b.String()
}

func needIptables(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("needs iptables: not in PATH (apt-get install iptables)")
	}
}

func parseRule(t *testing.T, s string) netem.Rule {
	t.Helper()
	r, err := netem.ParseRule(s)
	if err != nil {
		t.Fatalf("ParseRule(%q): %v", s, err)
	}
	return r
}

// counter returns the counter of the step's rule, or nil.
func counter(t *testing.T, rs *netem.Rules, step string) *netem.Counter {
	t.Helper()
	cs, err := rs.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.Step == step {
			return c
		}
	}
	return nil
}

func TestRulesDropAndCount(t *testing.T) {
	needRoot(t)
	needIptables(t)
	hostBefore := hostRuleset(t)
	l := up(t, "client", "server")
	client, server := l.host(t, "client"), l.host(t, "server")
	// One SYN retransmission at most: the dial below gives up on its own
	// timeout before the kernel would try again, whatever the default.
	if _, err := client.SetSysctls(map[string]string{"net.ipv4.tcp_syn_retries": "1"}); err != nil {
		t.Fatal(err)
	}
	ln := listen(t, server, 3306)
	to := ln.Addr().(*net.TCPAddr).AddrPort()

	// Before the rule the port answers, so the failure below is the rule's
	// doing.
	roundTrip(t, client, ln)

	rs := server.Rules()
	// Step names are free text; one with a space must be found again.
	const step = "drop syn"
	if c, err := rs.Apply(parseRule(t, "-A INPUT -p tcp --dport 3306 -j DROP"), step); err != nil || c != nil {
		t.Fatalf("Apply(-A) = %v, %v; want no counter, no error", c, err)
	}
	if c, err := dial(client, to, 1500*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("dial through a DROP rule succeeded")
	} else if ne, ok := err.(net.Error); !(ok && ne.Timeout()) && !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("dial through a DROP rule: %v, want a timeout", err)
	}

	c := counter(t, rs, step)
	if c == nil {
		t.Fatalf("Counters() has no rule for step %q", step)
	}
	if c.Packets == 0 || c.Bytes == 0 || c.Removed {
		t.Errorf("counter = %+v, want packets and bytes > 0, not removed", c)
	}
	for _, part := range []string{"-A INPUT", "--dport 3306", "-j DROP"} {
		if !strings.Contains(c.Rule, part) {
			t.Errorf("counter rule %q lacks %q", c.Rule, part)
		}
	}
	// Rules live in the server's namespace only.
	if cs, err := client.Rules().Counters(); err != nil || len(cs) != 0 {
		t.Errorf("client Counters() = %v, %v; want none", cs, err)
	}

	// Deleting returns the rule's last counts, under the step that added it.
	removed, err := rs.Apply(parseRule(t, "-D INPUT -p tcp --dport 3306 -j DROP"), "undrop")
	if err != nil {
		t.Fatalf("Apply(-D): %v", err)
	}
	if removed == nil || !removed.Removed || removed.Step != step || removed.Packets < c.Packets {
		t.Errorf("Apply(-D) counter = %+v, want removed, step %q, packets >= %d", removed, step, c.Packets)
	}
	if c := counter(t, rs, step); c != nil {
		t.Errorf("rule still in force after -D: %+v", c)
	}
	// The same delete again has nothing to remove.
	if _, err := rs.Apply(parseRule(t, "-D INPUT -p tcp --dport 3306 -j DROP"), "undrop again"); err == nil {
		t.Error("Apply(-D) of a rule no longer in force succeeded")
	}
	roundTrip(t, client, ln)

	if after := hostRuleset(t); after != hostBefore {
		t.Errorf("host namespace's rules changed:\nbefore:\n%s\nafter:\n%s", hostBefore, after)
	}
}

func TestRulesApply(t *testing.T) {
	needRoot(t)
	needIptables(t)
	hostBefore := hostRuleset(t)
	l := up(t, "client", "server")
	client, server := l.host(t, "client"), l.host(t, "server")
	ln := listen(t, server, 3306)

	tests := []struct {
		name string
		rule string
		// counted is true when a connection from the client goes through
		// the rule.
		counted bool
		bad     bool
	}{
		{name: "mangle TCPOPTSTRIP", rule: "-t mangle -A POSTROUTING -p tcp -j TCPOPTSTRIP --strip-options timestamp", counted: true},
		{name: "insert with position", rule: "-I INPUT 1 -p tcp --dport 3306 -j ACCEPT", counted: true},
		{name: "interface match", rule: "-A INPUT -i eth0 -p tcp --tcp-flags SYN,ACK SYN -j ACCEPT", counted: true},
		{name: "raw table", rule: "-t raw -A PREROUTING -p tcp --dport 3307 -j NOTRACK"},
		{name: "delete of a rule never added", rule: "-D INPUT -p udp -j DROP", bad: true},
		{name: "unknown target", rule: "-A INPUT -j NO_SUCH_TARGET", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := server.Rules()
			r := parseRule(t, tt.rule)
			_, err := rs.Apply(r, tt.name)
			if tt.bad {
				if err == nil {
					t.Fatalf("Apply(%q) succeeded, want an error", tt.rule)
				}
				if cs, err := rs.Counters(); err != nil || len(cs) != 0 {
					t.Errorf("Counters() after a refused rule = %v, %v; want none", cs, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply(%q): %v", tt.rule, err)
			}
			roundTrip(t, client, ln)
			c := counter(t, rs, tt.name)
			if c == nil {
				t.Fatalf("Counters() has no rule for step %q", tt.name)
			}
			if r.Table != "filter" && !strings.HasPrefix(c.Rule, "-t "+r.Table+" ") {
				t.Errorf("counter rule %q does not name table %s", c.Rule, r.Table)
			}
			if tt.counted && c.Packets == 0 {
				t.Errorf("counter = %+v, want packets > 0 after a connection", c)
			}
			del := r
			del.Op, del.Pos = "-D", 0
			removed, err := rs.Apply(del, "remove "+tt.name)
			if err != nil {
				t.Fatalf("Apply(%q): %v", del, err)
			}
			if removed == nil || removed.Step != tt.name || !removed.Removed {
				t.Errorf("Apply(%q) counter = %+v, want the removed rule of step %q", del, removed, tt.name)
			}
			if cs, err := rs.Counters(); err != nil || len(cs) != 0 {
				t.Errorf("Counters() after -D = %v, %v; want none", cs, err)
			}
		})
	}
	if after := hostRuleset(t); after != hostBefore {
		t.Errorf("host namespace's rules changed:\nbefore:\n%s\nafter:\n%s", hostBefore, after)
	}
}
