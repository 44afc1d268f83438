package netem

import (
	"maps"
	"testing"
)

// The lines are what iptables v1.8.9 (nf_tables) prints for `-v -S CHAIN`
// in a namespace, for rules added the way Rules.Apply adds them.
func TestParseCounters(t *testing.T) {
	tests := []struct {
		name  string
		table string
		lines []string
		want  map[string]Counter
	}{
		{
			name:  "policy lines and foreign rules are left out",
			table: "filter",
			lines: []string{
				"-P INPUT ACCEPT -c 12 720",
				"-A INPUT -p tcp -m comment --comment plain -m tcp --dport 1 -c 3 180 -j ACCEPT",
				"-A INPUT -i lo -c 9 540 -j ACCEPT",
			},
			want: map[string]Counter{},
		},
		{
			name:  "bare comment",
			table: "filter",
			lines: []string{"-A INPUT -p tcp -m tcp --dport 3306 -m comment --comment labrun:drop -c 2 120 -j DROP"},
			want: map[string]Counter{"labrun:drop": {
				Rule: "-A INPUT -p tcp -m tcp --dport 3306 -m comment --comment labrun:drop -j DROP", Step: "drop", Packets: 2, Bytes: 120,
			}},
		},
		{
			name:  "quoted comment",
			table: "filter",
			lines: []string{`-A INPUT -p tcp -m tcp --dport 3306 -m comment --comment "labrun:drop" -c 2 120 -j DROP`},
			want: map[string]Counter{"labrun:drop": {
				Rule: `-A INPUT -p tcp -m tcp --dport 3306 -m comment --comment "labrun:drop" -j DROP`, Step: "drop", Packets: 2, Bytes: 120,
			}},
		},
		{
			// Step names are free text; iptables quotes a comment with a
			// space in it.
			name:  "step name with spaces",
			table: "filter",
			lines: []string{`-A INPUT -p tcp -m tcp --dport 3306 -m comment --comment "labrun:drop syn" -c 4 240 -j DROP`},
			want: map[string]Counter{"labrun:drop syn": {
				Rule: `-A INPUT -p tcp -m tcp --dport 3306 -m comment --comment "labrun:drop syn" -j DROP`, Step: "drop syn", Packets: 4, Bytes: 240,
			}},
		},
		{
			name:  "escaped quotes and backslashes",
			table: "filter",
			lines: []string{`-A INPUT -m comment --comment "labrun:say \"hi\" \\ o\'k" -c 1 60 -j ACCEPT`},
			want: map[string]Counter{`labrun:say "hi" \ o'k`: {
				Rule: `-A INPUT -m comment --comment "labrun:say \"hi\" \\ o\'k" -j ACCEPT`, Step: `say "hi" \ o'k`, Packets: 1, Bytes: 60,
			}},
		},
		{
			// Counters written inside a comment are text.
			name:  "counters look-alike in the comment",
			table: "filter",
			lines: []string{`-A INPUT -m comment --comment "labrun:x -c 5 6" -c 7 8 -j ACCEPT`},
			want: map[string]Counter{"labrun:x -c 5 6": {
				Rule: `-A INPUT -m comment --comment "labrun:x -c 5 6" -j ACCEPT`, Step: "x -c 5 6", Packets: 7, Bytes: 8,
			}},
		},
		{
			name:  "the rule's own comment before labrun's",
			table: "filter",
			lines: []string{`-A INPUT -m comment --comment "mine -c 1 1" -m comment --comment labrun:s -c 3 4 -j ACCEPT`},
			want: map[string]Counter{"labrun:s": {
				Rule: `-A INPUT -m comment --comment "mine -c 1 1" -m comment --comment labrun:s -j ACCEPT`, Step: "s", Packets: 3, Bytes: 4,
			}},
		},
		{
			name:  "other table",
			table: "mangle",
			lines: []string{`-A POSTROUTING -p tcp -m comment --comment "labrun:strip" -c 5 300 -j TCPOPTSTRIP --strip-options 8`},
			want: map[string]Counter{"labrun:strip": {
				Rule: `-t mangle -A POSTROUTING -p tcp -m comment --comment "labrun:strip" -j TCPOPTSTRIP --strip-options 8`, Step: "strip", Packets: 5, Bytes: 300,
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]Counter{}
			for k, c := range parseCounters(tt.table, tt.lines) {
				got[k] = *c
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("parseCounters() =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}
