package netem

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/coreos/go-iptables/iptables"
)

// Rules applies a host's iptables rules and keeps their packet counters.
// Every added rule carries a comment naming the run and the step, which is
// how its counters are found again after iptables has rewritten its
// options into canonical form.
type Rules struct {
	host *Host
	mu   sync.Mutex
	// live maps Rule.Key() to the comment of the rule in force.
	live map[string]string
}

// Counter is a rule's packet and byte count at one moment.
type Counter struct {
	Rule    string `json:"rule"`
	Step    string `json:"step"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	Removed bool   `json:"removed,omitempty"` // counted just before the rule was deleted
}

// Rules returns the rule set of a host.
func (h *Host) Rules() *Rules {
	return &Rules{host: h, live: map[string]string{}}
}

func comment(step string) string { return "labrun:" + step }

// Apply adds or deletes a rule in the host's namespace. For a delete it first
// reads the counters of the rule being removed, and returns them.
func (r *Rules) Apply(rule Rule, step string) (*Counter, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out *Counter
	err := Do(r.host.NS, func() error {
		ipt, err := iptables.New(iptables.Timeout(5))
		if err != nil {
			return fmt.Errorf("iptables: %w", err)
		}
		switch rule.Op {
		case "-A", "-I":
			c := comment(step)
			spec := append(append([]string{}, rule.Spec...), "-m", "comment", "--comment", c)
			if rule.Op == "-A" {
				err = ipt.Append(rule.Table, rule.Chain, spec...)
			} else {
				err = ipt.Insert(rule.Table, rule.Chain, rule.Pos, spec...)
			}
			if err != nil {
				return fmt.Errorf("iptables %s: %w", rule, err)
			}
			r.live[rule.Key()] = c
		case "-D":
			c, ok := r.live[rule.Key()]
			if !ok {
				return fmt.Errorf("iptables %s: no such rule was added", rule)
			}
			counters, err := counters(ipt, rule.Table, rule.Chain)
			if err != nil {
				return err
			}
			if got, ok := counters[c]; ok {
				got.Removed = true
				out = got
			}
			spec := append(append([]string{}, rule.Spec...), "-m", "comment", "--comment", c)
			if err := ipt.Delete(rule.Table, rule.Chain, spec...); err != nil {
				return fmt.Errorf("iptables %s: %w", rule, err)
			}
			delete(r.live, rule.Key())
		default:
			return fmt.Errorf("iptables %s: unsupported command %s", rule, rule.Op)
		}
		return nil
	})
	return out, err
}

// Counters reads the counters of every labrun rule in force on the host.
func (r *Rules) Counters() ([]*Counter, error) {
	var out []*Counter
	err := Do(r.host.NS, func() error {
		ipt, err := iptables.New(iptables.Timeout(5))
		if err != nil {
			return fmt.Errorf("iptables: %w", err)
		}
		for _, table := range []string{"filter", "nat", "mangle", "raw"} {
			chains, err := ipt.ListChains(table)
			if err != nil {
				continue // the table has never been used in this namespace
			}
			for _, ch := range chains {
				cs, err := counters(ipt, table, ch)
				if err != nil {
					return err
				}
				for _, c := range cs {
					out = append(out, c)
				}
			}
		}
		return nil
	})
	return out, err
}

var counterRE = regexp.MustCompile(`-c (\d+) (\d+)`)

// commentRE matches a comment as iptables prints it: in double quotes with
// backslash escapes when it holds anything but plain characters (a step
// named "drop syn" is printed --comment "labrun:drop syn"), bare otherwise.
var commentRE = regexp.MustCompile(`--comment (?:"((?:[^"\\]|\\.)*)"|([^ "]+))`)
var unescapeRE = regexp.MustCompile(`\\(.)`)

// counters lists a chain with counters ("-A INPUT ... -c 12 720 -j DROP") and
// returns the labrun rules by comment.
func counters(ipt *iptables.IPTables, table, chain string) (map[string]*Counter, error) {
	rules, err := ipt.ListWithCounters(table, chain)
	if err != nil {
		return nil, fmt.Errorf("iptables -t %s -S %s: %w", table, chain, err)
	}
	return parseCounters(table, rules), nil
}

// parseCounters reads the lines of `iptables -t TABLE -v -S CHAIN` and
// returns the labrun rules by comment.
func parseCounters(table string, lines []string) map[string]*Counter {
	out := map[string]*Counter{}
	for _, line := range lines {
		// A rule may carry a comment of its own besides labrun's.
		text := ""
		comments := commentRE.FindAllStringSubmatchIndex(line, -1)
		for _, m := range comments {
			var t string
			if m[2] >= 0 {
				t = unescapeRE.ReplaceAllString(line[m[2]:m[3]], "$1")
			} else {
				t = line[m[4]:m[5]]
			}
			if strings.HasPrefix(t, "labrun:") {
				text = t
				break
			}
		}
		if text == "" {
			continue
		}
		c := &Counter{Step: strings.TrimPrefix(text, "labrun:")}
		rule := line
		// The counters follow the matches; a "-c N N" inside a comment is
		// text, not counters.
		for _, m := range counterRE.FindAllStringSubmatchIndex(line, -1) {
			if slices.ContainsFunc(comments, func(cm []int) bool { return m[0] >= cm[0] && m[1] <= cm[1] }) {
				continue
			}
			c.Packets, _ = strconv.ParseUint(line[m[2]:m[3]], 10, 64)
			c.Bytes, _ = strconv.ParseUint(line[m[4]:m[5]], 10, 64)
			rule = line[:m[0]] + line[m[1]:]
			break
		}
		c.Rule = strings.Join(strings.Fields(rule), " ")
		if table != "filter" {
			c.Rule = "-t " + table + " " + c.Rule
		}
		out[text] = c
	}
	return out
}
