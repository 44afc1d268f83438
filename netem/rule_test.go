package netem

import (
	"reflect"
	"testing"
)

func TestParseRule(t *testing.T) {
	tests := []struct {
		in   string
		want Rule
	}{
		{
			// The article writes the interface match before the command.
			in: "-i eth0 -A INPUT -p tcp --dport 3306 -j DROP",
			want: Rule{Table: "filter", Op: "-A", Chain: "INPUT",
				Spec: []string{"-i", "eth0", "-p", "tcp", "--dport", "3306", "-j", "DROP"}},
		},
		{
			in: "-A INPUT -p tcp -s 10.89.0.11 -j DROP",
			want: Rule{Table: "filter", Op: "-A", Chain: "INPUT",
				Spec: []string{"-p", "tcp", "-s", "10.89.0.11", "-j", "DROP"}},
		},
		{
			// --tcp-flag takes two values.
			in: "-A INPUT -p tcp --tcp-flag ack ack --dport 3306 -j DROP",
			want: Rule{Table: "filter", Op: "-A", Chain: "INPUT",
				Spec: []string{"-p", "tcp", "--tcp-flag", "ack", "ack", "--dport", "3306", "-j", "DROP"}},
		},
		{
			in: "-t mangle -A POSTROUTING -p tcp -j TCPOPTSTRIP --strip-options timestamp",
			want: Rule{Table: "mangle", Op: "-A", Chain: "POSTROUTING",
				Spec: []string{"-p", "tcp", "-j", "TCPOPTSTRIP", "--strip-options", "timestamp"}},
		},
		{
			in: "-t nat -A POSTROUTING -s 10.89.0.0/24 -p tcp -j SNAT --to-source 10.89.1.1:40000-40099",
			want: Rule{Table: "nat", Op: "-A", Chain: "POSTROUTING",
				Spec: []string{"-s", "10.89.0.0/24", "-p", "tcp", "-j", "SNAT", "--to-source", "10.89.1.1:40000-40099"}},
		},
		{
			// Lab B's router: SNAT to a port range, and timestamps stripped
			// from SYNs only or from every segment.
			in: "-t nat -A POSTROUTING -o eth1 -p tcp -j SNAT --to-source 10.89.1.1:20000-20099",
			want: Rule{Table: "nat", Op: "-A", Chain: "POSTROUTING",
				Spec: []string{"-o", "eth1", "-p", "tcp", "-j", "SNAT", "--to-source", "10.89.1.1:20000-20099"}},
		},
		{
			// Without ports, SNAT needs no protocol.
			in: "-t nat -A POSTROUTING -o eth1 -j SNAT --to-source 10.89.1.1-10.89.1.2",
			want: Rule{Table: "nat", Op: "-A", Chain: "POSTROUTING",
				Spec: []string{"-o", "eth1", "-j", "SNAT", "--to-source", "10.89.1.1-10.89.1.2"}},
		},
		{
			in: "-t mangle -A POSTROUTING -o eth1 -p tcp --tcp-flags SYN SYN -j TCPOPTSTRIP --strip-options timestamp",
			want: Rule{Table: "mangle", Op: "-A", Chain: "POSTROUTING",
				Spec: []string{"-o", "eth1", "-p", "tcp", "--tcp-flags", "SYN", "SYN", "-j", "TCPOPTSTRIP", "--strip-options", "timestamp"}},
		},
		{
			in: "-t mangle -A POSTROUTING -o eth1 -p tcp -j TCPOPTSTRIP --strip-options timestamp",
			want: Rule{Table: "mangle", Op: "-A", Chain: "POSTROUTING",
				Spec: []string{"-o", "eth1", "-p", "tcp", "-j", "TCPOPTSTRIP", "--strip-options", "timestamp"}},
		},
		{
			in: "--delete INPUT -p tcp --dport 3306 --jump DROP",
			want: Rule{Table: "filter", Op: "-D", Chain: "INPUT",
				Spec: []string{"-p", "tcp", "--dport", "3306", "-j", "DROP"}},
		},
		{
			in: "-I INPUT -p tcp -j ACCEPT",
			want: Rule{Table: "filter", Op: "-I", Chain: "INPUT", Pos: 1,
				Spec: []string{"-p", "tcp", "-j", "ACCEPT"}},
		},
		{
			in: "--table=raw --insert OUTPUT 2 ! -d 10.89.0.10 --jump=NOTRACK",
			want: Rule{Table: "raw", Op: "-I", Chain: "OUTPUT", Pos: 2,
				Spec: []string{"!", "-d", "10.89.0.10", "-j", "NOTRACK"}},
		},
		{
			// Quotes group words; metacharacters inside single quotes are
			// plain text.
			in: `-A INPUT -m comment --comment 'drop; all' -m comment --comment "lab \"e\"" -j DROP`,
			want: Rule{Table: "filter", Op: "-A", Chain: "INPUT",
				Spec: []string{"-m", "comment", "--comment", "drop; all", "-m", "comment", "--comment", `lab "e"`, "-j", "DROP"}},
		},
		{
			in: "-A INPUT -p ! tcp -j DROP",
			want: Rule{Table: "filter", Op: "-A", Chain: "INPUT",
				Spec: []string{"-p", "!", "tcp", "-j", "DROP"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRule(tt.in)
			if err != nil {
				t.Fatalf("ParseRule(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseRule(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
			// String must read back to the same rule.
			again, err := ParseRule(got.String())
			if err != nil {
				t.Fatalf("ParseRule(%q) (from String): %v", got.String(), err)
			}
			if !reflect.DeepEqual(again, got) {
				t.Fatalf("round trip through %q = %#v, want %#v", got.String(), again, got)
			}
		})
	}
}

func TestParseRuleErrors(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", "empty rule"},
		{"   ", "empty rule"},
		{"-A INPUT -m comment --comment 'oops -j DROP", "unbalanced single quote"},
		{`-A INPUT -m comment --comment "oops -j DROP`, "unbalanced double quote"},
		{`-A INPUT -j DROP \`, "backslash at the end of the rule"},
		{"-t security -A INPUT -j DROP", `unknown table "security" (want filter, nat, mangle or raw)`},
		{"-t", "-t needs a table"},
		{"-t nat -t nat -A POSTROUTING -j MASQUERADE", "table given twice"},
		{"-A -p tcp -j DROP", "-A needs a chain"},
		{"-A", "-A needs a chain"},
		{"-D INPUT 1", "-D by rule number is not supported: give the rule"},
		{"-I INPUT 0 -j DROP", `bad rule number "0": want 1 or more`},
		{"-A INPUT -D INPUT -j DROP", "more than one command (-A and -D)"},
		{"-F INPUT", "command -F not allowed: a scenario may only add (-A, -I) or delete (-D) rules"},
		{"-X", "command -X not allowed: a scenario may only add (-A, -I) or delete (-D) rules"},
		{"-P INPUT DROP", "command -P not allowed: a scenario may only add (-A, -I) or delete (-D) rules"},
		{"-N LAB", "command -N not allowed: a scenario may only add (-A, -I) or delete (-D) rules"},
		{"--flush", "command --flush not allowed: a scenario may only add (-A, -I) or delete (-D) rules"},
		{"-p tcp -j DROP", "missing command: want -A, -I or -D with a chain"},
		{"-A INPUT -p tcp", "missing target: want -j TARGET"},
		{"-A INPUT -j", "-j needs a target"},
		{"-A INPUT -j DROP -j ACCEPT", "target given twice"},
		{"-A INPUT -p tcp -j DROP; iptables -F", `shell metacharacter ';' not allowed: the rule is not run by a shell`},
		{"-A INPUT -j DROP | tee x", `shell metacharacter '|' not allowed: the rule is not run by a shell`},
		{"-A INPUT -j DROP && reboot", `shell metacharacter '&' not allowed: the rule is not run by a shell`},
		{"-A INPUT -s $SERVER -j DROP", `shell metacharacter '$' not allowed: the rule is not run by a shell`},
		{`-A INPUT -s "$SERVER" -j DROP`, `shell metacharacter '$' not allowed: the rule is not run by a shell`},
		{"-A INPUT -s `hostname` -j DROP", "shell metacharacter '`' not allowed: the rule is not run by a shell"},
		{"-A INPUT -j DROP > /dev/null", `shell metacharacter '>' not allowed: the rule is not run by a shell`},
		{"-A INPUT -j DROP < x", `shell metacharacter '<' not allowed: the rule is not run by a shell`},
		{"-A INPUT tcp -j DROP", `unexpected "tcp": not an option or the value of one`},
		{"-A INPUT -j DROP now", `unexpected "now": not an option or the value of one`},
		{"iptables -A INPUT -j DROP", `leave out the command name "iptables": write the rule's arguments only`},
		{"-t nat -A POSTROUTING -o eth1 -j SNAT --to-source 10.89.1.1:20000-20099",
			"-j SNAT --to-source 10.89.1.1:20000-20099 needs -p tcp (or udp, sctp, dccp): iptables refuses ports without one"},
		{"-t nat -A POSTROUTING ! -p tcp -j SNAT --to-source=10.89.1.1:20000",
			"-j SNAT --to-source 10.89.1.1:20000 needs -p tcp (or udp, sctp, dccp): iptables refuses ports without one"},
		{"-t nat -A PREROUTING -p icmp -j REDIRECT --to-ports 3306",
			"-j REDIRECT --to-ports 3306 needs -p tcp (or udp, sctp, dccp): iptables refuses ports without one"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseRule(tt.in)
			if err == nil {
				t.Fatalf("ParseRule(%q) succeeded, want error %q", tt.in, tt.want)
			}
			if err.Error() != tt.want {
				t.Fatalf("ParseRule(%q) error = %q, want %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestRuleKey(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"-A INPUT -p tcp --dport 3306 -j DROP", "-D INPUT -p tcp --dport 3306 -j DROP", true},
		{"-I INPUT 3 -p tcp --dport 3306 -j DROP", "--delete INPUT -p tcp --dport 3306 --jump DROP", true},
		{"-t filter -A INPUT -j DROP", "-D INPUT -j DROP", true},
		{"-t raw -A INPUT -j DROP", "-D INPUT -j DROP", false},
		{"-A INPUT -j DROP", "-D OUTPUT -j DROP", false},
		{"-A INPUT -p tcp -j DROP", "-D INPUT -p udp -j DROP", false},
		// Spaces inside a quoted word are part of the word, not separators.
		{"-A INPUT -m comment --comment 'a b' -j DROP", "-D INPUT -m comment --comment a b -j DROP", false},
	}
	for _, tt := range tests {
		t.Run(tt.a+" vs "+tt.b, func(t *testing.T) {
			a, err := ParseRule(tt.a)
			if err != nil {
				t.Fatal(err)
			}
			b, err := ParseRule(tt.b)
			if err != nil {
				t.Fatal(err)
			}
			if got := a.Key() == b.Key(); got != tt.same {
				t.Fatalf("Key(%q) == Key(%q) is %v, want %v (%q, %q)", tt.a, tt.b, got, tt.same, a.Key(), b.Key())
			}
		})
	}
}

func FuzzParseRule(f *testing.F) {
	for _, s := range []string{
		"-i eth0 -A INPUT -p tcp --dport 3306 -j DROP",
		"-t nat -A POSTROUTING -s 10.89.0.0/24 -j SNAT --to-source 10.89.1.1:40000-40099",
		`-A INPUT -m comment --comment "a 'b' \"c\"" -j DROP`,
		"-I INPUT 2 ! -s 10.89.0.11 --jump=DROP",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRule(s)
		if err != nil {
			return
		}
		// Whatever parses must survive the round trip through String.
		again, err := ParseRule(r.String())
		if err != nil {
			t.Fatalf("ParseRule(%q) = %q, which does not parse: %v", s, r.String(), err)
		}
		if !reflect.DeepEqual(again, r) {
			t.Fatalf("round trip of %q through %q: got %#v, want %#v", s, r.String(), again, r)
		}
	})
}
