package scenarios_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	_ "github.com/labrun/labrun/actions"
	"github.com/labrun/labrun/checks"
	"github.com/labrun/labrun/client"
	. "github.com/labrun/labrun/scenarios"
)

// A step action, a check kind and a client kind are each one file that
// registers itself; the schema and the docs' lists of kinds come from the
// registries. These tests keep it so: a kind registered without its doc
// line, its place in the schema or its mention in the docs fails here, and
// the docs' generated tables are rewritten with -update.

const (
	checksDoc = "../docs/checks.md"
	formatDoc = "../docs/scenario-format.md"
)

// schemaDoc is the part of scenarios/schema.json the registry test reads.
type schemaDoc struct {
	Defs struct {
		Step struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"Step"`
		Check struct {
			Properties struct {
				Type struct {
					Enum []string `json:"enum"`
				} `json:"type"`
			} `json:"properties"`
			AllOf []struct {
				If struct {
					Properties struct {
						Type struct {
							Const string `json:"const"`
						} `json:"type"`
					} `json:"properties"`
				} `json:"if"`
			} `json:"allOf"`
		} `json:"Check"`
		Client struct {
			Properties struct {
				Kind struct {
					Enum []string `json:"enum"`
				} `json:"kind"`
			} `json:"properties"`
		} `json:"Client"`
	} `json:"$defs"`
}

func readSchemaDoc(t *testing.T) schemaDoc {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", SchemaFile))
	if err != nil {
		t.Fatal(err)
	}
	var doc schemaDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", SchemaFile, err)
	}
	return doc
}

func readDoc(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// documented says whether a markdown document names a kind as a heading
// ("### `name`") or as the first cell of a table row ("| `name` |").
func documented(doc, name string) bool {
	q := regexp.QuoteMeta("`" + name + "`")
	return regexp.MustCompile(`(?m)^(#+ ` + q + `\s*$|\| ` + q + ` \|)`).MatchString(doc)
}

func TestRegistryComplete(t *testing.T) {
	schema := readSchemaDoc(t)
	checksMD := readDoc(t, checksDoc)
	formatMD := readDoc(t, formatDoc)

	if len(Actions()) == 0 || len(CheckKinds()) == 0 || len(client.Kinds()) == 0 {
		t.Fatalf("empty registry: %d actions, %d check kinds, %d client kinds", len(Actions()), len(CheckKinds()), len(client.Kinds()))
	}
	for _, k := range Actions() {
		if k.Doc == "" {
			t.Errorf("action %s has no Doc", k.Name)
		}
		if _, ok := schema.Defs.Step.Properties[k.Name]; !ok {
			t.Errorf("action %s is no property of Step in %s", k.Name, SchemaFile)
		}
		if !documented(formatMD, k.Name) {
			t.Errorf("action %s is not in %s", k.Name, formatDoc)
		}
	}

	perKind := map[string]bool{}
	for _, a := range schema.Defs.Check.AllOf {
		perKind[a.If.Properties.Type.Const] = true
	}
	evaluated := map[string]bool{}
	for _, k := range checks.Kinds() {
		evaluated[k.Name] = true
	}
	for _, k := range CheckKinds() {
		if k.Doc == "" {
			t.Errorf("check kind %s has no Doc", k.Name)
		}
		if !slices.Contains(schema.Defs.Check.Properties.Type.Enum, k.Name) {
			t.Errorf("check kind %s is not in Check.type's enum in %s", k.Name, SchemaFile)
		}
		if !perKind[k.Name] {
			t.Errorf("check kind %s has no rule in Check's allOf in %s", k.Name, SchemaFile)
		}
		if !evaluated[k.Name] {
			t.Errorf("check kind %s is in the format but package checks cannot evaluate it", k.Name)
		}
		if !documented(checksMD, k.Name) {
			t.Errorf("check kind %s is neither a heading nor a table row in %s", k.Name, checksDoc)
		}
		if len(k.Models) > 0 && !slices.Contains(k.Expect, "model") && !slices.Contains(k.Required, "model") {
			t.Errorf("check kind %s has models %v but does not read expect.model", k.Name, k.Models)
		}
	}
	if got, want := schema.Defs.Check.Properties.Type.Enum, CheckNames(); !slices.Equal(got, want) {
		t.Errorf("Check.type's enum in %s is %v, the registry has %v", SchemaFile, got, want)
	}

	var clients []string
	for _, k := range client.Kinds() {
		clients = append(clients, k.Name)
		if k.Doc == "" {
			t.Errorf("client kind %s has no Doc", k.Name)
		}
		if !documented(formatMD, k.Name) {
			t.Errorf("client kind %s is not in %s", k.Name, formatDoc)
		}
	}
	if got := schema.Defs.Client.Properties.Kind.Enum; !slices.Equal(got, clients) {
		t.Errorf("Client.kind's enum in %s is %v, the registry has %v", SchemaFile, got, clients)
	}

	for _, r := range Requirements() {
		if r.Name == "" || r.Probe == nil {
			t.Errorf("requirement %q has no name or no probe: labrun doctor could not say whether the machine has it", r.Name)
		}
	}
}

// TestKindsDocs compares the docs' generated sections with the
// registries; -update rewrites them.
func TestKindsDocs(t *testing.T) {
	sections := []struct {
		file, marker string
		render       func() string
	}{
		{checksDoc, "checks", checksTable},
		{formatDoc, "check-names", checkNames},
		{formatDoc, "actions", actionsTable},
		{formatDoc, "clients", clientsTable},
	}
	for _, s := range sections {
		t.Run(s.marker, func(t *testing.T) {
			doc := readDoc(t, s.file)
			got, err := replaceSection(doc, s.marker, s.render())
			if err != nil {
				t.Fatalf("%s: %v", s.file, err)
			}
			if got == doc {
				return
			}
			if *update {
				if err := os.WriteFile(s.file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			t.Errorf("%s: the kinds:%s section is out of date: run go test ./scenarios -run TestKindsDocs -update", s.file, s.marker)
		})
	}
}

// replaceSection puts body between "<!-- kinds:NAME -->" and
// "<!-- /kinds:NAME -->", each on a line of its own, with a blank line
// on either side of body so that markdown ends a table before the closing
// comment.
func replaceSection(doc, name, body string) (string, error) {
	open, end := "<!-- kinds:"+name+" -->\n", "<!-- /kinds:"+name+" -->"
	i := strings.Index(doc, open)
	if i < 0 || strings.Count(doc, open) != 1 {
		return "", fmt.Errorf("want exactly one line %q", strings.TrimSpace(open))
	}
	j := strings.Index(doc[i:], end)
	if j < 0 {
		return "", fmt.Errorf("no %q after %q", end, strings.TrimSpace(open))
	}
	j += i
	return doc[:i+len(open)] + "\n" + body + "\n" + doc[j:], nil
}

// cell escapes text for a markdown table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func codeList(names []string) string {
	var out []string
	for _, n := range names {
		out = append(out, "`"+n+"`")
	}
	return strings.Join(out, ", ")
}

func checksTable() string {
	var b strings.Builder
	b.WriteString("| kind | what it checks | expect keys it reads | models | needs |\n|---|---|---|---|---|\n")
	for _, k := range CheckKinds() {
		var keys []string
		for _, r := range k.Required {
			keys = append(keys, "`"+r+"` (required)")
		}
		for _, e := range k.Expect {
			if !slices.Contains(k.Required, e) {
				keys = append(keys, "`"+e+"`")
			}
		}
		var needs []string
		switch k.Step {
		case StepConnection:
			needs = append(needs, "`step`: a client step")
		case StepAny:
			needs = append(needs, "`step`: any step")
		case StepOptional:
			needs = append(needs, "`step`: optional")
		}
		if k.Processlist {
			needs = append(needs, "`observe.processlist`")
		}
		for _, r := range k.Needs {
			needs = append(needs, "machine: "+r.Name)
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", k.Name, cell(k.Doc), strings.Join(keys, ", "), codeList(k.Models), strings.Join(needs, "; "))
	}
	return b.String()
}

func checkNames() string {
	return "`type` is one of " + codeList(CheckNames()) + "; each is described in [checks.md](checks.md).\n"
}

// valueKind names the YAML value of an action's type.
func valueKind(v any) string {
	if _, ok := v.(interface{ Duration() Duration }); ok {
		return "duration"
	}
	switch reflect.TypeOf(v).Elem().Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Map, reflect.Struct:
		return "mapping"
	case reflect.Slice:
		return "list"
	}
	return "scalar"
}

func actionsTable() string {
	var b strings.Builder
	b.WriteString("| action | value | what it does | host | machine needs |\n|---|---|---|---|---|\n")
	for _, k := range Actions() {
		host := "`" + k.Host + "` by default"
		switch k.Host {
		case HostRequired:
			host = "required"
		case HostOptional:
			host = "optional"
		}
		var needs []string
		for _, r := range k.Needs {
			needs = append(needs, r.Name)
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", k.Name, valueKind(k.New()), cell(k.Doc), host, codeList(needs))
	}
	return b.String()
}

func clientsTable() string {
	var b strings.Builder
	b.WriteString("| client kind | what it is | options beyond `sql`, `database`, `connect_timeout` |\n|---|---|---|\n")
	for _, k := range client.Kinds() {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", k.Name, cell(k.Doc), codeList(k.Options))
	}
	return b.String()
}
