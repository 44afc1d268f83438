package netem

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Rule is one iptables rule as a scenario writes it, e.g.
// "-t mangle -A POSTROUTING -p tcp -j TCPOPTSTRIP --strip-options timestamp".
// It is parsed, never passed to a shell: go-iptables runs the iptables
// binary with these words as its arguments.
type Rule struct {
	// Table is "filter" when the rule names none.
	Table string
	// Op is "-A" (append), "-I" (insert) or "-D" (delete), whatever form the
	// rule used.
	Op    string
	Chain string
	// Pos is the position -I inserts at, 1 when the rule gives none; it is 0
	// for -A and -D.
	Pos int
	// Spec is everything else, in the order written: matches, -j and the
	// target's options. An option written before the command (the article's
	// "-i eth0 -A INPUT ...") keeps its place relative to the other options.
	Spec []string
}

// Tables are the tables a scenario may use. "security" is left out because
// nothing in a lab needs SELinux marks.
var Tables = map[string]bool{"filter": true, "nat": true, "mangle": true, "raw": true}

// commands maps every spelling of the allowed commands to its short form.
var commands = map[string]string{
	"-A": "-A", "--append": "-A",
	"-I": "-I", "--insert": "-I",
	"-D": "-D", "--delete": "-D",
}

// refused are the other iptables commands. They are named in the error
// because a scenario that flushes a chain or changes a policy would undo
// the other steps' rules in ways the timeline cannot see.
var refused = map[string]bool{
	"-F": true, "--flush": true,
	"-X": true, "--delete-chain": true,
	"-P": true, "--policy": true,
	"-N": true, "--new-chain": true,
	"-Z": true, "--zero": true,
	"-E": true, "--rename-chain": true,
	"-R": true, "--replace": true,
	"-L": true, "--list": true,
	"-S": true, "--list-rules": true,
	"-C": true, "--check": true,
}

// errEmptyRule is returned for a rule with no words at all.
var errEmptyRule = errors.New("empty rule")

// ParseRule parses a rule written in iptables syntax without the leading
// "iptables". Words are split like a shell would (single and double quotes
// group words), but shell metacharacters are refused rather than
// interpreted, so that a rule copied from a shell session with a pipe or a
// second command in it is caught instead of silently misread.
func ParseRule(s string) (Rule, error) {
	words, err := splitWords(s)
	if err != nil {
		return Rule{}, err
	}
	if len(words) == 0 {
		return Rule{}, errEmptyRule
	}
	if words[0] == "iptables" || words[0] == "ip6tables" {
		return Rule{}, fmt.Errorf("leave out the command name %q: write the rule's arguments only", words[0])
	}
	var (
		r         Rule
		hasTarget bool
		// value is true when a bare word may follow: right after an option
		// of the rule spec, or after another such value (--tcp-flags has
		// two).
		value bool
	)
	for i := 0; i < len(words); i++ {
		w := words[i]
		// Long options may carry their value after "=", as getopt allows.
		name, arg, hasArg := w, "", false
		if strings.HasPrefix(w, "--") {
			name, arg, hasArg = strings.Cut(w, "=")
		}
		// operand returns the option's value: the part after "=" or the
		// next word, which must not look like an option.
		operand := func(what string) (string, error) {
			if hasArg {
				if arg == "" {
					return "", fmt.Errorf("%s needs %s", name, what)
				}
				return arg, nil
			}
			if i+1 >= len(words) || strings.HasPrefix(words[i+1], "-") || words[i+1] == "!" {
				return "", fmt.Errorf("%s needs %s", name, what)
			}
			i++
			return words[i], nil
		}
		switch {
		case name == "-t" || name == "--table":
			if r.Table != "" {
				return Rule{}, errors.New("table given twice")
			}
			t, err := operand("a table")
			if err != nil {
				return Rule{}, err
			}
			if !Tables[t] {
				return Rule{}, fmt.Errorf("unknown table %q (want filter, nat, mangle or raw)", t)
			}
			r.Table = t
			value = false
		case commands[name] != "":
			if r.Op != "" {
				return Rule{}, fmt.Errorf("more than one command (%s and %s)", r.Op, commands[name])
			}
			chain, err := operand("a chain")
			if err != nil {
				return Rule{}, err
			}
			r.Op, r.Chain = commands[name], chain
			if i+1 < len(words) && isNumber(words[i+1]) {
				if r.Op != "-I" {
					// Deleting by number cannot be matched to the rule it
					// removes, and the number depends on what else is there.
					return Rule{}, fmt.Errorf("%s by rule number is not supported: give the rule", name)
				}
				i++
				n, err := strconv.Atoi(words[i])
				if err != nil || n < 1 {
					return Rule{}, fmt.Errorf("bad rule number %q: want 1 or more", words[i])
				}
				r.Pos = n
			}
			value = false
		case refused[name]:
			return Rule{}, fmt.Errorf("command %s not allowed: a scenario may only add (-A, -I) or delete (-D) rules", name)
		case name == "-j" || name == "--jump":
			if hasTarget {
				return Rule{}, errors.New("target given twice")
			}
			target, err := operand("a target")
			if err != nil {
				return Rule{}, err
			}
			hasTarget = true
			r.Spec = append(r.Spec, "-j", target)
			value = false
		case w == "!":
			// Negation leaves the state alone: "! -s ADDR" and the old
			// "-p ! tcp" both read on.
			r.Spec = append(r.Spec, w)
		case strings.HasPrefix(w, "-") && len(w) > 1:
			r.Spec = append(r.Spec, w)
			value = true
		default:
			if !value {
				return Rule{}, fmt.Errorf("unexpected %q: not an option or the value of one", w)
			}
			r.Spec = append(r.Spec, w)
		}
	}
	if r.Op == "" {
		return Rule{}, errors.New("missing command: want -A, -I or -D with a chain")
	}
	if !hasTarget {
		return Rule{}, errors.New("missing target: want -j TARGET")
	}
	if err := checkNATPorts(r.Spec); err != nil {
		return Rule{}, err
	}
	if r.Table == "" {
		r.Table = "filter"
	}
	if r.Op == "-I" && r.Pos == 0 {
		r.Pos = 1
	}
	return r, nil
}

// portProtocols are the protocols iptables accepts a NAT port range for.
var portProtocols = map[string]bool{"tcp": true, "udp": true, "sctp": true, "dccp": true, "6": true, "17": true, "132": true, "33": true}

// checkNATPorts refuses a NAT target given ports without a protocol that
// has them: iptables (v1.8.9 at least) refuses "-j SNAT --to-source
// ADDR:PORT-PORT" without "-p tcp" ("Need TCP, UDP, SCTP or DCCP with port
// specification"), and a scenario should learn it when it is read, not in
// the middle of a run.
func checkNATPorts(spec []string) error {
	target, ports := "", ""
	proto := false
	for i := 0; i < len(spec); i++ {
		w := spec[i]
		name, arg, hasArg := strings.Cut(w, "=")
		next := func() string {
			if hasArg {
				return arg
			}
			if i+1 < len(spec) {
				return spec[i+1]
			}
			return ""
		}
		switch name {
		case "-j":
			target = next()
		case "-p", "--protocol":
			negated := i > 0 && spec[i-1] == "!"
			if v := next(); !negated && portProtocols[strings.ToLower(v)] {
				proto = true
			}
		case "--to-source", "--to-destination":
			// ADDR[-ADDR][:PORT[-PORT]]; IPv4 only, as iptables is.
			if v := next(); strings.Contains(v, ":") {
				ports = name + " " + v
			}
		case "--to-ports", "--to-port":
			ports = name + " " + next()
		}
	}
	switch target {
	case "SNAT", "DNAT", "MASQUERADE", "REDIRECT":
		if ports != "" && !proto {
			return fmt.Errorf("-j %s %s needs -p tcp (or udp, sctp, dccp): iptables refuses ports without one", target, ports)
		}
	}
	return nil
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// metachars are refused outside single quotes: a shell would act on them,
// and iptables run without a shell would not, so a rule containing one
// almost certainly does not mean what its author thinks.
const metachars = ";|&`$><"

// splitWords splits s into words the way a POSIX shell does for quotes and
// backslashes, and refuses what only a shell would interpret.
func splitWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		// inWord is true once the current word has begun, which may be with
		// an empty quoted string ('').
		inWord bool
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unbalanced single quote")
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				switch {
				case s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0:
					i++
					cur.WriteByte(s[i])
				case s[i] == '$' || s[i] == '`':
					// A shell would expand these even inside double quotes.
					return nil, fmt.Errorf("shell metacharacter %q not allowed: the rule is not run by a shell", s[i])
				default:
					cur.WriteByte(s[i])
				}
			}
			if i >= len(s) {
				return nil, errors.New("unbalanced double quote")
			}
			inWord = true
		case c == '\\':
			if i+1 >= len(s) {
				return nil, errors.New("backslash at the end of the rule")
			}
			i++
			cur.WriteByte(s[i])
			inWord = true
		case strings.IndexByte(metachars, c) >= 0:
			return nil, fmt.Errorf("shell metacharacter %q not allowed: the rule is not run by a shell", c)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// String writes the rule in a canonical order (table, command, chain,
// spec) that ParseRule reads back to the same Rule. The filter table is
// left implicit.
func (r Rule) String() string {
	var b strings.Builder
	if r.Table != "" && r.Table != "filter" {
		b.WriteString("-t ")
		b.WriteString(quoteWord(r.Table))
		b.WriteByte(' ')
	}
	b.WriteString(r.Op)
	b.WriteByte(' ')
	b.WriteString(quoteWord(r.Chain))
	if r.Op == "-I" && r.Pos > 1 {
		fmt.Fprintf(&b, " %d", r.Pos)
	}
	for _, w := range r.Spec {
		b.WriteByte(' ')
		b.WriteString(quoteWord(w))
	}
	return b.String()
}

// Key identifies the rule regardless of the command that carries it: a
// "-D" removes what an "-A" or "-I" with the same key added. Options are
// compared as written, so "--dport 3306 -p tcp" and "-p tcp --dport 3306"
// differ, as they would for a human reading the scenario too.
func (r Rule) Key() string {
	table := r.Table
	if table == "" {
		table = "filter"
	}
	var b strings.Builder
	b.WriteString(table)
	b.WriteByte(' ')
	b.WriteString(quoteWord(r.Chain))
	for _, w := range r.Spec {
		b.WriteByte(' ')
		b.WriteString(quoteWord(w))
	}
	return b.String()
}

// quoteWord single-quotes a word that splitWords would not read back as
// one word unchanged.
func quoteWord(w string) string {
	if w != "" && !strings.ContainsAny(w, " \t\n\r'\"\\"+metachars) {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}
