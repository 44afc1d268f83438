package scenarios_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/labrun/labrun/actions"
	_ "github.com/labrun/labrun/checks"
	. "github.com/labrun/labrun/scenarios"
)

// update rewrites generated files (scenarios/schema.json) instead of
// comparing them. Other tests in this package that keep golden files
// should read this flag rather than declare their own: a second
// flag.Bool("update") would panic at start-up.
var update = updateFlag()

func updateFlag() *bool {
	if f := flag.Lookup("update"); f != nil {
		if g, ok := f.Value.(flag.Getter); ok {
			if b, ok := g.Get().(bool); ok {
				// Declared elsewhere first; follow its value at test time.
				v := b
				return &v
			}
		}
	}
	return flag.Bool("update", false, "rewrite generated and golden files")
}

func TestLoadInvalid(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{"invalid-unknown-key.yaml", `3: hosts.client.sysctl: unknown field (known: address, extra, links, network, sysctls)`},
		{"invalid-bad-duration.yaml", `12: timeline[1].at: bad duration "5x": want a number with a unit (ms, s, m)`},
		{"invalid-bare-number-duration.yaml", `6: limit: bad duration "60": want a number with a unit (ms, s, m)`},
		{"invalid-unknown-host.yaml", `9: timeline[0].host: unknown host "db" (hosts: client, server)`},
		{"invalid-bad-iptables.yaml", `10: timeline[0].iptables: bad iptables rule: command -F not allowed: a scenario may only add (-A, -I) or delete (-D) rules`},
		{"invalid-iptables-quote.yaml", `10: timeline[0].iptables: bad iptables rule: unbalanced single quote`},
		{"invalid-wrong-type.yaml", `6: server.port: want an integer, got "abc"`},
		{"invalid-wrong-type-list.yaml", `7: timeline: want a list, got a mapping`},
		{"invalid-cycle.yaml", `8: timeline[0].after: impossible timeline: cycle a -> b -> a`},
		{"invalid-delete-before-add.yaml", `10: timeline[0].iptables: impossible timeline: deletes the rule before step "drop" certainly adds it (make this step start after "drop")`},
		{"invalid-delete-never-added.yaml", `14: timeline[1].iptables: impossible timeline: no step adds this rule on host client before this step deletes it`},
		{"invalid-at-beyond-limit.yaml", `8: timeline[0].at: impossible timeline: at 130s is after the limit 120s`},
		{"invalid-after-beyond-limit.yaml", `13: timeline[1].delay: impossible timeline: starts at 11s at the earliest, after the limit 10s`},
		{"invalid-missing-action.yaml", `7: timeline[0]: missing action: want one of burst, client, end, freeze, iptables, latency, load, netem, sleep, sysctl, throttle, vanish`},
		{"invalid-two-actions.yaml", `7: timeline[0]: more than one action (client, iptables): want exactly one`},
		{"invalid-duplicate-step.yaml", `10: timeline[1].name: duplicate step name "connect" (first at line 7)`},
		{"invalid-bad-sysctl.yaml", `4: hosts.client.sysctls[kernel.pid_max]: bad sysctl key "kernel.pid_max": only per-namespace keys under net. are accepted`},
		{"invalid-unknown-check-type.yaml", `12: checks[0].type: unknown check type "syn_retransmit" (known: client_close, client_error, data_retransmits, ends_after, first_fin, io_stat, iptables_counter, keepalive_probes, late_reply, query_value, request_ack, socket_state, syn_bare_ack, syn_retransmits, synack_retransmits, thread_state, time_wait, trx_state, write_timeout, zero_window)`},
		{"invalid-duplicate-key.yaml", `9: timeline[0].at: duplicate key (first at line 8)`},
		{"invalid-at-and-after.yaml", `11: timeline[1]: at and after are mutually exclusive
15: timeline[2]: missing start: want at or after`},
		{"invalid-after-unknown.yaml", `8: timeline[0].after: no step named "drop"`},
		{"invalid-delay-without-after.yaml", `9: timeline[0].delay: only with after`},
		{"invalid-client.yaml", `9: timeline[0].client.kind: required (cli or go)
13: timeline[1].client.kind: unknown client kind "dbi" (want cli or go)
18: timeline[2].client.read_timeout: only for kind go`},
		{"invalid-check-step.yaml", `17: checks[0].step: step "drop" is not a client step: syn_retransmits follows the connection a step opens
20: checks[1].step: no step named "conect"
21: checks[1].flavors[1]: unknown flavor "percona" (want mariadb or mysql)`},
		{"invalid-no-checks.yaml", `2: checks: want at least one check: a scenario without checks has nothing to pass on`},
		{"invalid-server.yaml", `5: server.host: unknown host "db" (hosts: client, server)
6: server.flavor: unknown flavor "oracle" (want mariadb or mysql)
7: server.engine: unknown engine "docker" (want container or process)
8: server.port: bad port 70000: want 1 to 65535`},
		{"invalid-servers.yaml", `6: server.image: bad image "Not An Image": want a Docker image reference such as mysql:8.4
9: servers[1]: server mariadb/process listed twice (first at servers[0])
10: servers[2].image: cannot tell the flavor of image "percona:8.0" from its name: write flavor (want mariadb or mysql)
11: servers[3].image: an image needs engine container, not process
12: servers[4].variables["a b"]: bad variable name "a b": want letters, digits, '_' and '-'`},
		{"invalid-network.yaml", `2: network.subnet: bad subnet "10.89.0.0/16": want an IPv4 /24 such as 10.89.0.0/24`},
		{"invalid-addresses.yaml", `3: hosts.client.address: address 10.89.1.10 is outside the subnet 10.89.0.0/24
5: hosts.server.address: address 10.89.0.20 is already used by host other`},
		{"invalid-networks.yaml", `1: network: network and networks are exclusive: a routed lab has its subnets in networks
3: networks.office.subnet: subnet 10.89.1.0/24 overlaps network cloud (10.89.1.128/25)
5: networks.Public: bad network name "Public": want up to 32 lowercase letters, digits, '-' and '_'
5: networks.Public.subnet: subnet 8.8.8.0/24 is not private: want one inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16
6: networks.wide.subnet: bad subnet "10.0.0.0/8": want an IPv4 prefix from /16 to /30 such as 10.89.1.0/24
7: networks.idle: no host or router link joins network idle`},
		{"invalid-routed-hosts.yaml", `7: hosts.client.extra[0]: address 10.89.2.21 is outside the subnet 10.89.1.0/24
8: hosts.lost.network: required in a routed lab: the network the host joins (networks: cloud, office), or links for a router
9: hosts.stray.network: unknown network "lab" (networks: cloud, office)
11: hosts.nat.address: a router (a host with links) has its networks and addresses in links
15: hosts.nat.links[2].network: a second link to network office (first at links[0])
16: hosts.twin.address: address 10.89.1.30 is already used by host client
19: hosts.server.links[0].address: address 10.89.2.255 is the subnet's network or broadcast address
21: server.host: host server is a router: the server runs on a host with a network`},
		{"invalid-single-network-router.yaml", `3: hosts.client.network: only in a routed lab (networks:); this lab is the single network.subnet
5: hosts.hub: host name hub is reserved: the run's namespace holding the lab's bridges has it
7: hosts.nat.links: a router needs a routed lab: write networks: instead of network:`},
		{"invalid-conntrack-sysctl.yaml", `4: hosts.client.sysctls[net.netfilter.nf_conntrack_max]: sysctl net.netfilter.nf_conntrack_max is the machine's, read-only in a lab namespace: it cannot be set per host`},
		{"invalid-skipped.yaml", `19: timeline[2].iptables: impossible timeline: no step adds this rule on host server before this step deletes it
21: checks[0].step: step connect is skipped`},
		{"invalid-axis-labels.yaml", `14: matrix.axes[0].labels: 2 labels for 3 values: want one label per value
15: matrix.axes[1].labels[1]: label few listed twice
15: matrix.axes[1].labels[2]: bad label "a b": want up to 40 letters, digits, '-', '_', '.', '/' and ':'
16: matrix.axes[2].labels[0]: label 2 is another value of the axis: a cell naming it would be ambiguous`},
		{"invalid-syntax.yaml", `4: yaml syntax: did not find expected node content`},
		{"invalid-empty.yaml", `1: empty scenario`},
		{"invalid-two-documents.yaml", `10: more than one document: a scenario file holds one`},
		{"invalid-not-a-mapping.yaml", `1: want a mapping of scenario fields, got a list`},
		{"invalid-aliases.yaml", `8: timeline[242].client.sql[362]: document too large: more than 100000 values once aliases are expanded`},
		{
			// Every problem is reported, in line order, and a value that
			// could not be read (at: soon) does not also count as missing.
			"invalid-many.yaml", `4: hosts.client.adress: unknown field (known: address, extra, links, network, sysctls)
8: server.port: want an integer, got 3306.5
11: timeline[0].at: bad duration "soon": want a number with a unit (ms, s, m)
13: timeline[0].iptables: bad iptables rule: shell metacharacter ';' not allowed: the rule is not run by a shell
16: timeline[1].host: unknown host "app" (hosts: client, server)
17: timeline[1].client.timeout: unknown field (known: close, connect_timeout, database, kind, pool, prepare, rcvbuf, read_timeout, session, sql, stream, write_timeout)
18: timeline[2].name: duplicate step name "connect" (first at line 14)
18: timeline[2]: missing action: want one of burst, client, end, freeze, iptables, latency, load, netem, sleep, sysctl, throttle, vanish
19: timeline[2].after: no step named "nothing"
22: checks[0].type: unknown check type "magic" (known: client_close, client_error, data_retransmits, ends_after, first_fin, io_stat, iptables_counter, keepalive_probes, late_reply, query_value, request_ack, socket_state, syn_bare_ack, syn_retransmits, synack_retransmits, thread_state, time_wait, trx_state, write_timeout, zero_window)`,
		},
	}
	tested := map[string]bool{}
	for _, tt := range tests {
		tested[tt.file] = true
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", tt.file)
			// Every line of the message starts with the file name.
			want := path + ":" + strings.ReplaceAll(tt.want, "\n", "\n"+path+":")
			s, err := Load(path)
			if err == nil {
				t.Fatalf("Load(%q) = %+v, want error:\n%s", path, s, want)
			}
			if got := err.Error(); got != want {
				t.Fatalf("Load(%q) error:\n%s\nwant:\n%s", path, got, want)
			}
			if !errors.Is(err, ErrInvalidScenario) {
				t.Errorf("errors.Is(%v, ErrInvalidScenario) = false", err)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.File != path {
				t.Errorf("error is %T with file %q, want *ValidationError for %q", err, ve.File, path)
			}
		})
	}
	// A fixture without an entry would never be checked.
	files, err := filepath.Glob("testdata/invalid-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !tested[filepath.Base(f)] {
			t.Errorf("%s has no expected message in TestLoadInvalid", f)
		}
	}
}

func TestLoadValid(t *testing.T) {
	files, err := filepath.Glob("testdata/valid-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/valid-*.yaml")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			s, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			// Loading validated it; validating again must agree.
			if err := s.Validate(); err != nil {
				t.Fatalf("Validate after Load: %v", err)
			}
		})
	}
}

// TestLoadLibrary loads the lab library, so that a change to the loader
// that breaks a shipped scenario fails here rather than in a lab run.
func TestLoadLibrary(t *testing.T) {
	files := libraryFiles(t)
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			if _, err := Load(f); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	s, err := Load("testdata/valid-defaults.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dur := func(d time.Duration) *Duration { v := Duration(d); return &v }
	tests := []struct {
		name      string
		got, want any
	}{
		{"name from the file name", s.Name, "valid-defaults"},
		{"limit", s.Limit, Duration(120 * time.Second)},
		{"subnet", s.Network.Subnet, "10.89.0.0/24"},
		{"flavor", s.Server.Flavor, "mysql"},
		{"engine", s.Server.Engine, "process"},
		{"port", s.Server.Port, 3306},
		// server has .10 written; the others take the next free ones in
		// order of names.
		{"client address", s.Hosts["client"].Address, "10.89.0.11"},
		{"server address", s.Hosts["server"].Address, "10.89.0.10"},
		{"zeta address", s.Hosts["zeta"].Address, "10.89.0.12"},
		{"socket sampling period", s.Observe.Sockets[0].Every, Duration(100 * time.Millisecond)},
		{"socket port", s.Observe.Sockets[0].Port, 3306},
		{"client step host", s.Timeline[1].Host, "client"},
		{"explicit client step host", s.Timeline[3].Host, "zeta"},
		{"after", s.Timeline[1].After, "drop"},
		{"delay", s.Timeline[1].Delay, Duration(500 * time.Millisecond)},
		{"at", s.Timeline[3].At, dur(time.Minute)},
		{"merged client kind", s.Timeline[3].Action.(*actions.Client).Kind, "go"},
		{"merged read timeout", s.Timeline[3].Action.(*actions.Client).ReadTimeout, Duration(5 * time.Second)},
		{"own sql next to a merge", s.Timeline[3].Action.(*actions.Client).SQL, []string{"SELECT 1"}},
		{"sysctl as a string", map[string]string(*s.Timeline[4].Action.(*actions.Sysctl)), map[string]string{"net.ipv4.tcp_syn_retries": "2"}},
		{"file", s.File, "testdata/valid-defaults.yaml"},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s = %#v, want %#v", tt.name, tt.got, tt.want)
		}
	}
}

func TestLoadBytesName(t *testing.T) {
	const doc = "hosts: {client: {}}\nserver: {host: client}\ntimeline: [{name: c, at: 0s, client: {kind: go}}]\nchecks: [{name: ok, type: client_error, step: c}]\n"
	tests := []struct{ file, want string }{
		{"scenarios/lab-x/syn.yaml", "syn"},
		{"x.yml", "x"},
		{"noext", "noext"},
	}
	for _, tt := range tests {
		s, err := LoadBytes(tt.file, []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if s.Name != tt.want {
			t.Errorf("LoadBytes(%q).Name = %q, want %q", tt.file, s.Name, tt.want)
		}
	}
	// With no file name there is nothing to take the name from.
	_, err := LoadBytes("", []byte(doc))
	if want := "1: name: required (there is no file name to take it from)"; err == nil || err.Error() != want {
		t.Errorf("LoadBytes without a file name: %v, want %q", err, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing file: %v, want an error wrapping fs.ErrNotExist", err)
	}
	if errors.Is(err, ErrInvalidScenario) {
		t.Errorf("a missing file is not an invalid scenario: %v", err)
	}
}

func TestLine(t *testing.T) {
	s, err := Load("testdata/valid-lab-e-syn-dropped.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want int
	}{
		{"", 3},
		{"name", 3},
		{"limit", 11},
		{"hosts.client", 13},
		{"hosts.client.sysctls", 14},
		{"hosts.client.sysctls[net.ipv4.tcp_syn_linear_timeouts]", 16},
		{"timeline", 22},
		{"timeline[1]", 27},
		{"timeline[1].at", 28},
		{"timeline[1].client.sql", 31},
		{"timeline[1].client.sql[0]", 31},
		// Not written: the nearest enclosing field that is.
		{"timeline[1].host", 27},
		{"timeline[7].at", 22},
		{"network.subnet", 3},
		{"checks[1].documented.value", 45},
	}
	for _, tt := range tests {
		if got := s.Line(tt.path); got != tt.want {
			t.Errorf("Line(%q) = %d, want %d", tt.path, got, tt.want)
		}
	}
	if got := (&Scenario{}).Line("name"); got != 0 {
		t.Errorf("Line on a scenario not loaded from YAML = %d, want 0", got)
	}
}

func TestPaths(t *testing.T) {
	tests := []struct {
		base, key, want string
	}{
		{"hosts", "client", "hosts.client"},
		{"", "hosts", "hosts"},
		{"hosts.client.sysctls", "net.ipv4.tcp_syn_retries", "hosts.client.sysctls[net.ipv4.tcp_syn_retries]"},
		{"server.variables", "3", `server.variables["3"]`},
		{"m", "a]b", `m["a]b"]`},
		{"m", `say "hi"`, `m["say \"hi\""]`},
		{"m", "tab\there", `m["tab\there"]`},
		{"m", "a b", `m["a b"]`},
	}
	for _, tt := range tests {
		got := JoinKey(tt.base, tt.key)
		if got != tt.want {
			t.Errorf("JoinKey(%q, %q) = %q, want %q", tt.base, tt.key, got, tt.want)
		}
		segs, ok := SplitPath(got)
		if !ok || len(segs) == 0 || segs[len(segs)-1] != tt.key {
			t.Errorf("SplitPath(%q) = %+v, %v; want the key %q last", got, segs, ok, tt.key)
		}
	}
}

func TestDurationPattern(t *testing.T) {
	re := regexp.MustCompile(DurationPattern)
	for _, s := range []string{"0", "1s", "1.5s", "200ms", "1m30s", "2h", ".5s", "10us", "10µs"} {
		if !re.MatchString(s) {
			t.Errorf("pattern refuses %q", s)
		}
		if _, err := ParseDuration(s); err != nil {
			t.Errorf("ParseDuration refuses %q, which the pattern accepts: %v", s, err)
		}
	}
	for _, s := range []string{"", "5", "60", "5x", "-1s", "1 s", "s", "1.5"} {
		if re.MatchString(s) {
			t.Errorf("pattern accepts %q", s)
		}
	}
}

func TestSchemaUpToDate(t *testing.T) {
	got, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", SchemaFile)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./scenarios -run TestSchemaUpToDate -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date: run go test ./scenarios -run TestSchemaUpToDate -update", SchemaFile)
	}
}

// TestSchemaDocs checks that the field docs and the types agree both ways:
// Schema fails on a field without a description, and this catches a
// description left behind by a renamed or removed field.
func TestSchemaDocs(t *testing.T) {
	b, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Properties map[string]any            `json:"properties"`
		Defs       map[string]map[string]any `json:"$defs"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	fields := map[string]bool{}
	for name := range doc.Properties {
		fields["Scenario."+name] = true
	}
	for typ, def := range doc.Defs {
		props, _ := def["properties"].(map[string]any)
		for name := range props {
			fields[typ+"."+name] = true
		}
	}
	for key := range FieldDocs {
		if !fields[key] {
			t.Errorf("FieldDocs has %q, which is no field", key)
		}
	}
	for key := range SchemaRequired {
		if !fields[key] {
			t.Errorf("SchemaRequired has %q, which is no field", key)
		}
	}
	for key := range SchemaExtra() {
		if !fields[key] {
			t.Errorf("schemaExtra has %q, which is no field", key)
		}
	}
	for typ := range TypeDocs {
		if _, ok := doc.Defs[typ]; !ok && typ != "Scenario" {
			t.Errorf("TypeDocs has %q, which is no type in the schema", typ)
		}
	}
}

func FuzzLoad(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte("hosts: {<<: [{a: {}}, {b: {}}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := LoadBytes("fuzz.yaml", data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("LoadBytes error %T %v, want a *ValidationError with problems", err, err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("a loaded scenario does not validate again: %v", err)
		}
	})
}

// TestFormatDoc keeps docs/scenario-format.md honest: its complete
// example loads, and it mentions every key and check type.
func TestFormatDoc(t *testing.T) {
	b, err := os.ReadFile("../docs/scenario-format.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	var example string
	for _, block := range strings.Split(doc, "```yaml\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		if strings.Contains(block, "timeline:") {
			example = block
			break
		}
	}
	if example == "" {
		t.Fatal("no complete example (a yaml block with a timeline)")
	}
	s, err := LoadBytes("scenarios/lab-e/syn-dropped.yaml", []byte(example))
	if err != nil {
		t.Fatalf("the example does not load:\n%v", err)
	}
	if got := s.Hosts["client"].Sysctls["net.ipv4.tcp_syn_linear_timeouts"]; got != "0" {
		t.Errorf("the example's tcp_syn_linear_timeouts = %q, want 0", got)
	}
	for key := range FieldDocs {
		_, name, _ := strings.Cut(key, ".")
		if !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("the format doc does not mention `%s` (%s)", name, key)
		}
	}
	for _, typ := range CheckNames() {
		if !strings.Contains(doc, "`"+typ+"`") {
			t.Errorf("the format doc does not mention check type `%s`", typ)
		}
	}
}
