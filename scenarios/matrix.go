package scenarios

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Matrix runs a scenario once per cell: each axis sets one value of the
// scenario (a host's sysctl, a server variable, a client step's option,
// the server's flavor or engine), and every cell is an instance of its
// own, with its own namespaces, named by its values.
type Matrix struct {
	Axes []Axis `yaml:"axes" json:"axes"`
	// Cells, if set, are the cells to run instead of the product of the
	// axes: each names a value for every axis.
	Cells []map[string]Scalar `yaml:"cells,omitempty" json:"cells,omitempty"`
	// Tags adds tags to the cells whose values match, so that a quick run
	// can skip the long cells.
	Tags []CellTags `yaml:"tags,omitempty" json:"tags,omitempty"`
}

// Axis is one dimension of a matrix.
type Axis struct {
	// Name labels the axis in instance names and tables; default the last
	// part of Set ("tcp_syn_retries").
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Set names what the axis sets: HOST.net.ipv4.KEY (a sysctl of a
	// host), server.NAME (a server variable), STEP.OPTION (an option of a
	// client step: connect_timeout, read_timeout, write_timeout, rcvbuf),
	// flavor or engine.
	Set    string   `yaml:"set" json:"set"`
	Values []Scalar `yaml:"values" json:"values"`
	// Labels, if set, name the values in instance names and cell labels
	// instead of the values themselves (a whole iptables rule): one per
	// value, in the same order. Cells and tags may name a value by its
	// label or by itself.
	Labels []string `yaml:"labels,omitempty" json:"labels,omitempty"`
}

// Scalar is a value as a scenario writes it: text, a number or a boolean,
// kept as text (3, "3" and 3.0 differ only where the target says so).
type Scalar string

// CellTags are tags for the cells whose values include When.
type CellTags struct {
	When map[string]Scalar `yaml:"when" json:"when"`
	Tags []string          `yaml:"tags" json:"tags"`
}

// Cell is one cell of a matrix: a value per axis, in the axes' order.
type Cell struct {
	Axes   []string
	Values []string
	// Labels name the values in the cell's label: an axis's label for
	// the value, or the value itself; nil means the values.
	Labels []string
	Tags   []string
}

// Label names the cell: "tcp_syn_retries=3 linear=0".
func (c Cell) Label() string {
	parts := make([]string, len(c.Axes))
	for i := range c.Axes {
		parts[i] = c.Axes[i] + "=" + c.Names()[i]
	}
	return strings.Join(parts, " ")
}

// Names are the cell's values as its label shows them: their labels, where
// the axis has labels.
func (c Cell) Names() []string {
	if len(c.Labels) == len(c.Values) {
		return c.Labels
	}
	return c.Values
}

// label returns the label of value v on the axis, or v itself.
func (a Axis) label(v string) string {
	for i, x := range a.Values {
		if string(x) == v && i < len(a.Labels) {
			return a.Labels[i]
		}
	}
	return v
}

// value returns the value that v names on the axis: the value whose label
// is v, or v itself.
func (a Axis) value(v string) string {
	for i, l := range a.Labels {
		if l == v && i < len(a.Values) {
			return string(a.Values[i])
		}
	}
	return v
}

// Value returns the cell's value on an axis.
func (c Cell) Value(axis string) (string, bool) {
	for i, a := range c.Axes {
		if a == axis {
			return c.Values[i], true
		}
	}
	return "", false
}

// AxisName is the axis's name, or the last part of what it sets.
func (a Axis) AxisName() string {
	if a.Name != "" {
		return a.Name
	}
	if i := strings.LastIndexByte(a.Set, '.'); i >= 0 {
		return a.Set[i+1:]
	}
	return a.Set
}

// stepFields are the fields of every step an axis may set: when it
// starts, and whether it runs at all.
var stepFields = map[string]bool{"at": true, "delay": true, "skip": true}

var axisName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// AxisLabel is what a label of an axis's value may be: a short name with
// no spaces, '=' or brackets, which would make instance names ambiguous.
var AxisLabel = regexp.MustCompile(`^[A-Za-z0-9_./:-]{1,40}$`)

// target is where an axis's value goes in the scenario document.
type target struct {
	path []string // mapping keys from the root; "#N" is an index
	// what the axis sets, for messages.
	what string
}

// resolve finds where in the document an axis's Set points.
func (s *Scenario) resolve(set string) (target, error) {
	switch {
	case set == "flavor" || set == "engine":
		return target{path: []string{"server", set}, what: "the server's " + set}, nil
	case strings.HasPrefix(set, "server.") && !strings.HasPrefix(set, "server.net."):
		// A host may be named server too: its sysctls are server.net.*,
		// which no variable name can be.
		name := strings.TrimPrefix(set, "server.")
		if !variableName.MatchString(name) {
			return target{}, fmt.Errorf("bad server variable %q", name)
		}
		return target{path: []string{"server", "variables", name}, what: "server variable " + name}, nil
	}
	host, rest, ok := strings.Cut(set, ".")
	if !ok {
		return target{}, fmt.Errorf("bad axis %q: want HOST.net.KEY, server.NAME, STEP.OPTION, flavor or engine", set)
	}
	if strings.HasPrefix(rest, "net.") {
		if _, known := s.Hosts[host]; !known {
			return target{}, fmt.Errorf("unknown host %q (hosts: %s)", host, strings.Join(sortedNames(s.Hosts), ", "))
		}
		if !SysctlKey.MatchString(rest) {
			return target{}, fmt.Errorf("bad sysctl key %q", rest)
		}
		if readOnlySysctls[rest] {
			return target{}, fmt.Errorf("sysctl %s is the machine's, read-only in a lab namespace: it cannot be set per host", rest)
		}
		return target{path: []string{"hosts", host, "sysctls", rest}, what: "sysctl " + rest + " of host " + host}, nil
	}
	for i, st := range s.Timeline {
		if st == nil || st.Name != host {
			continue
		}
		settable := map[string]bool{}
		if k, ok := Action(st.Kind); ok {
			for _, o := range k.Settable {
				settable[o] = true
			}
		}
		// An action's option named as a step field (a latency's delay)
		// wins: sweeping it is what the axis most likely means. That
		// step's own start delay is then not an axis's to set.
		if stepFields[rest] && !settable[rest] {
			return target{path: []string{"timeline", "#" + strconv.Itoa(i), rest}, what: rest + " of step " + host}, nil
		}
		if rest == st.Kind && settable[rest] {
			// The kind's own name: the whole value of the action (an
			// iptables step's rule).
			return target{path: []string{"timeline", "#" + strconv.Itoa(i), rest}, what: "the " + rest + " action of step " + host}, nil
		}
		for o := range stepFields {
			settable[o] = true
		}
		if !settable[rest] {
			return target{}, fmt.Errorf("step %q (%s) has no option %q an axis may set (want %s)", host, st.Kind, rest, oneOfText(settable))
		}
		return target{path: []string{"timeline", "#" + strconv.Itoa(i), st.Kind, rest}, what: "option " + rest + " of step " + host}, nil
	}
	return target{}, fmt.Errorf("%q names no host, step, server variable, flavor or engine", host)
}

// validateMatrix checks the axes, cells and tags of a matrix.
func (c *Validator) matrix() {
	m := c.s.Matrix
	if m == nil {
		return
	}
	if len(m.Axes) == 0 {
		c.add("matrix.axes", "want at least one axis")
		return
	}
	names := map[string]bool{}
	sets := map[string]bool{}
	for i, a := range m.Axes {
		path := fmt.Sprintf("matrix.axes[%d]", i)
		if a.Set == "" {
			c.add(path+".set", "required")
			continue
		}
		if _, err := c.s.resolve(a.Set); err != nil {
			c.add(path+".set", "%v", err)
		}
		if sets[a.Set] {
			c.add(path+".set", "%s is set by another axis", a.Set)
		}
		sets[a.Set] = true
		n := a.AxisName()
		if !axisName.MatchString(n) {
			c.add(path+".name", "bad axis name %q: lowercase letters, digits and '_'", n)
		} else if names[n] {
			c.add(path+".name", "duplicate axis name %q", n)
		}
		names[n] = true
		if len(a.Values) == 0 {
			c.add(path+".values", "want at least one value")
		}
		seen := map[Scalar]bool{}
		for j, v := range a.Values {
			if strings.TrimSpace(string(v)) == "" {
				c.add(fmt.Sprintf("%s.values[%d]", path, j), "empty value")
			} else if seen[v] {
				c.add(fmt.Sprintf("%s.values[%d]", path, j), "value %s listed twice", v)
			}
			seen[v] = true
		}
		c.labels(path, a, seen)
	}
	for i, cell := range m.Cells {
		path := fmt.Sprintf("matrix.cells[%d]", i)
		for _, a := range m.Axes {
			if _, ok := cell[a.AxisName()]; !ok {
				c.add(path, "no value for axis %s", a.AxisName())
			}
		}
		for _, k := range sortedNames(cell) {
			if !names[k] {
				c.add(joinKey(path, k), "no axis named %q (axes: %s)", k, strings.Join(sortedNames(names), ", "))
			}
		}
	}
	for i, t := range m.Tags {
		path := fmt.Sprintf("matrix.tags[%d]", i)
		for _, k := range sortedNames(t.When) {
			if !names[k] {
				c.add(joinKey(path+".when", k), "no axis named %q (axes: %s)", k, strings.Join(sortedNames(names), ", "))
			}
		}
		if len(t.Tags) == 0 {
			c.add(path+".tags", "want at least one tag")
		}
	}
}

// labels checks an axis's labels: one per value, each a short name, none
// twice, and none another value of the axis (a cell naming it would be
// ambiguous).
func (c *Validator) labels(path string, a Axis, values map[Scalar]bool) {
	if a.Labels == nil {
		return
	}
	if len(a.Labels) != len(a.Values) {
		c.add(path+".labels", "%d labels for %d values: want one label per value", len(a.Labels), len(a.Values))
		return
	}
	seen := map[string]bool{}
	for j, l := range a.Labels {
		p := fmt.Sprintf("%s.labels[%d]", path, j)
		switch {
		case !AxisLabel.MatchString(l):
			c.add(p, "bad label %q: want up to 40 letters, digits, '-', '_', '.', '/' and ':'", l)
		case seen[l]:
			c.add(p, "label %s listed twice", l)
		case values[Scalar(l)] && string(a.Values[j]) != l:
			c.add(p, "label %s is another value of the axis: a cell naming it would be ambiguous", l)
		}
		seen[l] = true
	}
}

// Cells returns the cells of the scenario's matrix: the listed ones, or
// the product of the axes, first axis slowest; nil without a matrix.
func (s *Scenario) Cells() []Cell {
	m := s.Matrix
	if m == nil || len(m.Axes) == 0 {
		return nil
	}
	var axes []string
	for _, a := range m.Axes {
		axes = append(axes, a.AxisName())
	}
	var cells []Cell
	if len(m.Cells) > 0 {
		for _, given := range m.Cells {
			c := Cell{Axes: axes}
			for i, a := range m.Axes {
				// A cell may name a value by its label.
				v := a.value(string(given[axes[i]]))
				c.Values = append(c.Values, v)
				c.Labels = append(c.Labels, a.label(v))
			}
			cells = append(cells, c)
		}
	} else {
		cells = []Cell{{Axes: axes}}
		for _, a := range m.Axes {
			var next []Cell
			for _, c := range cells {
				for _, v := range a.Values {
					next = append(next, Cell{Axes: axes, Values: append(append([]string{}, c.Values...), string(v)),
						Labels: append(append([]string{}, c.Labels...), a.label(string(v)))})
				}
			}
			cells = next
		}
	}
	for i := range cells {
		for _, t := range m.Tags {
			match := true
			for k, v := range t.When {
				// when names a value by its label or by itself.
				got, _ := cells[i].Value(k)
				if j := indexOf(axes, k); j < 0 || got != m.Axes[j].value(string(v)) {
					match = false
				}
			}
			if match {
				cells[i].Tags = append(cells[i].Tags, t.Tags...)
			}
		}
	}
	return cells
}

// WithCell returns the scenario as the cell makes it: each axis's value
// written into a copy of the document, which is loaded and validated as a
// file of its own would be (problems name the file and the lines of the
// original). The instance has no matrix; its name carries the cell.
func (s *Scenario) WithCell(cell Cell) (*Scenario, error) {
	if s.root == nil {
		return nil, fmt.Errorf("scenario %s was not loaded from YAML", s.Name)
	}
	root := copyNode(s.root)
	removeKey(root, "matrix")
	var problems []Problem
	for i, a := range s.Matrix.Axes {
		t, err := s.resolve(a.Set)
		if err != nil {
			problems = append(problems, Problem{Line: s.Line(fmt.Sprintf("matrix.axes[%d].set", i)), Path: fmt.Sprintf("matrix.axes[%d].set", i), Msg: err.Error()})
			continue
		}
		line := s.Line(fmt.Sprintf("matrix.axes[%d].values", i))
		setPath(root, t.path, cell.Values[i], line)
	}
	if len(problems) > 0 {
		return nil, &ValidationError{File: s.File, Problems: problems}
	}
	if !hasKey(root, "name") {
		// The instance keeps the file's name for its own.
		setPath(root, []string{"name"}, s.Name, root.Line)
	}
	inst, err := loadRoot(s.File, root, nil)
	if err != nil {
		var ve *ValidationError
		if ok := asValidation(err, &ve); ok {
			for i := range ve.Problems {
				ve.Problems[i].Msg = fmt.Sprintf("in cell [%s]: %s", cell.Label(), ve.Problems[i].Msg)
			}
		}
		return nil, err
	}
	inst.Name = s.Name + " [" + cell.Label() + "]"
	// The instance's document names it too, so that what a run saves of it
	// (scenario.yaml) loads as the cell that ran.
	setPath(root, []string{"name"}, inst.Name, root.Line)
	inst.Tags = appendNew(append([]string{}, s.Tags...), cell.Tags...)
	if contains(cell.Tags, "long") {
		// A long cell of a quick scenario is not quick.
		var keep []string
		for _, t := range inst.Tags {
			if t != "quick" {
				keep = append(keep, t)
			}
		}
		inst.Tags = keep
	}
	inst.Cell = &cell
	inst.Parent = s.Name
	return inst, nil
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

func asValidation(err error, ve **ValidationError) bool {
	v, ok := err.(*ValidationError)
	if ok {
		*ve = v
	}
	return ok
}

func appendNew(list []string, more ...string) []string {
	for _, m := range more {
		if !contains(list, m) {
			list = append(list, m)
		}
	}
	return list
}

// Expand returns the instances of a scenario: one per matrix cell (or the
// scenario itself without a matrix), each then once per server, as
// Instances says. A cell that does not validate is an error naming it.
func Expand(sc *Scenario, flavors, engines []string) ([]*Scenario, error) {
	cells := sc.Cells()
	if len(cells) == 0 {
		return Instances(sc, flavors, engines), nil
	}
	var out []*Scenario
	var errs []string
	for _, c := range cells {
		inst, err := sc.WithCell(c)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		out = append(out, Instances(inst, flavors, engines)...)
	}
	if len(errs) > 0 {
		return nil, &cellsError{msg: strings.Join(errs, "\n")}
	}
	return out, nil
}

type cellsError struct{ msg string }

func (e *cellsError) Error() string        { return e.msg }
func (e *cellsError) Is(target error) bool { return target == ErrInvalidScenario }

// SetAxis adds an axis to the scenario's matrix, or replaces the values
// of the axis that sets the same thing: `labrun run --set`. The matrix is
// validated again.
func (s *Scenario) SetAxis(set string, strs []string) error {
	values := make([]Scalar, len(strs))
	for i, v := range strs {
		values[i] = Scalar(v)
	}
	if len(strs) == 0 {
		return fmt.Errorf("--set %s: no values", set)
	}
	if _, err := s.resolve(set); err != nil {
		return fmt.Errorf("--set %s: %w", set, err)
	}
	if s.Matrix == nil {
		s.Matrix = &Matrix{}
	}
	for i, a := range s.Matrix.Axes {
		if a.Set == set {
			s.Matrix.Axes[i].Values = values
			// The labels named the values replaced.
			s.Matrix.Axes[i].Labels = nil
			s.Matrix.Cells = nil
			return s.validateMatrixOnly(set)
		}
	}
	s.Matrix.Axes = append(s.Matrix.Axes, Axis{Set: set, Values: values})
	// Listed cells name every axis; a new axis makes them incomplete, so
	// the product runs instead.
	s.Matrix.Cells = nil
	return s.validateMatrixOnly(set)
}

func (s *Scenario) validateMatrixOnly(set string) error {
	c := &Validator{s: s}
	c.matrix()
	if len(c.ps) == 0 {
		return nil
	}
	var msgs []string
	for _, p := range c.ps {
		msgs = append(msgs, p.Msg)
	}
	return fmt.Errorf("--set %s: %s", set, strings.Join(msgs, "; "))
}

// copyNode copies a node tree, keeping lines; aliases are resolved into
// copies so that editing one cell's value never edits another's.
func copyNode(n *yaml.Node) *yaml.Node {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return copyNode(n.Alias)
	}
	c := *n
	c.Content = make([]*yaml.Node, len(n.Content))
	for i, k := range n.Content {
		c.Content[i] = copyNode(k)
	}
	c.Anchor = ""
	return &c
}

func hasKey(m *yaml.Node, key string) bool {
	k, _ := lookupKey(m, key, 0)
	return k != nil
}

func removeKey(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}

// setPath writes value at path, creating mappings on the way; new nodes
// take line, so that a problem with the value points at the axis.
func setPath(n *yaml.Node, path []string, value string, line int) {
	for i, key := range path {
		last := i == len(path)-1
		if strings.HasPrefix(key, "#") {
			idx, _ := strconv.Atoi(key[1:])
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return
			}
			n = n.Content[idx]
			continue
		}
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
			// "client:" with nothing under it becomes a mapping.
			*n = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column}
		}
		if n.Kind != yaml.MappingNode {
			return
		}
		var next *yaml.Node
		for j := 0; j+1 < len(n.Content); j += 2 {
			if n.Content[j].Value == key && n.Content[j].ShortTag() != "!!merge" {
				next = n.Content[j+1]
				if last {
					n.Content[j+1] = scalar(value, line)
					return
				}
			}
		}
		if next == nil {
			k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key, Line: line}
			if last {
				n.Content = append(n.Content, k, scalar(value, line))
				return
			}
			next = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: line}
			n.Content = append(n.Content, k, next)
		}
		n = next
	}
}

// scalar is a value node as the axis wrote it: durations and numbers stay
// text, which every target decodes.
func scalar(v string, line int) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: v, Line: line}
	if _, err := strconv.ParseInt(v, 10, 64); err == nil {
		n.Tag = "!!int"
	} else if v == "true" || v == "false" {
		// A boolean field (a step's skip) takes only booleans; a string
		// field takes them as text.
		n.Tag = "!!bool"
	} else {
		n.Tag = "!!str"
	}
	return n
}

// Document is the scenario's YAML as it runs: the file as written, or,
// for a matrix cell, the document with the cell's values written in.
func (s *Scenario) Document() ([]byte, error) {
	if s.Cell == nil && s.File != "" {
		if b, err := os.ReadFile(s.File); err == nil {
			return b, nil
		}
	}
	if s.root == nil {
		return nil, fmt.Errorf("scenario %s has no document", s.Name)
	}
	return yaml.Marshal(s.root)
}
