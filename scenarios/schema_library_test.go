package scenarios_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	_ "github.com/labrun/labrun/actions"
	_ "github.com/labrun/labrun/checks"
	. "github.com/labrun/labrun/scenarios"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// The editor (scenarios/schema.json through the YAML language server) and
// the loader must agree both ways: every scenario the loader accepts is
// valid against the schema, and the mistakes the schema can express are
// refused by it too. A real draft 2020-12 validator checks that here, so
// that a schema that is valid JSON but says something else than the
// loader fails a test instead of an editor.

// compiledSchema compiles scenarios/schema.json as written in the
// repository: the file the editors read, not Schema()'s output
// (TestSchemaUpToDate keeps the two equal).
func compiledSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("..", SchemaFile))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	sch, err := c.Compile(path)
	if err != nil {
		t.Fatalf("%s does not compile as a JSON Schema: %v", SchemaFile, err)
	}
	return sch
}

// yamlInstance reads a scenario file as the YAML language server sees it.
func yamlInstance(t *testing.T, file string) any {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return yamlBytesInstance(t, b)
}

// yamlBytesInstance is a YAML document as a JSON value, with mapping keys
// as strings.
func yamlBytesInstance(t *testing.T, b []byte) any {
	t.Helper()
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("not YAML: %v", err)
	}
	j, err := json.Marshal(stringKeys(doc))
	if err != nil {
		t.Fatalf("not representable as JSON: %v", err)
	}
	// The validator's own decoder keeps numbers as json.Number, so that
	// an integer stays an integer.
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

// stringKeys turns the maps yaml decodes into JSON objects: a key that is
// not a string (a number, a boolean) becomes its text, as in JSON.
func stringKeys(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = stringKeys(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[fmt.Sprint(k)] = stringKeys(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = stringKeys(e)
		}
		return out
	}
	return v
}

// libraryFiles are the lab library's scenarios: every YAML file under a
// scenarios/lab-* folder.
func libraryFiles(t *testing.T) []string {
	t.Helper()
	labs, err := filepath.Glob("lab-*")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, lab := range labs {
		err := filepath.WalkDir(lab, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == "testdata" {
				return filepath.SkipDir
			}
			if !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(files) == 0 {
		t.Fatal("no scenarios under scenarios/lab-*")
	}
	return files
}

// TestSchemaAcceptsLibrary validates every library scenario and every
// valid fixture against the schema; each also loads (TestLoadLibrary,
// TestLoadValid), so an error here is the schema refusing what the loader
// accepts.
func TestSchemaAcceptsLibrary(t *testing.T) {
	sch := compiledSchema(t)
	valid, err := filepath.Glob("testdata/valid-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(valid) == 0 {
		t.Fatal("no testdata/valid-*.yaml")
	}
	for _, f := range append(libraryFiles(t), valid...) {
		t.Run(f, func(t *testing.T) {
			if _, err := Load(f); err != nil {
				t.Fatalf("the loader refuses it, so the schema need not accept it:\n%v", err)
			}
			if err := sch.Validate(yamlInstance(t, f)); err != nil {
				t.Errorf("the loader accepts it but %s refuses it:\n%v", SchemaFile, err)
			}
		})
	}
}

// TestSchemaRefusesInvalid validates the invalid fixtures whose mistake
// the schema can express: each must be refused, for that mistake. A want
// is "LOCATION KEYWORD": LOCATION is the JSON pointer of the value the
// loader blames, KEYWORD the failing keyword (the end of its path). says,
// when set, is a piece of the validator's message.
func TestSchemaRefusesInvalid(t *testing.T) {
	sch := compiledSchema(t)
	tests := []struct {
		file string
		want []string
		says string
	}{
		{file: "invalid-unknown-key.yaml", want: []string{"/hosts/client additionalProperties"}},
		{file: "invalid-wrong-type.yaml", want: []string{"/server/port type"}},
		{file: "invalid-wrong-type-list.yaml", want: []string{"/timeline type"}},
		{file: "invalid-unknown-check-type.yaml", want: []string{"/checks/0/type enum"}},
		{file: "invalid-missing-action.yaml", want: []string{"/timeline/0 required"}},
		{file: "invalid-two-actions.yaml", want: []string{"/timeline/0 oneOf"}},
		{file: "invalid-no-checks.yaml", want: []string{"/ required"}},
		{file: "invalid-bare-number-duration.yaml", want: []string{"/limit type"}},
		{file: "invalid-bad-duration.yaml", want: []string{"/timeline/1/at pattern"}},
		// The validator gives a propertyNames error a wrong location
		// (jsonschema v6.0.3); its message names the key.
		{file: "invalid-bad-sysctl.yaml", want: []string{"/hosts/client anyOf"}, says: "'kernel.pid_max' does not match pattern"},
		{file: "invalid-delay-without-after.yaml", want: []string{"/timeline/0 dependentRequired/delay"}},
		{file: "invalid-at-and-after.yaml", want: []string{"/timeline/1 oneOf", "/timeline/2 required"}},
		{file: "invalid-server.yaml", want: []string{"/server/flavor enum", "/server/engine enum", "/server/port maximum"}},
		{file: "invalid-client.yaml", want: []string{"/timeline/0/client required", "/timeline/1/client/kind enum"}},
		// A false schema and 'not' have no keyword of their own: their
		// location is the want. Overlapping, public or unjoined networks,
		// addresses and a router server are the loader's alone.
		{file: "invalid-networks.yaml", want: []string{"/network "}, says: "'Public' does not match pattern"},
		{file: "invalid-routed-hosts.yaml", want: []string{"/hosts/lost required", "/hosts/nat/address "}},
		{file: "invalid-single-network-router.yaml", want: []string{"/hosts/client ", "/hosts/nat "}},
		{file: "invalid-conntrack-sysctl.yaml", want: []string{"/hosts/client anyOf"}, says: "invalid propertyName 'net.netfilter.nf_conntrack_max'"},
		// One label per value, and no label the axis's other value, are
		// the loader's alone.
		{file: "invalid-axis-labels.yaml", want: []string{"/matrix/axes/1/labels uniqueItems", "/matrix/axes/1/labels/2 pattern"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f := filepath.Join("testdata", tt.file)
			if _, err := Load(f); err == nil {
				t.Fatal("the loader accepts it: not an invalid fixture")
			}
			refused(t, sch, yamlInstance(t, f), tt.want, tt.says)
		})
	}
}

// TestSchemaRefusesExpect checks that the schema knows, per check kind,
// what the loader knows of expect: the keys the kind reads, its models,
// what it cannot work without. Checks fail closed, so an expectation the
// editor lets through and the loader refuses would surface only at exit 4.
// A key outside the kind's list is told by its message: the validator
// gives a propertyNames error a wrong location (jsonschema v6.0.3).
func TestSchemaRefusesExpect(t *testing.T) {
	const base = `hosts: {client: {}, server: {}}
server: {host: server}
observe: {sockets: [{host: server}]}
timeline:
  - {name: connect, at: 0s, client: {kind: go, sql: [SELECT 1]}}
checks:
`
	sch := compiledSchema(t)
	tests := []struct {
		name  string
		check string
		want  []string
		says  string
	}{
		{"key the kind does not read", `{name: c, type: socket_state, step: connect, host: server, expect: {state: ESTABLISHED, count: 1}}`,
			[]string{"/checks/0 allOf"}, "invalid propertyName 'count'"},
		{"model the kind does not know", `{name: c, type: socket_state, step: connect, host: server, expect: {state: SYN_RECV, model: syn}}`,
			[]string{"/checks/0/expect/model enum"}, ""},
		{"unknown TCP state", `{name: c, type: socket_state, step: connect, host: server, expect: {state: ESTABLISH}}`,
			[]string{"/checks/0/expect/state enum"}, ""},
		{"required expect missing", `{name: c, type: socket_state, step: connect, host: server}`,
			[]string{"/checks/0 required"}, "missing property 'expect'"},
		{"step missing", `{name: c, type: syn_retransmits}`,
			[]string{"/checks/0 required"}, "missing property 'step'"},
		{"expect on a kind that reads only tolerance", `{name: c, type: ends_after, step: connect, expect: {after: connect, count: 2}}`,
			[]string{"/checks/0 allOf"}, "invalid propertyName 'count'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := base + "  - " + tt.check + "\n"
			if _, err := LoadBytes("x.yaml", []byte(src)); err == nil {
				t.Fatalf("the loader accepts it:\n%s", src)
			}
			refused(t, sch, yamlBytesInstance(t, []byte(src)), tt.want, tt.says)
		})
	}
}

// refused checks that the schema refuses inst with every error of want
// and, when says is set, a message that contains it.
func refused(t *testing.T, sch *jsonschema.Schema, inst any, want []string, says string) {
	t.Helper()
	err := sch.Validate(inst)
	if err == nil {
		t.Fatalf("%s accepts it; the loader refuses it", SchemaFile)
	}
	got := schemaErrors(err)
	for _, w := range want {
		if !hasSchemaError(got, w) {
			t.Errorf("no error %q; the schema said:\n%s\n%v", w, strings.Join(got, "\n"), err)
		}
	}
	if says != "" && !strings.Contains(err.Error(), says) {
		t.Errorf("the schema's message does not say %q:\n%v", says, err)
	}
}

// schemaErrors returns every error of a validation, outer and inner, as
// "LOCATION KEYWORD-PATH".
func schemaErrors(err error) []string {
	var out []string
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		out = append(out, "/"+strings.Join(e.InstanceLocation, "/")+" "+strings.Join(e.ErrorKind.KeywordPath(), "/"))
		for _, c := range e.Causes {
			walk(c)
		}
	}
	if ve, ok := err.(*jsonschema.ValidationError); ok {
		walk(ve)
	}
	sort.Strings(out)
	return out
}

// hasSchemaError says whether errs has want, "LOCATION KEYWORD": an error
// at LOCATION whose keyword path ends with KEYWORD.
func hasSchemaError(errs []string, want string) bool {
	loc, kw, _ := strings.Cut(want, " ")
	for _, e := range errs {
		eloc, ekw, _ := strings.Cut(e, " ")
		if eloc == loc && (ekw == kw || strings.HasSuffix(ekw, "/"+kw)) {
			return true
		}
	}
	return false
}
