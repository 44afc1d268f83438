package scenarios

import (
	"fmt"
	"reflect"
	"sort"
	"sync"
)

// The format's extension points. A step action and a check kind are each
// one file of their own package (actions/, checks/) that registers itself
// here by name from an init function, with its YAML fields, its
// validation, what it needs from the machine and its line in the docs.
// The loader, the validator, the schema, `labrun doctor` and the docs'
// lists all read these registries, so adding a kind never means editing a
// list elsewhere. Toxiproxy's toxics are the model.

// Requirement is a capability of the machine that a kind needs. Probe says
// whether this machine has it: nil, or why not. `labrun doctor` lists
// every registered requirement, and a scenario whose kinds need one the
// machine lacks is skipped with the probe's reason.
type Requirement struct {
	Name string
	// Probe returns nil when the machine has the capability.
	Probe func() error
}

// ActionKind is one kind of timeline step: the YAML key that names it and
// everything the loader needs to know about its value.
type ActionKind struct {
	// Name is the step's key ("iptables", "client").
	Name string
	// Doc is one sentence for the schema and the docs.
	Doc string
	// New returns a pointer to a zero value of the action's YAML type; the
	// loader decodes the step's value into it and keeps it in Step.Action.
	New func() any
	// FieldDocs describe the fields of the action's type (and of types
	// nested in it), by "Type.field", for the schema.
	FieldDocs map[string]string
	// TypeDocs describe the action's struct types, by name, for the schema.
	TypeDocs map[string]string
	// FieldSchema adds JSON Schema keywords to fields, by "Type.field":
	// the enums and ranges Validate enforces.
	FieldSchema map[string]map[string]any
	// Schema adds keywords to the action's own value schema.
	Schema map[string]any
	// Host says whether the step needs a host: HostRequired, HostOptional,
	// or a default host name the loader fills in.
	Host string
	// Connects says that the action opens connections to the server that
	// checks can follow (a client session).
	Connects bool
	// Validate checks one step of this kind; st.Action holds its value.
	Validate func(v *Validator, path string, st *Step)
	// ValidateAll checks rules between the steps of this kind (a rule
	// deleted before it is added, a session used on two hosts); it runs
	// once per scenario that has such a step.
	ValidateAll func(v *Validator)
	// Needs lists what the machine must have for this action to run.
	Needs []Requirement
	// Settable lists the action's fields a matrix axis or --set may set,
	// as STEP.FIELD (a client's read_timeout, a freeze's for); the kind's
	// own name in it lets an axis set the whole value, as STEP.KIND (an
	// iptables step's rule).
	Settable []string
}

// Values of ActionKind.Host other than a default host name.
const (
	HostRequired = ""
	HostOptional = "-"
)

// CheckKind is one kind of check: what the loader needs to know to refuse
// a check it cannot evaluate. Evaluation lives in package checks.
type CheckKind struct {
	Name string
	// Doc is one sentence for the schema and the docs.
	Doc string
	// Expect lists the keys of expect the kind reads; any other key is a
	// validation error, because a check must never ignore an expectation.
	Expect []string
	// Required lists the expect keys the kind cannot work without.
	Required []string
	// Models lists the values of expect.model the kind understands.
	Models []string
	// Step says whether the check names a step: StepConnection (a step
	// whose action connects), StepAny, StepOptional or StepNone.
	Step string
	// ExpectSchema adds JSON Schema keywords to expect's fields for this
	// kind, by YAML name (socket_state's TCP states).
	ExpectSchema map[string]map[string]any
	// Processlist says that the kind reads observe.processlist samples.
	Processlist bool
	// Validate adds the kind's own rules, after the generic ones.
	Validate func(v *Validator, path string, c *Check)
	// Needs lists what the machine must have.
	Needs []Requirement
}

// Values of CheckKind.Step.
const (
	StepConnection = "connection"
	StepAny        = "any"
	StepOptional   = "optional"
	StepNone       = "none"
)

var (
	regMu       sync.RWMutex
	actionKinds = map[string]*ActionKind{}
	checkKinds  = map[string]*CheckKind{}
	// scenarioNeeds are requirements that come from a scenario's other
	// parts than its steps and checks (server.disk needs loop devices).
	scenarioNeeds []ScenarioNeed
)

// ScenarioNeed is a requirement of a part of the scenario format other
// than a step or a check: Applies says whether a scenario uses that part.
type ScenarioNeed struct {
	Requirement
	// Part names the part of the format that needs it ("server.disk").
	Part    string
	Applies func(*Scenario) bool
}

// ScenarioNeeds returns the registered needs of scenario parts.
func ScenarioNeeds() []ScenarioNeed { return needs() }

// RegisterNeed adds a requirement of a scenario part; the package that
// implements the part registers it.
func RegisterNeed(n ScenarioNeed) {
	regMu.Lock()
	defer regMu.Unlock()
	scenarioNeeds = append(scenarioNeeds, n)
}

func needs() []ScenarioNeed {
	regMu.RLock()
	defer regMu.RUnlock()
	return append([]ScenarioNeed{}, scenarioNeeds...)
}

// RegisterAction adds a step action. It panics on a duplicate name or a
// kind without New, since both are programming errors found at start.
func RegisterAction(k ActionKind) {
	regMu.Lock()
	defer regMu.Unlock()
	if k.Name == "" || k.New == nil || k.Doc == "" {
		panic(fmt.Sprintf("scenarios: action %q needs a name, New and Doc", k.Name))
	}
	if _, dup := actionKinds[k.Name]; dup {
		panic("scenarios: action registered twice: " + k.Name)
	}
	if _, common := fieldsOf(reflect.TypeOf(Step{})).byName[k.Name]; common {
		panic("scenarios: action name is a step field: " + k.Name)
	}
	actionKinds[k.Name] = &k
}

// RegisterCheck adds a check kind.
func RegisterCheck(k CheckKind) {
	regMu.Lock()
	defer regMu.Unlock()
	if k.Name == "" || k.Doc == "" {
		panic(fmt.Sprintf("scenarios: check %q needs a name and Doc", k.Name))
	}
	if _, dup := checkKinds[k.Name]; dup {
		panic("scenarios: check registered twice: " + k.Name)
	}
	for _, key := range append(append([]string{}, k.Expect...), k.Required...) {
		if _, ok := fieldsOf(reflect.TypeOf(Expect{})).byName[key]; !ok {
			panic(fmt.Sprintf("scenarios: check %s reads unknown expect key %q", k.Name, key))
		}
	}
	checkKinds[k.Name] = &k
}

// Action returns a registered step action.
func Action(name string) (*ActionKind, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	k, ok := actionKinds[name]
	return k, ok
}

// CheckKindOf returns a registered check kind.
func CheckKindOf(name string) (*CheckKind, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	k, ok := checkKinds[name]
	return k, ok
}

// Actions returns the registered step actions, sorted by name.
func Actions() []*ActionKind {
	regMu.RLock()
	defer regMu.RUnlock()
	out := make([]*ActionKind, 0, len(actionKinds))
	for _, k := range actionKinds {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// CheckKinds returns the registered check kinds, sorted by name.
func CheckKinds() []*CheckKind {
	regMu.RLock()
	defer regMu.RUnlock()
	out := make([]*CheckKind, 0, len(checkKinds))
	for _, k := range checkKinds {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ActionNames and CheckNames are the registered names, sorted.
func ActionNames() []string {
	var out []string
	for _, k := range Actions() {
		out = append(out, k.Name)
	}
	return out
}

func CheckNames() []string {
	var out []string
	for _, k := range CheckKinds() {
		out = append(out, k.Name)
	}
	return out
}

// Requirements returns every requirement a registered kind declares, by
// name, each once.
func Requirements() []Requirement {
	var lists [][]Requirement
	for _, k := range Actions() {
		lists = append(lists, k.Needs)
	}
	for _, k := range CheckKinds() {
		lists = append(lists, k.Needs)
	}
	for _, n := range needs() {
		lists = append(lists, []Requirement{n.Requirement})
	}
	out := uniqueRequirements(lists)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Needs returns what this scenario's steps and checks need from the
// machine, each once.
func (s *Scenario) Needs() []Requirement {
	var lists [][]Requirement
	for _, n := range needs() {
		if n.Applies(s) {
			lists = append(lists, []Requirement{n.Requirement})
		}
	}
	for _, st := range s.Timeline {
		if st != nil && st.Skip {
			// A skipped step runs nothing.
			continue
		}
		if k, ok := Action(stepKind(st)); ok {
			lists = append(lists, k.Needs)
		}
	}
	for _, c := range s.Checks {
		if c == nil {
			continue
		}
		if k, ok := CheckKindOf(c.Type); ok {
			lists = append(lists, k.Needs)
		}
	}
	return uniqueRequirements(lists)
}

func stepKind(st *Step) string {
	if st == nil {
		return ""
	}
	return st.Kind
}

// uniqueRequirements flattens lists of requirements, each name once, in
// the order of first appearance.
func uniqueRequirements(lists [][]Requirement) []Requirement {
	seen := map[string]bool{}
	var out []Requirement
	for _, rs := range lists {
		for _, r := range rs {
			if !seen[r.Name] {
				seen[r.Name] = true
				out = append(out, r)
			}
		}
	}
	return out
}

// Missing probes what the scenario needs and returns the first thing this
// machine lacks, as "needs NAME: reason", or "".
func (s *Scenario) Missing() string {
	for _, r := range s.Needs() {
		if r.Probe == nil {
			continue
		}
		if err := r.Probe(); err != nil {
			return "needs " + r.Name + ": " + err.Error()
		}
	}
	return ""
}
