package scenarios

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/labrun/labrun/server"
)

// ErrInvalidScenario is matched (errors.Is) by every *ValidationError, so
// that a caller can map bad input to its own exit code without looking at
// the problems.
var ErrInvalidScenario = errors.New("invalid scenario")

// Defaults applied by Load to fields a scenario leaves out.
const (
	DefaultLimit       = Duration(120 * time.Second)
	DefaultSubnet      = "10.89.0.0/24"
	DefaultFlavor      = "mysql"
	DefaultEngine      = "process"
	DefaultPort        = 3306
	DefaultSampleEvery = Duration(100 * time.Millisecond)
	// DefaultProcesslistEvery is slower than socket sampling: each sample
	// is two queries on the server under test.
	DefaultProcesslistEvery = Duration(200 * time.Millisecond)
	// DefaultCensusEvery and DefaultConntrackEvery are slower than socket
	// sampling: a census dumps every socket of a busy server.
	DefaultCensusEvery    = Duration(250 * time.Millisecond)
	DefaultConntrackEvery = Duration(500 * time.Millisecond)
	DefaultClientHost     = "client"
	// DefaultDiskSize is server.disk's size: room for a flavor's data
	// directory (about 100 MiB for MySQL 9.7) and a competing writer's files.
	DefaultDiskSize = 1 << 30
	// MinDiskSize is the smallest server.disk that holds the data directory.
	MinDiskSize          = 256 << 20
	firstHostAddressByte = 10
)

// maxNodes bounds the walk over a document. Aliases are expanded while
// walking, and a few nested aliases can stand for billions of nodes; no
// real scenario comes near this.
const maxNodes = 100_000

// Problem is one thing wrong with a scenario.
type Problem struct {
	// Line is 1-based; 0 when the problem has no place in the file.
	Line int
	// Path names the field, e.g. "timeline[2].at"; empty for the whole
	// file.
	Path string
	Msg  string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		b.WriteString(strconv.Itoa(p.Line))
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// ValidationError lists every problem found in one scenario file, in the
// order of their lines.
type ValidationError struct {
	File     string
	Problems []Problem
}

// Error writes one "file:line: path: msg" line per problem.
func (e *ValidationError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		if e.File != "" {
			b.WriteString(e.File)
			b.WriteByte(':')
			if p.Line == 0 {
				b.WriteByte(' ')
			}
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalidScenario) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalidScenario }

// Load reads, checks and completes the scenario at path. A scenario with
// problems is returned as a *ValidationError listing all of them, so that
// one run of the tool shows everything to fix.
func Load(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	return LoadBytes(path, data)
}

// LoadBytes is Load for a scenario already in memory; file names it in
// messages and gives the default scenario name.
func LoadBytes(file string, data []byte) (*Scenario, error) {
	root, problems := parseDocument(data)
	if root == nil {
		return nil, &ValidationError{File: file, Problems: problems}
	}
	return loadRoot(file, root, data)
}

// loadRoot checks and decodes a parsed document. data is its text, for a
// strict decode on top of the walk; nil for a tree made by editing a
// loaded one (a matrix cell), which the walk alone checks.
func loadRoot(file string, root *yaml.Node, data []byte) (*Scenario, error) {
	var problems []Problem

	// Walk the tree against the Go types first: a plain decode stops at the
	// first bad value and says nothing about the path. The walk reports
	// every problem and returns a copy of the tree without the bad parts,
	// which can then be decoded to check the rest.
	w := &walker{}
	clean := w.walk(root, reflect.TypeOf(Scenario{}), "")
	problems = append(problems, w.problems...)
	if w.nodes >= maxNodes {
		// Everything after the limit was left unread; more problems would
		// be about that, not about the file.
		return nil, &ValidationError{File: file, Problems: problems}
	}

	s := &Scenario{}
	var err error
	if len(problems) == 0 && data != nil {
		// Decode the original text strictly too, so that anything the walk
		// missed is still refused rather than silently ignored.
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		err = dec.Decode(s)
	} else if clean != nil {
		err = clean.Decode(s)
	}
	if err != nil {
		// The decoder gave up halfway (excessive aliasing, or something the
		// walk let through): checking a half-decoded scenario would only
		// add noise.
		problems = append(problems, yamlProblems(err, "")...)
		sortProblems(problems)
		return nil, &ValidationError{File: file, Problems: problems}
	}
	s.File = file
	s.root = root
	s.setDefaults()

	// A value the walk had to drop would make the checks below complain a
	// second time about the same place ("want at or after" after "bad
	// duration" on at), so semantic problems on or around a path the walk
	// already reported are left out.
	for _, p := range s.validate() {
		if !pathOverlaps(p.Path, w.problems) {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		sortProblems(problems)
		return nil, &ValidationError{File: file, Problems: problems}
	}
	return s, nil
}

// parseDocument parses data into a node tree and returns the document's
// content node, or nil and the reason.
func parseDocument(data []byte) (*yaml.Node, []Problem) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, []Problem{{Line: 1, Msg: "empty scenario"}}
		}
		return nil, yamlProblems(err, "yaml syntax: ")
	}
	// A second document would be ignored by the decoder; say so instead.
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, yamlProblems(err, "yaml syntax: ")
	default:
		return nil, []Problem{{Line: next.Line, Msg: "more than one document: a scenario file holds one"}}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, []Problem{{Line: 1, Msg: "empty scenario"}}
		}
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return nil, []Problem{{Line: 1, Msg: "empty scenario"}}
	}
	if root.Kind != yaml.MappingNode {
		return nil, []Problem{{Line: root.Line, Msg: "want a mapping of scenario fields, got " + describeNode(root)}}
	}
	return root, nil
}

var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// yamlProblems turns a yaml.v3 error into problems with their lines.
// prefix says what kind of problem it is when the message alone ("did not
// find expected key") does not.
func yamlProblems(err error, prefix string) []Problem {
	lines := []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		lines, prefix = te.Errors, ""
	}
	var ps []Problem
	for _, l := range lines {
		p := Problem{Msg: strings.TrimSpace(l)}
		if m := yamlLine.FindStringSubmatch(p.Msg); m != nil {
			p.Line, _ = strconv.Atoi(m[1])
			p.Msg = m[2]
		}
		p.Msg = prefix + p.Msg
		ps = append(ps, p)
	}
	return ps
}

func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
}

// pathOverlaps reports whether path is one of the problems' paths, inside one,
// or contains one.
func pathOverlaps(path string, ps []Problem) bool {
	for _, p := range ps {
		if pathWithin(path, p.Path) || pathWithin(p.Path, path) {
			return true
		}
	}
	return false
}

// pathWithin reports whether path is base or a field or element below it.
func pathWithin(path, base string) bool {
	if base == "" || path == base {
		return true
	}
	return strings.HasPrefix(path, base) && (path[len(base)] == '.' || path[len(base)] == '[')
}

// walker checks a node tree against Go types, using the same yaml tags the
// decoder uses.
type walker struct {
	problems []Problem
	nodes    int
}

func (w *walker) add(line int, path, format string, args ...any) {
	w.problems = append(w.problems, Problem{Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// walk checks n against t and returns a copy of n without the parts that
// cannot be decoded into t, or nil when nothing of n can.
func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) *yaml.Node {
	w.nodes++
	if w.nodes == maxNodes {
		w.add(n.Line, path, "document too large: more than %d values once aliases are expanded", maxNodes)
	}
	if w.nodes >= maxNodes {
		return nil
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return nil
		}
		return w.walk(n.Alias, t, path)
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		// Null decodes to the zero value of anything, like an absent key.
		return n
	}
	if t == stepType {
		return w.step(n, path)
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		// The type knows its own syntax (Duration); its error says what is
		// wrong.
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			w.add(n.Line, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
			return nil
		}
		return n
	}
	switch t.Kind() {
	case reflect.Pointer:
		return w.walk(n, t.Elem(), path)
	case reflect.Interface:
		return n
	case reflect.Struct:
		return w.mapping(n, path, false, func(key *yaml.Node) (reflect.Type, string, bool) {
			f, ok := fieldsOf(t).byName[key.Value]
			if !ok {
				w.add(key.Line, joinField(path, key.Value), "unknown field (known: %s)", strings.Join(fieldsOf(t).names, ", "))
				return nil, "", false
			}
			return f.Type, joinField(path, key.Value), true
		})
	case reflect.Map:
		return w.mapping(n, path, true, func(key *yaml.Node) (reflect.Type, string, bool) {
			return t.Elem(), joinKey(path, key.Value), true
		})
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.add(n.Line, path, "want a list, got %s", describeNode(n))
			return nil
		}
		out := *n
		out.Content = make([]*yaml.Node, len(n.Content))
		for i, item := range n.Content {
			c := w.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
			if c == nil {
				// Keep the place of a bad element, so that later elements
				// keep their index in paths.
				c = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: item.Line, Column: item.Column}
			}
			out.Content[i] = c
		}
		return &out
	default:
		if n.Kind != yaml.ScalarNode {
			w.add(n.Line, path, "want %s, got %s", wantOf(t), describeNode(n))
			return nil
		}
		// The decoder would truncate 3306.5 to 3306; an integer field
		// takes integers only.
		isInt := strings.HasPrefix(wantOf(t), "an integer")
		if err := n.Decode(reflect.New(t).Interface()); err != nil || isInt && n.ShortTag() != "!!int" {
			w.add(n.Line, path, "want %s, got %s", wantOf(t), describeNode(n))
			return nil
		}
		return n
	}
}

var stepType = reflect.TypeOf(Step{})

// step walks a timeline step: its shared fields as a struct's, and each
// other key as the value of the step action registered under that name.
func (w *walker) step(n *yaml.Node, path string) *yaml.Node {
	common := fieldsOf(stepType)
	return w.mapping(n, path, false, func(key *yaml.Node) (reflect.Type, string, bool) {
		if f, ok := common.byName[key.Value]; ok {
			return f.Type, joinField(path, key.Value), true
		}
		if k, ok := Action(key.Value); ok {
			return reflect.TypeOf(k.New()).Elem(), joinField(path, key.Value), true
		}
		w.add(key.Line, joinField(path, key.Value), "unknown field (known: %s; actions: %s)", strings.Join(common.names, ", "), strings.Join(ActionNames(), ", "))
		return nil, "", false
	})
}

// mapping walks a mapping node whose keys are strings. field is called
// for each key, reports what is wrong with it, and says what type its
// value has and under which path. keepKeys keeps the keys of bad values
// (for maps, whose keys are names the rest of the scenario refers to).
func (w *walker) mapping(n *yaml.Node, path string, keepKeys bool, field func(key *yaml.Node) (reflect.Type, string, bool)) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		w.add(n.Line, path, "want a mapping, got %s", describeNode(n))
		return nil
	}
	pairs, ok := w.pairs(n, path, 0)
	if !ok {
		return nil
	}
	out := *n
	out.Content = nil
	seen := map[string]int{}
	for _, p := range pairs {
		key := p[0]
		if key.Kind != yaml.ScalarNode || key.ShortTag() == "!!null" || key.Value == "" {
			w.add(key.Line, path, "want a name as key, got %s", describeNode(key))
			continue
		}
		if first, dup := seen[key.Value]; dup {
			w.add(key.Line, joinKey(path, key.Value), "duplicate key (first at line %d)", first)
			continue
		}
		seen[key.Value] = key.Line
		t, sub, ok := field(key)
		if !ok {
			continue
		}
		v := w.walk(p[1], t, sub)
		if v == nil {
			if !keepKeys {
				continue
			}
			// Keep the key of a map entry with a null value, so that the
			// checks still see it (a host stays a host) and do not add
			// "unknown host" to the problem already reported.
			v = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: p[1].Line, Column: p[1].Column}
		}
		out.Content = append(out.Content, key, v)
	}
	return &out
}

// pairs returns the key/value pairs of a mapping with YAML merge keys
// ("<<: *base") expanded: explicit keys win over merged ones, and earlier
// merged mappings over later ones, as in the decoder.
func (w *walker) pairs(n *yaml.Node, path string, depth int) ([][2]*yaml.Node, bool) {
	if depth > 10 {
		w.add(n.Line, path, "merge keys nested too deep")
		return nil, false
	}
	var own, merged [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!merge" {
			own = append(own, [2]*yaml.Node{k, v})
			continue
		}
		sources := []*yaml.Node{v}
		if resolveAlias(v).Kind == yaml.SequenceNode {
			sources = resolveAlias(v).Content
		}
		for _, src := range sources {
			src = resolveAlias(src)
			if src.Kind != yaml.MappingNode {
				w.add(k.Line, path, "bad merge: want a mapping or a list of mappings, got %s", describeNode(src))
				return nil, false
			}
			ps, ok := w.pairs(src, path, depth+1)
			if !ok {
				return nil, false
			}
			merged = append(merged, ps...)
		}
	}
	if len(merged) == 0 {
		return own, true
	}
	has := map[string]bool{}
	for _, p := range own {
		has[p[0].Value] = true
	}
	all := own
	for _, p := range merged {
		if !has[p[0].Value] {
			has[p[0].Value] = true
			all = append(all, p)
		}
	}
	return all, true
}

// resolveAlias follows aliases.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// describeNode names what a node holds, for "want X, got Y" messages.
func describeNode(n *yaml.Node) string {
	n = resolveAlias(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return strconv.Quote(n.Value)
		case "!!null":
			return "nothing"
		}
		return n.Value
	}
	return "nothing"
}

// wantOf names what a Go type accepts.
func wantOf(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return t.String()
}

// yamlFields are a struct's fields by yaml name.
type yamlFields struct {
	byName map[string]reflect.StructField
	// names are sorted, for "known: ..." messages.
	names []string
}

var fieldCache sync.Map // reflect.Type -> *yamlFields

func fieldsOf(t reflect.Type) *yamlFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(*yamlFields)
	}
	f := &yamlFields{byName: map[string]reflect.StructField{}}
	for _, sf := range reflect.VisibleFields(t) {
		name, ok := yamlName(sf)
		if !ok {
			continue
		}
		f.byName[name] = sf
		f.names = append(f.names, name)
	}
	sort.Strings(f.names)
	fieldCache.Store(t, f)
	return f
}

// yamlName is the key a struct field has in YAML, as the decoder sees it.
func yamlName(sf reflect.StructField) (string, bool) {
	if !sf.IsExported() || sf.Anonymous {
		return "", false
	}
	tag := sf.Tag.Get("yaml")
	if tag == "-" {
		return "", false
	}
	name, _, _ := strings.Cut(tag, ",")
	if name == "" {
		name = strings.ToLower(sf.Name)
	}
	return name, true
}

// Paths look like "timeline[2].client.kind" or
// "hosts.client.sysctls[net.ipv4.tcp_syn_retries]": struct fields and
// plain map keys after a dot, list indexes and map keys with dots or other
// punctuation in brackets, quoted when they hold brackets or quotes.

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func joinField(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func joinKey(path, key string) string {
	switch {
	case plainKey.MatchString(key) && !isIndex(key):
		return joinField(path, key)
	case strings.ContainsAny(key, `[]" `) || strings.ContainsFunc(key, func(r rune) bool { return !unicode.IsPrint(r) }) || isIndex(key):
		return path + "[" + strconv.Quote(key) + "]"
	}
	return path + "[" + key + "]"
}

func isIndex(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

// pathSegment is one step of a path: a name, or an index in brackets.
type pathSegment struct {
	name  string
	index int // -1 for a name
}

// splitPath parses a path written by joinField and joinKey.
func splitPath(path string) ([]pathSegment, bool) {
	var segs []pathSegment
	for i := 0; i < len(path); {
		switch path[i] {
		case '.':
			i++
		case '[':
			rest := path[i+1:]
			if strings.HasPrefix(rest, `"`) {
				q, err := strconv.QuotedPrefix(rest)
				if err != nil || !strings.HasPrefix(rest[len(q):], "]") {
					return segs, false
				}
				key, _ := strconv.Unquote(q)
				segs = append(segs, pathSegment{name: key, index: -1})
				i += 1 + len(q) + 1
				continue
			}
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return segs, false
			}
			s := rest[:end]
			if n, err := strconv.Atoi(s); err == nil && n >= 0 {
				segs = append(segs, pathSegment{index: n})
			} else {
				segs = append(segs, pathSegment{name: s, index: -1})
			}
			i += end + 2
		default:
			end := strings.IndexAny(path[i:], ".[")
			if end < 0 {
				end = len(path) - i
			}
			segs = append(segs, pathSegment{name: path[i : i+end], index: -1})
			i += end
		}
	}
	return segs, true
}

// Line returns the line of the field at path ("timeline[2].at"), for
// errors found after loading. When the field is not in the file (it has a
// default, or was never written) it returns the line of the nearest
// enclosing field that is, and 0 when the scenario was not loaded from
// YAML.
func (s *Scenario) Line(path string) int {
	if s == nil || s.root == nil {
		return 0
	}
	n := s.root
	line := n.Line
	segs, _ := splitPath(path)
	for _, seg := range segs {
		n = resolveAlias(n)
		var next *yaml.Node
		switch {
		case n.Kind == yaml.SequenceNode && seg.index >= 0:
			if seg.index < len(n.Content) {
				next = n.Content[seg.index]
				line = next.Line
			}
		case n.Kind == yaml.MappingNode:
			name := seg.name
			if seg.index >= 0 {
				name = strconv.Itoa(seg.index)
			}
			if k, v := lookupKey(n, name, 0); k != nil {
				line, next = k.Line, v
			}
		}
		if next == nil {
			break
		}
		n = next
	}
	return line
}

// lookupKey finds a key in a mapping, looking into merged mappings too.
func lookupKey(n *yaml.Node, key string, depth int) (k, v *yaml.Node) {
	if depth > 10 {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if c := n.Content[i]; c.Kind == yaml.ScalarNode && c.ShortTag() != "!!merge" && c.Value == key {
			return c, n.Content[i+1]
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if c := n.Content[i]; c.Kind == yaml.ScalarNode && c.ShortTag() == "!!merge" {
			src := resolveAlias(n.Content[i+1])
			sources := []*yaml.Node{src}
			if src.Kind == yaml.SequenceNode {
				sources = src.Content
			}
			for _, m := range sources {
				if m = resolveAlias(m); m.Kind == yaml.MappingNode {
					if k, v := lookupKey(m, key, depth+1); k != nil {
						return k, v
					}
				}
			}
		}
	}
	return nil, nil
}

// setDefaults fills in what the scenario leaves out. It does not validate:
// a value it cannot work with (a bad subnet) is left for validate to
// report.
func (s *Scenario) setDefaults() {
	if s.Name == "" && s.File != "" {
		base := filepath.Base(s.File)
		s.Name = strings.TrimSuffix(base, filepath.Ext(base))
	}
	if s.Limit == 0 {
		s.Limit = DefaultLimit
	}
	if s.Network.Subnet == "" && !s.Routed() {
		// A routed lab has its subnets in networks; validate refuses
		// network written beside them.
		s.Network.Subnet = DefaultSubnet
	}
	for name, h := range s.Hosts {
		if h == nil {
			// "client:" with nothing under it is a host with defaults.
			s.Hosts[name] = &Host{}
		}
	}
	// An image says its flavor in its name (mysql:8.4) and runs in a
	// container; a name that says nothing leaves the flavor empty, for
	// validate to ask for it.
	if s.Server.Flavor == "" && s.Server.Image != "" {
		s.Server.Flavor = server.FlavorOfImage(s.Server.Image)
	} else if s.Server.Flavor == "" {
		s.Server.Flavor = DefaultFlavor
	}
	if s.Server.Engine == "" && s.Server.Image != "" {
		s.Server.Engine = server.EngineContainer
	} else if s.Server.Engine == "" {
		s.Server.Engine = DefaultEngine
	}
	for i := range s.Servers {
		v := &s.Servers[i]
		if v.Flavor == "" && v.Image != "" {
			v.Flavor = server.FlavorOfImage(v.Image)
		} else if v.Flavor == "" {
			v.Flavor = s.Server.Flavor
		}
		if v.Engine == "" && v.Image != "" {
			v.Engine = server.EngineContainer
		} else if v.Engine == "" {
			v.Engine = s.Server.Engine
		}
	}
	if s.Server.Port == 0 {
		s.Server.Port = DefaultPort
	}
	if d := s.Server.Disk; d != nil && d.Size == 0 {
		d.Size = DefaultDiskSize
	}
	if o := s.Observe.IO; o != nil && o.Every == 0 {
		o.Every = DefaultSampleEvery
	}
	if pl := s.Observe.Processlist; pl != nil && pl.Every == 0 {
		pl.Every = DefaultProcesslistEvery
	}
	for i := range s.Observe.Census {
		o := &s.Observe.Census[i]
		if o.Every == 0 {
			o.Every = DefaultCensusEvery
		}
		if o.Port == 0 {
			o.Port = s.Server.Port
		}
	}
	for i := range s.Observe.Conntrack {
		if o := &s.Observe.Conntrack[i]; o.Every == 0 {
			o.Every = DefaultConntrackEvery
		}
	}
	for i := range s.Observe.Sockets {
		o := &s.Observe.Sockets[i]
		if o.Every == 0 {
			o.Every = DefaultSampleEvery
		}
		if o.Port == 0 {
			o.Port = s.Server.Port
		}
	}
	for _, st := range s.Timeline {
		if st == nil || st.Host != "" {
			continue
		}
		if k, ok := Action(st.Kind); ok && k.Host != HostRequired && k.Host != HostOptional {
			st.Host = k.Host
		}
	}
	s.assignAddresses()
}

// assignAddresses gives hosts without an address the next free one from
// .10 up, in order of host names, so that adding a host named "zz" does not
// move the others. In a routed lab it does so on each network, and a
// router's link without an address gets its network's first free one from
// .1 up, in order of router names. Every address written anywhere (an
// address, an extra, a link's) is skipped.
func (s *Scenario) assignAddresses() {
	used := map[netip.Addr]bool{}
	mark := func(addrs ...string) {
		for _, a := range addrs {
			if p, err := netip.ParseAddr(a); err == nil {
				used[p] = true
			}
		}
	}
	for _, h := range s.Hosts {
		mark(h.Address)
		mark(h.Extra...)
		for _, l := range h.Links {
			mark(l.Address)
			mark(l.Extra...)
		}
	}
	names := sortedNames(s.Hosts)
	if !s.Routed() {
		prefix, err := netip.ParsePrefix(s.Network.Subnet)
		if err != nil || !prefix.Addr().Is4() || prefix.Bits() != 24 {
			return
		}
		for _, name := range names {
			if h := s.Hosts[name]; h.Address == "" && !h.Router() {
				// With no address left the host keeps none; validate
				// reports it.
				h.Address = nextFree(prefix, firstHostAddressByte, used)
			}
		}
		return
	}
	for _, name := range names {
		links := s.Hosts[name].Links
		for i := range links {
			if p, ok := s.subnet(links[i].Network); ok && links[i].Address == "" {
				links[i].Address = nextFree(p, 1, used)
			}
		}
	}
	for _, name := range names {
		h := s.Hosts[name]
		if p, ok := s.subnet(h.Network); ok && h.Address == "" && !h.Router() {
			h.Address = nextFree(p, firstHostAddressByte, used)
		}
	}
}
